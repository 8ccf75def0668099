"""``inspector audit export``: reviewed audit frames -> the class-folders layout, ready for ``train --init``.

A review is a JSON line ``{"image": "<path as in index.jsonl>", "label": "<class>"}`` in ``<audit>/reviews.jsonl``
(the last line for an image wins). Frames nobody reviewed are left out, unless ``use_model_labels`` takes the
model's own label for them. Defect frames come without masks: they train the classifier, not the mask head.
Lines a crash or a full disk tore are skipped, and how many is logged: the rest of the folder is still usable.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

from inspector.cli.args import existing
from inspector.errors import DataError, MissingPathError

log = logging.getLogger(__name__)
REVIEWS_FILE = "reviews.jsonl"


def _lines(path: Path) -> list[dict]:
    """The readable records of ``path``; lines torn by a crash or a full disk are skipped with a warning."""
    from inspector.artifacts.audit_folder import read_lines

    records, skipped = read_lines(path)
    if skipped:
        log.warning("%s: skipped %d unreadable line(s) (torn by a crash or a full disk); read the %d others",
                    path, skipped, len(records))
    return records


def export_reviewed(audit: str | Path, out: str | Path, use_model_labels: bool = False) -> dict[str, int]:
    """Copies reviewed frames into ``out/images/<label>/``; returns the count per class."""
    from inspector.artifacts.audit_folder import INDEX_FILE

    audit, out = Path(audit), Path(out)
    records = _lines(audit / INDEX_FILE)
    if not records:
        raise MissingPathError(f"{audit / INDEX_FILE} is missing or holds no readable record: is --audit the "
                                f"service's --audit-dir?")
    reviews = {r["image"]: r["label"] for r in _lines(audit / REVIEWS_FILE)}
    counts: Counter[str] = Counter()
    for record in records:
        label = reviews.get(record["image"]) or (record["label"] if use_model_labels else None)
        if not label:
            continue
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", label):
            raise DataError(f"review of {record['image']}: {label!r} is not a usable class name")
        source = (audit / record["image"]).resolve()
        if audit.resolve() not in source.parents or not source.is_file():
            raise MissingPathError(f"{record['image']}: not a frame inside {audit}")
        target = out / "images" / label / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        counts[label] += 1
    return dict(counts)


def run(args: argparse.Namespace) -> None:
    existing(args.audit, "audit folder", folder=True)
    counts = export_reviewed(args.audit, args.out, args.use_model_labels)
    print(json.dumps({"out": args.out, "images": counts}))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="audit frames kept by the service")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="reviewed frames -> class folders (for train --init)")
    a.add_argument("--audit", required=True, help="the service's --audit-dir")
    a.add_argument("--out", required=True)
    a.add_argument("--use-model-labels", action="store_true", help="export unreviewed frames under the model's label")
    p.set_defaults(func=run)
