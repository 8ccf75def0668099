"""``inspector export``: the bundle's network as TorchScript or ONNX, checked against the bundle on golden frames.

Exports sit in ``<bundle>/export/``: ``model.torchscript.pt`` and/or ``model.onnx`` with its weights in
``model.onnx.data``, and ``export.json`` with the bundle's preprocessing, classes and thresholds (they travel with the
files) and, per format, the sha256 of each of its files and the parity figures; ``export/`` holds nothing else, so
copying ``export/*`` copies a whole, checked export. Parity runs both networks through the serving predictor on
golden frames: an export that does not reproduce the bundle's class and mask probabilities and anomaly maps within
:data:`TOLERANCE` is not written, and :func:`check_export` refuses a recorded one that no longer does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from inspector.artifacts.bundle import Bundle, load_bundle
from inspector.data.demo import DEMO_CLASSES, make_part
from inspector.errors import MissingPathError, UsageError, UserError
from inspector.inference.predictor import Predictor

TOLERANCE = 1e-4  # max abs difference of class and mask probabilities and anomaly maps, fp32 on the CPU
EXPORT_DIR, EXPORT_META = "export", "export.json"
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}  # the graph; ONNX weights: model.onnx.data
STAGING = ".tmp-"  # prefix of the hidden folder an export is written and checked in before it is moved into place
MAX_BATCH = 64  # largest batch an ONNX export accepts


class ExportError(UserError, RuntimeError):
    """The exported model does not reproduce the bundle, or one of its files is missing or was modified: export
    again (or restore the export folder)."""


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


def _read_record(folder: Path) -> dict[str, Any]:
    """``export.json`` of the export folder (empty when there is none yet)."""
    try:
        return json.loads((folder / EXPORT_META).read_text())
    except (OSError, ValueError):
        return {}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


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
        exported = Predictor(bundle, "cpu", fp16=False, network=_load_file(staging / FILES[fmt], fmt, torch.device("cpu")))
        entry = {"file": FILES[fmt], "files": {p.name: _sha256(p) for p in sorted(staging.iterdir())},
                 "parity": _checked_parity(reference, exported, fmt, "not written")}
        for name in sorted(entry["files"], key=lambda n: n == FILES[fmt]):  # the graph last: it names the others
            os.replace(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _record(folder, bundle, fmt, entry)
    return folder / FILES[fmt], entry


def _record(folder: Path, bundle: Bundle, fmt: str, entry: dict[str, Any]) -> None:
    """Writes ``fmt``'s entry into export.json (atomically), then removes the files no entry lists (the hidden
    ``.model.onnx.tmp.data`` of exports written before every file was listed), so ``export/`` holds only what
    export.json checks."""
    record = _read_record(folder) | {"bundle": f"{bundle.name}/{bundle.version}", "classes": list(bundle.classes),
                                     "preprocess": dataclasses.asdict(bundle.spec),
                                     "thresholds": dataclasses.asdict(bundle.thresholds)}
    record.setdefault("formats", {})[fmt] = entry
    (folder / f".{EXPORT_META}.tmp").write_text(json.dumps(record, indent=2))
    os.replace(folder / f".{EXPORT_META}.tmp", folder / EXPORT_META)
    if all("files" in e for e in record["formats"].values()):  # an older entry may rely on a file it does not list
        listed = {EXPORT_META} | {name for e in record["formats"].values() for name in e["files"]}
        for path in folder.iterdir():
            if path.is_file() and path.name not in listed:
                path.unlink(missing_ok=True)


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


def load_export(bundle: Bundle, fmt: str, device: torch.device) -> Callable:
    """The bundle's export in ``fmt``, every file's checksum verified, callable like the network."""
    folder = bundle.path / EXPORT_DIR
    entry = _read_record(folder).get("formats", {}).get(fmt)
    if entry is None or not (folder / entry["file"]).is_file():
        raise MissingPathError(f"{bundle.path} has no {fmt} export; run `inspector export --format {fmt}`")
    files = entry.get("files") or {entry["file"]: entry["sha256"]}  # written before every file was listed
    for name, digest in files.items():
        if not (folder / name).is_file():
            raise ExportError(f"{folder / name} is missing; copy the whole export folder, or run `inspector export "
                              f"--format {fmt}` again")
        if _sha256(folder / name) != digest:
            raise ExportError(f"{folder / name}: checksum mismatch; the file was modified")
    return _load_file(folder / entry["file"], fmt, device)
