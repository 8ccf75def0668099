"""``inspector evaluate``: a bundle run through the serving predictor on a data set -> report.json + PNG plots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inspector.config import GOOD_CLASS
from inspector.data.dataset import read_mask
from inspector.data.layouts import Sample
from inspector.evaluation.metrics import PixelConfusion, classification_report
from inspector.evaluation.plots import plot_confusion, plot_overlay_grid, plot_roc_pr, plot_training_curves
from inspector.evaluation.runner import check_classes, choose_samples, run_over
from inspector.predictor import Prediction, Predictor

MAX_OVERLAYS = 16


@dataclass
class Outcome:
    """One evaluated image, kept small (no masks) except for the overlay candidates."""

    sample: Sample
    truth: int
    pred: int
    score: float
    error: float  # how wrong: ranks the overlay grid


def _pixel_update(pixels: PixelConfusion, sample: Sample, pred: Prediction, index: dict[str, int], mask_t: float) -> float:
    """Adds one image's pixels; returns its defect IoU (nan when it has no pixel label)."""
    truth_mask, labelled = read_mask(sample, pred.mask.shape)
    if not labelled:
        return math.nan
    truth = (truth_mask > 0) * index[sample.label]
    predicted = (pred.mask >= mask_t) * index[pred.defect_class]
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


def run_evaluation(
    model: str | Path, data: str | Path, report_dir: str | Path, device: str = "auto", split: str = "auto",
    batch_size: int = 16, show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluates a bundle on a data set; writes ``report.json`` and plots to ``report_dir`` and returns the report."""
    predictor = Predictor.from_bundle(model, device)
    samples, used_split, data_classes = choose_samples(predictor.bundle.meta, Path(data), split)
    classes = predictor.classes
    check_classes(data_classes, classes)
    index = {c: i for i, c in enumerate(classes)}
    pixels, outcomes, overlays = PixelConfusion(len(classes)), [], []
    for sample, image, pred in run_over(predictor, samples, "evaluate", batch_size, show_progress):
        iou = _pixel_update(pixels, sample, pred, index, predictor.thresholds.mask)
        truth, guess = index[sample.label], index[pred.label]
        error = (1.0 + abs(float(truth != index[GOOD_CLASS]) - pred.defect_score)) if truth != guess else (
            0.0 if math.isnan(iou) else 1.0 - iou)
        outcomes.append(Outcome(sample, truth, guess, pred.defect_score, error))
        overlays.append((error, sample, image, pred))
        overlays = sorted(overlays, key=lambda t: -t[0])[:MAX_OVERLAYS]
    report = _write(report_dir, outcomes, overlays, pixels, classes, predictor, index)
    meta = {"model": str(predictor.bundle.path), "model_version": predictor.version, "data": str(data),
            "split": used_split, "thresholds": predictor.bundle.meta["thresholds"]}
    (Path(report_dir) / "report_meta.json").write_text(json.dumps(meta, indent=2))
    return report


def _write(report_dir, outcomes, overlays, pixels, classes, predictor, index) -> dict[str, Any]:
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    y_true = np.array([o.truth for o in outcomes])
    y_pred = np.array([o.pred for o in outcomes])
    scores = np.array([o.score for o in outcomes])
    image = classification_report(y_true, y_pred, scores, list(classes))
    report = _clean({"n_images": len(outcomes), "classes": list(classes), "image": image, "pixel": pixels.report()})
    (out / "report.json").write_text(json.dumps(report, indent=2))
    plot_confusion(np.array(image["confusion"]), list(classes), out / "confusion_matrix.png")
    plot_roc_pr(y_true != index[GOOD_CLASS], scores, out / "roc_pr.png")
    tiles = [{"image": img, "mask": p.mask >= predictor.thresholds.mask,
              "truth": read_mask(s, p.mask.shape)[0] if s.label != GOOD_CLASS else None,
              "title": f"{s.label} -> {p.label} {p.defect_score:.2f}"} for _, s, img, p in overlays]
    plot_overlay_grid(tiles, out / "overlays.png")
    history = predictor.bundle.path / "history.json"
    if history.is_file():
        plot_training_curves(json.loads(history.read_text()), out / "training_curves.png")
    return report
