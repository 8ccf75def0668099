"""``inspector evaluate``: a bundle run through the serving predictor on a data set -> report.json + PNG plots.

Pixel figures come twice from one forward pass: ``pixel`` scores the masks as the service serves them (an accepted
part's mask is zeroed, so the verdict gates the segmentation) and ``pixel_ungated`` the segmentation head's own masks
(:func:`~inspector.evaluation.runner.run_served_and_raw`). ``operating_point`` counts what the served verdicts cost:
escapes, false rejects and reviews (:mod:`inspector.evaluation.operating_point`). ``ci95`` holds percentile bootstrap
intervals of the headline figures (:mod:`inspector.evaluation.bootstrap`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from inspector.config import ANOMALY_CLASS, GOOD_CLASS
from inspector.data.dataset import read_mask
from inspector.data.layouts import Sample
from inspector.evaluation.bootstrap import confidence_intervals
from inspector.evaluation.conformal import clopper_pearson_upper
from inspector.evaluation.metrics import PixelConfusion, auroc, classification_report
from inspector.evaluation.operating_point import operating_point
from inspector.evaluation.plots import plot_confusion, plot_overlay_grid, plot_roc_pr, plot_training_curves
from inspector.evaluation.runner import check_classes, choose_samples, class_index, run_served_and_raw
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Prediction, Predictor

MAX_OVERLAYS = 16


@dataclass
class Outcome:
    """One evaluated image, kept small (no masks) except for the overlay candidates."""

    sample: Sample
    truth: int
    pred: int
    verdict: str  # ACCEPT | REVIEW | REJECT, as served
    score: float
    error: float  # how wrong: ranks the overlay grid
    by_anomaly: bool = False  # sent to review or rejected by the anomaly head


def _pixel_update(done: Collected, sample: Sample, served: Prediction, raw: Prediction, index: Callable[[str], int],
                  mask_t: float) -> float:
    """Adds one image's pixels, as served and ungated; returns its served defect IoU (1.0 when there is nothing to
    find and nothing was found, for ranking only; nan when the image has no pixel label)."""
    truth_mask, labelled = read_mask(sample, served.mask.shape)
    if not labelled:
        return math.nan
    if served.anomaly_map is not None:
        done.anomaly_pixels.add(truth_mask > 0, served.anomaly_map)
    truth = (truth_mask > 0) * index(sample.label)
    predicted = (served.mask >= mask_t) * index(served.defect_class)
    done.pixels.update(truth, predicted)
    done.pixels_ungated.update(truth, (raw.mask >= mask_t) * index(raw.defect_class))
    inter, union = np.logical_and(truth > 0, predicted > 0).sum(), np.logical_or(truth > 0, predicted > 0).sum()
    return float(inter / union) if union else 1.0


def _clean(value: Any) -> Any:
    """NaN -> None, so report.json is strict JSON (the metrics already give None; this keeps any stray nan out)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


@dataclass
class AnomalyPixels:
    """Anomaly map values and pixel truth of the labelled images, every ``STRIDE``-th pixel in each direction."""

    STRIDE = 4
    truth: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)

    def add(self, truth: np.ndarray, anomaly_map: np.ndarray) -> None:
        self.truth.append(truth[:: self.STRIDE, :: self.STRIDE].ravel())
        self.scores.append(anomaly_map[:: self.STRIDE, :: self.STRIDE].ravel())

    def auroc(self) -> float:
        return auroc(np.concatenate(self.truth), np.concatenate(self.scores)) if self.truth else math.nan


@dataclass
class Collected:
    """A model's answers over a set of samples, ready to summarise."""

    classes: tuple[str, ...]
    outcomes: list[Outcome]
    pixels: PixelConfusion  # the masks as served (zeroed for an accepted part)
    pixels_ungated: PixelConfusion  # the segmentation head's masks, whatever the verdict
    worst: list[tuple]  # (error, sample, image, prediction), the MAX_OVERLAYS worst, worst first
    anomaly_scores: list[float] = field(default_factory=list)  # per outcome, when the model has an anomaly head
    anomaly_pixels: AnomalyPixels = field(default_factory=AnomalyPixels)

    def report(self, seed: int = 0) -> dict[str, Any]:
        """The report.json figures (None where undefined) with their bootstrap intervals (resampling seeded by
        ``seed``); an ``anomaly`` section when the model has an anomaly head."""
        y_true, y_pred, scores = (np.array([getattr(o, k) for o in self.outcomes]) for k in ("truth", "pred", "score"))
        image = classification_report(y_true, y_pred, scores, list(self.classes), GOOD_CLASS)
        verdicts = [o.verdict for o in self.outcomes]
        out = {"n_images": len(self.outcomes), "classes": list(self.classes), "image": image,
               "pixel": self.pixels.report(), "pixel_ungated": self.pixels_ungated.report(),
               "operating_point": operating_point([o.sample.label for o in self.outcomes], verdicts,
                                                  [c for c in self.classes if c != ANOMALY_CLASS], GOOD_CLASS)}
        if self.anomaly_scores:
            is_defect = y_true != self.classes.index(GOOD_CLASS)
            flagged_good = sum(o.by_anomaly for o, defect in zip(self.outcomes, is_defect) if not defect)
            n_good = int((~is_defect).sum())
            out["anomaly"] = {"image_auroc": auroc(is_defect, np.array(self.anomaly_scores)),
                              "pixel_auroc": self.anomaly_pixels.auroc(),
                              "flagged_by_anomaly": sum(o.by_anomaly for o in self.outcomes),
                              # good parts the head sent to review (or rejected), the cost of its operating point
                              "good_review_rate": flagged_good / n_good if n_good else None,
                              "good_review_rate_upper": clopper_pearson_upper(flagged_good, n_good) if n_good else None}
        pixels = {"pixel": self.pixels.per_image, "pixel_ungated": self.pixels_ungated.per_image}
        out["ci95"] = confidence_intervals(y_true, y_pred, scores, self.classes, pixels, GOOD_CLASS, seed=seed,
                                           verdicts=verdicts)
        return _clean(out)


