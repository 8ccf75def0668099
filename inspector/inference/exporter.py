"""``inspector export``: the bundle's network as TorchScript or ONNX, checked against the bundle on golden frames.

Parity runs both networks through the serving predictor on golden frames: an export that does not reproduce the
bundle's class and mask probabilities and anomaly maps within :data:`TOLERANCE` is not written, and
:func:`check_export` refuses a recorded one that no longer does. Where exports live and how they are checked on load:
:mod:`inspector.artifacts.export`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.artifacts.bundle import Bundle, load_bundle
from inspector.artifacts.export import EXPORT_DIR, FILES, MAX_BATCH, STAGING, ExportError, write_record
from inspector.artifacts.manifest import file_digest
from inspector.data.demo import DEMO_CLASSES, make_part
from inspector.errors import UsageError
from inspector.inference.predictor import Predictor
from inspector.inference.runtimes import load_file

TOLERANCE = 1e-4  # max abs difference of class and mask probabilities and anomaly maps, fp32 on the CPU


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


def _reference(bundle: Bundle) -> Predictor:
    """The bundle's own network through the predictor, fp32 on the CPU: what an export must reproduce."""
    return Predictor(bundle, "cpu", fp16=False)


def _checked_parity(reference: Predictor, exported: Predictor, fmt: str, outcome: str) -> dict[str, Any]:
    """The parity figures on the golden frames; ExportError (ending in ``outcome``) when over :data:`TOLERANCE`
    or not a number (an export that answers NaN must not pass)."""
    frames = golden_frames()
    error = parity(reference, exported, frames)
    if not error <= TOLERANCE:
        raise ExportError(f"{fmt} export differs from the bundle by {error:.2e} (> {TOLERANCE:.0e}); {outcome}")
    return {"golden_frames": len(frames), "max_abs_error": error, "tolerance": TOLERANCE}


def export_model(model_path: str | Path, fmt: str) -> tuple[Path, dict[str, Any]]:
    """Exports the bundle's network, checks parity on golden frames, records it; returns the file and its entry.

    The export is written under its final names (``model.onnx`` names its weights ``model.onnx.data``) in a hidden
    staging folder, checked there, then moved into ``export/``; the entry lists the sha256 of every file.
    """
    if fmt not in FILES:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FILES)}")
    bundle = load_bundle(model_path)
    reference, folder = _reference(bundle), bundle.path / EXPORT_DIR
    folder.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=folder))
    try:
        example = torch.from_numpy(reference.prepare(golden_frames(1)).batch)  # (1, 3, H, W)
        (_write_onnx if fmt == "onnx" else _write_torchscript)(bundle.build_model("cpu"), example, staging / FILES[fmt])
        exported = Predictor(bundle, "cpu", fp16=False, network=load_file(staging / FILES[fmt], fmt, torch.device("cpu")))
        entry = {"file": FILES[fmt], "files": {p.name: file_digest(p) for p in sorted(staging.iterdir())},
                 "parity": _checked_parity(reference, exported, fmt, "not written")}
        for name in sorted(entry["files"], key=lambda n: n == FILES[fmt]):  # the graph last: it names the others
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_record(folder, bundle, fmt, entry)
    return folder / FILES[fmt], entry


def check_export(model_path: str | Path, fmt: str) -> dict[str, Any]:
    """Runs the parity check again on a recorded export, after its checksums, and returns its figures.

    The checksums say the files are the ones recorded, not that they reproduce the bundle: weights replaced and
    their checksums re-recorded (by hand, or by a tool that does not check) pass them, and are caught here.

    Raises:
        ExportError: A file differs from its checksum, or the export does not reproduce the bundle.
        FileNotFoundError: The bundle has no export in ``fmt``.
    """
    bundle = load_bundle(model_path)
    return _checked_parity(_reference(bundle), Predictor(bundle, "cpu", fp16=False, backend=fmt), fmt, "refused")
