"""``inspector export``: the bundle's network as TorchScript, ONNX or OpenVINO IR, checked against the bundle on
golden frames.

Parity runs both networks through the serving predictor on golden frames: an export that does not reproduce the
bundle's class and mask probabilities and anomaly maps within :data:`TOLERANCE` is not written, and
:func:`check_export` refuses a recorded one that no longer does. Where exports live and how they are checked on load:
:mod:`inspector.artifacts.export`.

OpenVINO's IR is converted from the ONNX export (OpenVINO's ONNX reader, weights kept fp32). An INT8 export
(:func:`export_int8`, the ``onnx-int8`` and ``openvino-int8`` backends) cannot reproduce the bundle within
:data:`TOLERANCE`; it is judged instead by its figures on the bundle's validation split against the fp32 bundle's
(:mod:`inspector.inference.quantize`), and its parity is recorded for information.
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
from inspector.artifacts.export import (EXPORT_DIR, MAX_BATCH, STAGING, ExportError, read_record, verified_file,
                                       write_record)
from inspector.artifacts.manifest import file_digest
from inspector.data.demo import DEMO_CLASSES, make_part
from inspector.errors import UsageError
from inspector.inference.predictor import Predictor
from inspector.data.layouts import Sample
from inspector.inference.quantize import (Int8Options, calibration_batches, good_batches, guarded_figures, judge,
                                          quantize_onnx, quantize_openvino, split_samples)
from inspector.inference.rebank import rebuild_bank
from inspector.inference.runtimes import GRAPHS, OpenVinoModel, import_openvino, load_file, runtime_of

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


def _write_openvino(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """OpenVINO IR (``model.xml`` + ``model.bin``, fp32) converted from the ONNX export, which is written (and
    dropped) in a folder of its own: OpenVINO's ONNX reader takes the graph the other exports are checked on."""
    ov = import_openvino()
    with tempfile.TemporaryDirectory(prefix=STAGING, dir=path.parent.parent) as tmp:
        _write_onnx(model, example, Path(tmp) / "model.onnx")
        ov.save_model(ov.Core().read_model(str(Path(tmp) / "model.onnx")), str(path), compress_to_fp16=False)


def _fp32_onnx(bundle: Bundle, example: torch.Tensor, scratch: Path) -> tuple[Path, str]:
    """The fp32 ONNX graph to quantize and where it comes from: the bundle's recorded ``onnx`` export when it has one
    (its checksums verified; its parity was checked when it was written), else a new export written in ``scratch``."""
    if "onnx" in read_record(bundle.path / EXPORT_DIR).get("formats", {}):
        return verified_file(bundle, "onnx"), "the recorded onnx export"
    _write_onnx(bundle.build_model("cpu"), example, scratch / "model.onnx")
    return scratch / "model.onnx", "an onnx export of the bundle"


def _write_int8(fmt: str, reference: Predictor, example: torch.Tensor, path: Path, batches: list[np.ndarray],
                train: list[Sample]) -> dict[str, Any]:
    """Writes the INT8 ``fmt`` export (``model.int8.onnx``, or ``model.int8.xml`` + ``.bin``) quantized from the
    fp32 ONNX graph on ``batches``; returns how (see :mod:`inspector.inference.quantize`). OpenVINO's export with an
    anomaly head gets a memory bank of its own features on the good parts of ``train`` (:mod:`rebank`)."""
    with tempfile.TemporaryDirectory(prefix=STAGING, dir=path.parent.parent) as tmp:
        fp32, source = _fp32_onnx(reference.bundle, example, Path(tmp))
        if fmt == "onnx":
            return quantize_onnx(fp32, batches, path) | {"from": source}
        how = quantize_openvino(import_openvino().Core().read_model(str(fp32)), batches, path) | {"from": source}
    anomaly = getattr(reference.model, "anomaly", None)
    if anomaly is not None:
        how["anomaly_bank"] = rebuild_bank(path, tuple(anomaly.bank.shape), good_batches(reference, train))
    return how


FORMATS = ("torchscript", "onnx", "openvino")  # what `inspector export --format` writes
INT8_FORMATS = ("onnx", "openvino")  # what `inspector export --int8` quantizes


