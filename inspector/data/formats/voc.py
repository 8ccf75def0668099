"""Pascal VOC segmentation masks (the VOC devkit layout; CVAT's "Segmentation mask" export).

``SegmentationClass/<name>.png`` holds one class per pixel for ``JPEGImages/<name>.<ext>``: a palette PNG, an RGB
PNG in the same colours, or a grey PNG whose values are class indices. Classes and their colours come from
``labelmap.txt`` (CVAT: ``name:r,g,b::`` lines, in index order) or are the 21 standard VOC classes in the standard
VOC colours. Index 0 (``background``) is not a defect, nor is 255 / colour (224, 224, 192), the boundary and "void"
label VOC draws around objects. A mask without any defect pixel makes its image ``good``. Images in JPEGImages/
without a mask were not segmented (VOC holds many) and are counted as skipped, not taken as good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from inspector.data.formats.records import Entry, Skip, class_name, image_files
from inspector.errors import DataError, MissingPathError

VOC_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")
VOID_INDEX = 255
VOID_COLOUR = (224, 224, 192)  # RGB of index 255 in VOC's palette
NOT_DEFECT = {"background", "void", "ignore"}  # names of a labelmap's non-defect entries


def voc_colour(index: int) -> tuple[int, int, int]:
    """RGB of ``index`` in the VOC palette (the devkit's bit-interleaving ``labelcolormap``)."""
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((index >> 0) & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
    return r, g, b


def read_labelmap(path: Path) -> list[tuple[str, tuple[int, int, int]]]:
    """``(name, rgb)`` per line of a CVAT ``labelmap.txt`` (``# label:color_rgb:parts:actions`` header skipped)."""
    table = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            rgb = tuple(int(v) for v in rest.split(":")[0].split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DataError(f"{path}:{n}: expected 'name:r,g,b::', got {line[:60]!r}")
        table.append((name.strip(), rgb))
    if not table or table[0][0].strip().lower() not in NOT_DEFECT:
        raise DataError(f"{path}: the first label must be background (class index 0), got "
                        f"{table[0][0] if table else 'no labels'!r}")
    return table


def _class_masks(mask: np.ndarray, table: list[tuple[str, tuple[int, int, int]]], path: Path,
                 names_file: Path) -> list[tuple[str, np.ndarray]]:
    """``(class, (h, w) bool)`` of each defect class present in a mask read with IMREAD_UNCHANGED."""
    if mask.ndim == 2:  # class indices
        index = mask.astype(np.int32)
    else:  # colours: OpenCV gives BGR(A), palette PNGs expanded
        bgr = mask[..., :3].astype(np.int32)
        code = (bgr[..., 2] << 16) | (bgr[..., 1] << 8) | bgr[..., 0]
        lookup = {(r << 16) | (g << 8) | b: i for i, (_, (r, g, b)) in enumerate(table)}
        lookup.setdefault((VOID_COLOUR[0] << 16) | (VOID_COLOUR[1] << 8) | VOID_COLOUR[2], VOID_INDEX)
        codes, inverse = np.unique(code, return_inverse=True)
        unknown = [int(c) for c in codes if int(c) not in lookup]
        if unknown:
            colours = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:3])
            raise DataError(f"{path}: colour {colours} is no class of {names_file}")
        index = np.array([lookup[int(c)] for c in codes], np.int32)[inverse.reshape(code.shape)]
    found = []
    for i in np.unique(index):
        if i in (0, VOID_INDEX):  # background, boundary / void
            continue
        if i >= len(table):
            raise DataError(f"{path}: class index {i} is not in {names_file} ({len(table)} classes)")
        if table[i][0].strip().lower() in NOT_DEFECT:
            continue
        found.append((class_name(table[i][0], names_file), index == i))
    return found


def read(src: Path) -> Iterator[Entry | Skip]:
    """Entries of every mask in ``src/SegmentationClass``; a Skip per image without one."""
    masks_dir, images_dir = src / "SegmentationClass", src / "JPEGImages"
    for folder in (masks_dir, images_dir):
        if not folder.is_dir():
            raise MissingPathError(f"{folder} does not exist (expected the VOC layout: JPEGImages/, "
                                   "SegmentationClass/)")
    labelmap = src / "labelmap.txt"
    if labelmap.is_file():
        table, names_file = read_labelmap(labelmap), labelmap
    else:
        table, names_file = [(n, voc_colour(i)) for i, n in enumerate(VOC_NAMES)], Path("the standard VOC classes")
    images = {p.stem: p for p in image_files(images_dir)}
    masked = set()
    for mask_path in sorted(masks_dir.glob("*.png")):
        image = images.get(mask_path.stem)
        if image is None:
            raise MissingPathError(f"{mask_path}: no image {mask_path.stem}.* in {images_dir}")
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if mask is None or mask.dtype != np.uint8:
            raise DataError(f"{mask_path}: not an 8-bit PNG mask")
        masked.add(mask_path.stem)
        found = _class_masks(mask, table, mask_path, names_file)
        yield Entry(mask_path, image.name, image, annotated=bool(found), masks=found)
    for _ in sorted(set(images) - masked):
        yield Skip("image_without_mask")
