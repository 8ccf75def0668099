"""``inspector export``: TorchScript or ONNX, written only when it reproduces the bundle on golden frames."""

from __future__ import annotations

import argparse
import json

from inspector.cli.args import existing, start_torch


def run(args: argparse.Namespace) -> None:
    existing(args.model, "model bundle")
    start_torch(inference=True)
    from inspector.inference.exporter import export_model

    path, entry = export_model(args.model, args.format)
    print(json.dumps({"export": str(path), "format": args.format, "parity": entry["parity"]}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="TorchScript or ONNX export, checked against the bundle on golden frames")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="onnx")
    p.set_defaults(func=run)
