"""INT8 exports: post-training static quantization calibrated on the bundle's own training images, and the accuracy
guard that keeps an INT8 export only when it scores as well as the fp32 bundle on its validation split.

Calibration frames are the bundle's training split (never its validation split, which judges the result), read from
the data root the bundle records (or ``--data``) and preprocessed by the serving predictor's own ``prepare``, so
the ranges the quantizers measure are those the service will feed. What stays fp32 (:func:`keep_fp32`): the
anomaly head's own layers (squared distances to a memory bank by one matmul, where int8 would lose the small
differences it scores) and the last layer of each head (the classifier's linear layer, the mask's last
convolution), whose outputs become the probabilities. OpenVINO quantizes with NNCF (preset MIXED: symmetric
weights, asymmetric activations, which suit the non-negative ReLU/ReLU6 outputs of a CNN), ONNX Runtime with
``quantize_static`` (QDQ, weights int8 per output channel, activations uint8); both take each activation's range
as its min and max over the calibration frames.

The guard's figures (AUROC of good vs defect, macro-F1, mIoU, anomaly AUROC when the bundle has the head) come
from a ``measure`` function the caller gives (``inspector export`` passes the evaluation code's), since this layer
may not import the evaluation package.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from inspector.artifacts.bundle import Bundle
from inspector.artifacts.export import ExportError
from inspector.data.layouts import Sample, load_dataset
from inspector.data.split import samples_from_record
from inspector.config import GOOD_CLASS
from inspector.errors import MissingPathError
from inspector.imaging.preprocess import read_image
from inspector.inference.predictor import Predictor

MAX_CALIBRATION = 300  # training frames the quantizers see at most (NNCF's default subset), spread over the split
MAX_DROP = 0.005  # largest fall of any guarded figure below fp32's that an INT8 export may have
# figure name -> its path in report.json; None where undefined (no defect in the split, no head). mIoU is the
# segmentation head's own (ungated): the served one zeroes the mask of an accepted part, so a verdict flipping at a
# threshold, which macro-F1 and AUROC already count, moves it by a whole mask. The fp32 ONNX graph in OpenVINO
# (outputs within 5e-5 of PyTorch's) flipped one of 215 magnetic-tile images and moved the served mIoU by 0.035.
GUARDED = {
    "auroc_defect": ("image", "auroc_defect"),
    "macro_f1": ("image", "macro_f1"),
    "miou": ("pixel_ungated", "miou"),
    "anomaly_auroc": ("anomaly", "image_auroc"),
}
WEIGHTED = {"Conv", "Gemm", "MatMul", "Convolution", "GroupConvolution"}  # layer types with weights, ONNX and OpenVINO

Measure = Callable[[Predictor, Sequence[Sample]], Mapping[str, Any]]  # a predictor on samples -> report.json's dict


class AccuracyGuardError(ExportError):
    """The INT8 export scores worse than the fp32 bundle on the validation split; it was not written."""

    def __init__(self, message: str, accuracy: dict[str, Any]) -> None:
        super().__init__(message)
        self.accuracy = accuracy

    def __reduce__(self):
        return type(self), (str(self), self.accuracy)


@dataclass(frozen=True)
class Int8Options:
    """How ``inspector export --int8`` calibrates and judges.

    Args:
        measure: The figures of a predictor on samples, as report.json (``inspector.evaluation.report``'s).
        data: The training data's folder; None: where the bundle recorded it.
        max_drop: Largest fall of a guarded figure below fp32's; a negative value refuses every export (a test).
        calibration_images: Training frames to calibrate on at most.
    """

    measure: Measure
    data: Path | None = None
    max_drop: float = MAX_DROP
    calibration_images: int = MAX_CALIBRATION


def split_samples(bundle: Bundle, data: Path | None) -> tuple[list[Sample], list[Sample], Path]:
    """The bundle's training and validation samples, from ``data`` or the data root it recorded, and that root.

    Raises:
        MissingPathError: The data is not at the recorded path (and no ``data`` was given), or images of the split
            are missing under it.
        ExportError: The bundle records no split.
    """
    meta = bundle.meta
    if meta.split is None or not meta.split.train or not meta.split.val:
        raise ExportError(f"{meta.name}/{meta.version} records no training and validation split: an INT8 export is "
                          f"calibrated on the one and judged on the other; export it without --int8")
    root = Path(data) if data is not None else (Path(meta.data.root) if meta.data and meta.data.root else None)
    if root is None or not root.is_dir():
        where = f"at {root}" if root is not None else "recorded in the bundle"
        raise MissingPathError(f"the training data of {meta.name}/{meta.version} is not {where}: INT8 calibration "
                               f"and its accuracy guard read its images; give its folder with --data DIR")
    dataset = load_dataset(root, good_only=True)
    return samples_from_record(dataset, list(meta.split.train)), samples_from_record(dataset, list(meta.split.val)), root


def calibration_batches(predictor: Predictor, samples: Sequence[Sample], n: int = MAX_CALIBRATION) -> list[np.ndarray]:
    """Up to ``n`` of ``samples``, evenly spread over them, each preprocessed as the service does it: one ``(parts, 3, H, W)`` float32 batch per frame (a tiled bundle's frame has several parts)."""
    chosen = [samples[i] for i in np.linspace(0, len(samples) - 1, min(n, len(samples))).round().astype(int)]
    return [predictor.prepare([read_image(s.image)]).batch for s in chosen]


def good_batches(predictor: Predictor, samples: Sequence[Sample], size: int = 16) -> Iterator[np.ndarray]:
    """The good parts of ``samples`` preprocessed as the service does, ``size`` frames a batch, read as needed."""
    good = [s for s in samples if s.label == GOOD_CLASS]
    for i in range(0, len(good), size):
        yield predictor.prepare([read_image(s.image) for s in good[i : i + size]]).batch


def keep_fp32(nodes: Mapping[str, tuple[str, Sequence[str]]], outputs: Sequence[str]) -> list[str]:
    """The nodes to leave in fp32: every node only the anomaly output needs, and the last weighted layer of each
    output.

    Args:
        nodes: Every node of the graph by name: its type and the names of the nodes that feed it.
        outputs: The node that gives each output, in the network's order: logits, mask logits[, anomaly map].
    """

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            node = todo.pop()
            if node in nodes and node not in seen:
                seen.add(node)
                todo += nodes[node][1]
        return seen

    def last_weighted(name: str) -> str | None:
        todo, seen = [name], set()
        while todo:  # breadth first: the weighted layer nearest the output
            node = todo.pop(0)
            if node in seen or node not in nodes:
                continue
            seen.add(node)
            if nodes[node][0] in WEIGHTED:
                return node
            todo += nodes[node][1]
        return None

    keep = {last for last in map(last_weighted, outputs[:2]) if last}
    if len(outputs) > 2:  # the anomaly head: what its output needs and the others do not
        keep |= ancestors(outputs[2]) - ancestors(outputs[0]) - ancestors(outputs[1])
    return sorted(keep)


def _onnx_nodes(path: Path) -> tuple[dict[str, tuple[str, list[str]]], list[str]]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node.name for node in graph.node for out in node.output}
    nodes = {node.name: (node.op_type, [producer[i] for i in node.input if i in producer]) for node in graph.node}
    return nodes, [producer[o.name] for o in graph.output]


def _openvino_nodes(model: Any) -> tuple[dict[str, tuple[str, list[str]]], list[str]]:
    nodes = {op.get_friendly_name(): (op.get_type_name(), [i.get_source_output().get_node().get_friendly_name()
                                                            for i in op.inputs()]) for op in model.get_ordered_ops()}
    return nodes, [out.get_node().get_friendly_name() for out in model.outputs]  # the Result nodes


class _Reader:
    """ONNX Runtime's calibration data reader over prepared batches."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The quantizers' chatter off: ONNX Runtime logs a line per rescaled weight at INFO on the root logger, NNCF
    one per quantizer (and, importing torch's extension builder, a warning that this machine has no CUDA); NNCF's
    progress bar goes to stderr, so stdout keeps the command's one JSON line."""
    nncf_logger, builder = logging.getLogger("nncf"), logging.getLogger("torch.utils.cpp_extension")
    levels, disabled = (nncf_logger.level, builder.level), logging.root.manager.disable
    nncf_logger.setLevel(logging.WARNING)
    builder.setLevel(logging.ERROR)
    logging.disable(logging.INFO)
    advice = _DropAdvice()  # ONNX Runtime's advice to pre-process: its symbolic shape inference fails on this graph
    logging.root.addFilter(advice)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logging.root.removeFilter(advice)
        logging.disable(disabled)
        nncf_logger.setLevel(levels[0])
        builder.setLevel(levels[1])


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_onnx(fp32: Path, batches: Sequence[np.ndarray], out: Path) -> dict[str, Any]:
    """Writes ``out``, ``fp32`` (an ONNX export) quantized to QDQ int8 on ``batches``; returns what was done.

    Activation ranges are the min and max over the calibration frames. ONNX Runtime's pre-processing step is
    skipped: its symbolic shape inference fails on the exporter's graph, and the session optimizes the graph on load.
    """
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32_nodes = keep_fp32(*_onnx_nodes(fp32))
    with _quiet():
        quantize_static(str(fp32), str(out), _Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=fp32_nodes,
                        calibrate_method=CalibrationMethod.MinMax)
    return {"tool": f"onnxruntime {onnxruntime.__version__} quantize_static", "format": "QDQ",
            "weights": "int8, per output channel", "activations": "uint8, per tensor, min-max range",
            "fp32_nodes": fp32_nodes}


def quantize_openvino(model: Any, batches: Sequence[np.ndarray], out: Path) -> dict[str, Any]:
    """Writes ``out`` (``.xml`` + ``.bin``), the OpenVINO ``model`` quantized with NNCF on ``batches``.

    Activation ranges are the min and max over the calibration frames: NNCF's default (the mean of each frame's
    min and max) clipped activations enough to cost the 192 px Lite0 model (models/default) 0.28 of its validation
    mIoU (0.684 -> 0.405) and 0.03 of its macro-F1, where min-max keeps every figure within 0.001.
    """
    from inspector.inference.runtimes import import_openvino

    ov = import_openvino()  # first: NNCF imports OpenVINO's telemetry too
    fp32_nodes = keep_fp32(*_openvino_nodes(model))
    with _quiet():
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced = AdvancedQuantizationParameters(activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
        quantized = nncf.quantize(model, nncf.Dataset(list(batches)), preset=nncf.QuantizationPreset.MIXED,
                                  subset_size=len(batches), ignored_scope=nncf.IgnoredScope(names=fp32_nodes),
                                  advanced_parameters=advanced)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"tool": f"nncf {nncf.__version__} quantize", "preset": "mixed", "weights": "int8, per output channel",
            "activations": "per tensor, min-max range", "fp32_nodes": fp32_nodes}


def guarded_figures(report: Mapping[str, Any]) -> dict[str, float | None]:
    """The guarded figures of a report.json dict (None where undefined; the anomaly AUROC absent without a head)."""
    out = {}
    for name, (section, key) in GUARDED.items():
        if section in report:
            value = report[section].get(key)
            out[name] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    return out


def judge(fp32: Mapping[str, float | None], int8: Mapping[str, float | None], max_drop: float,
          **context: Any) -> dict[str, Any]:
    """Both sets of figures side by side (with ``context``: the split, its size) and the verdict;
    AccuracyGuardError when any INT8 figure falls more than ``max_drop`` below fp32's (or is undefined where fp32's
    is not)."""
    failed = [name for name, ref in fp32.items() if ref is not None and (
        int8.get(name) is None or int8[name] < ref - max_drop)]
    accuracy = context | {"max_drop": max_drop, "fp32": dict(fp32), "int8": dict(int8), "failed": failed}
    if failed:
        worse = ", ".join(f"{n} {_text(int8.get(n))} vs fp32 {_text(fp32[n])}" for n in failed)
        raise AccuracyGuardError(f"INT8 export not written: on the validation split {worse} (more than {max_drop:g} "
                                 f"below fp32)", accuracy)
    return accuracy


def side_by_side(accuracy: Mapping[str, Any]) -> str:
    """The guard's figures as a small table: figure, fp32, int8, change."""
    rows = [f"{'figure':<14} {'fp32':>8} {'int8':>8} {'change':>8}"]
    for name, ref in accuracy["fp32"].items():
        got = accuracy["int8"].get(name)
        change = "" if ref is None or got is None else f"{got - ref:+.4f}"
        rows.append(f"{name:<14} {_text(ref):>8} {_text(got):>8} {change:>8}"
                    + ("  <- refused" if name in accuracy["failed"] else ""))
    return "\n".join(rows)


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
