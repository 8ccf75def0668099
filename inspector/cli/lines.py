"""The JSON line of one inspected frame: the same keys and types from ``inspector predict`` and ``inspector client``.

A line is ``frame_id`` (the file path; ``<video>#<n>`` for a video frame), ``camera_id`` (empty when none was
given), ``verdict``, ``label``, ``defect_class``, ``defect_score``, ``class_scores``, ``regions`` (``defect_class``,
``x``, ``y``, ``width``, ``height``, ``area_px`` as integers in frame px, ``area_fraction``, ``max_score``),
``anomaly_score`` and ``by_anomaly`` (only when the model has an anomaly head), ``model_version`` and ``timings_ms``
(one figure per stage in :data:`STAGES`; ``queue`` is 0 in ``predict``, which has none). A frame that could not be
inspected gives ``frame_id``, ``camera_id`` and ``error`` (``reason``, a short fixed word, and ``message``).
Scores are rounded to 6 decimals, timings to 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Union

if TYPE_CHECKING:  # types only: this module imports neither the inference code nor protobuf
    from inspector.inference.postprocess import Region
    from inspector.v1.inspector_pb2 import Region as RegionMessage

STAGES = ("decode", "preprocess", "queue", "infer", "postprocess", "total")
AnyRegion = Union["Region", "RegionMessage"]  # a predictor's region or the service's: the same fields


def frame_line(frame_id: str, camera_id: str, *, verdict: str, label: str, defect_class: str, defect_score: float,
               class_scores: Mapping[str, float], regions: Iterable[AnyRegion], model_version: str,
               timings_ms: Mapping[str, float], anomaly_score: float | None = None, by_anomaly: bool = False) -> dict:
    """The line of an inspected frame, as plain JSON types."""
    line = {
        "frame_id": str(frame_id),
        "camera_id": str(camera_id),
        "verdict": str(verdict),
        "label": str(label),
        "defect_class": str(defect_class),
        "defect_score": round(float(defect_score), 6),
        "class_scores": {str(k): round(float(v), 6) for k, v in class_scores.items()},
        "regions": [_region(r) for r in regions],
    }
    if anomaly_score is not None:
        line |= {"anomaly_score": round(float(anomaly_score), 6), "by_anomaly": bool(by_anomaly)}
    return line | {"model_version": str(model_version),
                   "timings_ms": {s: round(float(timings_ms.get(s, 0.0)), 3) for s in STAGES}}


def error_line(frame_id: str, camera_id: str, reason: str, message: str) -> dict:
    """The line of a frame that could not be inspected."""
    return {"frame_id": str(frame_id), "camera_id": str(camera_id),
            "error": {"reason": str(reason), "message": str(message)}}


def _region(r: AnyRegion) -> dict:
    return {"defect_class": str(r.defect_class), "x": int(r.x), "y": int(r.y), "width": int(r.width),
            "height": int(r.height), "area_px": int(r.area_px), "area_fraction": round(float(r.area_fraction), 6),
            "max_score": round(float(r.max_score), 6)}
