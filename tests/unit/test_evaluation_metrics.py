"""Hand-computed checks of inspector.evaluation.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inspector.evaluation.metrics import (
    PixelConfusion,
    auroc,
    average_precision,
    classification_report,
    confusion_matrix,
    pr_curve,
    roc_curve,
)


def test_roc_curve_points() -> None:
    # Sorted by score: .8(pos) .4(neg) .35(pos) .1(neg); negatives and positives 2 each.
    fpr, tpr, thr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_auroc_simple() -> None:
    # Pairs (pos, neg): .35>.1, .35<.4, .8>.1, .8>.4 -> 3 of 4.
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_roc_and_auroc_with_ties() -> None:
    # Three samples tie at .5 (2 pos, 1 neg): one point, (fpr, tpr) jumps from (0, 0) to (.5, 1).
    # Pairs: pos .5 vs neg .5 -> 1/2 each (x2), pos .5 vs neg .2 -> 1 each (x2) -> 3/4.
    y, s = np.array([0, 1, 1, 0]), np.array([0.5, 0.5, 0.5, 0.2])
    fpr, tpr, thr = roc_curve(y, s)
    np.testing.assert_allclose(fpr, [0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 1, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.5, 0.2])
    assert auroc(y, s) == pytest.approx(0.75)
    assert auroc(y, np.full(4, 0.3)) == pytest.approx(0.5)  # all tied: chance


def test_auroc_matches_rank_statistic() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # coarse rounding -> many ties
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auroc(y, s) == pytest.approx(wins / (pos.size * neg.size))


def test_auroc_nan_when_one_class_absent() -> None:
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.9])))
    assert math.isnan(auroc(np.array([0, 0]), np.array([0.2, 0.9])))


def test_pr_curve_and_average_precision() -> None:
    # Descending scores, labels 1 0 1 0 1: hits at ranks 1, 3, 5 -> P = 1, 2/3, 3/5, each R step 1/3.
    y, s = np.array([1, 0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    precision, recall, thr = pr_curve(y, s)
    np.testing.assert_allclose(precision, [1, 1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall, [0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(thr, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_average_precision_with_ties() -> None:
    # y=[1,0,1], s=[.8,.8,.3]: at .8 P=1/2, R=1/2; at .3 P=2/3, R=1 -> .5*.5 + .5*2/3 = 7/12.
    assert average_precision(np.array([1, 0, 1]), np.array([0.8, 0.8, 0.3])) == pytest.approx(7 / 12)


def test_average_precision_nan_without_positives() -> None:
    assert math.isnan(average_precision(np.array([0, 0, 0]), np.array([0.1, 0.5, 0.9])))
    assert average_precision(np.array([1, 1]), np.array([0.1, 0.5])) == pytest.approx(1.0)


def test_binary_inputs_validated() -> None:
    with pytest.raises(ValueError):
        auroc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError):
        auroc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError):
        auroc(np.array([0, 1]), np.array([0.1, np.nan]))


def test_confusion_matrix() -> None:
    # Pairs (t, p): (0,0) (1,2) (2,2) (2,1) (1,1).
    cm = confusion_matrix(np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 1, 1]), 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [0, 1, 1]])
    assert cm.dtype == np.int64
    assert confusion_matrix(np.array([], dtype=int), np.array([], dtype=int), 2).sum() == 0
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)


# Toy set, classes good/crack/scratch:
#   y_true = 0 0 0 0 1 1 2 2
#   y_pred = 0 0 0 2 1 2 2 2
# Confusion (rows = truth): [[3, 0, 1], [0, 1, 1], [0, 0, 2]]
#   good:    P = 3/3 = 1,   R = 3/4, F1 = 2 * 1 * .75 / 1.75 = 6/7
#   crack:   P = 1/1 = 1,   R = 1/2, F1 = 2 * 1 * .5 / 1.5  = 2/3
#   scratch: P = 2/4 = 1/2, R = 2/2, F1 = 2/3
#   macro F1 = (6/7 + 2/3 + 2/3) / 3 = 46/63; accuracy = 6/8.
# Defect vs good: negatives scores .1 .2 .3 .6, positives .7 .5 .9 .8.
#   AUROC: .5 beats 3 of 4 negatives, the rest beat all 4 -> 15/16.
#   AP: ranking .9+ .8+ .7+ .6- .5+ -> (1 + 1 + 1 + 4/5) / 4 = 0.95.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 2, 1, 2, 2, 2])
SCORE = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.5, 0.9, 0.8])
CLASSES = ["good", "crack", "scratch"]


def test_classification_report_toy() -> None:
    report = classification_report(Y_TRUE, Y_PRED, SCORE, CLASSES)
    assert report["accuracy"] == pytest.approx(0.75)
    assert report["macro_f1"] == pytest.approx(46 / 63)
    assert report["auroc_defect"] == pytest.approx(15 / 16)
    assert report["ap_defect"] == pytest.approx(0.95)
    expected = {"good": (1, 3 / 4, 6 / 7, 4), "crack": (1, 1 / 2, 2 / 3, 2), "scratch": (1 / 2, 1, 2 / 3, 2)}
    for name, (precision, recall, f1, support) in expected.items():
        row = report["per_class"][name]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support and type(row["support"]) is int
    assert report["confusion"] == [[3, 0, 1], [0, 1, 1], [0, 0, 2]]


def test_classification_report_plain_types() -> None:
    report = classification_report(Y_TRUE, Y_PRED, SCORE, CLASSES)
    for key in ("accuracy", "macro_f1", "auroc_defect", "ap_defect"):
        assert type(report[key]) is float and 0.0 <= report[key] <= 1.0
    for row in report["per_class"].values():
        assert all(type(row[k]) is float for k in ("precision", "recall", "f1"))
    assert all(type(v) is int for line in report["confusion"] for v in line)


def test_classification_report_absent_class_leaves_macro_alone() -> None:
    # "dent" has no support and no predictions: every figure undefined, and macro-F1 stays (6/7 + 2/3 + 2/3) / 3.
    report = classification_report(Y_TRUE, Y_PRED, SCORE, [*CLASSES, "dent"])
    assert report["per_class"]["dent"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert report["macro_f1"] == pytest.approx(46 / 63)
    assert report["confusion"][3] == [0, 0, 0, 0]


def test_classification_report_class_only_in_truth_or_only_predicted() -> None:
    # truth good good crack crack, predicted good scratch good good: crack never predicted (precision undefined,
    # F1 0), scratch predicted once without support (recall undefined, F1 0); good P = 1/3, R = 1/2 -> F1 = 2/5.
    report = classification_report(np.array([0, 0, 1, 1]), np.array([0, 2, 0, 0]), np.array([.1, .2, .3, .4]), CLASSES)
    assert report["per_class"]["crack"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["per_class"]["scratch"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert report["per_class"]["good"]["f1"] == pytest.approx(0.4)
    assert report["macro_f1"] == pytest.approx(0.4 / 3)


def test_classification_report_undefined_figures_are_none() -> None:
    # only good parts: no AUROC, no AP; no samples at all: nothing is defined
    only_good = classification_report(np.zeros(3, int), np.zeros(3, int), np.array([.1, .2, .3]), CLASSES)
    assert only_good["auroc_defect"] is None and only_good["ap_defect"] is None
    assert only_good["accuracy"] == 1.0 and only_good["macro_f1"] == 1.0  # good alone is present: F1 1
    empty = classification_report(np.zeros(0, int), np.zeros(0, int), np.zeros(0), CLASSES)
    assert [empty[k] for k in ("accuracy", "macro_f1", "auroc_defect", "ap_defect")] == [None] * 4


def test_classification_report_good_class_not_first() -> None:
    # Same data with "good" at index 2: the defect group is then y_true != 2.
    report = classification_report(Y_TRUE, Y_PRED, SCORE, ["crack", "scratch", "good"])
    is_defect = Y_TRUE != 2
    assert report["auroc_defect"] == pytest.approx(auroc(is_defect, SCORE))


def test_classification_report_unknown_good_class() -> None:
    with pytest.raises(ValueError):
        classification_report(Y_TRUE, Y_PRED, SCORE, ["a", "b", "c"])


# 4x4 maps, labels 0 = background, 1 and 2 = defect classes.
TRUTH = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 2, 2]])
PRED = np.array([[0, 0, 0, 0], [0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 2, 1]])
# Confusion (rows = truth): [[9, 1, 0], [1, 3, 0], [0, 1, 1]]
#   binary defect: TP = 3 + 0 + 1 + 1 = 5, FP = 1, FN = 1 -> IoU = 5/7, Dice = 10/12 = 5/6
#   IoU per label: 0: 9 / (10 + 10 - 9) = 9/11; 1: 3 / (4 + 5 - 3) = 1/2; 2: 1 / (2 + 1 - 1) = 1/2
#   mIoU = (9/11 + 1/2 + 1/2) / 3 = 20/33


def test_pixel_confusion_hand_computed() -> None:
    pc = PixelConfusion(3, names=["crack", "scratch"])
    pc.update(TRUTH, PRED)
    np.testing.assert_array_equal(pc.matrix, [[9, 1, 0], [1, 3, 0], [0, 1, 1]])
    report = pc.report()
    assert report["iou_defect"] == pytest.approx(5 / 7)
    assert report["dice_defect"] == pytest.approx(5 / 6)
    assert report["miou"] == pytest.approx(20 / 33)
    assert report["miou_defects"] == pytest.approx(1 / 2)
    assert report["iou_per_class"] == pytest.approx({"crack": 1 / 2, "scratch": 1 / 2})
    assert report["iou_per_image"] == pytest.approx(5 / 7)  # one image: the pooled IoU
    assert report["n_images"] == 1
    assert all(type(report[k]) is float for k in ("iou_defect", "dice_defect", "iou_per_image", "miou", "miou_defects"))


def test_pixel_confusion_per_image_iou_differs_from_pooled() -> None:
    # Image A: a 4-px defect found exactly (IoU 1). Image B: 12 true px, 4 of them found (IoU 1/3).
    # Pooled: TP 8, FN 8 -> 8/16 = 1/2; per image: (1 + 1/3) / 2 = 2/3. Image C (clean, nothing found) is left out.
    a_truth = np.zeros((4, 4), int)
    a_truth[0] = 1
    b_truth = np.zeros((4, 4), int)
    b_truth[:3] = 1
    b_pred = np.zeros((4, 4), int)
    b_pred[0] = 1
    pc = PixelConfusion(2)
    pc.update(a_truth, a_truth)
    pc.update(b_truth, b_pred)
    pc.update(np.zeros((4, 4), int), np.zeros((4, 4), int))
    report = pc.report()
    assert report["iou_defect"] == pytest.approx(1 / 2)
    assert report["iou_per_image"] == pytest.approx(2 / 3)
    assert report["n_images"] == 3 and pc.per_image.shape == (3, 2, 2)
    np.testing.assert_array_equal(pc.per_image[1], [[4, 0], [8, 4]])


def test_pixel_confusion_accumulates() -> None:
    rng = np.random.default_rng(1)
    t2, p2 = rng.integers(0, 3, (4, 4)), rng.integers(0, 3, (4, 4))
    split = PixelConfusion(3)
    split.update(TRUTH, PRED)
    split.update(t2, p2)
    whole = PixelConfusion(3)
    whole.update(np.concatenate([TRUTH, t2]), np.concatenate([PRED, p2]))
    batch = PixelConfusion(3)
    batch.update_batch(np.stack([TRUTH, t2]), np.stack([PRED, p2]))
    np.testing.assert_array_equal(split.matrix, whole.matrix)
    np.testing.assert_array_equal(batch.per_image, split.per_image)
    pooled = ("iou_defect", "dice_defect", "miou", "miou_defects")
    assert {k: split.report()[k] for k in pooled} == pytest.approx({k: whole.report()[k] for k in pooled})
    assert split.report()["iou_per_class"] == pytest.approx(whole.report()["iou_per_class"])
    assert batch.report() == split.report()


def test_pixel_confusion_skips_unseen_labels() -> None:
    # Label 3 never occurs: mIoU still averages labels 0..2 only, and its own IoU is undefined.
    pc = PixelConfusion(4)
    pc.update(TRUTH, PRED)
    report = pc.report()
    assert report["miou"] == pytest.approx(20 / 33)
    assert report["miou_defects"] == pytest.approx(1 / 2)
    assert report["iou_per_class"] == pytest.approx({"1": 1 / 2, "2": 1 / 2, "3": None})


def test_pixel_confusion_without_defects() -> None:
    empty = PixelConfusion(2).report()
    assert empty == {"n_images": 0, "iou_defect": None, "dice_defect": None, "iou_per_image": None, "miou": None,
                     "miou_defects": None, "iou_per_class": {"1": None}}
    pc = PixelConfusion(2)
    pc.update(np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool))
    # nothing to find, nothing found: no defect figure; background alone gives mIoU 1
    assert pc.report() == {"n_images": 1, "iou_defect": None, "dice_defect": None, "iou_per_image": None, "miou": 1.0,
                           "miou_defects": None, "iou_per_class": {"1": None}}
    missed = PixelConfusion(2)
    missed.update(np.eye(4, dtype=bool), np.zeros((4, 4), dtype=bool))
    # Defect IoU 0; background IoU 12 / 16 -> mIoU (12/16 + 0) / 2.
    assert missed.report() == {"n_images": 1, "iou_defect": 0.0, "dice_defect": 0.0, "iou_per_image": 0.0,
                               "miou": 0.375, "miou_defects": 0.0, "iou_per_class": {"1": 0.0}}


def test_pixel_confusion_validation() -> None:
    with pytest.raises(ValueError):
        PixelConfusion(1)
    with pytest.raises(ValueError):
        PixelConfusion(3, names=["crack"])
    pc = PixelConfusion(2)
    with pytest.raises(ValueError):
        pc.update(np.zeros((4, 4), dtype=int), np.zeros((4, 3), dtype=int))
    with pytest.raises(ValueError):
        pc.update(np.full((2, 2), 2), np.zeros((2, 2), dtype=int))
    assert pc.report()["n_images"] == 0  # a refused image is not counted
