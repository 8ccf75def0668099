"""Seeded, stratified train/validation split, saved with the model as relative paths.

Images that share a part, a camera position or a session are near-duplicates: split one by one, the same part lands
on both sides and validation measures recall of the training set. With a group regex (``--group-by``) every image
whose file name gives the same match stays on one side.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from inspector.data.layouts import DataSet, Sample
from inspector.errors import DataError, MissingPathError, UsageError


def group_of(pattern: re.Pattern[str], sample: Sample) -> str:
    """The sample's group: the regex's first group that took part in the match (or the whole match) in the image's
    file name; alternatives for several naming schemes may each have their own group.

    Raises:
        DataError: The regex matches nothing in the name.
    """
    match = pattern.search(sample.image.name)
    if match is None:
        raise DataError(f"--group-by {pattern.pattern!r} matches nothing in the file name {sample.image.name!r}")
    return next((g for g in match.groups() if g is not None), match.group(0))


def compile_group_by(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as err:
        raise UsageError(f"--group-by {regex!r} is not a valid regular expression: {err}") from err


def stratified_split(dataset: DataSet, val_fraction: float, seed: int, group_by: str | None = None
                     ) -> tuple[list[Sample], list[Sample]]:
    """Splits every class by the same fraction; a class of two or more images puts at least one in validation.

    With ``group_by``, whole groups move: see :func:`grouped_split`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise UsageError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if group_by:
        return grouped_split(dataset, val_fraction, seed, compile_group_by(group_by))
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in dataset.classes:
        members = [s for s in dataset.samples if s.label == cls]
        order = rng.permutation(len(members))
        n_val = max(1, round(len(members) * val_fraction)) if len(members) >= 2 else 0
        val += [members[i] for i in order[:n_val]]
        train += [members[i] for i in order[n_val:]]
    return train, val


def grouped_split(dataset: DataSet, val_fraction: float, seed: int, pattern: re.Pattern[str]
                  ) -> tuple[list[Sample], list[Sample]]:
    """Whole groups to validation, in a seeded order, while they bring images their classes still need: each class
    ends near ``val_fraction`` of its images, as far as the groups' sizes allow.

    Raises:
        DataError: A file name the regex does not match, or fewer than two groups.
    """
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in dataset.samples:
        groups[group_of(pattern, sample)].append(sample)
    if len(groups) < 2:
        raise DataError(f"--group-by {pattern.pattern!r} puts every image into one group; a split needs two or more")
    wanted = {c: n * val_fraction for c, n in Counter(s.label for s in dataset.samples).items()}
    taken: Counter[str] = Counter()
    names = sorted(groups)
    train, val = [], []
    for i in np.random.default_rng(seed).permutation(len(names)):
        members = groups[names[i]]
        counts = Counter(s.label for s in members)
        useful = sum(min(n, max(0.0, wanted[c] - taken[c])) for c, n in counts.items())
        if useful >= len(members) / 2:
            val += members
            taken.update(counts)
        else:
            train += members
    if not val or not train:
        raise DataError(f"--group-by {pattern.pattern!r}: groups too large to hold {val_fraction:.0%} back")
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
