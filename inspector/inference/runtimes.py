"""Running an export: ONNX Runtime or TorchScript behind the network's call signature, so the predictor runs any
backend the same way (``Predictor(bundle, backend="onnx")``)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import torch

from inspector.artifacts.bundle import Bundle
from inspector.artifacts.export import verified_file


class OnnxModel:
    """An ONNX Runtime session called like the network: ``(b, 3, H, W)`` tensor -> (logits, mask_logits[, anomaly])."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = device

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, {"image": x.detach().cpu().float().contiguous().numpy()})
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)

    def eval(self) -> OnnxModel:
        return self


def load_file(path: Path, fmt: str, device: torch.device) -> Callable:
    if fmt == "onnx":
        return OnnxModel(path, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def load_export(bundle: Bundle, fmt: str, device: torch.device) -> Callable:
    """The bundle's export in ``fmt``, every file's checksum verified, callable like the network."""
    return load_file(verified_file(bundle, fmt), fmt, device)
