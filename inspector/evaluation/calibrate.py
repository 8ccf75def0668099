"""``inspector calibrate``: decision thresholds chosen on validation data, written into a new bundle version.

The defect score first takes the blend of classifier and mask peak that best separates defective from good parts
(``Thresholds.mask_weight``). The reject threshold meets a target escape rate (defective parts accepted), a target
false-reject rate (good parts rejected), or, by default, maximises F1 of defect vs good; with an escape-rate target,
a defect class whose own images need a lower threshold to meet it gets one. The review band below it is as wide as
it must be to send a further share of the escapes to a person: its lower edge meets a quarter of the escape rate
left at the reject threshold, but never sends more than 5 % of good parts to review. The minimum region area drops components smaller than half of the smallest true
defects (the largest component of each defect image's mask: soft mask edges leave specks that are not defects).
A target rate finer than the images can show (fewer than about 3 / target of them: the rule of three) is warned
about once, with the count it needs and the count there is.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.artifacts.bundle import derive_bundle
from inspector.config import GOOD_CLASS, Thresholds, TrainConfig
from inspector.data.dataset import read_mask
from inspector.data.layouts import Sample
from inspector.errors import DataError
from inspector.evaluation.conformal import conformal_threshold, target_shortfall
from inspector.evaluation.metrics import auroc
from inspector.evaluation.runner import check_classes, choose_samples, keep_every_mask, run_over
from inspector.inference.drift import frame_statistics, frame_values_of, reference_of
from inspector.inference.postprocess import anomaly_probability, defect_scores
from inspector.inference.predictor import Predictor

log = logging.getLogger(__name__)

REVIEW_SHARE = 0.25  # escape rate at the review threshold, as a share of the escape rate at the reject threshold
REVIEW_GOOD_MAX = 0.05  # the review band never sends more than this share of good parts to a person (or rejects them)


def escape_threshold(defect_scores: np.ndarray, rate: float) -> float:
    """Highest threshold at which at most ``rate`` of the defective parts score below it (are accepted)."""
    s = np.sort(defect_scores)
    k = math.floor(rate * len(s) + 1e-9)  # number of defects we may accept
    return float(s[k]) if k < len(s) else 1.0


def false_reject_threshold(good_scores: np.ndarray, rate: float) -> float:
    """Lowest threshold at which at most ``rate`` of the good parts score at or above it (are rejected)."""
    s = np.sort(good_scores)[::-1]
    k = math.floor(rate * len(s) + 1e-9)  # number of good parts we may reject
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else 0.0


def f1_threshold(scores: np.ndarray, is_defect: np.ndarray) -> float:
    """The score threshold with the highest F1 of defect (>= threshold) vs good, in the middle of the gap below the
    lowest score it rejects: the same decisions on these scores, with a margin for the next ones."""
    values = np.unique(scores)
    best, best_f1 = 0, -1.0
    for i, t in enumerate(values):
        pred = scores >= t
        tp = np.sum(pred & is_defect)
        f1 = 2 * tp / max(1, np.sum(pred) + np.sum(is_defect))
        if f1 > best_f1:
            best, best_f1 = i, f1
    return float(values[best] if best == 0 else (values[best] + values[best - 1]) / 2)


def rates(scores: np.ndarray, is_defect: np.ndarray, reject: float, review: float) -> dict[str, float]:
    return {
        "escape_rate": float(np.mean(scores[is_defect] < reject)) if is_defect.any() else 0.0,
        "escape_rate_after_review": float(np.mean(scores[is_defect] < review)) if is_defect.any() else 0.0,
        "false_reject_rate": float(np.mean(scores[~is_defect] >= reject)) if (~is_defect).any() else 0.0,
        "review_rate": float(np.mean((scores >= review) & (scores < reject))),
    }


def choose_thresholds(
    scores: np.ndarray, is_defect: np.ndarray, escape_rate: float | None = None, false_reject_rate: float | None = None
) -> tuple[float, float, dict[str, Any]]:
    """Reject and review thresholds and the figures they give on these scores; warns (once) when the target rate is
    finer than the images can show (:func:`~inspector.evaluation.conformal.target_shortfall`)."""
    if not is_defect.any() or is_defect.all():
        raise DataError("calibration needs both good and defective images")
    shortfall = None
    if escape_rate is not None:
        method, reject = f"escape_rate<={escape_rate}", escape_threshold(scores[is_defect], escape_rate)
        shortfall = target_shortfall(int(is_defect.sum()), escape_rate, "defect images", "escape rate",
                                     "--target-escape-rate")
    elif false_reject_rate is not None:
        method, reject = f"false_reject_rate<={false_reject_rate}", false_reject_threshold(scores[~is_defect], false_reject_rate)
        shortfall = target_shortfall(int((~is_defect).sum()), false_reject_rate, "good images", "false-reject rate",
                                     "--target-false-reject-rate")
    else:
        method, reject = "f1_optimal", f1_threshold(scores, is_defect)
    if shortfall:
        log.warning(shortfall)
    left = float(np.mean(scores[is_defect] < reject))
    review = max(escape_threshold(scores[is_defect], left * REVIEW_SHARE),
                 false_reject_threshold(scores[~is_defect], REVIEW_GOOD_MAX))
    review = min(reject, review)
    return reject, review, {"method": method, **rates(scores, is_defect, reject, review)}


MIN_CLASS_IMAGES = 5  # a class needs this many validation images for a threshold of its own


def per_class_thresholds(scores: np.ndarray, labels: list[str], reject: float, escape_rate: float | None
                         ) -> dict[str, float]:
    """With an escape-rate target, each defect class with enough images gets the threshold that meets the target on
    its own images when that is lower than the global one (a rare class must not hide in the average)."""
    if escape_rate is None:
        return {}
    out = {}
    for cls in sorted(set(labels) - {GOOD_CLASS}):
        own = scores[[label == cls for label in labels]]
        if len(own) >= MIN_CLASS_IMAGES:
            t = escape_threshold(own, escape_rate)
            if t < reject:
                out[cls] = t
    return out


def min_region_area(true_areas: list[int], current: int) -> int:
    """Half of the 1st percentile of true defect component areas (frame px); the current value without masks."""
    if not true_areas:
        return current
    return max(1, int(0.5 * np.percentile(true_areas, 1)))


def _component_areas(mask: np.ndarray) -> list[int]:
    """Areas of the mask's connected components, largest first."""
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    return sorted((int(a) for a in stats[1:n, cv2.CC_STAT_AREA]), reverse=True)


