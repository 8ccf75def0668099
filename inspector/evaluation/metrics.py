"""Classification and segmentation metrics, numpy only.

Binary curves (ROC, precision-recall) take ``y`` (1 / True = positive, i.e. defect) and a score that
is larger for more likely positives. Ties are handled by emitting one curve point per distinct score,
so tied samples move the curve diagonally instead of in an order-dependent staircase.
"""

from __future__ import annotations

from typing import Any

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


def _ratio(num: float, den: float, empty: float = 0.0) -> float:
    """``num / den`` as a Python float, or ``empty`` when ``den`` is zero."""
    return float(num) / float(den) if den else empty


def _per_class(confusion: np.ndarray, classes: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix (rows = truth)."""
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(classes):
        hit, predicted, support = confusion[k, k], confusion[:, k].sum(), confusion[k, :].sum()
        precision, recall = _ratio(hit, predicted), _ratio(hit, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        out[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support)}
    return out


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
        ``{"accuracy", "macro_f1", "auroc_defect", "ap_defect", "per_class", "confusion"}``.
        ``per_class[name]`` holds ``precision``, ``recall``, ``f1`` (0.0 where a denominator is
        zero) and the int ``support``; ``macro_f1`` averages F1 over every class in ``classes``.
        ``auroc_defect`` / ``ap_defect`` rate defect (truth != good) against good by
        ``defect_score``; they are nan when undefined (one of the two groups absent).
        ``confusion`` is a list of int lists, rows = truth. Accuracy of no samples is 0.0.

    Raises:
        ValueError: If ``good_class`` is not in ``classes`` or the inputs disagree in size.
    """
    if good_class not in classes:
        raise ValueError(f"good class {good_class!r} not in {classes}")
    confusion = confusion_matrix(y_true, y_pred, len(classes))
    per_class = _per_class(confusion, classes)
    is_defect = np.asarray(y_true).ravel() != classes.index(good_class)
    return {
        "accuracy": _ratio(np.trace(confusion), confusion.sum()),
        "macro_f1": float(np.mean([v["f1"] for v in per_class.values()])) if classes else 0.0,
        "auroc_defect": auroc(is_defect, defect_score),
        "ap_defect": average_precision(is_defect, defect_score),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


class PixelConfusion:
    """Accumulates one pixel confusion matrix over a data set.

    The matrix is ``(n_labels x n_labels)``, rows = truth, columns = prediction; label 0 is
    background and label k the k-th defect class.

    Attributes:
        n_labels: Number of labels, background included.
        matrix: The accumulated int64 counts.
    """

    def __init__(self, n_labels: int) -> None:
        """Creates an empty accumulator.

        Args:
            n_labels: Number of labels including background (2 for a binary mask).

        Raises:
            ValueError: If ``n_labels < 2``.
        """
        if n_labels < 2:
            raise ValueError(f"need at least 2 labels (background + defect), got {n_labels}")
        self.n_labels = n_labels
        self.matrix = np.zeros((n_labels, n_labels), dtype=np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        """Adds one image (or a batch) of label maps.

        Args:
            truth: Integer (or bool) true label map.
            pred: Integer (or bool) predicted label map, same shape as ``truth``.

        Raises:
            ValueError: On a shape mismatch or a label out of range.
        """
        t, p = np.asarray(truth), np.asarray(pred)
        if t.shape != p.shape:
            raise ValueError(f"truth and pred differ in shape: {t.shape} vs {p.shape}")
        self.matrix += confusion_matrix(t, p, self.n_labels)

    def report(self) -> dict[str, float]:
        """Segmentation quality over everything accumulated so far.

        Returns:
            ``{"iou_defect", "dice_defect", "miou"}``. The first two treat every label > 0 as defect
            against background, over all pixels; both are 1.0 when neither truth nor prediction holds
            a defect pixel (nothing to find, nothing found). ``miou`` averages the IoU of each label
            (background included) that occurs in truth or prediction; 1.0 before any pixel is seen.
        """
        m = self.matrix
        tp, fp, fn = m[1:, 1:].sum(), m[0, 1:].sum(), m[1:, 0].sum()
        inter = np.diag(m).astype(np.float64)
        union = m.sum(axis=0) + m.sum(axis=1) - inter
        seen = union > 0
        return {
            "iou_defect": _ratio(tp, tp + fp + fn, empty=1.0),
            "dice_defect": _ratio(2 * tp, 2 * tp + fp + fn, empty=1.0),
            "miou": float(np.mean(inter[seen] / union[seen])) if seen.any() else 1.0,
        }
