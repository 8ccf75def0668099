"""Device selection shared by training and inference."""

from __future__ import annotations

import torch

from inspector.errors import UsageError


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; a CUDA device without CUDA is the user's error, not a silent fallback."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available on this machine; use cpu or auto")
    return torch.device(device)


def training_autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX), else off.

    bf16 keeps fp32's range, so no loss scaling is needed; weights and optimizer state stay fp32. On this project's
    2-core CPU a training step took 0.45-0.6x the fp32 time (``bench/RESULTS.md``).
    """
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and native)