def _write(fmt: str, model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Writes ``model`` in ``fmt`` to ``path`` (the writer looked up when called)."""
    {"torchscript": _write_torchscript, "onnx": _write_onnx, "openvino": _write_openvino}[fmt](model, example, path)


def _load_staged(path: Path, fmt: str) -> Any:
    """An export not yet recorded, callable like the network, on the CPU (OpenVINO's too, whatever
    ``$INSPECTOR_OPENVINO_DEVICE`` says: parity is measured in fp32 on the CPU)."""
    if runtime_of(fmt) == "openvino":
        return OpenVinoModel(path, torch.device("cpu"), ov_device="CPU")
    return load_file(path, fmt, torch.device("cpu"))


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

    The export is written under its final names (``model.onnx`` names its weights ``model.onnx.data``, ``model.xml``
    its ``model.bin``) in a hidden staging folder, checked there, then moved into ``export/``; the entry lists the
    sha256 of every file.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    bundle = load_bundle(model_path)
    reference, folder = _reference(bundle), bundle.path / EXPORT_DIR
    folder.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=folder))
    try:
        example = torch.from_numpy(reference.prepare(golden_frames(1)).batch)  # (1, 3, H, W)
        _write(fmt, bundle.build_model("cpu"), example, staging / GRAPHS[fmt])
        exported = Predictor(bundle, "cpu", fp16=False, network=_load_staged(staging / GRAPHS[fmt], fmt))
        entry = {"file": GRAPHS[fmt], "files": _digests(staging),
                 "parity": _checked_parity(reference, exported, fmt, "not written")}
        _move_into_place(staging, folder, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_record(folder, bundle, fmt, entry)
    return folder / GRAPHS[fmt], entry


def export_int8(model_path: str | Path, fmt: str, options: Int8Options) -> tuple[Path, dict[str, Any]]:
    """The bundle's network quantized to INT8 in ``fmt``, calibrated on its training split, written (as the
    ``<fmt>-int8`` export) only when no guarded figure on its validation split falls more than
    ``options.max_drop`` below the fp32 bundle's; returns the graph file and its entry (both sets of figures in
    ``accuracy``).

    Raises:
        AccuracyGuardError: The INT8 export scores worse; its ``accuracy`` has both sets of figures.
        MissingPathError: The training data is not where the bundle recorded it (and ``options.data`` is None).
    """
    if fmt not in INT8_FORMATS:
        raise UsageError(f"--int8 quantizes {' or '.join(INT8_FORMATS)} exports, not {fmt!r}")
    bundle, name = load_bundle(model_path), f"{fmt}-int8"
    train, val, root = split_samples(bundle, options.data)
    reference, folder = _reference(bundle), bundle.path / EXPORT_DIR
    batches = calibration_batches(reference, train, options.calibration_images)
    folder.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=folder))
    try:
        example = torch.from_numpy(reference.prepare(golden_frames(1)).batch)  # (1, 3, H, W)
        how = _write_int8(fmt, reference, example, staging / GRAPHS[name], batches, train)
        exported = Predictor(bundle, "cpu", fp16=False, network=_load_staged(staging / GRAPHS[name], name))
        accuracy = judge(guarded_figures(options.measure(reference, val)),
                         guarded_figures(options.measure(exported, val)), options.max_drop, split="val",
                         n_images=len(val))
        entry = {"file": GRAPHS[name], "files": _digests(staging), "precision": "int8",
                 "quantization": how | {"calibration": {"split": "train", "images": len(batches), "data": str(root)}},
                 "parity": {"golden_frames": len(golden_frames()),  # the change INT8 makes, for the record only
                            "max_abs_error": parity(reference, exported, golden_frames())},
                 "accuracy": accuracy}
        _move_into_place(staging, folder, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_record(folder, bundle, name, entry)
    return folder / GRAPHS[name], entry


def _digests(staging: Path) -> dict[str, str]:
    """The sha256 of every file the staging folder holds, by name."""
    return {p.name: file_digest(p) for p in sorted(staging.iterdir()) if p.is_file()}


def _move_into_place(staging: Path, folder: Path, entry: dict[str, Any]) -> None:
    """Moves the entry's files from ``staging`` into ``folder``, the graph last: it names the others."""
    for name in sorted(entry["files"], key=lambda n: n == entry["file"]):
        os.replace(staging / name, folder / name)


def check_export(model_path: str | Path, fmt: str) -> dict[str, Any]:
    """Runs the parity check again on a recorded export, after its checksums, and returns its figures.

    The checksums say the files are the ones recorded, not that they reproduce the bundle: weights replaced and
    their checksums re-recorded (by hand, or by a tool that does not check) pass them, and are caught here.

    Raises:
        ExportError: A file differs from its checksum, or the export does not reproduce the bundle.
        FileNotFoundError: The bundle has no export in ``fmt``.
    """
    if fmt.endswith("-int8"):
        raise UsageError(f"an {fmt} export is judged by its accuracy on the validation split when it is written, not "
                         f"by parity: export it again with --int8")
    bundle = load_bundle(model_path)
    return _checked_parity(_reference(bundle), Predictor(bundle, "cpu", fp16=False, backend=fmt), fmt, "refused")
