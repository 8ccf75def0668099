"""``inspector audit export``: reviewed audit frames and their masks -> class folders, ready for ``train --init``.

The work is :func:`inspector.artifacts.audit_export.export_reviewed`'s; this prints its summary as one JSON line:
``{"out": ..., "images": {class: n}, "masks": {class: n}, "skipped": {kind: {"count": n, "examples": [...]}}}``.
"""

from __future__ import annotations

import argparse
import json

from inspector.cli.args import existing


def run(args: argparse.Namespace) -> None:
    existing(args.audit, "audit folder", folder=True)
    from inspector.artifacts.audit_export import export_reviewed

    summary = export_reviewed(args.audit, args.out, args.use_model_labels, force=args.force)
    print(json.dumps(summary.to_dict()))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit frames kept by the service")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="reviewed frames and their masks -> class folders (for train --init)")
    a.add_argument("--audit", required=True, help="the service's --audit-dir")
    a.add_argument("--out", required=True,
                   help="new or empty folder for images/<class>/, masks/<class>/, audit_export.json")
    a.add_argument("--use-model-labels", action="store_true",
                   help="export unreviewed frames too, under the model's label and with the model's mask")
    a.add_argument("--force", action="store_true", help="replace --out when it holds an earlier audit export")
    p.set_defaults(func=run)
