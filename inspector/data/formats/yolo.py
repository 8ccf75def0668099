"""YOLO segmentation (Ultralytics, Roboflow, CVAT "YOLO 1.1"/"Ultralytics YOLO Segmentation" exports).

Images lie in a folder named ``images`` (``images/``, ``images/train/``, ``train/images/``...); the labels of
``.../images/.../x.jpg`` are in ``.../labels/.../x.txt`` (the last ``images`` of the path replaced by ``labels``,
as Ultralytics finds them). A label line is ``class x1 y1 x2 y2 ...``, coordinates as fractions of the image width
and height; a line of exactly four numbers is a box ``cx cy w h`` (detection labels), drawn as that rectangle. An
empty or missing label file means ``good``. Class names come from ``data.yaml`` (``names:`` as a list or a
``{id: name}`` mapping; any ``*.yaml`` in SRC with ``names:``) or from ``classes.txt`` (one name a line).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from inspector.data.formats.records import Entry, Shape, class_name, image_files
from inspector.errors import DataError, MissingPathError

_KEY = re.compile(r"^(\S[^:]*):\s*(.*)$")  # a top-level "key: value" line


def _scalar(text: str) -> str:
    """A YAML scalar without its quotes and trailing comment."""
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1] and len(text) > 1:
        return text[1:-1]
    return text.split(" #")[0].strip()


def _split_flow(text: str) -> list[str]:
    """The items of a flow sequence or mapping body ``a, 'b, c', d`` (commas inside quotes kept)."""
    return [_scalar(m.group(0)) for m in re.finditer(r"'[^']*'|\"[^\"]*\"|[^,]+", text) if m.group(0).strip()]


def parse_names(text: str, source: Path) -> list[str]:
    """``names:`` of a data.yaml (list, flow list, mapping or flow mapping), index order; the subset of YAML that
    exporters write, so that reading it needs no YAML library."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _KEY.match(line)
        if not match or match.group(1).strip() != "names":
            continue
        value = match.group(2).split(" #")[0].strip()
        if value.startswith("["):
            return _split_flow(value.strip("[]"))
        if value.startswith("{"):
            items = [item.split(":", 1) for item in _split_flow(value.strip("{}"))]
        elif value:
            raise DataError(f"{source}: cannot read 'names: {value}'; write a list or a mapping")
        else:
            block = []
            for item in lines[i + 1:]:
                if item.strip() and not item.startswith((" ", "\t", "-")):
                    break
                if item.strip() and not item.strip().startswith("#"):
                    block.append(item.strip())
            if all(b.startswith("-") for b in block):
                return [_scalar(b[1:]) for b in block]
            items = [b.split(":", 1) for b in block]
        try:
            table = {int(_scalar(k)): _scalar(v) for k, v in items}
        except ValueError as err:
            raise DataError(f"{source}: names: expected 'id: name' entries ({err})") from err
        return [table.get(i, f"class_{i}") for i in range(max(table, default=-1) + 1)]
    raise DataError(f"{source}: no 'names:' in the file")


def class_names(src: Path) -> tuple[list[str], Path]:
    """The class names (index order) and the file they came from."""
    for path in [src / "data.yaml", *sorted(src.glob("*.yaml")), *sorted(src.glob("*.yml"))]:
        if path.is_file() and re.search(r"^names\s*:", path.read_text(errors="replace"), re.M):
            return parse_names(path.read_text(errors="replace"), path), path
    for path in [src / "classes.txt", *sorted(src.rglob("classes.txt"))]:
        if path.is_file():
            return [line.strip() for line in path.read_text().splitlines() if line.strip()], path
    raise MissingPathError(f"{src}: no data.yaml (with names:) or classes.txt to name the classes")


def label_path(image: Path, src: Path) -> Path:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (the last ``images`` part replaced)."""
    parts = list(image.relative_to(src).parts)
    last = len(parts) - 1 - parts[::-1].index("images")
    parts[last] = "labels"
    return src.joinpath(*parts).with_suffix(".txt")


def read_labels(path: Path, names: list[str], names_file: Path) -> list[Shape]:
    """The shapes of one label file; DataError naming the file and line when a line is malformed."""
    shapes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            cls, values = int(fields[0]), np.array([float(v) for v in fields[1:]])
        except ValueError:
            raise DataError(f"{path}:{n}: expected 'class x1 y1 x2 y2 ...' numbers, got {line[:60]!r}") from None
        if not 0 <= cls < len(names):
            raise DataError(f"{path}:{n}: class id {cls} is not in {names_file} ({len(names)} classes)")
        label = class_name(names[cls], names_file)
        if len(values) == 4:
            cx, cy, w, h = values
            shapes.append(Shape(label, "rectangle", np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]]),
                                normalised=True))
        elif len(values) >= 6 and len(values) % 2 == 0 and np.isfinite(values).all():
            shapes.append(Shape(label, "polygon", values.reshape(-1, 2), normalised=True))
        else:
            raise DataError(f"{path}:{n}: a polygon needs an even number (>= 6) of coordinates, got {len(values)}")
    return shapes


def read(src: Path) -> Iterator[Entry]:
    """Entries of every image in an ``images`` folder under ``src``."""
    if not src.is_dir():
        raise MissingPathError(f"YOLO source {src} is not a folder")
    names, names_file = class_names(src)
    images = [p for p in image_files(src) if "images" in p.relative_to(src).parts[:-1]]
    if not images:
        raise MissingPathError(f"no images in an images/ folder under {src}")
    for image in images:
        labels = label_path(image, src)
        shapes = read_labels(labels, names, names_file) if labels.is_file() else []
        yield Entry(labels if labels.is_file() else image, image.name, image, annotated=bool(shapes), shapes=shapes)
