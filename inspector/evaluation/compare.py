"""``inspector compare``: two bundles on the same images, their figures side by side, and where they disagree.

The figures are report.json paths (:mod:`inspector.evaluation.report`): the headline image and pixel figures, and
the operating point of each bundle at its own thresholds (escape, false-reject and review rates, overall and per
true class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.evaluation.report import collect
from inspector.evaluation.runner import check_classes, choose_samples
from inspector.inference.predictor import Predictor

FIGURES = ("image.accuracy", "image.macro_f1", "image.auroc_defect", "image.ap_defect", "pixel.iou_defect",
           "pixel.dice_defect", "pixel.miou", "operating_point.escape_rate", "operating_point.false_reject_rate",
           "operating_point.review_rate")
CLASS_RATES = ("escape_rate", "false_reject_rate", "review_rate")  # of operating_point.per_class.<class>, where given


def figure_paths(report: dict[str, Any]) -> list[str]:
    """The paths :func:`compare_models` shows of a report: :data:`FIGURES`, then the rates of each true class."""
    per_class = report["operating_point"]["per_class"]
    return [*FIGURES, *(f"operating_point.per_class.{name}.{rate}" for name, figures in per_class.items()
                        for rate in CLASS_RATES if rate in figures)]


def at_path(report: dict[str, Any], path: str) -> Any:
    """The value of a report at a dotted path; None where the report lacks it."""
    value: Any = report
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def compare_models(model_a: str | Path, model_b: str | Path, data: str | Path, device: str = "auto",
                   split: str = "auto", show_progress: bool = True) -> dict[str, Any]:
    """Both models on the same samples (model A's choice of split); returns figures and disagreements."""
    a, b = Predictor.from_bundle(model_a, device), Predictor.from_bundle(model_b, device)
    samples, used_split, data_classes = choose_samples(a.bundle.meta, Path(data), split)
    check_classes(data_classes, a.classes)
    check_classes(data_classes, b.classes)
    runs = [collect(p, samples, f"model {tag}", show=show_progress) for tag, p in (("A", a), ("B", b))]
    r_a, r_b = (run.report() for run in runs)
    paths = list(dict.fromkeys(figure_paths(r_a) + figure_paths(r_b)))
    figures = {path: {"A": at_path(r_a, path), "B": at_path(r_b, path)} for path in paths}
    disagreements = []
    for oa, ob in zip(*(run.outcomes for run in runs)):
        label_a, label_b = a.classes[oa.pred], b.classes[ob.pred]
        if label_a != label_b:
            disagreements.append({"image": str(oa.sample.image), "truth": oa.sample.label, "A": label_a, "B": label_b,
                                  "score_A": round(oa.score, 4), "score_B": round(ob.score, 4)})
    return {"A": a.version, "B": b.version, "split": used_split, "n_images": len(samples), "figures": figures,
            "disagreements": disagreements}
