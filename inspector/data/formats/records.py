"""What a format reader hands the writer: one :class:`Entry` per image (its shapes or ready masks), or a
:class:`Skip` for something it read but could not use; and the one rule that turns a tool's label into a class name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspector.config import GOOD_CLASS
from inspector.errors import DataError
from inspector.imaging.preprocess import EXTENSIONS

RASTERISED = ("polygon", "rectangle", "circle")  # the shape kinds that become mask pixels; others are skipped


@dataclass(frozen=True)
class Shape:
    """One annotated shape, in image px (``normalised``: in fractions of the width and height, as YOLO writes them).

    ``points``: ``(n, 2)`` x, y. A polygon has n >= 3 vertices, a rectangle two opposite corners, a circle its centre
    and a point on its rim. Any other ``kind`` (line, point...) is counted as skipped and draws nothing.
    """

    label: str  # class name (see class_name)
    kind: str
    points: np.ndarray  # (n, 2) float64
    normalised: bool = False


@dataclass
class Entry:
    """One image and what was annotated on it.

    ``annotated`` is False when the format says "nothing to see here" (no label file, no annotations): the image is
    ``good``. An annotated image with no shape and no mask is ``good`` too (an annotator who found nothing).
    """

    source: Path  # the file to name in an error: the annotation file, or the image itself
    name: str  # the output file name to keep (its stem is the sample's name)
    image: Path | None  # the image file; None when ``data`` holds it (LabelMe imageData)
    data: bytes | None = None
    annotated: bool = True
    shapes: list[Shape] = field(default_factory=list)
    masks: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (class, (h, w) bool) already rasterised
    size: tuple[int, int] | None = None  # (width, height) the annotation file states, checked against the image


@dataclass(frozen=True)
class Skip:
    """Something a reader found and did not import (an image without a mask...), counted under ``what``."""

    what: str


_SPACES = re.compile(r"\s+")
_UNSAFE = re.compile(r"[/\\:*?\"<>|]")  # not in a folder name on Linux or Windows


def class_name(label: Any, source: Path) -> str:
    """The class folder of a tool's label: stripped, lowercased, spaces (and path characters) to ``_``.

    Raises:
        DataError: The label is empty, not a string, or ``good`` (reserved for images without annotation).
    """
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{source}: empty or missing label {label!r}")
    name = _UNSAFE.sub("_", _SPACES.sub("_", label.strip().lower()))
    if name == GOOD_CLASS or name.strip(".") == "":
        raise DataError(f"{source}: label {label!r} cannot be a defect class ('{GOOD_CLASS}' is the class of images "
                        "without annotation); rename it in the labelling tool")
    return name


def load_json(path: Path) -> Any:
    """A JSON file's content; DataError naming the file when it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a valid JSON file ({err})") from err


def points(value: Any, source: Path, what: str) -> np.ndarray:
    """``[[x, y], ...]`` or a flat ``[x1, y1, x2, y2, ...]`` as ``(n, 2)`` float64; DataError naming ``what``."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.ndim == 1 and array.size % 2 == 0:
        array = array.reshape(-1, 2)
    if array is None or array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
        raise DataError(f"{source}: {what}: points must be x, y number pairs, got {str(value)[:80]}")
    return array


def image_files(root: Path) -> list[Path]:
    """Every image file (an extension the trainer reads) under ``root``, sorted."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))
