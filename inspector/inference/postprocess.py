"""From model outputs to decisions: verdict, defect class, and defect regions (OpenCV connected components)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inspector.config import ANOMALY_CLASS, GOOD_CLASS, Thresholds

ACCEPT, REVIEW, REJECT = "ACCEPT", "REVIEW", "REJECT"
MAX_REGIONS = 32  # largest regions reported per frame


@dataclass(frozen=True)
class Region:
    """A connected defect area in frame pixels (origin top-left, x to the right, y down)."""

    defect_class: str
    x: int
    y: int
    width: int
    height: int
    area_px: int
    area_fraction: float  # of the whole frame
    max_score: float  # highest per-pixel defect probability inside


@dataclass(frozen=True)
class Decision:
    verdict: str  # ACCEPT | REVIEW | REJECT
    label: str  # good, or the most likely defect class when the score reaches the reject threshold
    defect_class: str  # most likely defect class (whatever the verdict)
    defect_score: float  # classifier and segmentation evidence together, in [0, 1] (see defect_score)
    by_anomaly: bool = False  # the verdict comes from the anomaly score (the classifier alone would accept)


def defect_scores(probs: np.ndarray, good: int, mask_peaks: np.ndarray | None, mask_weight: float) -> np.ndarray:
    """How defective parts look: ``1 - p(good)``, blended with the highest pixel of each defect mask.

    The classifier sees the whole part, the segmentation head sees where: a part it classifies good but whose mask
    has a confident defect pixel is suspicious, and the other way round. The one formula of the defect score, for
    a batch (calibration compares blends on every validation part) as for a single part (:func:`defect_score`).

    Args:
        probs: ``(n, n_classes)`` class probabilities.
        good: Index of the ``good`` class.
        mask_peaks: ``(n,)`` highest defect probability of each part's mask; None: the classifier alone.
        mask_weight: Share of the mask peak in the score (``Thresholds.mask_weight``).
    """
    score = 1.0 - np.asarray(probs, np.float64)[:, good]
    if mask_peaks is not None:
        score = (1.0 - mask_weight) * score + mask_weight * np.asarray(mask_peaks, np.float64)
    return np.clip(score, 0.0, 1.0)


def defect_score(probs: np.ndarray, good: int, mask_peak: float | None, mask_weight: float) -> float:
    """:func:`defect_scores` of one part: ``probs`` ``(n_classes,)`` and its mask's peak."""
    peaks = None if mask_peak is None else np.array([mask_peak])
    return float(defect_scores(np.asarray(probs)[None], good, peaks, mask_weight)[0])


def anomaly_probability(anomaly: np.ndarray | float) -> np.ndarray | float:
    """Anomaly score (1.0 = the bank's reference) -> [0, 1), 0.5 at the reference: ``a / (1 + a)``."""
    return anomaly / (1.0 + anomaly)


def mask_pixels(mask: np.ndarray, threshold: float) -> np.ndarray:
    """Defect probabilities -> uint8 mask, 255 where the probability reaches ``threshold``."""
    return np.where(mask >= threshold, 255, 0).astype(np.uint8)


def anomaly_pixels(anomaly_map: np.ndarray) -> np.ndarray:
    """Anomaly map (>= 0, 1.0 = the reference) -> uint8 ``round(255 * a / (1 + a))``: 128 = the reference."""
    return np.rint(255.0 * anomaly_probability(np.maximum(anomaly_map, 0.0))).astype(np.uint8)


def decide(probs: np.ndarray, classes: tuple[str, ...], thresholds: Thresholds,
           mask_peak: float | None = None, anomaly: float | None = None) -> Decision:
    """Verdict from class probabilities ``(n_classes,)`` and the mask's highest pixel: reject at or above the
    (per-class) reject threshold, review in the band ``[review, reject)``, accept below. A part so accepted whose
    ``anomaly`` score reaches ``thresholds.anomaly`` gets ``thresholds.anomaly_verdict`` instead."""
    good = classes.index(GOOD_CLASS)
    defect_idx = [i for i in range(len(classes)) if i != good]
    defect_class = classes[max(defect_idx, key=lambda i: probs[i])]
    score = defect_score(probs, good, mask_peak, thresholds.mask_weight)
    reject_at = thresholds.per_class.get(defect_class, thresholds.reject)
    review_at = min(thresholds.review, reject_at)
    if score >= reject_at:
        return Decision(REJECT, defect_class, defect_class, score)
    if score < review_at and anomaly is not None and anomaly >= thresholds.anomaly:
        verdict = thresholds.anomaly_verdict
        return Decision(verdict, ANOMALY_CLASS if verdict == REJECT else GOOD_CLASS, defect_class, score, True)
    return Decision(REVIEW if score >= review_at else ACCEPT, GOOD_CLASS, defect_class, score)


def find_regions(mask: np.ndarray, defect_class: str, thresholds: Thresholds) -> list[Region]:
    """Connected components of ``mask >= thresholds.mask`` of at least ``min_region_area`` px, the largest
    :data:`MAX_REGIONS` first.

    Args:
        mask: ``(h, w)`` float32 per-pixel defect probability at the frame's size.
        defect_class: Class given to every region (the image's most likely defect class).
        thresholds: Mask threshold and minimum area (frame px).
    """
    if mask.size == 0 or float(mask.max()) < thresholds.mask:
        return []  # clean mask: no connected-components pass
    binary = (mask >= thresholds.mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    regions = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < thresholds.min_region_area:
            continue
        inside = labels[y : y + h, x : x + w] == i
        peak = float(mask[y : y + h, x : x + w][inside].max())
        regions.append(Region(defect_class, x, y, w, h, area, area / mask.size, peak))
    return sorted(regions, key=lambda r: r.area_px, reverse=True)[:MAX_REGIONS]
