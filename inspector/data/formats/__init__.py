"""Importing labelled data from other tools into the class-folders layout the trainer reads.

``import_dataset(fmt, src, out)`` reads LabelMe JSON, COCO, YOLO segmentation or Pascal VOC masks from ``src`` and
writes ``out/images/<class>/<name>.<ext>``, ``out/masks/<class>/<name>.png`` and ``out/import.json`` (the summary).

Nothing is half-written: the set is built in a hidden folder beside ``out`` and renamed to ``out`` only when every
image has been written; on any error that folder is removed and ``out`` is as it was. ``out`` must not exist or be
empty; ``force`` replaces an earlier import (a folder holding ``import.json``), never any other folder, so a
mistyped ``--out`` cannot delete someone's data. ``out`` and ``src`` must not contain each other.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from inspector.data.formats import coco, labelme, voc, yolo
from inspector.data.formats.records import Entry, Skip
from inspector.data.formats.writer import LayoutWriter
from inspector.data.layouts import load_dataset
from inspector.data.split import compile_group_by, group_of
from inspector.data.staging import check_out, staged
from inspector.errors import DataError, MissingPathError, UsageError

Reader = Callable[[Path], Iterator["Entry | Skip"]]
FORMATS: dict[str, Reader] = {"labelme": labelme.read, "coco": coco.read, "yolo-seg": yolo.read, "voc": voc.read}
SUMMARY_FILE = "import.json"


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote; also ``out/import.json``."""

    format: str
    source: str  # absolute path of SRC
    out: str
    images: int
    classes: dict[str, int]  # images per class, good included
    shapes: int  # shapes and masks drawn into the defect masks
    skipped: dict[str, int]  # shapes (line, point...) and files (image_without_mask) not imported, by kind
    empty_masks: list[str]  # defect images whose annotations drew no pixel: no mask written (classifier only)
    renamed: dict[str, str]  # source image -> stem written, where its stem was already taken
    linked: int  # images hard-linked to the source (the others were copied or written)
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _write_group_by(root: Path, regex: str) -> None:
    """``dataset.json`` with the group regex, once it gives every image a group and the data more than one."""
    pattern = compile_group_by(regex)
    groups = {group_of(pattern, sample) for sample in load_dataset(root, good_only=True).samples}
    if len(groups) < 2:
        raise DataError(f"--group-by {regex!r} puts every image into one group")
    (root / "dataset.json").write_text(json.dumps({"group_by": regex}, indent=2) + "\n")


def import_dataset(fmt: str, src: str | Path, out: str | Path, force: bool = False, group_by: str | None = None
                   ) -> ImportSummary:
    """Converts the labelled data set ``src`` in format ``fmt`` (a key of :data:`FORMATS`) into ``out``.

    ``group_by`` (a regex on file names: a part, a camera position, a session) is written to ``dataset.json`` as the
    data set's default ``train --group-by``, after checking that it matches every imported file name.

    Raises:
        UsageError: An unknown format, or an ``out`` that may not be written (see the module docstring).
        MissingPathError: ``src`` does not exist, holds no images, or an annotation's image is missing.
        DataError: A malformed annotation file, a shape outside its image, an unknown class or category id.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    src, out = Path(src).absolute(), Path(out).absolute()
    if not src.exists():
        raise MissingPathError(f"source {src} does not exist")
    check_out(out, src, SUMMARY_FILE, force, "import")
    start = time.perf_counter()
    with staged(out, "importing") as staging:
        writer = LayoutWriter(staging)
        for item in FORMATS[fmt](src):
            if isinstance(item, Skip):
                writer.skipped[item.what] += 1
            else:
                writer.add(item)
        if not writer.counts:
            raise MissingPathError(f"no images found in {src} as {fmt}")
        summary = ImportSummary(
            fmt, str(src), str(out), sum(writer.counts.values()), dict(sorted(writer.counts.items())), writer.shapes,
            dict(sorted(writer.skipped.items())), writer.empty_masks, writer.renamed, writer.linked,
            round(time.perf_counter() - start, 3))
        (staging / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
        if group_by:
            _write_group_by(staging, group_by)
    return summary
