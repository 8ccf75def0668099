"""``inspector export``: TorchScript, ONNX or OpenVINO IR, written only when it reproduces the bundle on golden
frames; ``--int8``: an ONNX or OpenVINO export quantized on the bundle's training images, written only when it
scores within ``--max-drop`` of the fp32 bundle on its validation split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from inspector.cli.args import POSITIVE, existing, number, start_torch
from inspector.errors import UsageError


def guard_report(predictor: Any, samples: Sequence[Any]) -> Mapping[str, Any]:
    """report.json's figures of ``predictor`` on ``samples``, as ``inspector evaluate`` computes them: what the
    INT8 guard compares."""
    from inspector.evaluation.report import collect

    return collect(predictor, list(samples), "int8 guard", show=False).report()


def run(args: argparse.Namespace) -> None:
    existing(args.model, "model bundle")
    given = [f"--{flag.replace('_', '-')}" for flag in ("data", "max_drop", "calibration_images")
             if getattr(args, flag) is not None]
    if given and not args.int8:
        raise UsageError(f"{', '.join(given)}: only with --int8 (they calibrate and judge the quantized export)")
    if args.int8 and args.format == "torchscript":
        raise UsageError("--int8 quantizes onnx or openvino exports, not torchscript")
    existing(args.data, "data folder", folder=True)
    start_torch(inference=True)
    if not args.int8:
        from inspector.inference.exporter import export_model

        path, entry = export_model(args.model, args.format)
        print(json.dumps({"export": str(path), "format": args.format, "parity": entry["parity"]}))
        return
    from inspector.inference.exporter import export_int8
    from inspector.inference.quantize import MAX_CALIBRATION, MAX_DROP, AccuracyGuardError, Int8Options, side_by_side

    options = Int8Options(guard_report, None if args.data is None else Path(args.data),
                          MAX_DROP if args.max_drop is None else args.max_drop,
                          args.calibration_images or MAX_CALIBRATION)
    try:
        path, entry = export_int8(args.model, args.format, options)
    except AccuracyGuardError as err:
        print(side_by_side(err.accuracy), file=sys.stderr)
        raise
    print(side_by_side(entry["accuracy"]), file=sys.stderr)
    print(json.dumps({"export": str(path), "format": f"{args.format}-int8", "accuracy": entry["accuracy"],
                      "parity": entry["parity"]}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="TorchScript, ONNX or OpenVINO export, checked against the bundle on golden "
                                      "frames; --int8: quantized, checked on the validation split")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=("torchscript", "onnx", "openvino"), default="onnx")
    p.add_argument("--int8", action="store_true",
                   help="quantize to INT8 (onnx or openvino), calibrated on the bundle's training images; written "
                        "as the <format>-int8 backend only when AUROC, macro-F1, mIoU and the anomaly AUROC on its "
                        "validation split stay within --max-drop of the fp32 bundle's (else exit 2)")
    p.add_argument("--data", help="with --int8: the training data's folder, when it is not where the bundle "
                                  "recorded it")
    p.add_argument("--max-drop", dest="max_drop", type=number(float),
                   help="with --int8: largest fall of a figure below fp32's (default 0.005)")
    p.add_argument("--calibration-images", dest="calibration_images", type=POSITIVE,
                   help="with --int8: training images to calibrate on, at most (default 300)")
    p.set_defaults(func=run)