def collect(predictor: Predictor, samples: list[Sample], desc: str = "evaluate", batch_size: int = 16,
            show: bool = True) -> Collected:
    """Runs the predictor over the samples and accumulates image outcomes and pixel confusions (served and ungated).

    Pixel label k is class k of the model, 0 background (where ``good``, the class no defect pixel takes, stands).
    """
    classes = predictor.classes
    index = class_index(classes)
    done = Collected(classes, [], *(PixelConfusion(len(classes), classes[1:]) for _ in range(2)), [])
    for sample, image, pred, raw in run_served_and_raw(predictor, samples, desc, batch_size, show):
        iou = _pixel_update(done, sample, pred, raw, index, predictor.thresholds.mask)
        # a part the anomaly head rejects is labelled "anomaly"; a model with classes counts it as its likeliest defect
        truth, guess = index(sample.label), index(pred.label if pred.label in classes else pred.defect_class)
        error = (1.0 + abs(float(truth != index(GOOD_CLASS)) - pred.defect_score)) if truth != guess else (
            0.0 if math.isnan(iou) else 1.0 - iou)
        done.outcomes.append(Outcome(sample, truth, guess, pred.verdict, pred.defect_score, error, pred.by_anomaly))
        if pred.anomaly_score is not None:
            done.anomaly_scores.append(pred.anomaly_score)
        done.worst = sorted([*done.worst, (error, sample, image, pred)], key=lambda t: -t[0])[:MAX_OVERLAYS]
    return done


def run_evaluation(
    model: str | Path, data: str | Path, report_dir: str | Path, device: str = "auto", split: str = "auto",
    batch_size: int = 16, show_progress: bool = True, tta: bool = False, backend: str = "eager",
) -> dict[str, Any]:
    """Evaluates a bundle on a data set; writes ``report.json`` and plots to ``report_dir`` and returns the report.

    ``backend``: the runtime the figures are of (``eager``, or one of the bundle's checked exports, as served).
    """
    predictor = Predictor.from_bundle(model, device, backend=backend, options=InferenceOptions(tta=tta))
    samples, used_split, data_classes = choose_samples(predictor.bundle.meta, Path(data), split)
    check_classes(data_classes, predictor.classes)
    report = _write(Path(report_dir), collect(predictor, samples, "evaluate", batch_size, show_progress), predictor)
    meta = {"model": str(predictor.bundle.path), "model_version": predictor.version, "data": str(data),
            "split": used_split, "thresholds": dataclasses.asdict(predictor.thresholds), "tta": tta,
            "backend": backend}
    (Path(report_dir) / "report_meta.json").write_text(json.dumps(meta, indent=2))
    return report


def _write(out: Path, done: Collected, predictor: Predictor) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report = done.report()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_confusion(np.array(report["image"]["confusion"]), list(done.classes), out / "confusion_matrix.png")
    is_defect = np.array([o.truth != done.classes.index(GOOD_CLASS) for o in done.outcomes])
    thresholds = predictor.thresholds
    plot_roc_pr(is_defect, np.array([o.score for o in done.outcomes]), out / "roc_pr.png",
                {"reject": thresholds.reject, "review": thresholds.review})
    tiles = [{"image": img, "mask": p.mask >= thresholds.mask,
              "truth": read_mask(s, p.mask.shape)[0] if s.label != GOOD_CLASS else None,
              "title": f"{s.label} -> {p.label} {p.defect_score:.2f}", "verdict": p.verdict, "label": p.label,
              "score": p.defect_score, "regions": p.regions} for _, s, img, p in done.worst]
    plot_overlay_grid(tiles, out / "overlays.png")
    history = predictor.bundle.path / "history.json"
    if history.is_file():
        plot_training_curves(json.loads(history.read_text()), out / "training_curves.png")
    return report
