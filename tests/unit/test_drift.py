"""Drift: input statistics, reference bins, PSI, and the sliding-window monitor."""

import math

import cv2
import numpy as np

from inspector.service import metrics
from inspector.inference.drift import STATISTICS, DriftMonitor, frame_statistics, frame_values, psi, reference


def _texture(seed: int = 0, level: float = 128.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level, 30, (300, 400)), 0, 255).astype(np.uint8)


def test_frame_statistics_see_dimming_and_blur():
    image = _texture()
    base = frame_statistics(image)
    dim = frame_statistics((image * 0.5).astype(np.uint8))
    blur = frame_statistics(cv2.GaussianBlur(image, (9, 9), 3))
    assert abs(base["brightness"] - image.mean()) < 2
    assert dim["brightness"] < 0.6 * base["brightness"] and dim["contrast"] < 0.6 * base["contrast"]
    assert blur["sharpness"] < 0.2 * base["sharpness"]
    colour = frame_statistics(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR))
    assert math.isclose(colour["brightness"], base["brightness"], rel_tol=0.01)


def test_reference_bins_hold_equal_shares():
    values = np.random.default_rng(0).normal(0, 1, 1000)
    ref = reference({"x": values.tolist(), "few": [1.0, 2.0, 3.0, 4.0], "too_few": [1.0, 2.0, 3.0]})
    assert set(ref) == {"x", "few"} and len(ref["few"]["fractions"]) == 2
    assert len(ref["x"]["edges"]) == 9 and np.allclose(ref["x"]["fractions"], 0.1, atol=0.01)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift():
    e = np.full(10, 0.1)
    assert psi(e, e) == 0
    shifted = np.array([0.0] * 5 + [0.2] * 5)
    assert psi(e, shifted) > 0.25


def test_monitor_reports_a_dimmed_camera():
    rng = np.random.default_rng(1)
    ref = reference({"brightness": rng.normal(120, 10, 2000).tolist()})
    monitor = DriftMonitor(ref, window=500, min_frames=50)
    assert math.isnan(monitor.value("brightness")) and math.isnan(monitor.value("sharpness"))
    for v in rng.normal(120, 10, 500):
        monitor.add({"brightness": float(v)})
    assert monitor.value("brightness") < 0.1  # sampling noise only
    for v in rng.normal(105, 10, 500):  # the lamp dims: the window fills with darker frames
        monitor.add({"brightness": float(v)})
    assert monitor.value("brightness") > 0.25


def test_metrics_track_the_same_statistics():
    assert metrics.STATISTICS == STATISTICS


def test_frame_values_are_every_tracked_statistic():
    image = _texture()
    values = frame_values(image, 0.3)
    assert tuple(sorted(values)) == tuple(sorted(STATISTICS)) and values["defect_score"] == 0.3
    assert values["brightness"] == frame_statistics(image)["brightness"]
