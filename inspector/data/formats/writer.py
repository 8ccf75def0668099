"""Writing the class-folders layout: one image and its mask at a time, each file written atomically.

``images/<class>/<name>.<ext>`` is a hard link to the source image when both lie on one filesystem (no copy of a
large data set), else a copy; an image in a format the trainer cannot read (TIFF, WebP) or embedded in an annotation
file is written as its own file. ``masks/<class>/<name>.png`` is 8-bit, 255 on every defect shape of the image and 0
elsewhere; a ``good`` image gets no mask. The file name keeps the source's stem (so ``--group-by`` regexes still
match); a stem met twice gets ``-2``, ``-3``... and is listed in ``renamed``.

An image with shapes of several defect classes goes to the class with the largest annotated area (ties: the first
name); its mask holds the shapes of all classes, since each is a defect the segmentation head must find.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from inspector.config import GOOD_CLASS
from inspector.data.formats.records import RASTERISED, Entry
from inspector.errors import DataError, MissingPathError
from inspector.imaging.headers import MAGIC, probe_size
from inspector.imaging.preprocess import EXTENSIONS

TOLERANCE_PX = 1.0  # a vertex this far outside the image is a rounding overshoot and is clipped; farther: an error
_SHIFT = 4  # fillPoly's fractional bits: vertices are placed to 1/16 px


def encoding_of(data: bytes) -> str | None:
    """JPEG, PNG or BMP from the first bytes, or None."""
    return next((name for name, magic in MAGIC.items() if data.startswith(magic)), None)


def image_size(path: Path | None, data: bytes | None) -> tuple[int, int]:
    """(width, height) of an image file or of its bytes, from the header where it can (no decoding)."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise MissingPathError(f"cannot read image {path}: {err.strerror}") from err
    encoding = encoding_of(data)
    size = probe_size(data, encoding) if encoding else None
    if size is None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise DataError(f"{path or 'embedded image'}: not a readable image")
        size = image.shape[1], image.shape[0]
    return int(size[0]), int(size[1])


def _in_px(points: np.ndarray, normalised: bool, width: int, height: int, source: Path, label: str) -> np.ndarray:
    """Vertices in px, clipped to the image; DataError when one lies more than TOLERANCE_PX outside it."""
    px = points * (width, height) if normalised else points
    low, high = -TOLERANCE_PX, np.array([width - 1, height - 1]) + TOLERANCE_PX
    outside = (px < low - 1e-6) | (px > high + 1e-6)
    if outside.any():
        x, y = px[np.flatnonzero(outside.any(axis=1))[0]]
        raise DataError(f"{source}: a '{label}' shape has a point at ({x:.1f}, {y:.1f}), outside the "
                        f"{width}x{height} image by more than {TOLERANCE_PX:g} px")
    return np.clip(px, 0, (width - 1, height - 1))


def _usable(shape) -> str | None:
    """None when ``shape`` can be drawn, else what to count it as in ``skipped``."""
    if shape.kind not in RASTERISED:
        return shape.kind
    if len(shape.points) < 3 if shape.kind == "polygon" else len(shape.points) != 2:
        return f"{shape.kind}_degenerate"
    return None


def _draw(shape, width: int, height: int, source: Path) -> np.ndarray:
    """The ``(h, w)`` uint8 layer of one shape (255 inside); vertices checked and clipped by :func:`_in_px`."""
    layer = np.zeros((height, width), np.uint8)
    scale = (width, height) if shape.normalised else (1, 1)
    if shape.kind == "circle":  # the centre must be in the image, the rim may leave it
        centre = _in_px(shape.points[:1], shape.normalised, width, height, source, shape.label)[0]
        radius = float(np.hypot(*(shape.points[1] - shape.points[0]) * scale))
        cv2.circle(layer, tuple(int(v) for v in np.round(centre * 16)), round(radius * 16), 255, -1, cv2.LINE_8,
                   _SHIFT)
        return layer
    px = _in_px(shape.points, shape.normalised, width, height, source, shape.label)
    if shape.kind == "rectangle":
        (x0, y0), (x1, y1) = px
        px = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    cv2.fillPoly(layer, [np.round(px * 16).astype(np.int32)], 255, cv2.LINE_8, _SHIFT)
    return layer


def rasterise(entry: Entry, width: int, height: int, skipped: Counter) -> tuple[dict[str, np.ndarray], int]:
    """Per class, the ``(h, w)`` bool mask of the entry's shapes and ready masks, and how many were drawn.

    A shape that cannot be drawn is counted in ``skipped``; its class still counts (with no area), so an image
    annotated only with lines goes to that class, without a mask.
    """
    masks: dict[str, np.ndarray] = {}
    drawn = 0
    for shape in entry.shapes:
        canvas = masks.setdefault(shape.label, np.zeros((height, width), bool))
        reason = _usable(shape)
        if reason is not None:
            skipped[reason] += 1
            continue
        canvas |= _draw(shape, width, height, entry.source) > 0
        drawn += 1
    for label, mask in entry.masks:
        if mask.shape != (height, width):
            raise DataError(f"{entry.source}: mask is {mask.shape[1]}x{mask.shape[0]} px, the image {width}x{height}")
        canvas = masks.setdefault(label, np.zeros((height, width), bool))
        canvas |= mask
        drawn += 1
    return masks, drawn


