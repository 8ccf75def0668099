"""COCO instance annotations (CVAT, Roboflow, Label Studio exports): polygons and RLE, no pycocotools.

SRC is one COCO JSON file or a folder: then every ``*.json`` under it with ``images``, ``annotations`` and
``categories`` is read (Roboflow writes one per split). An image's ``file_name`` is looked for relative to its JSON
file, to SRC, to an ``images/`` folder beside the JSON file, then by file name among the images under SRC. An image
without annotations is ``good``. ``segmentation`` is a list of polygons (``[x1, y1, x2, y2, ...]``) or an RLE
(``{"size": [h, w], "counts": ...}``, compressed string or list of run lengths); an annotation with only a ``bbox``
is drawn as that rectangle.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from inspector.data.formats.records import Entry, Shape, class_name, image_files, load_json, points
from inspector.errors import DataError, MissingPathError

KEYS = ("images", "annotations", "categories")


def rle_counts(text: str | bytes) -> list[int]:
    """Run lengths of COCO's compressed RLE string (pycocotools ``rleFrString``).

    Each count is a little-endian run of 5-bit groups in characters ``48 + group`` (bit 0x20: more groups follow,
    0x10 of the last group: negative); from the fourth count on, a count is stored as its difference to the count
    two before it.
    """
    data = text.encode() if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    p = 0
    while p < len(data):
        value, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("RLE string ends inside a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(data[p])!r} is not in an RLE string")
            value |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                value |= -1 << (5 * k)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_decode(rle: dict, where: str) -> np.ndarray:
    """The ``(h, w)`` bool mask of an RLE: runs alternate 0 and 1, starting with 0, in column-major order."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
        counts = np.asarray(rle_counts(counts) if isinstance(counts, (str, bytes)) else counts, dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: malformed RLE segmentation ({err})") from err
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() != height * width:
        raise DataError(f"{where}: RLE runs add up to {int(counts.sum())} px, not {height}x{width}, or are negative")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(width, height).T.copy()  # column-major runs


def _annotation(ann: Any, label: str, entry: Entry, source: Path) -> None:
    """Adds one annotation's polygons, RLE mask or box to ``entry``."""
    seg = ann.get("segmentation")
    where = f"annotation {ann.get('id')}"
    if isinstance(seg, list) and seg:
        polygons = seg if isinstance(seg[0], list) else [seg]  # a few exporters write one flat polygon
        entry.shapes += [Shape(label, "polygon", points(poly, source, where)) for poly in polygons]
    elif isinstance(seg, dict):
        entry.masks.append((label, rle_decode(seg, f"{source}: {where}")))
    elif ann.get("bbox"):
        x, y, w, h = points(ann["bbox"], source, f"{where} bbox").ravel()
        entry.shapes.append(Shape(label, "rectangle", np.array([[x, y], [x + w - 1, y + h - 1]])))
    else:
        entry.shapes.append(Shape(label, "empty_segmentation", np.zeros((0, 2))))


def _find(file_name: str, doc_path: Path, src: Path, by_name: dict[str, list[Path]]) -> Path:
    relative = Path(file_name.replace("\\", "/"))
    for base in (doc_path.parent, src, doc_path.parent / "images"):
        if (base / relative).is_file():
            return base / relative
    found = by_name.get(relative.name, [])
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{doc_path}: image {file_name!r} matches {len(found)} files under {src}")
    raise MissingPathError(f"{doc_path}: image {file_name!r} not found (beside the JSON file, under {src} or "
                           f"in images/)")


def _read_file(doc_path: Path, src: Path, by_name: dict[str, list[Path]]) -> Iterator[Entry]:
    doc = load_json(doc_path)
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in KEYS):
        raise DataError(f"{doc_path}: not a COCO file (needs lists {', '.join(KEYS)})")
    try:
        categories = {c["id"]: c["name"] for c in doc["categories"]}
        annotations = defaultdict(list)
        for ann in doc["annotations"]:
            annotations[ann["image_id"]].append(ann)
        images = {im["id"]: (str(im["file_name"]), im.get("width"), im.get("height")) for im in doc["images"]}
    except (KeyError, TypeError) as err:
        raise DataError(f"{doc_path}: malformed COCO file (missing {err})") from err
    unknown = set(annotations) - set(images)
    if unknown:
        raise DataError(f"{doc_path}: annotations refer to image ids not in 'images': {sorted(unknown)[:5]}")
    for image_id, (file_name, width, height) in images.items():
        path = _find(file_name, doc_path, src, by_name)
        size = (width, height) if isinstance(width, int) and isinstance(height, int) else None
        entry = Entry(doc_path, path.name, path, annotated=bool(annotations[image_id]), size=size)
        for ann in annotations[image_id]:
            if ann.get("category_id") not in categories:
                raise DataError(f"{doc_path}: annotation {ann.get('id')} has unknown category id "
                                f"{ann.get('category_id')!r} (known: {sorted(categories)})")
            _annotation(ann, class_name(categories[ann["category_id"]], doc_path), entry, doc_path)
        yield entry


def _is_coco(path: Path) -> bool:
    """Whether a JSON file names COCO's three lists (other JSON files under SRC are not read)."""
    data = path.read_bytes()
    return all(f'"{k}"'.encode() in data for k in KEYS)


def read(src: Path) -> Iterator[Entry]:
    """Entries of every image of the COCO file ``src``, or of every COCO file under the folder ``src``."""
    if src.is_file():
        files, root = [src], src.parent
    else:
        files, root = sorted(p for p in src.rglob("*.json") if p.is_file() and _is_coco(p)), src
        if not files:
            raise MissingPathError(f"no COCO file (*.json with {', '.join(KEYS)}) under {src}")
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in image_files(root):
        by_name[path.name].append(path)
    for doc_path in files:
        yield from _read_file(doc_path, root, by_name)
