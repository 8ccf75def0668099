"""Classification and segmentation metrics, numpy only.

Binary curves (ROC, precision-recall) take ``y`` (1 / True = positive, i.e. defect) and a score that
is larger for more likely positives. Ties are handled by emitting one curve point per distinct score,
so tied samples move the curve diagonally instead of in an order-dependent staircase.

A figure that the data cannot define (F1 of a class neither present nor predicted, IoU with nothing to find and
nothing found, AUROC without one of the two groups) is nan in the array functions and None in the reports, never a
made-up 0 or 1. The array functions take stacks of confusion matrices ``(..., k, k)``, so the bootstrap
(:mod:`inspector.evaluation.bootstrap`) computes a thousand resamples with the same formulas in one call.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _check_binary(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validates and flattens binary labels and scores.

    Args:
        y: Labels, 0/1 or bool, any shape.
        score: Scores, same number of elements as ``y``; must be finite.

    Returns:
        ``(y, score)`` as a 1-D bool array and a 1-D float64 array.

    Raises:
        ValueError: On a size mismatch, labels other than 0/1, or non-finite scores.
    """
    y_arr = np.asarray(y).ravel()
    s_arr = np.asarray(score, dtype=np.float64).ravel()
    if y_arr.shape != s_arr.shape:
        raise ValueError(f"y and score differ in size: {y_arr.size} vs {s_arr.size}")
    if y_arr.size and not np.isin(y_arr, (0, 1)).all():
        raise ValueError("y must hold only 0/1 (or bool) labels")
    if not np.isfinite(s_arr).all():
        raise ValueError("score must be finite")
    return y_arr.astype(bool), s_arr


def _cumulative_counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts true and false positives at every distinct score, thresholds descending.

    Args:
        y: 1-D bool labels.
        score: 1-D float scores.

    Returns:
        ``(tps, fps, thresholds)``: positives and negatives with ``score >= threshold``.
    """
    if y.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-score, kind="mergesort")
    y_sorted, s_sorted = y[order], score[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), y_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps.astype(np.float64), fps.astype(np.float64), s_sorted[last_of_run]


def _safe_div(num: np.ndarray, den: float) -> np.ndarray:
    """Divides by a scalar, giving nan everywhere when it is zero."""
    return num / den if den > 0 else np.full_like(num, np.nan)


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic.

    Args:
        y: Binary labels (1 = positive).
        score: Scores, higher = more likely positive.

    Returns:
        ``(fpr, tpr, thresholds)``, one point per distinct score in decreasing threshold order, led by
        the point (0, 0) at threshold ``+inf``. A point means "predict positive when
        ``score >= threshold``". ``fpr`` (``tpr``) is all nan when there are no negatives (positives).
    """
    y_b, s = _check_binary(y, score)
    tps, fps, thr = _cumulative_counts(y_b, s)
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return _safe_div(fps, float((~y_b).sum())), _safe_div(tps, float(y_b.sum())), np.r_[np.inf, thr]


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the trapezoid rule (ties count one half).

    Args:
        y: Binary labels (1 = positive).
        score: Scores, higher = more likely positive.

    Returns:
        The area in [0, 1], or nan when either class is absent.
    """
    fpr, tpr, _ = roc_curve(y, score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve.

    Args:
        y: Binary labels (1 = positive).
        score: Scores, higher = more likely positive.

    Returns:
        ``(precision, recall, thresholds)``, one point per distinct score in decreasing threshold order
        (recall non-decreasing), led by the point precision 1, recall 0 at threshold ``+inf``.
        ``recall`` is all nan when there are no positives.
    """
    y_b, s = _check_binary(y, score)
    tps, fps, thr = _cumulative_counts(y_b, s)
    precision = np.r_[1.0, tps / np.maximum(tps + fps, 1.0)]
    recall = _safe_div(np.r_[0.0, tps], float(y_b.sum()))
    return precision, recall, np.r_[np.inf, thr]


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Step-wise average precision, ``sum_n (R_n - R_{n-1}) P_n`` (no interpolation).

    Args:
        y: Binary labels (1 = positive).
        score: Scores, higher = more likely positive.

    Returns:
        AP in [0, 1], or nan when there are no positives.
    """
    precision, recall, _ = pr_curve(y, score)
    if np.isnan(recall).any():
        return float("nan")
    return float(np.sum(np.diff(recall) * precision[1:]))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (truth, prediction) pairs of integer class indices.

    Args:
        y_true: True class indices in ``[0, n_classes)``.
        y_pred: Predicted class indices, same size as ``y_true``.
        n_classes: Number of classes.

    Returns:
        int64 array ``(n_classes, n_classes)``; rows = truth, columns = prediction.

    Raises:
        ValueError: On a size mismatch or an index out of range.
    """
    t = np.asarray(y_true).ravel().astype(np.int64)
    p = np.asarray(y_pred).ravel().astype(np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} vs {p.size}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n_classes):
        raise ValueError(f"class indices must lie in [0, {n_classes})")
    counts = np.bincount(n_classes * t + p, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise ``num / den`` as float64, nan where ``den`` is zero (an undefined figure, never a made-up one)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over ``axis`` of the defined (non-nan) values; nan where none is."""
    defined = ~np.isnan(values)
    return _ratios(np.where(defined, values, 0.0).sum(axis=axis), defined.sum(axis=axis))


def _optional(value: float | np.floating) -> float | None:
    """A figure as report.json holds it: a Python float, or None when undefined (nan)."""
    return None if np.isnan(value) else float(value)


def f1_per_class(confusion: np.ndarray) -> np.ndarray:
    """F1 of each class, ``2 TP / (2 TP + FP + FN)``, from confusion matrices ``(..., k, k)`` (rows = truth).

    Returns:
        ``(..., k)``; nan for a class absent from both truth and prediction (nothing to find, nothing found). A class
        that is only in the truth, or only predicted, has F1 0.
    """
    c = np.asarray(confusion, np.float64)
    hit = np.diagonal(c, axis1=-2, axis2=-1)
    return _ratios(2.0 * hit, c.sum(axis=-2) + c.sum(axis=-1))


def macro_f1(confusion: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes present in truth or prediction, from ``(..., k, k)``; nan without any sample.

    A class absent from both says nothing about the classifier, so it neither raises nor lowers the mean
    (scikit-learn's ``f1_score(average="macro")`` over the labels present).
    """
    return _nanmean(f1_per_class(confusion))


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    defect_score: np.ndarray,
    classes: list[str],
    good_class: str = "good",
) -> dict[str, Any]:
    """Summarises a classifier over a data set.

    Args:
        y_true: True class indices into ``classes``.
        y_pred: Predicted class indices into ``classes``.
        defect_score: Per-sample defect score (higher = more likely defective), e.g. ``1 - P(good)``.
        classes: Class names, index order.
        good_class: Name of the defect-free class.

    Returns:
        ``{"accuracy", "macro_f1", "auroc_defect", "ap_defect", "per_class", "confusion"}``. Every figure is a float,
        or None where it is undefined. ``per_class[name]`` holds ``precision`` (None: never predicted), ``recall``
        (None: no support), ``f1`` (None: neither in the truth nor predicted; 0.0 when only one of the two) and the
        int ``support``; ``macro_f1`` averages the F1 of the classes present in truth or prediction.
        ``auroc_defect`` / ``ap_defect`` rate defect (truth != good) against good by ``defect_score``; None when
        one of the two groups is absent (AP needs only defects). ``confusion`` is a list of int lists, rows =
        truth. With no samples every figure is None.

    Raises:
        ValueError: If ``good_class`` is not in ``classes`` or the inputs disagree in size.
    """
    if good_class not in classes:
        raise ValueError(f"good class {good_class!r} not in {classes}")
    confusion = confusion_matrix(y_true, y_pred, len(classes))
    is_defect = np.asarray(y_true).ravel() != classes.index(good_class)
    return {
        "accuracy": _optional(_ratios(np.trace(confusion), confusion.sum())),
        "macro_f1": _optional(macro_f1(confusion)),
        "auroc_defect": _optional(auroc(is_defect, defect_score)),
        "ap_defect": _optional(average_precision(is_defect, defect_score)),
        "per_class": _per_class(confusion, classes),
        "confusion": confusion.tolist(),
    }


