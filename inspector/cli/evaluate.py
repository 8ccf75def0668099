"""``inspector evaluate``, ``compare`` and ``calibrate``: a bundle measured on data, two bundles side by side, and
thresholds chosen on validation data (a new bundle version)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inspector.cli.args import FRACTION, RATE, device, existing, start_torch
from inspector.cli.serve import BACKENDS


def run_evaluate(args: argparse.Namespace) -> None:
    existing(args.model, "model bundle")
    existing(args.data, "data folder", folder=True)
    start_torch(inference=True)
    from inspector.evaluation.report import run_evaluation

    report = run_evaluation(args.model, args.data, args.report, args.device, args.split, tta=args.tta,
                            backend=args.backend)
    summary = {k: report["image"][k] for k in ("accuracy", "macro_f1", "auroc_defect", "ap_defect")}
    summary |= {k: report["operating_point"][k] for k in ("escape_rate", "false_reject_rate", "review_rate")}
    print(json.dumps({"report": str(Path(args.report) / "report.json"), **summary, **report["pixel"]}))


def run_compare(args: argparse.Namespace) -> None:
    for model in args.models:
        existing(model, "model bundle")
    existing(args.data, "data folder", folder=True)
    start_torch(inference=True)
    from inspector.evaluation.compare import compare_models

    result = compare_models(args.models[0], args.models[1], args.data, args.device, args.split)
    print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}))
    for row in result["disagreements"]:
        print(json.dumps(row))


def run_calibrate(args: argparse.Namespace) -> None:
    existing(args.model, "model bundle")
    existing(args.data, "data folder", folder=True)
    start_torch(inference=True)
    from inspector.evaluation.calibrate import run_calibration

    path, figures = run_calibration(args.model, args.data, args.target_escape_rate, args.target_false_reject_rate,
                                    args.device, args.split, anomaly_review_rate=args.anomaly_review_rate)
    print(json.dumps({"bundle": str(path), **figures}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="report.json and PNG plots for a bundle on a data set")
    p.add_argument("--model", required=True, help="bundle folder, or <store>/<name> for its active version")
    p.add_argument("--data", required=True)
    p.add_argument("--report", required=True, help="output folder")
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: the bundle's validation split when DATA is its training data, else all images")
    p.add_argument("--device", type=device, default="auto")
    p.add_argument("--tta", action="store_true", help="test-time horizontal flip (twice the compute)")
    p.add_argument("--backend", choices=BACKENDS, default="eager",
                   help="runtime to measure: eager, or one of the bundle's exports (inspector export) as served")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser("compare", help="two bundles on the same data: figures side by side, frames they disagree on")
    p.add_argument("--models", nargs=2, required=True, metavar=("A", "B"))
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: model A's validation split when DATA is its training data, else all images")
    p.add_argument("--device", type=device, default="auto")
    p.set_defaults(func=run_compare)

    p = sub.add_parser("calibrate", help="choose thresholds on validation data; writes a new bundle version")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-escape-rate", dest="target_escape_rate", type=FRACTION,
                        help="share of defective parts that may be accepted, e.g. 0.01 (default: F1-optimal)")
    target.add_argument("--target-false-reject-rate", dest="target_false_reject_rate", type=FRACTION,
                        help="share of good parts that may be rejected")
    p.add_argument("--anomaly-review-rate", dest="anomaly_review_rate", type=RATE,
                   help="also place the anomaly threshold so that this share of the good parts goes to review; on "
                        "data of good parts alone (confirmed in review) it is all that moves (default there: the "
                        "bundle's trained rate)")
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto")
    p.add_argument("--device", type=device, default="auto")
    p.set_defaults(func=run_calibrate)
