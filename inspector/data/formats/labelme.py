"""LabelMe JSON: one ``<name>.json`` per annotated image, next to the images or in a folder of its own.

BSData, for example, has ``data/<name>.jpg`` and ``label/<name>.json``. A JSON file's image is ``imagePath``
relative to the JSON file; failing that, the image under SRC with that file name, then with that stem, then with the
JSON file's stem; failing all, the image embedded in ``imageData`` (base64). An image under SRC that no JSON file
claims was not annotated: ``good``. Shapes ``polygon``, ``rectangle`` and ``circle`` are drawn; the others (line,
linestrip, point, mask...) are counted as skipped.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from inspector.data.formats.records import Entry, Shape, class_name, image_files, load_json, points
from inspector.errors import DataError, MissingPathError


def _shapes(doc: dict, source: Path) -> list[Shape]:
    shapes = doc.get("shapes")
    if not isinstance(shapes, list):
        raise DataError(f"{source}: not a LabelMe file (no 'shapes' list)")
    out = []
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise DataError(f"{source}: shape {i} is not an object")
        kind = shape.get("shape_type") or "polygon"  # LabelMe before 3.x wrote no shape_type: polygons
        out.append(Shape(class_name(shape.get("label"), source), str(kind),
                         points(shape.get("points"), source, f"shape {i}")))
    return out


class _Images:
    """The images under SRC, found by name or stem."""

    def __init__(self, root: Path) -> None:
        self.all = image_files(root)
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        for path in self.all:
            self.by_name[path.name].append(path)
            self.by_stem[path.stem].append(path)

    def find(self, json_path: Path, image_path: str) -> Path | None:
        """The image a JSON file annotates, or None; DataError when a name matches several images."""
        relative = Path(image_path.replace("\\", "/")) if image_path else None  # LabelMe on Windows writes "..\\x"
        if relative is not None and (json_path.parent / relative).is_file():
            return json_path.parent / relative
        keys = [] if relative is None else [(self.by_name, relative.name), (self.by_stem, relative.stem)]
        for table, key in keys + [(self.by_stem, json_path.stem)]:
            found = table.get(key, [])
            if len(found) > 1:
                raise DataError(f"{json_path}: its image {key!r} matches {len(found)} files "
                                f"({', '.join(map(str, found[:3]))}); set imagePath to the right one")
            if found:
                return found[0]
        return None


def _embedded(doc: dict, json_path: Path, relative: str) -> Entry | None:
    """The entry of an image kept only in ``imageData``, or None when there is none."""
    encoded: Any = doc.get("imageData")
    if not encoded:
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise DataError(f"{json_path}: imageData is not base64 ({err})") from err
    stem = Path(relative.replace("\\", "/")).stem if relative else json_path.stem
    return Entry(json_path, f"{stem}.png", None, data=data)  # the writer picks the extension from the bytes


def read(src: Path) -> Iterator[Entry]:
    """Entries of every LabelMe JSON file under ``src``, then of the images no JSON file claims (``good``)."""
    if not src.is_dir():
        raise MissingPathError(f"LabelMe source {src} is not a folder")
    images = _Images(src)
    claimed: dict[Path, Path] = {}  # image -> the JSON file that annotates it
    for json_path in sorted(p for p in src.rglob("*.json") if p.is_file()):
        doc = load_json(json_path)
        if not isinstance(doc, dict):
            raise DataError(f"{json_path}: not a LabelMe file (not a JSON object)")
        shapes = _shapes(doc, json_path)
        relative = doc.get("imagePath") if isinstance(doc.get("imagePath"), str) else ""
        size = (doc.get("imageWidth"), doc.get("imageHeight"))
        size = size if all(isinstance(v, int) for v in size) else None
        image = images.find(json_path, relative)
        if image is not None:
            if image.resolve() in claimed:
                raise DataError(f"{json_path} and {claimed[image.resolve()]} both annotate {image}; keep one")
            claimed[image.resolve()] = json_path
            yield Entry(json_path, image.name, image, shapes=shapes, size=size)
            continue
        entry = _embedded(doc, json_path, relative)
        if entry is None:
            raise MissingPathError(f"{json_path}: image {relative or json_path.stem!r} not found (not beside the "
                                   f"JSON file, nor under {src}) and no imageData in the file")
        entry.shapes, entry.size = shapes, size
        yield entry
    for image in images.all:
        if image.resolve() not in claimed:
            yield Entry(image, image.name, image, annotated=False)