MASK_WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # blends of the mask's peak into the defect score that calibration compares


def choose_mask_weight(probs: np.ndarray, good: int, peaks: np.ndarray, is_defect: np.ndarray,
                       weights: tuple[float, ...] = MASK_WEIGHTS) -> tuple[float, dict[str, float]]:
    """The blend whose defect score (:func:`inspector.inference.postprocess.defect_scores` of the class probabilities
    ``(n, n_classes)`` and mask peaks ``(n,)``) separates defective from good parts best (AUROC; ties: the smaller
    weight)."""
    aurocs = {w: auroc(is_defect, defect_scores(probs, good, peaks, w)) for w in weights}
    best = max(weights, key=lambda w: (round(aurocs[w], 6), -w))
    return best, {f"{w:g}": a for w, a in aurocs.items()}


def anomaly_operating_point(predictor: Predictor, good_scores: np.ndarray, rate: float
                            ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Threshold changes that send about ``rate`` of good parts to the anomaly verdict, placed on ``good_scores``
    (anomaly scores of good parts) by the conformal order statistic; and the figures behind them.

    A model with classes moves ``Thresholds.anomaly``; a good-only model, whose defect score is the anomaly
    probability, moves its reject threshold (and review with it: no band).
    """
    if len(good_scores) == 0:
        raise DataError("placing the anomaly threshold needs good images")
    point = conformal_threshold(good_scores, rate)
    if point.shortfall():
        log.warning(point.shortfall())
    if predictor.anomaly_only:
        at = float(anomaly_probability(point.threshold))
        changes = {"reject": at, "review": at}
    else:
        changes = {"anomaly": point.threshold}
    return changes, {"anomaly_review_rate": rate, "anomaly_threshold": point.threshold, "anomaly_n_good": point.n_good,
                     "anomaly_flagged": point.flagged, "anomaly_review_rate_upper": point.rate_upper}


@dataclass
class Scored:
    """What one pass of the predictor over the calibration samples gives: enough to choose every threshold and to
    bin the drift reference under them, without a second pass."""

    classes: tuple[str, ...]
    probs: np.ndarray  # (n, n_classes) class scores (a tiled frame: its worst tile's)
    peaks: np.ndarray  # (n,) the segmentation mask's highest pixel (ungated)
    labels: list[str]  # true class of each sample
    areas: list[int]  # largest true defect component of each defect image with a mask, frame px
    anomaly: np.ndarray | None  # (n,) anomaly scores; None without an anomaly head
    statistics: list[dict[str, float]]  # each frame's image statistics (inspector.inference.drift)

    @property
    def is_defect(self) -> np.ndarray:
        return np.array([label != GOOD_CLASS for label in self.labels], dtype=bool)

    def defect_scores(self, mask_weight: float) -> np.ndarray:
        """The defect score the service computes under ``mask_weight`` (the formula of :func:`decide`)."""
        return defect_scores(self.probs, self.classes.index(GOOD_CLASS), self.peaks, mask_weight)

    def reference(self, thresholds: Thresholds) -> dict[str, Any]:
        """The drift reference of these frames as the service will measure them under ``thresholds``."""
        return reference_of(frame_values_of(float(score), stats)
                            for score, stats in zip(self.defect_scores(thresholds.mask_weight), self.statistics))


def score(predictor: Predictor, samples: list[Sample], show_progress: bool = True) -> Scored:
    """One pass over ``samples`` with every mask kept (the thresholds' choices need the ungated masks)."""
    current = predictor.thresholds
    predictor.thresholds = keep_every_mask(current)
    probs, peaks, labels, areas, anomaly, statistics = [], [], [], [], [], []
    try:
        for sample, image, pred in run_over(predictor, samples, "calibrate", show=show_progress):
            probs.append([pred.class_scores[c] for c in predictor.classes])
            peaks.append(float(pred.mask.max()))
            labels.append(sample.label)
            anomaly.append(pred.anomaly_score)
            statistics.append(frame_statistics(image))
            if sample.label != GOOD_CLASS and sample.mask is not None:
                areas += _component_areas(read_mask(sample, pred.mask.shape)[0])[:1]  # the defect's main body
    finally:
        predictor.thresholds = current
    has_head = bool(anomaly) and anomaly[0] is not None
    return Scored(tuple(predictor.classes), np.array(probs, np.float64).reshape(len(labels), -1), np.array(peaks),
                  labels, areas, np.array(anomaly, np.float64) if has_head else None, statistics)


def calibrate(predictor: Predictor, samples: list[Sample], escape_rate: float | None = None,
              false_reject_rate: float | None = None, show_progress: bool = True,
              anomaly_review_rate: float | None = None) -> tuple[Thresholds, dict[str, Any]]:
    """Scores ``samples`` with ``predictor`` and chooses its thresholds; returns them and the figures behind them
    (:func:`choose`)."""
    return choose(predictor, score(predictor, samples, show_progress), escape_rate, false_reject_rate,
                  anomaly_review_rate)


def choose(predictor: Predictor, scored: Scored, escape_rate: float | None = None,
           false_reject_rate: float | None = None, anomaly_review_rate: float | None = None
           ) -> tuple[Thresholds, dict[str, Any]]:
    """The thresholds for these scores and the figures behind them.

    With ``anomaly_review_rate`` the anomaly threshold is placed on the good samples too
    (:func:`anomaly_operating_point`). Samples that are all good (parts confirmed good in review) re-place only it,
    at ``anomaly_review_rate`` or the rate the bundle was trained for.

    Raises:
        DataError: the samples lack good or defective images (good images alone suit a model with an anomaly head).
    """
    current, defect_a, good = predictor.thresholds, scored.is_defect, predictor.classes.index(GOOD_CLASS)
    if not defect_a.any() and scored.anomaly is not None:  # confirmed good parts: the anomaly operating point alone
        record = predictor.bundle.meta.anomaly
        trained = record.review_rate if record is not None and record.review_rate else None
        rate = anomaly_review_rate or trained or TrainConfig.anomaly_review_rate
        changes, figures = anomaly_operating_point(predictor, scored.anomaly, rate)
        return dataclasses.replace(current, **changes), {"method": "anomaly_only", **figures,
                                                         "n_good": len(scored.labels), "n_defect": 0}
    weight, by_weight = choose_mask_weight(scored.probs, good, scored.peaks, defect_a)
    scores_a = scored.defect_scores(weight)
    reject, review, figures = choose_thresholds(scores_a, defect_a, escape_rate, false_reject_rate)
    thresholds = dataclasses.replace(current, reject=reject, review=review, mask_weight=weight,
                                     min_region_area=min_region_area(scored.areas, current.min_region_area),
                                     per_class=per_class_thresholds(scores_a, scored.labels, reject, escape_rate))
    if anomaly_review_rate is not None and scored.anomaly is not None:
        changes, anomaly_figures = anomaly_operating_point(predictor, scored.anomaly[~defect_a], anomaly_review_rate)
        thresholds = dataclasses.replace(thresholds, **changes)
        figures |= anomaly_figures
    return thresholds, {**figures, "auroc_by_mask_weight": by_weight, "n_good": int((~defect_a).sum()),
                        "n_defect": int(defect_a.sum())}


def calibrated_changes(predictor: Predictor, samples: list[Sample], escape_rate: float | None = None,
                       false_reject_rate: float | None = None, show_progress: bool = True,
                       anomaly_review_rate: float | None = None) -> dict[str, Any]:
    """A calibration on ``samples`` as changes to the bundle's meta (:class:`~inspector.artifacts.meta.BundleMeta`
    fields): the thresholds, the figures behind them, and the drift reference of the same samples under the new
    thresholds (which ``predictor`` keeps), from the same pass: the defect score the service computes depends on
    the mask weight chosen, and is recomputed here with the service's formula.

    Raises:
        DataError: the samples lack good or defective images.
    """
    scored = score(predictor, samples, show_progress)
    thresholds, figures = choose(predictor, scored, escape_rate, false_reject_rate, anomaly_review_rate)
    predictor.thresholds = thresholds
    return {"thresholds": thresholds, "calibration": figures, "reference": scored.reference(thresholds)}


def run_calibration(model: str | Path, data: str | Path, escape_rate: float | None = None,
                    false_reject_rate: float | None = None, device: str = "auto", split: str = "auto",
                    show_progress: bool = True, anomaly_review_rate: float | None = None
                    ) -> tuple[Path, dict[str, Any]]:
    """Scores the data with the bundle, chooses thresholds, writes a new bundle version (with a drift reference of
    the scored samples under them); returns it and the figures."""
    predictor = Predictor.from_bundle(model, device)
    samples, used_split, data_classes = choose_samples(predictor.bundle.meta, Path(data), split)
    check_classes(data_classes, predictor.classes)
    changes = calibrated_changes(predictor, samples, escape_rate, false_reject_rate, show_progress,
                                 anomaly_review_rate)
    changes["calibration"] = {**changes["calibration"], "split": used_split, "data": str(Path(data).resolve())}
    path = derive_bundle(predictor.bundle, changes)
    return path, {"thresholds": dataclasses.asdict(changes["thresholds"]), **changes["calibration"]}
