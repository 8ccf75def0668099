"""Tests for the verdict from class probabilities and the defect regions from a mask."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.config import Thresholds
from inspector.inference.postprocess import ACCEPT, MAX_REGIONS, REJECT, REVIEW, Region, decide, find_regions

CLASSES = ("good", "crack", "scratch")
# 0.5 and 0.25 are exact in binary floating point, so 1 - p(good) lands exactly on them
THRESHOLDS = Thresholds(reject=0.5, review=0.25)


def _probs(good: float, crack: float | None = None) -> np.ndarray:
    """Probabilities with ``good``; the rest split 60/40 between crack and scratch unless ``crack`` is given."""
    rest = 1.0 - good
    crack = rest * 0.6 if crack is None else crack
    return np.array([good, crack, rest - crack], np.float64)


@pytest.mark.parametrize(
    "good,verdict",
    [
        (0.0, REJECT),
        (0.49, REJECT),
        (0.5, REJECT),  # score 0.5 == reject: inclusive
        (0.51, REVIEW),
        (0.74, REVIEW),
        (0.75, REVIEW),  # score 0.25 == review: inclusive
        (0.76, ACCEPT),
        (1.0, ACCEPT),
    ],
)
def test_decide_verdict_at_and_around_thresholds(good: float, verdict: str) -> None:
    decision = decide(_probs(good), CLASSES, THRESHOLDS)
    assert decision.verdict == verdict
    assert decision.defect_score == pytest.approx(1.0 - good)
    assert decision.defect_class == "crack"
    assert decision.label == ("crack" if verdict == REJECT else "good")


def test_decide_exact_boundaries() -> None:
    assert decide(np.array([0.5, 0.3, 0.2]), CLASSES, THRESHOLDS).defect_score == 0.5
    assert decide(np.array([0.75, 0.05, 0.2]), CLASSES, THRESHOLDS).defect_score == 0.25
    assert decide(np.array([0.5, 0.3, 0.2]), CLASSES, THRESHOLDS).verdict == REJECT
    assert decide(np.array([0.75, 0.05, 0.2]), CLASSES, THRESHOLDS).verdict == REVIEW


def test_decide_float32_probabilities() -> None:
    decision = decide(np.array([0.5, 0.2, 0.3], np.float32), CLASSES, THRESHOLDS)
    assert decision.verdict == REJECT and decision.label == "scratch"
    assert isinstance(decision.defect_score, float)


def test_decide_defect_class_is_most_likely_defect_even_when_accepted() -> None:
    decision = decide(np.array([0.9, 0.03, 0.07]), CLASSES, THRESHOLDS)
    assert decision.verdict == ACCEPT and decision.label == "good"
    assert decision.defect_class == "scratch"
    assert decision.defect_score == pytest.approx(0.1)


def test_decide_good_not_first() -> None:
    classes = ("crack", "good", "dent")
    decision = decide(np.array([0.1, 0.2, 0.7]), classes, THRESHOLDS)
    assert decision == decision.__class__(REJECT, "dent", "dent", pytest.approx(0.8))


def test_decide_per_class_reject_threshold_higher() -> None:
    thresholds = Thresholds(reject=0.5, review=0.25, per_class={"scratch": 0.75})
    # score 0.625, scratch most likely: its own reject threshold 0.75 puts it in review
    decision = decide(np.array([0.375, 0.125, 0.5]), CLASSES, thresholds)
    assert (decision.verdict, decision.label, decision.defect_class) == (REVIEW, "good", "scratch")
    # same score, crack most likely: the global threshold rejects
    decision = decide(np.array([0.375, 0.5, 0.125]), CLASSES, thresholds)
    assert (decision.verdict, decision.label, decision.defect_class) == (REJECT, "crack", "crack")
    # scratch exactly at its own threshold: inclusive
    decision = decide(np.array([0.25, 0.25, 0.5]), CLASSES, thresholds)
    assert decision.defect_score == 0.75
    assert (decision.verdict, decision.label) == (REJECT, "scratch")


def test_decide_per_class_reject_threshold_below_review() -> None:
    thresholds = Thresholds(reject=0.5, review=0.25, per_class={"crack": 0.125})
    assert decide(np.array([0.875, 0.1, 0.025]), CLASSES, thresholds).verdict == REJECT  # score 0.125 == crack's
    assert decide(np.array([0.9, 0.08, 0.02]), CLASSES, thresholds).verdict == ACCEPT  # below it: never review
    assert decide(np.array([0.8, 0.05, 0.15]), CLASSES, thresholds).verdict == ACCEPT  # scratch uses the globals


def test_decide_score_clipped() -> None:
    decision = decide(np.array([1.0000001, 0.0, 0.0]), CLASSES, THRESHOLDS)
    assert decision.defect_score == 0.0 and decision.verdict == ACCEPT


def test_thresholds_validate_order() -> None:
    with pytest.raises(ValueError, match="review <= reject"):
        Thresholds(reject=0.3, review=0.5)
    with pytest.raises(ValueError):
        Thresholds(reject=1.5, review=0.3)


# --- regions ----------------------------------------------------------------------------------------------------

REGION_THRESHOLDS = Thresholds(mask=0.5, min_region_area=16)


def _two_blobs() -> np.ndarray:
    mask = np.zeros((100, 200), np.float32)
    mask[60:70, 5:15] = 0.7  # small blob first in scan order: 10x10 = 100 px
    mask[10:30, 120:160] = 0.9  # large blob: 20x40 = 800 px
    mask[15, 130] = 0.97
    mask[9, 120:160] = 0.45  # a rim under the threshold belongs to no region
    mask[90:93, 100:103] = 0.99  # 3x3 = 9 px < min_region_area
    return mask


def test_find_regions_two_blobs() -> None:
    regions = find_regions(_two_blobs(), "crack", REGION_THRESHOLDS)
    assert len(regions) == 2
    large, small = regions  # sorted by area, largest first
    assert large == Region("crack", x=120, y=10, width=40, height=20, area_px=800, area_fraction=0.04, max_score=pytest.approx(0.97))
    assert small == Region("crack", x=5, y=60, width=10, height=10, area_px=100, area_fraction=0.005, max_score=pytest.approx(0.7))


def test_find_regions_small_blob_kept_when_area_allows() -> None:
    regions = find_regions(_two_blobs(), "crack", Thresholds(mask=0.5, min_region_area=9))
    assert [r.area_px for r in regions] == [800, 100, 9]
    assert regions[2].max_score == pytest.approx(0.99) and (regions[2].x, regions[2].y) == (100, 90)


def test_find_regions_threshold_inclusive() -> None:
    mask = np.zeros((64, 64), np.float32)
    mask[10:20, 10:20] = 0.5
    regions = find_regions(mask, "dent", REGION_THRESHOLDS)
    assert len(regions) == 1 and regions[0].area_px == 100


def test_find_regions_clean_mask() -> None:
    assert find_regions(np.zeros((64, 64), np.float32), "crack", REGION_THRESHOLDS) == []
    assert find_regions(np.full((64, 64), 0.49, np.float32), "crack", REGION_THRESHOLDS) == []
    assert find_regions(np.zeros((0, 0), np.float32), "crack", REGION_THRESHOLDS) == []


def test_find_regions_diagonal_pixels_connect() -> None:
    mask = np.zeros((40, 40), np.float32)
    for i in range(20):
        mask[5 + i, 5 + i] = 0.8  # a diagonal line, 8-connected
    regions = find_regions(mask, "crack", REGION_THRESHOLDS)
    assert len(regions) == 1
    assert (regions[0].x, regions[0].y, regions[0].width, regions[0].height, regions[0].area_px) == (5, 5, 20, 20, 20)


def test_find_regions_peak_only_from_own_pixels() -> None:
    """An L-shaped region whose bounding box encloses a separate hotter blob keeps its own peak."""
    mask = np.zeros((60, 60), np.float32)
    mask[10:50, 10:14] = 0.6  # vertical bar of the L
    mask[46:50, 10:50] = 0.6  # horizontal bar
    mask[20:25, 30:35] = 0.99  # inside the L's bbox, not connected
    regions = find_regions(mask, "crack", REGION_THRESHOLDS)
    assert len(regions) == 2
    ell, hot = regions
    assert (ell.x, ell.y, ell.width, ell.height) == (10, 10, 40, 40)
    assert ell.max_score == pytest.approx(0.6)
    assert hot.max_score == pytest.approx(0.99) and hot.area_px == 25


def test_find_regions_caps_count_largest_first() -> None:
    mask = np.zeros((200, 200), np.float32)
    sizes = []
    for k in range(40):
        row, col = divmod(k, 8)
        side = 4 + k % 7  # 4..10 px squares, all >= 16 px
        mask[row * 24 : row * 24 + side, col * 24 : col * 24 + side] = 0.9
        sizes.append(side * side)
    regions = find_regions(mask, "crack", REGION_THRESHOLDS)
    assert len(regions) == MAX_REGIONS
    assert [r.area_px for r in regions] == sorted(sizes, reverse=True)[:MAX_REGIONS]


def test_defect_score_blends_the_mask_peak_by_its_weight():
    from inspector.inference.postprocess import defect_score

    probs = np.array([0.8, 0.2])
    assert defect_score(probs, 0, None, 0.5) == pytest.approx(0.2)
    assert defect_score(probs, 0, 0.9, 0.0) == pytest.approx(0.2)
    assert defect_score(probs, 0, 0.9, 0.5) == pytest.approx(0.55)
    assert decide(probs, ("good", "crack"), Thresholds(mask_weight=0.5), mask_peak=0.9).verdict == "REJECT"
    assert decide(probs, ("good", "crack"), Thresholds(), mask_peak=0.9).verdict == "ACCEPT"  # default: classifier
    with pytest.raises(ValueError, match="mask_weight"):
        Thresholds(mask_weight=1.5)


def test_defect_scores_of_a_batch_are_each_part_s_score() -> None:
    from inspector.inference.postprocess import defect_score, defect_scores

    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.1, 0.4], [0.05, 0.9, 0.05]])  # good is the last column here
    peaks = np.array([0.9, 0.0, 1.0])
    batch = defect_scores(probs, 2, peaks, 0.25)
    assert batch.tolist() == [defect_score(p, 2, m, 0.25) for p, m in zip(probs, peaks)]
    assert batch == pytest.approx([0.75 * 0.3 + 0.25 * 0.9, 0.75 * 0.6, 0.75 * 0.95 + 0.25])
    assert defect_scores(probs, 2, None, 0.25) == pytest.approx([0.3, 0.6, 0.95])  # the classifier alone
