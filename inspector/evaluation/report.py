"""``inspector evaluate``: a bundle run through the serving predictor on a data set -> report.json + PNG plots."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from inspector.config import GOOD_CLASS
from inspector.data.dataset import read_mask
from inspector.data.layouts import Sample
from inspector.evaluation.metrics import PixelConfusion, auroc, classification_report
from inspector.evaluation.plots import plot_confusion, plot_overlay_grid, plot_roc_pr, plot_training_curves
from inspector.evaluation.runner import check_classes, choose_samples, class_index, run_over
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Prediction, Predictor

MAX_OVERLAYS = 16


@dataclass
class Outcome:
    """One evaluated image, kept small (no masks) except for the overlay candidates."""

    sample: Sample
    truth: int
    pred: int
    score: float
    error: float  # how wrong: ranks the overlay grid
    by_anomaly: bool = False  # sent to review or rejected by the anomaly head


def _pixel_update(pixels: PixelConfusion, sample: Sample, pred: Prediction, index: Callable[[str], int],
                  mask_t: float, anomaly: AnomalyPixels) -> float:
    """Adds one image's pixels; returns its defect IoU (nan when it has no pixel label)."""
    truth_mask, labelled = read_mask(sample, pred.mask.shape)
    if not labelled:
        return math.nan
    if pred.anomaly_map is not None:
        anomaly.add(truth_mask > 0, pred.anomaly_map)
    truth = (truth_mask > 0) * index(sample.label)
    predicted = (pred.mask >= mask_t) * index(pred.defect_class)
    pixels.update(truth, predicted)
    inter, union = np.logical_and(truth > 0, predicted > 0).sum(), np.logical_or(truth > 0, predicted > 0).sum()
    return float(inter / union) if union else 1.0


def _clean(value: Any) -> Any:
    """NaN -> None, so report.json is strict JSON."""
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
    pixels: PixelConfusion
    worst: list[tuple]  # (error, sample, image, prediction), the MAX_OVERLAYS worst, worst first
    anomaly_scores: list[float] = field(default_factory=list)  # per outcome, when the model has an anomaly head
    anomaly_pixels: AnomalyPixels = field(default_factory=AnomalyPixels)

    def report(self) -> dict[str, Any]:
        """The report.json figures (NaN as None); an ``anomaly`` section when the model has an anomaly head."""
        y_true, y_pred, scores = (np.array([getattr(o, k) for o in self.outcomes]) for k in ("truth", "pred", "score"))
        image = classification_report(y_true, y_pred, scores, list(self.classes))
        out = {"n_images": len(self.outcomes), "classes": list(self.classes), "image": image,
               "pixel": self.pixels.report()}
        if self.anomaly_scores:
            is_defect = y_true != self.classes.index(GOOD_CLASS)
            out["anomaly"] = {"image_auroc": auroc(is_defect, np.array(self.anomaly_scores)),
                              "pixel_auroc": self.anomaly_pixels.auroc(),
                              "flagged_by_anomaly": sum(o.by_anomaly for o in self.outcomes)}
        return _clean(out)


def collect(predictor: Predictor, samples: list[Sample], desc: str = "evaluate", batch_size: int = 16,
            show: bool = True) -> Collected:
    """Runs the predictor over the samples and accumulates image outcomes and pixel confusion."""
    classes = predictor.classes
    index = class_index(classes)
    done = Collected(classes, [], PixelConfusion(len(classes)), [])
    for sample, image, pred in run_over(predictor, samples, desc, batch_size, show):
        iou = _pixel_update(done.pixels, sample, pred, index, predictor.thresholds.mask, done.anomaly_pixels)
        # a part the anomaly head rejects is labelled "anomaly"; a model with classes counts it as its likeliest defect
        truth, guess = index(sample.label), index(pred.label if pred.label in classes else pred.defect_class)
        error = (1.0 + abs(float(truth != index(GOOD_CLASS)) - pred.defect_score)) if truth != guess else (
            0.0 if math.isnan(iou) else 1.0 - iou)
        done.outcomes.append(Outcome(sample, truth, guess, pred.defect_score, error, pred.by_anomaly))
        if pred.anomaly_score is not None:
            done.anomaly_scores.append(pred.anomaly_score)
        done.worst = sorted([*done.worst, (error, sample, image, pred)], key=lambda t: -t[0])[:MAX_OVERLAYS]
    return done


def run_evaluation(
    model: str | Path, data: str | Path, report_dir: str | Path, device: str = "auto", split: str = "auto",
    batch_size: int = 16, show_progress: bool = True, tta: bool = False,
) -> dict[str, Any]:
    """Evaluates a bundle on a data set; writes ``report.json`` and plots to ``report_dir`` and returns the report."""
    predictor = Predictor.from_bundle(model, device, options=InferenceOptions(tta=tta))
    samples, used_split, data_classes = choose_samples(predictor.bundle.meta, Path(data), split)
    check_classes(data_classes, predictor.classes)
    report = _write(Path(report_dir), collect(predictor, samples, "evaluate", batch_size, show_progress), predictor)
    meta = {"model": str(predictor.bundle.path), "model_version": predictor.version, "data": str(data),
            "split": used_split, "thresholds": dataclasses.asdict(predictor.thresholds), "tta": tta}
    (Path(report_dir) / "report_meta.json").write_text(json.dumps(meta, indent=2))
    return report


def _write(out: Path, done: Collected, predictor: Predictor) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    report = done.report()
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_confusion(np.array(report["image"]["confusion"]), list(done.classes), out / "confusion_matrix.png")
    is_defect = np.array([o.truth != done.classes.index(GOOD_CLASS) for o in done.outcomes])
    plot_roc_pr(is_defect, np.array([o.score for o in done.outcomes]), out / "roc_pr.png")
    tiles = [{"image": img, "mask": p.mask >= predictor.thresholds.mask,
              "truth": read_mask(s, p.mask.shape)[0] if s.label != GOOD_CLASS else None,
              "title": f"{s.label} -> {p.label} {p.defect_score:.2f}"} for _, s, img, p in done.worst]
    plot_overlay_grid(tiles, out / "overlays.png")
    history = predictor.bundle.path / "history.json"
    if history.is_file():
        plot_training_curves(json.loads(history.read_text()), out / "training_curves.png")
    return report
