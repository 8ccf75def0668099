"""``inspector demo-data``: a small synthetic data set in the class-folders layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inspector.cli.args import COUNT, demo_size


def run(args: argparse.Namespace) -> None:
    from inspector.data.demo import write_demo_data

    counts = write_demo_data(Path(args.out), n_per_class=args.per_class, size=args.size, seed=args.seed)
    print(json.dumps({"out": str(args.out), "images": counts}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-data", help="write a small synthetic data set (class folders + masks)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=COUNT, default=40, help="images per class")
    p.add_argument("--size", type=demo_size, default=256, help="image side, px")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)
