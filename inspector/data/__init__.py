"""Data: layouts on disk, split, augmentation, the torch dataset and the synthetic demo set."""
