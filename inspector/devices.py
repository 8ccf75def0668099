"""Device selection shared by training and inference."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; a CUDA device without CUDA is an error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return torch.device(device)
