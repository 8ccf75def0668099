"""Seeded, stratified train/validation split, saved with the model as relative paths."""

from __future__ import annotations

import numpy as np

from inspector.data.layouts import DataSet, Sample
from inspector.errors import MissingPathError, UsageError


def stratified_split(dataset: DataSet, val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Splits every class by the same fraction; a class of two or more images puts at least one in validation."""
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in dataset.classes:
        members = [s for s in dataset.samples if s.label == cls]
        order = rng.permutation(len(members))
        n_val = max(1, round(len(members) * val_fraction)) if len(members) >= 2 else 0
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


def split_record(dataset: DataSet, train: list[Sample], val: list[Sample]) -> dict[str, list[str]]:
    """The split as relative image paths, for the bundle."""
    rel = lambda samples: sorted(str(s.image.relative_to(dataset.root)) for s in samples)  # noqa: E731
    return {"train": rel(train), "val": rel(val)}


def samples_from_record(dataset: DataSet, paths: list[str]) -> list[Sample]:
    """The samples of ``dataset`` named in a saved split (paths relative to the data root)."""
    by_path = {str(s.image.relative_to(dataset.root)): s for s in dataset.samples}
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise MissingPathError(f"{len(missing)} images of the saved split are missing under {dataset.root}, e.g. {missing[0]}")
    return [by_path[p] for p in paths]


def mvtec_split(dataset: DataSet) -> tuple[list[Sample], list[Sample]]:
    """The MVTec AD protocol: ``train/good`` to learn from, everything under ``test/`` to validate on."""
    train_dir = dataset.root / "train"
    train = [s for s in dataset.samples if s.image.is_relative_to(train_dir)]
    return train, [s for s in dataset.samples if not s.image.is_relative_to(train_dir)]
