"""Training: losses, one epoch, validation, and the two-phase ``fit``."""
