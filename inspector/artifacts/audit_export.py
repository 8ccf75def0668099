"""Reviewed audit frames -> the class-folders layout (``inspector audit export``), ready for ``train --init``.

For each frame of ``index.jsonl`` with a review (the last answer for it in ``reviews.jsonl``), or with
``use_model_labels`` every frame nobody reviewed under the model's own label::

    <out>/images/<label>/<name>      the frame as kept (copied)
    <out>/masks/<label>/<stem>.png   the mask its answer stands for: painted, the model's, or none (erased, good)
    <out>/audit_export.json          the summary: images and masks per class, what was skipped

A mask is written 8-bit single-channel, 255 where the reviewer (or the model) marked a defect (a value > half the
file's range) and 0 elsewhere, and only at its frame's size. The name is the frame file's, with one extension
(frames of older audit folders were kept as ``..._a.png.png``: that is exported as ``..._a.png``), and ``-2``,
``-3``... where a stem is already taken in its class folder.

Nothing is left out silently: an unreadable line, a review of a frame the index does not list, a frame the folder
does not hold or cannot read, a mask that is missing, unreadable or of another size than its frame (the frame is
left out: its answer is the mask), a label that is no usable class name are each counted, with their first few
examples, logged and returned in the summary. The rest is exported; an export with nothing to export is an error.
The folder is written whole or not at all (:mod:`inspector.data.staging`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.artifacts.audit_folder import (INDEX_FILE, MODEL_MASK, REVIEWS_FILE, inside, latest_reviews,
                                              read_lines, reviewed_mask)
from inspector.data.staging import check_out, staged
from inspector.errors import DataError, MissingPathError
from inspector.imaging.headers import MAGIC, probe_size
from inspector.imaging.preprocess import EXTENSIONS

log = logging.getLogger(__name__)
SUMMARY_FILE = "audit_export.json"
EXAMPLES = 3  # examples kept per kind of skip
CLASS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SKIPS = {  # kind -> what it counts, for the log
    "unreadable_index_lines": f"unreadable line(s) of {INDEX_FILE} (torn by a crash or a full disk)",
    "unreadable_review_lines": f"unreadable line(s) of {REVIEWS_FILE} (torn, or without image and label)",
    "review_of_unknown_frame": f"review(s) of a frame {INDEX_FILE} does not list",
    "frame_missing": "frame(s) the index lists but the folder does not hold",
    "frame_unreadable": "frame(s) that are no JPEG, PNG or BMP file",
    "unusable_label": "frame(s) whose label is no usable class name (letters, digits, _ . -)",
    "mask_missing": "frame(s) whose mask the folder does not hold (frame left out)",
    "mask_unreadable": "frame(s) whose mask is no readable image (frame left out)",
    "mask_wrong_size": "frame(s) whose mask is not the frame's size (frame left out)",
}


@dataclass
class Skipped:
    """How many of one kind were skipped, and the first few (paths as in the audit folder)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str | None = None) -> None:
        self.count += 1
        if example is not None and len(self.examples) < EXAMPLES:
            self.examples.append(example)


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote; also ``out/audit_export.json``."""

    out: str  # absolute
    images: dict[str, int]  # per class
    masks: dict[str, int]  # per class
    skipped: dict[str, Skipped]  # by kind (keys of SKIPS); only kinds that occurred

    def to_dict(self) -> dict:
        return asdict(self)


class _Skips(dict):
    """kind -> Skipped, created on first use."""

    def __missing__(self, kind: str) -> Skipped:
        self[kind] = Skipped()
        return self[kind]


def _frame_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the frame's header, or None when it is no JPEG, PNG or BMP."""
    encoding = next((name for name, magic in MAGIC.items() if data.startswith(magic)), None)
    return probe_size(data, encoding) if encoding else None


def _binary(path: Path) -> np.ndarray | None:
    """The mask file as a ``(h, w)`` uint8 0/255 array (255 above half its range; colour: any channel), or None."""
    mask = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        return None
    if mask.ndim == 3:  # (h, w, c): a colour or colour+alpha painting
        mask = mask[..., :3].max(axis=2)
    high = np.iinfo(mask.dtype).max if mask.dtype.kind in "ui" else 1.0
    return np.where(mask > high / 2, 255, 0).astype(np.uint8)


def _plain_name(name: str) -> tuple[str, str]:
    """(stem, extension) of a frame file's name, with one extension: ``x.jpg.png`` -> (``x``, ``.png``)."""
    path = Path(name)
    stem = path.stem
    while Path(stem).suffix.lower() in EXTENSIONS and Path(stem).stem:
        stem = Path(stem).stem
    return stem, path.suffix


