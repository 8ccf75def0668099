"""inspector.evaluation.bootstrap: intervals around the report's figures, their resampling and their cost."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inspector.evaluation.bootstrap import (
    IMAGE_FIGURES,
    PIXEL_FIGURES,
    confidence_intervals,
    draw_counts,
    pixel_intervals,
    weighted_auroc_ap,
)
from inspector.evaluation.metrics import PixelConfusion, auroc, average_precision, classification_report

CLASSES = ["good", "crack", "scratch"]


def _image_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` parts: labels, predictions right 80 % of the time, scores (rounded: ties) higher for defects."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))
    score = np.round(np.clip(0.4 * (y > 0) + 0.6 * rng.random(n), 0, 1), 2)
    return y, pred, score


def _pixel_set(n: int, seed: int = 0) -> PixelConfusion:
    """``n`` 8x8 images with a defect box of random height and a prediction shifted by one column."""
    rng = np.random.default_rng(seed)
    pixels = PixelConfusion(3, names=CLASSES[1:])
    for _ in range(n):
        truth, pred, label = np.zeros((8, 8), int), np.zeros((8, 8), int), rng.integers(1, 3)
        truth[: rng.integers(0, 6), :3] = label
        pred[: rng.integers(0, 6), 1:4] = label
        pixels.update(truth, pred)
    return pixels


def test_draw_counts_keep_each_stratum_size() -> None:
    strata = np.array([0, 0, 0, 1, 1, 2])
    counts = draw_counts(strata, 50, np.random.default_rng(0))
    assert counts.shape == (50, 6)
    np.testing.assert_array_equal(counts[:, :3].sum(axis=1), 3)
    np.testing.assert_array_equal(counts[:, 3:5].sum(axis=1), 2)
    np.testing.assert_array_equal(counts[:, 5], 1)  # a class of one image is always drawn once


def test_weighted_auroc_ap_equal_the_metrics_on_the_repeated_samples() -> None:
    y, _, score = _image_set(200)
    counts = draw_counts(np.zeros(200), 5, np.random.default_rng(1))
    auc, ap = weighted_auroc_ap(counts, y > 0, score)
    for row, a, p in zip(counts, auc, ap):
        repeated = np.repeat(np.arange(200), row.astype(int))
        assert a == pytest.approx(auroc(y[repeated] > 0, score[repeated]))
        assert p == pytest.approx(average_precision(y[repeated] > 0, score[repeated]))


def test_intervals_contain_the_figures_and_are_ordered() -> None:
    y, pred, score = _image_set(300)
    pixels = _pixel_set(300)
    ci = confidence_intervals(y, pred, score, CLASSES, pixels.per_image)
    assert set(ci) == {f"image.{k}" for k in IMAGE_FIGURES} | {f"pixel.{k}" for k in PIXEL_FIGURES}
    point = {f"image.{k}": v for k, v in classification_report(y, pred, score, CLASSES).items()}
    point |= {f"pixel.{k}": v for k, v in pixels.report().items()}
    for key, (lo, hi) in ci.items():
        assert lo <= point[key] <= hi, key
        assert 0.0 <= lo < hi <= 1.0, key


def test_intervals_narrow_with_more_data() -> None:
    # the same set four times over: same figures, about half the width (1 / sqrt(4))
    y, pred, score = _image_set(100)
    pixels = _pixel_set(100)
    small = confidence_intervals(y, pred, score, CLASSES, pixels.per_image)
    large = confidence_intervals(np.tile(y, 4), np.tile(pred, 4), np.tile(score, 4), CLASSES,
                                 np.tile(pixels.per_image, (4, 1, 1)))
    for key in small:
        width, width4 = small[key][1] - small[key][0], large[key][1] - large[key][0]
        assert 0.3 * width < width4 < 0.75 * width, key


def test_intervals_are_deterministic_with_a_seed() -> None:
    y, pred, score = _image_set(120)
    per_image = _pixel_set(120).per_image
    first = confidence_intervals(y, pred, score, CLASSES, per_image, seed=7)
    assert confidence_intervals(y, pred, score, CLASSES, per_image, seed=7) == first
    assert confidence_intervals(y, pred, score, CLASSES, per_image, seed=8) != first


def test_undefined_figures_have_no_interval() -> None:
    # only good parts, all right: no AUROC / AP; nothing to find and nothing found: no defect IoU
    y = np.zeros(20, int)
    clean = PixelConfusion(2)
    clean.update_batch(np.zeros((20, 4, 4), int), np.zeros((20, 4, 4), int))
    ci = confidence_intervals(y, y, np.linspace(0, 1, 20), ["good", "crack"], clean.per_image)
    assert ci["image.auroc_defect"] is None and ci["image.ap_defect"] is None
    assert ci["image.accuracy"] == [1.0, 1.0] and ci["pixel.miou"] == [1.0, 1.0]
    assert all(ci[f"pixel.{k}"] is None for k in ("iou_defect", "dice_defect", "iou_per_image", "miou_defects"))
    assert pixel_intervals(np.zeros((0, 2, 2), int)) == dict.fromkeys(PIXEL_FIGURES)


def test_sections_by_name_and_sizes_checked() -> None:
    y, pred, score = _image_set(50)
    served, raw = _pixel_set(40, seed=1).per_image, _pixel_set(40, seed=2).per_image
    ci = confidence_intervals(y, pred, score, CLASSES, {"pixel": served, "pixel_ungated": raw})
    assert {k.split(".")[0] for k in ci} == {"image", "pixel", "pixel_ungated"}
    with pytest.raises(ValueError):
        confidence_intervals(y, pred[:-1], score, CLASSES)


def test_thousand_images_take_well_under_a_second() -> None:
    y, pred, score = _image_set(1000)
    per_image = _pixel_set(1000).per_image
    t0 = time.perf_counter()
    confidence_intervals(y, pred, score, CLASSES, {"pixel": per_image, "pixel_ungated": per_image})
    assert time.perf_counter() - t0 < 0.5
