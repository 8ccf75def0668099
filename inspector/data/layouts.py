"""Finding samples on disk: the class-folders + masks layout and the MVTec AD layout.

Class folders::

    images/<class>/<name>.<jpg|png|bmp>     masks/<class>/<name>.png   (same stem; defect where value > 127)

MVTec AD (one category)::

    train/good/*.png   test/<defect or good>/*.png   ground_truth/<defect>/<name>_mask.png

A missing mask means "empty" for ``good`` and "no pixel label" for a defect class (the image still trains the
classifier). Class order is ``good`` first, then the defect classes sorted by name.

A data folder may hold ``dataset.json`` with settings of its own: ``{"group_by": REGEX}`` is the default
``train --group-by`` (``inspector import --group-by`` writes it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from inspector.config import GOOD_CLASS
from inspector.errors import DataError, MissingPathError
from inspector.imaging.preprocess import EXTENSIONS


@dataclass(frozen=True)
class Sample:
    image: Path
    label: str  # class name
    mask: Path | None  # None: empty for good, unlabelled for a defect class


@dataclass(frozen=True)
class DataSet:
    root: Path
    layout: str  # "class_folders" | "mvtec"
    classes: tuple[str, ...]  # good first
    samples: tuple[Sample, ...]
    group_by: str | None = None  # dataset.json's default group regex for the split

    def labels(self) -> list[int]:
        index = {c: i for i, c in enumerate(self.classes)}
        return [index[s.label] for s in self.samples]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def _class_order(names: set[str]) -> tuple[str, ...]:
    return (GOOD_CLASS, *sorted(names - {GOOD_CLASS}))


def _scan_class_folders(root: Path) -> tuple[set[str], list[Sample]]:
    samples = []
    classes = {d.name for d in (root / "images").iterdir() if d.is_dir()}
    for cls in sorted(classes):
        for image in _images(root / "images" / cls):
            mask = root / "masks" / cls / f"{image.stem}.png"
            samples.append(Sample(image, cls, mask if mask.is_file() else None))
    return classes, samples


def _scan_mvtec(root: Path) -> tuple[set[str], list[Sample]]:
    samples = [Sample(p, GOOD_CLASS, None) for p in _images(root / "train" / GOOD_CLASS)]
    classes = {GOOD_CLASS}
    for folder in sorted(d for d in (root / "test").iterdir() if d.is_dir()):
        classes.add(folder.name)
        for image in _images(folder):
            mask = root / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            samples.append(Sample(image, folder.name, mask if mask.is_file() else None))
    return classes, samples


def _settings(root: Path) -> dict:
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read {path}: {err}") from err
    if not isinstance(settings, dict) or not isinstance(settings.get("group_by", ""), str):
        raise DataError(f"{path} must hold a JSON object whose group_by is a string")
    return settings


def load_dataset(root: str | Path, good_only: bool = False) -> DataSet:
    """Scans ``root`` in whichever of the two layouts it has.

    Args:
        good_only: Good images alone are a data set (a new product, before its first defect).

    Raises:
        MissingPathError: ``root`` does not exist or holds neither layout, or no images.
        DataError: There is no ``good`` class, or no defect class unless ``good_only``.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingPathError(f"data folder {root} does not exist")
    if (root / "images").is_dir():
        layout, (classes, samples) = "class_folders", _scan_class_folders(root)
    elif (root / "train").is_dir() and (root / "test").is_dir():
        layout, (classes, samples) = "mvtec", _scan_mvtec(root)
    else:
        raise MissingPathError(
            f"{root} holds neither images/<class>/ (class folders) nor train/ + test/ (MVTec AD layout)"
        )
    if not samples:
        raise MissingPathError(f"no images ({', '.join(EXTENSIONS)}) under {root}")
    classes = {s.label for s in samples}  # a folder without images is no class (the model would never see it)
    if GOOD_CLASS not in classes or (len(classes) < 2 and not good_only):
        need = "" if good_only else " and at least one defect class (or train --good-only)"
        raise DataError(f"{root}: need a '{GOOD_CLASS}' class{need}, found {sorted(classes)}")
    return DataSet(root, layout, _class_order(classes), tuple(samples), _settings(root).get("group_by") or None)


def data_hash(dataset: DataSet) -> str:
    """sha256 over every image and mask (relative path and content), in a fixed order."""
    digest = hashlib.sha256()
    for sample in dataset.samples:
        for path in (sample.image, sample.mask):
            if path is not None:
                digest.update(str(path.relative_to(dataset.root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()