class _Writer:
    """Writes frames and masks into the class-folders layout under ``root``; unique stems per class folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: dict[str, int] = {}
        self.masks: dict[str, int] = {}
        self._stems: dict[str, set[str]] = {}

    def add(self, label: str, name: str, data: bytes, mask: np.ndarray | None) -> None:
        stem, suffix = _plain_name(name)
        taken = self._stems.setdefault(label, set())
        unique, n = stem, 1
        while unique in taken:
            n += 1
            unique = f"{stem}-{n}"
        taken.add(unique)
        folder = self.root / "images" / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{unique}{suffix}").write_bytes(data)
        self.images[label] = self.images.get(label, 0) + 1
        if mask is not None:
            (self.root / "masks" / label).mkdir(parents=True, exist_ok=True)
            (self.root / "masks" / label / f"{unique}.png").write_bytes(cv2.imencode(".png", mask)[1].tobytes())
            self.masks[label] = self.masks.get(label, 0) + 1


def _index(audit: Path, skips: _Skips) -> dict[str, dict]:
    """The index records by frame path (the last line for a frame wins)."""
    lines, unreadable = read_lines(audit / INDEX_FILE)
    records = {}
    for line in lines:
        if isinstance(line.get("image"), str) and line["image"]:
            records[line["image"]] = line
        else:
            unreadable += 1
    if unreadable:
        skips["unreadable_index_lines"].count += unreadable
    return records


def _export_one(audit: Path, record: dict, review: dict, writer: _Writer, skips: _Skips) -> None:
    """Writes one frame with the mask its answer stands for, or counts why it cannot."""
    image, label = record["image"], review.get("label")
    if not isinstance(label, str) or not CLASS_NAME.fullmatch(label):
        skips["unusable_label"].add(f"{image}: {label}")
        return
    frame = inside(audit, image)
    if frame is None:
        skips["frame_missing"].add(image)
        return
    data = frame.read_bytes()
    size = _frame_size(data) if frame.suffix.lower() in EXTENSIONS else None
    if size is None:
        skips["frame_unreadable"].add(image)
        return
    mask = None
    relative = reviewed_mask(record, review)
    if relative is not None:
        path = inside(audit, relative)
        if path is None:
            skips["mask_missing"].add(relative)
            return
        mask = _binary(path)
        if mask is None:
            skips["mask_unreadable"].add(relative)
            return
        if (mask.shape[1], mask.shape[0]) != tuple(size):
            skips["mask_wrong_size"].add(relative)
            return
    writer.add(label, frame.name, data, mask)


def export_reviewed(audit: str | Path, out: str | Path, use_model_labels: bool = False, force: bool = False
                    ) -> ExportSummary:
    """Exports the reviewed frames of the audit folder ``audit`` (and with ``use_model_labels`` the others, under the
    model's label and mask) into the new folder ``out``; see the module docstring.

    Raises:
        MissingPathError: The index is missing or holds no readable record.
        DataError: No frame could be exported (none reviewed, or every one skipped).
        UsageError: ``out`` may not be written (see :func:`inspector.data.staging.check_out`).
    """
    audit, out = Path(audit).absolute(), Path(out).absolute()
    skips = _Skips()
    records = _index(audit, skips)
    if not records:
        raise MissingPathError(f"{audit / INDEX_FILE} is missing or holds no readable record: is --audit the "
                               f"service's --audit-dir?")
    check_out(out, audit, SUMMARY_FILE, force, "audit export", "audit folder")
    reviews, unreadable = latest_reviews(audit)
    if unreadable:
        skips["unreadable_review_lines"].count += unreadable
    for image in reviews:
        if image not in records:
            skips["review_of_unknown_frame"].add(image)
    with staged(out, "exporting") as staging:
        writer, answered = _Writer(staging), 0
        for image, record in records.items():
            review = reviews.get(image)
            if review is None and use_model_labels:
                review = {"image": image, "label": record.get("label"), "mask": MODEL_MASK}
            if review is not None:
                answered += 1
                _export_one(audit, record, review, writer, skips)
        skipped = {kind: skips[kind] for kind in SKIPS if kind in skips}
        for kind, skip in skipped.items():
            log.warning("audit export: skipped %d %s%s", skip.count, SKIPS[kind],
                        f", e.g. {', '.join(skip.examples)}" if skip.examples else "")
        if not writer.images:
            why = (f"the {answered} answered were skipped (see the warnings)" if answered else
                   f"none is reviewed in {REVIEWS_FILE} (review some, or pass --use-model-labels)")
            raise DataError(f"{audit}: no frame to export of the {len(records)} in {INDEX_FILE}: {why}")
        summary = ExportSummary(str(out), dict(sorted(writer.images.items())), dict(sorted(writer.masks.items())),
                                skipped)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary
