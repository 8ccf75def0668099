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


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively: CUDA with bf16, or a CPU with AVX512-BF16/AMX (oneDNN's check)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def training_precision(device: torch.device, bf16: bool = True) -> str:
    """``"bf16"`` or ``"fp32"``: the autocast precision :func:`training_autocast` gives with the same arguments."""
    return "bf16" if bf16 and bf16_native(device) else "fp32"


def training_autocast(device: torch.device, enabled: bool = True) -> torch.autocast:
    """bf16 autocast where the hardware runs it natively (:func:`bf16_native`), else off.

    bf16 keeps fp32's range, so no loss scaling is needed; weights and optimizer state stay fp32. On this project's
    2-core CPU a training step took 0.45-0.6x the fp32 time (``bench/RESULTS.md``).
    """
    on = training_precision(device, enabled) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on)
