"""A bundle run over a data set through the serving predictor: shared by evaluate and calibrate."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from inspector.artifacts.meta import BundleMeta
from inspector.config import ANOMALY_CLASS, Thresholds
from inspector.data.layouts import Sample, load_dataset
from inspector.data.split import samples_from_record
from inspector.inference.drift import frame_values, reference_of
from inspector.errors import DataError
from inspector.inference.predictor import Prediction, Predictor
from inspector.imaging.preprocess import read_image
from inspector.progress import progress


def choose_samples(meta: BundleMeta, data: Path, split: str) -> tuple[list[Sample], str, tuple[str, ...]]:
    """The images to run on: the bundle's saved validation split when ``data`` is its training data
    (``split="auto"`` or ``"val"``), else every image. Returns the samples, the split used and the data's classes.

    Raises:
        DataError: ``split="val"`` for a bundle that records no split.
    """
    dataset = load_dataset(data, good_only=True)  # good parts alone: false-review figures, anomaly threshold
    same_data = meta.data is not None and Path(meta.data.root) == data.resolve()
    if split == "val" or (split == "auto" and same_data and meta.split is not None):
        if meta.split is None:
            raise DataError(f"{meta.name}/{meta.version} records no validation split; use --split all")
        return samples_from_record(dataset, list(meta.split.val)), "val", dataset.classes
    return list(dataset.samples), "all", dataset.classes


def check_classes(data_classes: tuple[str, ...], model_classes: tuple[str, ...]) -> None:
    """A model must know every class of the data; an anomaly-only model counts every defect class as its one."""
    unknown = sorted(set(data_classes) - set(model_classes))
    if unknown and ANOMALY_CLASS not in model_classes:
        raise DataError(f"data has classes the model does not know: {unknown}; model classes: {list(model_classes)}")


def class_index(model_classes: tuple[str, ...]) -> Callable[[str], int]:
    """Data class name -> the model's class index (for an anomaly-only model every defect class is ``anomaly``);
    KeyError for a class the model does not know."""
    index = {c: i for i, c in enumerate(model_classes)}
    return lambda label: index[label] if label in index else index[ANOMALY_CLASS]


def run_over(
    predictor: Predictor, samples: list[Sample], desc: str, batch_size: int = 16, show: bool = True
) -> Iterator[tuple[Sample, np.ndarray, Prediction]]:
    """Yields ``(sample, decoded image, prediction)`` for every sample, in batches, with a progress bar."""
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    for batch in progress(batches, desc, show, leave=True):
        images = [read_image(s.image) for s in batch]
        yield from zip(batch, images, predictor.predict(images))


def keep_every_mask(thresholds: Thresholds) -> Thresholds:
    """``thresholds`` under which the predictor accepts no part (every defect score is at least review 0), so it
    zeroes no mask and hands no part to the anomaly head: its masks are the segmentation head's own. The verdicts
    under them mean nothing; the class scores, defect class and mask are those of the real thresholds."""
    return dataclasses.replace(thresholds, reject=1.0, review=0.0, per_class={})


def run_served_and_raw(
    predictor: Predictor, samples: list[Sample], desc: str, batch_size: int = 16, show: bool = True
) -> Iterator[tuple[Sample, np.ndarray, Prediction, Prediction]]:
    """Yields ``(sample, decoded image, served, raw)``: one forward pass per batch, finished twice, under the
    predictor's thresholds (what the service answers: the mask of an accepted part zeroed) and under
    :func:`keep_every_mask` (the segmentation head's mask, whatever the verdict)."""
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    for batch in progress(batches, desc, show, leave=True):
        images = [read_image(s.image) for s in batch]
        prepared = predictor.prepare(images)
        outputs = predictor.infer(prepared.batch)
        served = predictor.finish(outputs, prepared)
        raw = predictor.finish(outputs, prepared, keep_every_mask(predictor.thresholds))
        yield from zip(batch, images, served, raw)


def drift_reference(predictor: Predictor, samples: list[Sample], show: bool = False) -> dict[str, Any]:
    """A bundle's drift reference (see :mod:`inspector.inference.drift`): the samples' statistics as the service will measure
    them, through ``predictor`` under the thresholds it will serve. The defect score depends on
    ``Thresholds.mask_weight``, so the reference must be computed after the thresholds are chosen, with them."""
    return reference_of(frame_values(image, p.defect_score)
                        for _, image, p in run_over(predictor, samples, "drift reference", show=show))
