"""Percentile bootstrap confidence intervals of the headline figures, resampling images.

A validation set of a few hundred parts gives an accuracy of 0.97 that could as well be 0.94 or 0.99 on the next
few hundred; the interval says how far. Each resample draws the images with replacement (image figures: within each
true class, so every resample keeps the set's class counts and AUROC stays defined, as pROC's stratified bootstrap;
pixel figures: over the images with a pixel label) and recomputes the figure with the formulas of
:mod:`inspector.evaluation.metrics`; the interval is the central ``level`` share of the resampled values. Pixel
figures resample per-image confusion matrices, never pixels: the pixels of one image are not independent draws.

Everything is vectorised over the resamples: a resample is one row of a ``(n_resamples, n_images)`` matrix of draw
counts, and pooled confusions are that matrix times the per-image ones, so 1000 resamples of 1000 images take a
fraction of a second. A figure undefined on the whole set has no interval (None); resamples on which it is undefined
(a pixel resample without any defect pixel) are left out of its percentiles. The operating figures (escape,
false-reject and review rates of the verdicts) draw the same resamples as the image figures; a rate of 0 on the set
is 0 on every resample, so its interval is [0, 0]: read the Clopper-Pearson bound of
:mod:`inspector.evaluation.operating_point` for how high it could be.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inspector.evaluation.metrics import image_defect_iou, macro_f1, pixel_figures
from inspector.inference.postprocess import ACCEPT, REJECT, REVIEW

N_RESAMPLES = 1000  # enough for stable 2.5 / 97.5 percentiles (Efron & Tibshirani: 1000-2000 for intervals)
LEVEL = 0.95
IMAGE_FIGURES = ("accuracy", "macro_f1", "auroc_defect", "ap_defect")
PIXEL_FIGURES = ("iou_defect", "dice_defect", "iou_per_image", "miou", "miou_defects")
OPERATING_FIGURES = ("escape_rate", "false_reject_rate", "review_rate")


def draw_counts(strata: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each item is drawn in each resample, drawing with replacement within each stratum.

    Args:
        strata: ``(n,)`` stratum of each item (one value for a plain bootstrap).
        n_resamples: Number of resamples.
        rng: The random generator.

    Returns:
        ``(n_resamples, n)`` float64 counts; each row sums to ``n`` and keeps every stratum's size.
    """
    strata = np.asarray(strata).ravel()
    n = strata.size
    picks = np.empty((n_resamples, n), np.int64)
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        picks[:, members] = members[rng.integers(0, members.size, (n_resamples, members.size))]
    rows = np.arange(n_resamples)[:, None] * n
    return np.bincount((rows + picks).ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(np.float64)


def weighted_auroc_ap(counts: np.ndarray, y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision of each resample, ties as in :func:`~inspector.evaluation.metrics.auroc` and
    :func:`~inspector.evaluation.metrics.average_precision`.

    Args:
        counts: ``(b, n)`` draw counts of each item in each resample.
        y: ``(n,)`` binary labels (1 = positive).
        score: ``(n,)`` scores, higher = more likely positive.

    Returns:
        ``(auroc, ap)``, each ``(b,)``; nan where a resample lacks positives (both) or negatives (AUROC).
    """
    order = np.argsort(score, kind="mergesort")  # ascending
    s, pos = np.asarray(score, np.float64)[order], np.asarray(y, bool)[order]
    if s.size == 0:
        return np.full(len(counts), np.nan), np.full(len(counts), np.nan)
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]  # one group per distinct score
    w = counts[:, order]
    wp, wn = np.add.reduceat(w * pos, starts, axis=1), np.add.reduceat(w * ~pos, starts, axis=1)  # (b, groups)
    n_pos, n_neg = wp.sum(axis=1), wn.sum(axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negatives scoring strictly lower; a tie counts one half
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = np.where((n_pos > 0) & (n_neg > 0), (wp * (below + 0.5 * wn)).sum(axis=1) / (n_pos * n_neg), np.nan)
        tps, fps = np.cumsum(wp[:, ::-1], axis=1), np.cumsum(wn[:, ::-1], axis=1)  # thresholds descending
        precision = np.where(tps + fps > 0, tps / np.maximum(tps + fps, 1e-300), 0.0)
        ap = np.where(n_pos > 0, (wp[:, ::-1] * precision).sum(axis=1) / n_pos, np.nan)
    return auc, ap


def percentile_interval(values: np.ndarray, point: float, level: float = LEVEL) -> list[float] | None:
    """The central ``level`` share of the defined resampled ``values``; None when ``point`` (the figure on the whole
    set) is undefined or no resample defines it."""
    defined = values[~np.isnan(values)]
    if np.isnan(point) or defined.size == 0:
        return None
    lo, hi = np.percentile(defined, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def image_figures(counts: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, defect_score: np.ndarray,
                  n_classes: int, good: int) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1, AUROC and AP of defect vs good for each row of draw ``counts`` ``(b, n)``, each ``(b,)``."""
    pairs = np.zeros((len(y_true), n_classes * n_classes))
    pairs[np.arange(len(y_true)), np.asarray(y_true) * n_classes + np.asarray(y_pred)] = 1.0
    confusion = (counts @ pairs).reshape(-1, n_classes, n_classes)  # (b, k, k)
    total = confusion.sum(axis=(1, 2))
    accuracy = np.divide(np.trace(confusion, axis1=1, axis2=2), total, out=np.full(len(total), np.nan),
                         where=total > 0)
    auc, ap = weighted_auroc_ap(counts, np.asarray(y_true) != good, defect_score)
    return {"accuracy": accuracy, "macro_f1": macro_f1(confusion), "auroc_defect": auc, "ap_defect": ap}


def _share(counts: np.ndarray, event: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Weighted share of the items ``among`` (bool ``(n,)``) with ``event`` in each row of ``counts`` ``(b, n)``;
    nan where a row draws none of them."""
    num, den = counts @ (event & among).astype(np.float64), counts @ among.astype(np.float64)
    return np.divide(num, den, out=np.full(len(den), np.nan), where=den > 0)


def operating_figures(counts: np.ndarray, is_defect: np.ndarray, verdicts: Sequence[str]) -> dict[str, np.ndarray]:
    """Escape, false-reject and review rates (:mod:`inspector.evaluation.operating_point`) for each row of draw
    ``counts`` ``(b, n)`` over the parts' truth ``is_defect`` ``(n,)`` and ``verdicts``, each ``(b,)``."""
    is_defect, verdict = np.asarray(is_defect, bool).ravel(), np.asarray(verdicts, dtype=str).ravel()
    everyone = np.ones_like(is_defect)
    return {"escape_rate": _share(counts, verdict == ACCEPT, is_defect),
            "false_reject_rate": _share(counts, verdict == REJECT, ~is_defect),
            "review_rate": _share(counts, verdict == REVIEW, everyone)}


def pixel_resampled(counts: np.ndarray, confusions: np.ndarray) -> dict[str, np.ndarray]:
    """The pixel figures of :class:`~inspector.evaluation.metrics.PixelConfusion` for each row of draw ``counts``
    ``(b, n)`` over the per-image confusions ``(n, l, l)``, each ``(b,)``."""
    n, labels = confusions.shape[0], confusions.shape[-1]
    pooled = (counts @ confusions.reshape(n, labels * labels).astype(np.float64)).reshape(-1, labels, labels)  # (b, l, l)
    iou = image_defect_iou(confusions)  # (n,), nan: nothing to find, nothing found
    has = ~np.isnan(iou)
    weight = counts @ has.astype(np.float64)
    per_image = np.divide(counts @ np.where(has, iou, 0.0), weight, out=np.full(len(weight), np.nan), where=weight > 0)
    return {**pixel_figures(pooled), "iou_per_image": per_image}


def image_intervals(y_true: np.ndarray, y_pred: np.ndarray, defect_score: np.ndarray, classes: Sequence[str],
                    good_class: str = "good", n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                    seed: int = 0) -> dict[str, list[float] | None]:
    """Intervals of :data:`IMAGE_FIGURES` (keys without a prefix), resampling images within each true class.

    Args:
        y_true: ``(n,)`` true class indices into ``classes``.
        y_pred: ``(n,)`` predicted class indices.
        defect_score: ``(n,)`` defect scores (higher = more likely defective).
        classes: Class names, index order.
        good_class: Name of the defect-free class.
        n_resamples: Number of bootstrap resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling: the same inputs and seed give the same intervals.
    """
    y_true, y_pred = np.asarray(y_true, np.int64).ravel(), np.asarray(y_pred, np.int64).ravel()
    score = np.asarray(defect_score, np.float64).ravel()
    if not y_true.size == y_pred.size == score.size:
        raise ValueError(f"y_true, y_pred and defect_score differ in size: {y_true.size}, {y_pred.size}, {score.size}")
    k, good = len(classes), list(classes).index(good_class)
    point = image_figures(np.ones((1, y_true.size)), y_true, y_pred, score, k, good)
    counts = draw_counts(y_true, n_resamples, np.random.default_rng(seed))
    resampled = image_figures(counts, y_true, y_pred, score, k, good)
    return {name: percentile_interval(resampled[name], point[name][0], level) for name in IMAGE_FIGURES}


def operating_intervals(y_true: np.ndarray, verdicts: Sequence[str], classes: Sequence[str], good_class: str = "good",
                        n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0
                        ) -> dict[str, list[float] | None]:
    """Intervals of :data:`OPERATING_FIGURES` (keys without a prefix), resampling the parts within each true class
    (with the seed of :func:`image_intervals`, the same resamples).

    Args:
        y_true: ``(n,)`` true class indices into ``classes``.
        verdicts: ``(n,)`` verdicts (ACCEPT, REVIEW, REJECT).
        classes: Class names, index order.
        good_class: Name of the defect-free class.
        n_resamples: Number of bootstrap resamples.
        level: Coverage of the interval.
        seed: Seed of the resampling.
    """
    y_true = np.asarray(y_true, np.int64).ravel()
    if y_true.size != len(verdicts):
        raise ValueError(f"y_true and verdicts differ in size: {y_true.size}, {len(verdicts)}")
    is_defect = y_true != list(classes).index(good_class)
    point = operating_figures(np.ones((1, y_true.size)), is_defect, verdicts)
    resampled = operating_figures(draw_counts(y_true, n_resamples, np.random.default_rng(seed)), is_defect, verdicts)
    return {name: percentile_interval(resampled[name], point[name][0], level) for name in OPERATING_FIGURES}


def pixel_intervals(confusions: np.ndarray, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                    seed: int = 0) -> dict[str, list[float] | None]:
    """Intervals of :data:`PIXEL_FIGURES` (keys without a prefix), resampling the images' confusion matrices
    ``(n, l, l)`` (:attr:`~inspector.evaluation.metrics.PixelConfusion.per_image`)."""
    confusions = np.asarray(confusions)
    point = pixel_resampled(np.ones((1, len(confusions))), confusions)
    counts = draw_counts(np.zeros(len(confusions)), n_resamples, np.random.default_rng(seed))
    resampled = pixel_resampled(counts, confusions)
    return {name: percentile_interval(resampled[name], point[name][0], level) for name in PIXEL_FIGURES}


def confidence_intervals(
    y_true: np.ndarray, y_pred: np.ndarray, defect_score: np.ndarray, classes: Sequence[str],
    pixel_confusions: dict[str, np.ndarray] | np.ndarray | None = None, good_class: str = "good",
    n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0, verdicts: Sequence[str] | None = None,
) -> dict[str, list[float] | None]:
    """``[lo, hi]`` (None where undefined) of every headline figure, keyed as report.json paths.

    The image figures resample the classified images, the pixel figures the pixel-labelled ones, each set with its
    own stream of the one ``seed`` (marginal intervals: the two sets need not be the same images; pixel sections of
    the same images, served and ungated, draw the same resamples). The trainer calls it
    on its final validation arrays: labels, predicted classes, defect scores and
    :attr:`~inspector.evaluation.metrics.PixelConfusion.per_image`.

    Args:
        y_true: ``(n,)`` true class indices into ``classes``.
        y_pred: ``(n,)`` predicted class indices.
        defect_score: ``(n,)`` defect scores.
        classes: Class names, index order.
        pixel_confusions: Per-image pixel confusions ``(m, l, l)`` (keys ``pixel.*``), or a dict of them by section
            name (``{"pixel": served, "pixel_ungated": raw}``); None: image figures only.
        good_class: Name of the defect-free class.
        n_resamples: Number of bootstrap resamples.
        level: Coverage of the intervals.
        seed: Seed of the resampling.
        verdicts: ``(n,)`` verdicts of the classified images (keys ``operating_point.*``, drawn with the image
            figures' resamples); None: no operating figures.

    Returns:
        ``{"image.accuracy": [lo, hi], ..., "pixel.iou_defect": [lo, hi] or None, ...}``.
    """
    image_seed, pixel_seed = (int(v) for v in np.random.SeedSequence(seed).generate_state(2))
    out = {f"image.{k}": v for k, v in image_intervals(y_true, y_pred, defect_score, classes, good_class,
                                                         n_resamples, level, image_seed).items()}
    if verdicts is not None:
        out |= {f"operating_point.{k}": v for k, v in operating_intervals(y_true, verdicts, classes, good_class,
                                                                         n_resamples, level, image_seed).items()}
    sections = {"pixel": pixel_confusions} if isinstance(pixel_confusions, np.ndarray) else (pixel_confusions or {})
    for section, confusions in sections.items():  # one stream: sections of the same images draw the same resamples
        out |= {f"{section}.{k}": v for k, v in pixel_intervals(confusions, n_resamples, level, pixel_seed).items()}
    return out
