"""``inspector export``: the bundle's network as TorchScript or ONNX, checked against the bundle on golden frames.

Exports sit in ``<bundle>/export/``: ``model.torchscript.pt`` and/or ``model.onnx``, and ``export.json`` with the
bundle's preprocessing, classes and thresholds (they travel with the file) and, per format, the file's sha256 and
the parity figures. An export that does not reproduce the bundle's class and mask probabilities within
:data:`TOLERANCE` is not written.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from inspector.bundle import Bundle, load_bundle
from inspector.data.demo import DEMO_CLASSES, make_part
from inspector.predictor import Predictor

TOLERANCE = 1e-4  # max abs difference of class and mask probabilities, fp32 on the CPU
EXPORT_DIR, EXPORT_META = "export", "export.json"
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
MAX_BATCH = 64  # largest batch an ONNX export accepts


class ExportError(RuntimeError):
    """The exported model does not reproduce the bundle, or its file was modified."""


def golden_frames(n: int = 8) -> list[np.ndarray]:
    """Deterministic frames: synthetic parts of every kind, of odd sizes (the predictor letterboxes them)."""
    rng = [np.random.default_rng([11, i]) for i in range(n)]
    return [make_part(DEMO_CLASSES[i % len(DEMO_CLASSES)], rng[i], 96 + 40 * i)[0] for i in range(n)]


class _Tensors(torch.nn.Module):
    """The network with a plain tuple of tensors as output (no NamedTuple, no ``None``): what exporters take."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for t in self.model(x) if t is not None)


def parity(reference: Predictor, exported: Predictor, frames: list[np.ndarray]) -> float:
    """Largest difference of class and mask probabilities and anomaly maps between two predictors on ``frames``,
    both fed the reference's prepared batch."""
    batch = reference.prepare(frames).batch
    ref, got = reference.infer(batch), exported.infer(batch)
    pairs = [(ref.probs, got.probs), (ref.masks, got.masks)] + ([(ref.anomaly, got.anomaly)] if ref.anomaly is not None else [])
    return max(float(np.abs(a - b).max()) for a, b in pairs)


def _write_torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still a format here
        torch.jit.save(torch.jit.freeze(torch.jit.trace(_Tensors(model).eval(), example, strict=False)), str(path))


def _write_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    dims = {"x": {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = ["logits", "mask_logits"] + (["anomaly_map"] if getattr(model, "anomaly", None) is not None else [])
        torch.onnx.export(_Tensors(model).eval(), (example,), str(path), input_names=["image"], output_names=names,
                          dynamic_shapes=dims, dynamo=True, verbose=False)


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


def _load_file(path: Path, fmt: str, device: torch.device) -> Callable:
    if fmt == "onnx":
        return OnnxModel(path, device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / EXPORT_META).read_text())
    except (OSError, ValueError):
        return {}


def export_model(model_path: str | Path, fmt: str) -> tuple[Path, dict[str, Any]]:
    """Exports the bundle's network, checks parity on golden frames, records it; returns the file and its entry."""
    if fmt not in FILES:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FILES)}")
    bundle = load_bundle(model_path)
    reference, frames = Predictor(bundle, "cpu", fp16=False), golden_frames()
    example = torch.from_numpy(reference.prepare(frames[:1]).batch)  # (1, 3, H, W)
    folder = bundle.path / EXPORT_DIR
    folder.mkdir(exist_ok=True)
    final, tmp = folder / FILES[fmt], folder / f".{FILES[fmt]}.tmp"
    (_write_onnx if fmt == "onnx" else _write_torchscript)(bundle.build_model("cpu"), example, tmp)
    try:
        exported = Predictor(bundle, "cpu", fp16=False, network=_load_file(tmp, fmt, torch.device("cpu")))
        error = parity(reference, exported, frames)
        if error > TOLERANCE:
            raise ExportError(f"{fmt} export differs from the bundle by {error:.2e} (> {TOLERANCE:.0e}); not written")
        entry = {"file": FILES[fmt], "sha256": hashlib.sha256(tmp.read_bytes()).hexdigest(),
                 "parity": {"golden_frames": len(frames), "max_abs_error": error, "tolerance": TOLERANCE}}
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    meta = _read_meta(folder) | {"bundle": f"{bundle.name}/{bundle.version}", "classes": list(bundle.classes),
                                 "preprocess": bundle.meta["preprocess"], "thresholds": bundle.meta["thresholds"]}
    meta.setdefault("formats", {})[fmt] = entry
    (folder / f".{EXPORT_META}.tmp").write_text(json.dumps(meta, indent=2))
    os.replace(folder / f".{EXPORT_META}.tmp", folder / EXPORT_META)
    return final, entry


def load_export(bundle: Bundle, fmt: str, device: torch.device) -> Callable:
    """The bundle's export in ``fmt``, checksum verified, callable like the network."""
    folder = bundle.path / EXPORT_DIR
    entry = _read_meta(folder).get("formats", {}).get(fmt)
    if entry is None or not (folder / entry["file"]).is_file():
        raise FileNotFoundError(f"{bundle.path} has no {fmt} export; run `inspector export --format {fmt}`")
    if hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() != entry["sha256"]:
        raise ExportError(f"{folder / entry['file']}: checksum mismatch; the file was modified")
    return _load_file(folder / entry["file"], fmt, device)
