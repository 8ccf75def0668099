"""Escape, false-reject and review rates of verdicts counted by hand, their intervals, and compare's view of them."""

import numpy as np
import pytest

from inspector.evaluation.bootstrap import confidence_intervals, operating_intervals
from inspector.evaluation.compare import at_path, figure_paths
from inspector.evaluation.conformal import clopper_pearson_upper
from inspector.evaluation.operating_point import operating_point

A, V, R = "ACCEPT", "REVIEW", "REJECT"
# 5 good parts: 2 rejected, 1 reviewed; 4 cracks: 1 accepted (escaped), 1 reviewed; 3 spots, all rejected
TRUTH = ["good"] * 5 + ["crack"] * 4 + ["spot"] * 3
VERDICTS = [A, A, V, R, R] + [A, V, R, R] + [R, R, R]
CLASSES = ("good", "crack", "scratch", "spot")  # scratch: a class of the model without a part here


def test_rates_and_counts_match_the_hand_count():
    op = operating_point(TRUTH, VERDICTS, CLASSES)
    assert {k: v for k, v in op.items() if k != "per_class"} == {
        "parts": 12, "defective": 7, "escaped": 1, "escape_rate": 1 / 7,
        "escape_rate_upper": clopper_pearson_upper(1, 7), "good": 5, "falsely_rejected": 2, "false_reject_rate": 0.4,
        "false_reject_rate_upper": clopper_pearson_upper(2, 5), "reviewed": 2, "review_rate": 2 / 12}
    assert list(op["per_class"]) == ["good", "crack", "scratch", "spot"]
    assert op["per_class"]["good"] == {"parts": 5, "falsely_rejected": 2, "false_reject_rate": 0.4,
                                       "false_reject_rate_upper": clopper_pearson_upper(2, 5), "reviewed": 1,
                                       "review_rate": 0.2}
    assert op["per_class"]["crack"] == {"parts": 4, "escaped": 1, "escape_rate": 0.25,
                                        "escape_rate_upper": clopper_pearson_upper(1, 4), "reviewed": 1,
                                        "review_rate": 0.25}
    spot = op["per_class"]["spot"]
    assert spot["escaped"] == 0 and spot["escape_rate"] == 0.0 and spot["review_rate"] == 0.0
    assert spot["escape_rate_upper"] == pytest.approx(1 - 0.05 ** (1 / 3))  # none of 3 escaped: could be 63 %
    assert op["per_class"]["scratch"] == {"parts": 0, "escaped": 0, "escape_rate": None, "escape_rate_upper": None,
                                          "reviewed": 0, "review_rate": None}


def test_undefined_rates_are_none():
    good_only = operating_point(["good", "good"], [A, V])
    assert good_only["defective"] == 0 and good_only["escape_rate"] is None and good_only["escape_rate_upper"] is None
    assert good_only["false_reject_rate"] == 0.0 and good_only["review_rate"] == 0.5
    defect_only = operating_point(["crack"], [A])
    assert defect_only["false_reject_rate"] is None and defect_only["escape_rate"] == 1.0
    assert list(defect_only["per_class"]) == ["crack"]  # no classes given: the true ones
    empty = operating_point([], [])
    assert empty["parts"] == 0 and empty["review_rate"] is None and empty["per_class"] == {}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        operating_point(["good"], [A, A])
    with pytest.raises(ValueError, match="unknown verdicts \\['MAYBE'\\]"):
        operating_point(["good"], ["MAYBE"])


def test_intervals_hold_the_figures_and_zero_stays_zero():
    y_true = np.array([CLASSES.index(t) for t in TRUTH])
    got = operating_intervals(y_true, VERDICTS, CLASSES, seed=3)
    op = operating_point(TRUTH, VERDICTS, CLASSES)
    for name, (lo, hi) in got.items():
        assert 0.0 <= lo <= op[name] <= hi <= 1.0, name
    assert got == operating_intervals(y_true, VERDICTS, CLASSES, seed=3)  # seeded
    none_escape = [A, A, V, R, R] + [R] * 7
    assert operating_intervals(y_true, none_escape, CLASSES)["escape_rate"] == [0.0, 0.0]
    assert operating_intervals(np.zeros(3, int), [A, V, R], CLASSES)["escape_rate"] is None  # no defective part
    with pytest.raises(ValueError, match="differ in size"):
        operating_intervals(y_true, VERDICTS[:-1], CLASSES)


def test_confidence_intervals_add_the_operating_figures_with_the_image_resamples():
    y_true = np.array([CLASSES.index(t) for t in TRUTH])
    score = np.linspace(0.0, 1.0, len(TRUTH))
    plain = confidence_intervals(y_true, y_true, score, CLASSES, seed=1)
    both = confidence_intervals(y_true, y_true, score, CLASSES, seed=1, verdicts=VERDICTS)
    assert set(both) - set(plain) == {f"operating_point.{k}" for k in ("escape_rate", "false_reject_rate",
                                                                       "review_rate")}
    assert {k: both[k] for k in plain} == plain  # the image figures' intervals unchanged


def test_compare_shows_the_operating_figures_of_both_reports():
    report = {"image": {"accuracy": 0.9}, "operating_point": operating_point(TRUTH, VERDICTS, CLASSES)}
    paths = figure_paths(report)
    assert {"operating_point.escape_rate", "operating_point.false_reject_rate",
            "operating_point.review_rate"} <= set(paths)
    assert "operating_point.per_class.crack.escape_rate" in paths
    assert "operating_point.per_class.good.false_reject_rate" in paths
    assert "operating_point.per_class.good.escape_rate" not in paths  # good parts do not escape
    assert at_path(report, "operating_point.per_class.crack.escape_rate") == 0.25
    assert at_path(report, "pixel.miou") is None  # a report without the figure
