"""``inspector`` command line: parses arguments and calls one library function per command."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads must not spin

import argparse
import json
import logging
import sys
from pathlib import Path

from inspector.config import TrainConfig


def _cmd_demo_data(args: argparse.Namespace) -> None:
    from inspector.data.demo import write_demo_data

    counts = write_demo_data(Path(args.out), n_per_class=args.per_class, size=args.size, seed=args.seed)
    print(json.dumps({"out": str(args.out), "images": counts}))


def _cmd_train(args: argparse.Namespace) -> None:
    from inspector.store import active_version, set_active
    from inspector.train.fit import fit

    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    bundle = fit(args.data, args.out, args.name, TrainConfig(**overrides))
    if active_version(bundle.parent) is None:
        set_active(bundle.parent, bundle.name)  # the first version of a model becomes active
    print(bundle)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from inspector.evaluation.report import run_evaluation

    report = run_evaluation(args.model, args.data, args.report, args.device, args.split)
    summary = {k: report["image"][k] for k in ("accuracy", "macro_f1", "auroc_defect", "ap_defect")}
    print(json.dumps({"report": str(Path(args.report) / "report.json"), **summary, **report["pixel"]}))


def _cmd_predict(args: argparse.Namespace) -> None:
    from inspector.predict_files import predict_paths

    for line in predict_paths(args.model, args.paths, args.device, args.overlays):
        print(json.dumps(line), flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspector", description="Industrial defect detection.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a small synthetic data set (class folders + masks)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, default=40, help="images per class")
    p.add_argument("--size", type=int, default=256, help="image side, px")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("train", help="transfer learning then fine-tuning; writes a bundle and prints its path")
    p.add_argument("--data", required=True, help="class folders + masks, or MVTec AD layout")
    p.add_argument("--out", required=True, help="model store folder")
    p.add_argument("--name", default="default", help="model name in the store")
    p.add_argument("--backbone", help=f"encoder (default {TrainConfig.backbone})")
    p.add_argument("--image-size", dest="image_size", type=int, help=f"input side, px (default {TrainConfig.image_size})")
    p.add_argument("--epochs-frozen", dest="epochs_frozen", type=int, help=f"default {TrainConfig.epochs_frozen}")
    p.add_argument("--epochs-finetune", dest="epochs_finetune", type=int, help=f"default {TrainConfig.epochs_finetune}")
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"default {TrainConfig.batch_size}")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data loader processes")
    p.add_argument("--weights", dest="weights_path", help="ImageNet weights file for backbones that need one")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="report.json and PNG plots for a bundle on a data set")
    p.add_argument("--model", required=True, help="bundle folder, or <store>/<name> for its active version")
    p.add_argument("--data", required=True)
    p.add_argument("--report", required=True, help="output folder")
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: the bundle's validation split when DATA is its training data, else all images")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="run a bundle on image files or folders; prints JSON lines")
    p.add_argument("--model", required=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--overlays", help="folder to write overlay PNGs to")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from inspector.errors import USER_ERRORS

    try:
        args.func(args)
    except USER_ERRORS as err:
        print(f"inspector {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
