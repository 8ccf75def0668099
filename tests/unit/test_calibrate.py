"""Threshold choice for calibration, on scores whose answers are known."""

import numpy as np
import pytest

from inspector.evaluation.calibrate import (
    choose_thresholds,
    escape_threshold,
    f1_threshold,
    false_reject_threshold,
    min_region_area,
)

GOOD = np.array([0.05, 0.1, 0.2, 0.3, 0.6])
DEFECT = np.array([0.25, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.999])


def test_escape_threshold_accepts_at_most_the_target_share():
    assert escape_threshold(DEFECT, 0.0) == 0.25  # everything at or above the lowest defect is rejected
    assert escape_threshold(DEFECT, 0.1) == 0.5  # one of ten may escape
    assert escape_threshold(DEFECT, 0.25) == 0.7  # floor(2.5) = 2 may escape
    for rate in (0.0, 0.1, 0.2, 0.35):
        assert np.mean(DEFECT < escape_threshold(DEFECT, rate)) <= rate


def test_false_reject_threshold_rejects_at_most_the_target_share():
    t = false_reject_threshold(GOOD, 0.0)
    assert t > 0.6 and np.mean(GOOD >= t) == 0.0
    t = false_reject_threshold(GOOD, 0.2)
    assert 0.3 < t <= 0.6 and np.mean(GOOD >= t) == 0.2


def test_f1_threshold_separates_when_it_can():
    scores = np.concatenate([GOOD, DEFECT])
    is_defect = np.array([False] * 5 + [True] * 10)
    t = f1_threshold(scores, is_defect)
    # from 0.25 every defect is caught and two good parts (0.3, 0.6) are rejected: F1 = 20/22, the best; the
    # threshold sits in the middle of the gap below 0.25 (the highest lower score is the good part at 0.2)
    assert t == pytest.approx(0.225)
    separable = np.array([0.1, 0.2, 0.7, 0.9])
    assert f1_threshold(separable, np.array([False, False, True, True])) == pytest.approx(0.45)


def test_choose_thresholds_review_band_and_figures():
    scores = np.concatenate([GOOD, DEFECT])
    is_defect = np.array([False] * 5 + [True] * 10)
    reject, review, fig = choose_thresholds(scores, is_defect, escape_rate=0.2)
    assert reject == 0.7 and fig["escape_rate"] == 0.2 and fig["false_reject_rate"] == 0.0
    assert 0.6 < review <= reject  # reaching down to the escapes would send 1 of 5 good parts (> 5 %) to review
    assert fig["review_rate"] == pytest.approx(np.mean((scores >= review) & (scores < reject)))
    many_good = np.concatenate([np.linspace(0.0, 0.2, 95), GOOD])  # 2 of 100 good parts score >= 0.25
    scores = np.concatenate([many_good, DEFECT])
    reject, review, fig = choose_thresholds(scores, np.arange(len(scores)) >= 100, escape_rate=0.2)
    assert reject == 0.7 and review == 0.25 and fig["escape_rate_after_review"] == 0.0
    assert fig["review_rate"] == pytest.approx(np.mean((scores >= review) & (scores < reject)))
    with pytest.raises(ValueError, match="both good and defective"):
        choose_thresholds(GOOD, np.zeros(5, bool))


def test_min_region_area():
    assert min_region_area([], 16) == 16
    assert min_region_area([100] * 50 + [40] * 2, 16) == 20


def test_a_rare_class_that_would_escape_gets_its_own_threshold():
    from inspector.evaluation.calibrate import per_class_thresholds

    scores = np.array([0.9] * 20 + [0.3, 0.35, 0.4, 0.45, 0.9, 0.95])
    labels = ["crack"] * 20 + ["fray"] * 6
    assert per_class_thresholds(scores, labels, reject=0.5, escape_rate=0.0) == {"fray": 0.3}
    assert per_class_thresholds(scores, labels, reject=0.5, escape_rate=None) == {}
    assert per_class_thresholds(scores[:23], labels[:23], reject=0.5, escape_rate=0.0) == {}  # too few fray images


def _probs(p_defect: np.ndarray, good: int) -> np.ndarray:
    """``(n, 2)`` class probabilities with ``1 - p_defect`` in column ``good``."""
    out = np.empty((len(p_defect), 2))
    out[:, good], out[:, 1 - good] = 1 - p_defect, p_defect
    return out


@pytest.mark.parametrize("good", [0, 1])  # found by name: good need not come first
def test_mask_weight_is_chosen_by_how_well_it_separates(good):
    from inspector.evaluation.calibrate import choose_mask_weight

    is_defect = np.array([False] * 4 + [True] * 4)
    p_defect = np.array([0.1, 0.2, 0.6, 0.3, 0.5, 0.9, 0.4, 0.8])  # the classifier mixes two pairs up
    peaks = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.9, 0.9, 0.9])  # the mask separates cleanly
    weight, by_weight = choose_mask_weight(_probs(p_defect, good), good, peaks, is_defect)
    assert by_weight["0"] < 1.0 and by_weight["0.25"] == by_weight["0.5"] == 1.0
    assert weight == 0.25  # the smallest blend that separates as well as any
    weight, _ = choose_mask_weight(_probs(peaks, good), good, peaks, is_defect)  # every blend separates
    assert weight == 0.0  # the smallest weight wins


def test_a_target_finer_than_the_images_can_show_is_warned_once(caplog):
    scores = np.concatenate([np.linspace(0.0, 0.3, 40), np.linspace(0.5, 1.0, 24)])
    is_defect = np.arange(len(scores)) >= 40  # 40 good, 24 defect images
    with caplog.at_level("WARNING", logger="inspector.evaluation.calibrate"):
        choose_thresholds(scores, is_defect, escape_rate=0.01)
    [record] = caplog.records
    message = record.getMessage()
    # one escape among 24 is already 4.17 %; none among 24 allows up to 11.7 %; 1 % needs 299 (about 3 / 0.01)
    assert "only 24 defect images" in message and "4.17 %" in message and "11.7 %" in message
    assert "at least 299 defect images" in message and "--target-escape-rate" in message
    caplog.clear()
    with caplog.at_level("WARNING", logger="inspector.evaluation.calibrate"):
        choose_thresholds(scores, is_defect, false_reject_rate=0.01)
    [record] = caplog.records
    assert "only 40 good images" in record.getMessage() and "--target-false-reject-rate" in record.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="inspector.evaluation.calibrate"):
        choose_thresholds(scores, is_defect, escape_rate=0.2)  # 24 images can show 20 % (14 needed)
        choose_thresholds(scores, is_defect)  # F1-optimal: no target
    assert caplog.records == []


def test_the_count_a_rate_target_needs():
    from inspector.evaluation.conformal import clopper_pearson_upper, min_parts, target_shortfall

    for rate in (0.2, 0.05, 0.01, 0.001):
        n = min_parts(rate)
        assert clopper_pearson_upper(0, n) <= rate < clopper_pearson_upper(0, n - 1)
        assert n <= 3.0 / rate and (rate > 0.1 or 2.9 / rate < n)  # the rule of three, for small rates
    assert target_shortfall(299, 0.01, "defect images", "escape rate", "--x") is None
    assert "no number of defect images can show it" in target_shortfall(24, 0.0, "defect images", "escape rate", "--x")
    with pytest.raises(ValueError):
        min_parts(0.0)
