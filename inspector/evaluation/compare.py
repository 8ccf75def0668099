"""``inspector compare``: two bundles on the same images, their figures side by side, and where they disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspector.evaluation.report import collect
from inspector.evaluation.runner import check_classes, choose_samples
from inspector.inference.predictor import Predictor

FIGURES = (("image", "accuracy"), ("image", "macro_f1"), ("image", "auroc_defect"), ("image", "ap_defect"),
           ("pixel", "iou_defect"), ("pixel", "dice_defect"), ("pixel", "miou"))


def compare_models(model_a: str | Path, model_b: str | Path, data: str | Path, device: str = "auto",
                   split: str = "auto", show_progress: bool = True) -> dict[str, Any]:
    """Both models on the same samples (model A's choice of split); returns figures and disagreements."""
    a, b = Predictor.from_bundle(model_a, device), Predictor.from_bundle(model_b, device)
    samples, used_split, data_classes = choose_samples(a.bundle.meta, Path(data), split)
    check_classes(data_classes, a.classes)
    check_classes(data_classes, b.classes)
    runs = [collect(p, samples, f"model {tag}", show=show_progress) for tag, p in (("A", a), ("B", b))]
    r_a, r_b = (run.report() for run in runs)
    figures = {f"{group}.{key}": {"A": r_a[group][key], "B": r_b[group][key]} for group, key in FIGURES}
    disagreements = []
    for oa, ob in zip(*(run.outcomes for run in runs)):
        label_a, label_b = a.classes[oa.pred], b.classes[ob.pred]
        if label_a != label_b:
            disagreements.append({"image": str(oa.sample.image), "truth": oa.sample.label, "A": label_a, "B": label_b,
                                  "score_A": round(oa.score, 4), "score_B": round(ob.score, 4)})
    return {"A": a.version, "B": b.version, "split": used_split, "n_images": len(samples), "figures": figures,
            "disagreements": disagreements}
