"""Drift against the validation reference: a camera that goes out of focus or a lamp that dims shows up here
before it shows up in the reject rate.

Training and calibration store, per statistic, the validation distribution as quantile bins (:func:`reference`),
measured through the serving predictor under the bundle's final thresholds (the defect score depends on their mask
weight); the service compares a sliding window of recent frames with it by the population stability index
(:class:`DriftMonitor`). Both sides take a frame's values from :func:`frame_values`.
PSI below 0.1 is usually read as stable, 0.1-0.25 as a shift worth a look, above 0.25 as a real change.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from typing import Any, Iterable

import cv2
import numpy as np

STATISTICS = ("defect_score", "brightness", "contrast", "sharpness")
BINS = 10
EPS = 1e-4  # floor of a bin fraction, so an empty bin does not make the PSI infinite
STATS_SIDE = 256  # frames are reduced to at most this side before the statistics, px


def frame_statistics(image: np.ndarray) -> dict[str, float]:
    """Mean brightness, contrast (std) and sharpness (variance of the Laplacian) of a decoded frame, on a copy
    reduced to at most :data:`STATS_SIDE` px so the cost does not grow with the frame."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = STATS_SIDE / max(gray.shape)
    if scale < 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mean, std = cv2.meanStdDev(gray)
    sharp = cv2.Laplacian(gray, cv2.CV_32F).var()
    return {"brightness": float(mean[0, 0]), "contrast": float(std[0, 0]), "sharpness": float(sharp)}


def frame_values(image: np.ndarray, defect_score: float) -> dict[str, float]:
    """Every statistic the monitor tracks for one frame (:data:`STATISTICS`): what the service adds per frame and
    what a bundle's reference bins, from one function so the two cannot measure different things."""
    return frame_values_of(defect_score, frame_statistics(image))


def frame_values_of(defect_score: float, statistics: dict[str, float]) -> dict[str, float]:
    """:func:`frame_values` from the frame's :func:`frame_statistics` already measured."""
    return {"defect_score": defect_score} | statistics


def reference_of(frames: Iterable[dict[str, float]]) -> dict[str, dict[str, list[float]]]:
    """:func:`reference` of frames given as their :func:`frame_values`."""
    values: dict[str, list[float]] = defaultdict(list)
    for frame in frames:
        for name, value in frame.items():
            values[name].append(value)
    return reference(values)


def reference(values: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """Quantile-bin histograms of the validation values: ``{statistic: {"edges": inner edges, "fractions": ...}}``."""
    out = {}
    for name, vals in values.items():
        v = np.asarray(vals, np.float64)
        bins = min(BINS, v.size // 2)  # a small validation set gets fewer, fuller bins
        if bins < 2:
            continue
        edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        out[name] = {"edges": edges.tolist(), "fractions": (counts / v.size).tolist()}
    return out


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two bin-fraction vectors."""
    e, a = np.maximum(expected, EPS), np.maximum(actual, EPS)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """Sliding windows of recent frame statistics compared with a bundle's reference.

    Args:
        ref: The bundle's ``reference`` (see :func:`reference`); statistics missing from it are not tracked.
        window: Frames per window.
        min_frames: Frames needed before a figure is reported (NaN until then).
    """

    def __init__(self, ref: dict[str, Any], window: int = 500, min_frames: int = 50) -> None:
        self.ref = {k: (np.asarray(v["edges"]), np.asarray(v["fractions"])) for k, v in (ref or {}).items()}
        self.min_frames = min_frames
        self._values = {k: deque(maxlen=window) for k in self.ref}
        self._lock = threading.Lock()

    def add(self, values: dict[str, float]) -> None:
        with self._lock:
            for name, window in self._values.items():
                if name in values:
                    window.append(values[name])

    def frames(self) -> dict[str, int]:
        """How many frames each statistic's window holds now (a statistic without reference keeps none)."""
        with self._lock:
            return {name: len(window) for name, window in self._values.items()}

    def value(self, name: str) -> float:
        """PSI of the window of ``name`` against its reference; NaN without reference or with too few frames."""
        if name not in self.ref:
            return float("nan")
        with self._lock:
            v = np.fromiter(self._values[name], np.float64)
        if v.size < self.min_frames:
            return float("nan")
        edges, expected = self.ref[name]
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(expected))
        return psi(expected, counts / v.size)