def choose_class(masks: dict[str, np.ndarray]) -> str:
    """The class with the largest area (ties: first by name); ``good`` when there is none."""
    if not masks:
        return GOOD_CLASS
    areas = {label: int(mask.sum()) for label, mask in sorted(masks.items())}
    return max(areas, key=areas.__getitem__)


def _atomic(target: Path, write) -> None:
    """Calls ``write(temp)`` for a temporary name beside ``target``, then renames it to ``target``."""
    temp = target.with_name(f".{target.name}.tmp")
    try:
        write(temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def _link_or_copy(source: Path, temp: Path) -> bool:
    """Hard-links ``source`` to ``temp`` (True), or copies it when that is not possible (False)."""
    try:
        os.link(source, temp)
        return True
    except OSError:
        shutil.copyfile(source, temp)
        return False


class LayoutWriter:
    """Writes entries into the class-folders layout under ``root``; keeps the figures of the summary."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.counts: Counter = Counter()  # images per class
        self.skipped: Counter = Counter()  # shapes and files not imported, by kind
        self.shapes = 0  # shapes drawn into masks
        self.linked = 0  # images hard-linked (the rest were copied or written)
        self.empty_masks: list[str] = []  # defect images whose shapes drew no pixel: no mask written
        self.renamed: dict[str, str] = {}  # source -> written name, where a stem was already taken
        self._stems: set[str] = set()

    def add(self, entry: Entry) -> Path:
        """Writes one entry; returns the image's path relative to ``root``."""
        if entry.image is not None and not entry.image.is_file():
            raise MissingPathError(f"{entry.source}: image {entry.image} does not exist")
        width, height = image_size(entry.image, entry.data)
        if entry.size is not None and tuple(entry.size) != (width, height):
            raise DataError(f"{entry.source}: annotated for a {entry.size[0]}x{entry.size[1]} image, but "
                            f"{entry.image or 'the embedded image'} is {width}x{height} (rotated or replaced?)")
        masks, drawn = rasterise(entry, width, height, self.skipped) if entry.annotated else ({}, 0)
        self.shapes += drawn
        cls = choose_class(masks)
        stem, suffix = self._name(entry)
        folder = self.root / "images" / cls
        folder.mkdir(parents=True, exist_ok=True)
        image_path = folder / f"{stem}{suffix}"
        self._write_image(entry, image_path)
        self.counts[cls] += 1
        if cls != GOOD_CLASS:
            union = np.logical_or.reduce(list(masks.values()))
            if union.any():
                (self.root / "masks" / cls).mkdir(parents=True, exist_ok=True)
                png = _encode_png((union * 255).astype(np.uint8), entry.source)
                _atomic(self.root / "masks" / cls / f"{stem}.png", lambda t: t.write_bytes(png))
            else:
                self.empty_masks.append(str(image_path.relative_to(self.root)))
        return image_path.relative_to(self.root)

    def _name(self, entry: Entry) -> tuple[str, str]:
        """A stem not used yet (the source's, else with ``-2``...) and the extension the image gets."""
        name = Path(entry.name)
        suffix = name.suffix if name.suffix.lower() in EXTENSIONS else ".png"  # others are re-encoded as PNG
        if entry.data is not None:
            suffix = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}.get(encoding_of(entry.data) or "", ".png")
        stem, n = name.stem, 1
        while stem in self._stems:
            n += 1
            stem = f"{name.stem}-{n}"
        if n > 1:
            self.renamed[str(entry.image or entry.source)] = stem
        self._stems.add(stem)
        return stem, suffix

    def _write_image(self, entry: Entry, target: Path) -> None:
        """Links or copies an image file the trainer reads; writes embedded bytes; re-encodes anything else as PNG."""
        if entry.data is None and entry.image.suffix.lower() in EXTENSIONS:
            linked = []
            _atomic(target, lambda temp: linked.append(_link_or_copy(entry.image, temp)))
            self.linked += linked[0]
            return
        data = entry.data
        if data is None or encoding_of(data) is None:
            image = cv2.imread(str(entry.image), cv2.IMREAD_UNCHANGED) if data is None else \
                cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise DataError(f"{entry.image or entry.source}: not a readable image")
            data = _encode_png(image, entry.source)
        _atomic(target, lambda temp: temp.write_bytes(data))


def _encode_png(image: np.ndarray, source: Path) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise DataError(f"{source}: could not encode a PNG of shape {image.shape}")
    return buffer.tobytes()