def _per_class(confusion: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 (None where undefined) and support per class from a confusion matrix (rows = truth)."""
    hit, predicted, support = np.diagonal(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
    precision, recall, f1 = _ratios(hit, predicted), _ratios(hit, support), f1_per_class(confusion)
    return {name: {"precision": _optional(precision[k]), "recall": _optional(recall[k]), "f1": _optional(f1[k]),
                   "support": int(support[k])} for k, name in enumerate(classes)}


def defect_counts(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(tp, fp, fn)`` of defect (any label > 0) against background (label 0), from pixel confusions ``(..., l, l)``."""
    c = np.asarray(confusion, np.float64)
    return c[..., 1:, 1:].sum(axis=(-2, -1)), c[..., 0, 1:].sum(axis=-1), c[..., 1:, 0].sum(axis=-1)


def iou_per_label(confusion: np.ndarray) -> np.ndarray:
    """IoU of each label from pixel confusions ``(..., l, l)``: ``(..., l)``, nan where the label is in neither
    truth nor prediction."""
    c = np.asarray(confusion, np.float64)
    inter = np.diagonal(c, axis1=-2, axis2=-1)
    return _ratios(inter, c.sum(axis=-2) + c.sum(axis=-1) - inter)


def pixel_figures(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """The pooled pixel figures of confusion matrices ``(..., l, l)`` (label 0 = background), each ``(...)``, nan
    where undefined.

    Returns:
        ``iou_defect`` and ``dice_defect`` (defect vs background, nan when neither truth nor prediction holds a
        defect pixel), ``miou`` (mean IoU over background and each defect label occurring in truth or prediction)
        and ``miou_defects`` (the same over the defect labels only; background, most of every image, would lift it).
    """
    tp, fp, fn = defect_counts(confusion)
    iou = iou_per_label(confusion)
    return {"iou_defect": _ratios(tp, tp + fp + fn), "dice_defect": _ratios(2 * tp, 2 * tp + fp + fn),
            "miou": _nanmean(iou), "miou_defects": _nanmean(iou[..., 1:])}


def image_defect_iou(confusions: np.ndarray) -> np.ndarray:
    """Each image's defect-vs-background IoU from its pixel confusion ``(n, l, l)``: ``(n,)``, nan for an image
    with a defect pixel in neither truth nor prediction (a clean image rightly left clean says nothing of overlap)."""
    tp, fp, fn = defect_counts(confusions)
    return _ratios(tp, tp + fp + fn)


class PixelConfusion:
    """Accumulates pixel confusion matrices over a data set: the pooled one and one per image.

    Each matrix is ``(n_labels x n_labels)``, rows = truth, columns = prediction; label 0 is background and label k
    the k-th defect class. Pooled figures (every pixel of the set in one matrix) weigh large defects more; the
    per-image IoU weighs every image with a defect alike, as most segmentation papers report it; both are given.

    Attributes:
        n_labels: Number of labels, background included.
        names: Names of labels 1 .. n_labels - 1 (the defect classes), the keys of ``iou_per_class``.
        matrix: The pooled int64 counts.
    """

    def __init__(self, n_labels: int, names: Sequence[str] | None = None) -> None:
        """Creates an empty accumulator.

        Args:
            n_labels: Number of labels including background (2 for a binary mask).
            names: Names of the defect labels 1 .. n_labels - 1; their numbers as text by default.

        Raises:
            ValueError: If ``n_labels < 2`` or ``names`` has the wrong length.
        """
        if n_labels < 2:
            raise ValueError(f"need at least 2 labels (background + defect), got {n_labels}")
        names = [str(k) for k in range(1, n_labels)] if names is None else list(names)
        if len(names) != n_labels - 1:
            raise ValueError(f"need {n_labels - 1} defect label names, got {names}")
        self.n_labels, self.names = n_labels, names
        self.matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
        self._images: list[np.ndarray] = []

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Adds one image's label maps.

        Args:
            truth: Integer (or bool) true label map.
            pred: Integer (or bool) predicted label map, same shape as ``truth``.

        Raises:
            ValueError: On a shape mismatch or a label out of range.
        """
        t, p = np.asarray(truth), np.asarray(pred)
        if t.shape != p.shape:
            raise ValueError(f"truth and pred differ in shape: {t.shape} vs {p.shape}")
        self.update_batch(t[None], p[None])

    def update_batch(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Adds a batch of images, ``(b, ...)`` label maps each, the first axis the image.

        Raises:
            ValueError: On a shape mismatch or a label out of range.
        """
        t, p = np.asarray(truth).astype(np.int64), np.asarray(pred).astype(np.int64)
        if t.shape != p.shape or t.ndim < 1:
            raise ValueError(f"truth and pred must be (b, ...) of one shape: {t.shape} vs {p.shape}")
        n = self.n_labels
        if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= n):
            raise ValueError(f"labels must lie in [0, {n})")
        image = np.arange(len(t)).reshape(-1, *[1] * (t.ndim - 1))
        counts = np.bincount((image * n * n + n * t + p).ravel(), minlength=len(t) * n * n)
        per_image = counts.reshape(len(t), n, n)  # (b, n, n)
        self._images.extend(per_image)
        self.matrix += per_image.sum(axis=0)

    @property
    def per_image(self) -> np.ndarray:
        """``(n_images, n_labels, n_labels)`` int64: each image's confusion, in the order added."""
        return np.array(self._images, dtype=np.int64).reshape(-1, self.n_labels, self.n_labels)

    def report(self) -> dict[str, Any]:
        """Segmentation quality over everything accumulated so far; None wherever a figure is undefined.

        Returns:
            ``n_images``; ``iou_defect`` and ``dice_defect`` (every label > 0 as defect against background, pooled
            over all pixels; None when neither truth nor prediction holds a defect pixel); ``iou_per_image`` (the
            mean, over the images whose truth or prediction holds a defect pixel, of each one's defect IoU; None
            without such an image); ``miou`` (mean IoU over background and each defect label occurring in truth or
            prediction; None before any pixel); ``miou_defects`` (the same over the defect labels only) and
            ``iou_per_class`` (``{name: IoU}`` of each defect label, None for one in neither truth nor prediction).
        """
        pooled = {k: _optional(v) for k, v in pixel_figures(self.matrix).items()}
        iou = iou_per_label(self.matrix)
        return {
            "n_images": len(self._images),
            "iou_defect": pooled["iou_defect"],
            "dice_defect": pooled["dice_defect"],
            "iou_per_image": _optional(_nanmean(image_defect_iou(self.per_image), axis=0)),
            "miou": pooled["miou"],
            "miou_defects": pooled["miou_defects"],
            "iou_per_class": {name: _optional(iou[k]) for k, name in enumerate(self.names, start=1)},
        }
