"""``inspector predict``: a bundle on image files and folders, as JSON-ready dicts, with optional overlays."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterator

import cv2

from inspector.errors import MissingPathError
from inspector.overlay import overlay_mask
from inspector.predictor import Prediction, Predictor
from inspector.preprocess import EXTENSIONS, FrameError, read_image


def expand_paths(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders as their images (sorted, recursive)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS)
        elif p.exists():
            out.append(p)
        else:
            raise MissingPathError(f"{p} does not exist")
    return out


def prediction_dict(pred: Prediction) -> dict:
    """A prediction without its mask, as plain JSON types."""
    return {
        "verdict": pred.verdict,
        "label": pred.label,
        "defect_class": pred.defect_class,
        "defect_score": round(pred.defect_score, 6),
        "class_scores": {k: round(v, 6) for k, v in pred.class_scores.items()},
        "regions": [dataclasses.asdict(r) for r in pred.regions],
        "model_version": pred.model_version,
    } | ({} if pred.anomaly_score is None else {"anomaly_score": round(pred.anomaly_score, 6),
                                                  "by_anomaly": pred.by_anomaly})


def predict_paths(
    model: str | Path, paths: list[str], device: str = "auto", overlays: str | None = None,
    options: dict | None = None,
) -> Iterator[dict]:
    """Yields one dict per image; an unreadable image yields an ``error`` entry and the rest go on.

    ``options``: Predictor options (``tile``, ``tile_overlap``, ``roi``).
    """
    predictor = Predictor.from_bundle(model, device, **(options or {}))
    for path in expand_paths(paths):
        try:
            image = read_image(path)
        except FrameError as err:
            yield {"path": str(path), "error": str(err)}
            continue
        pred = predictor.predict([image])[0]
        line = {"path": str(path), **prediction_dict(pred)}
        if overlays:
            out = Path(overlays) / f"{path.stem}_overlay.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), overlay_mask(image, pred.mask >= predictor.thresholds.mask))
            line["overlay"] = str(out)
        yield line
