"""``inspector evaluate`` on a tiny case whose figures are computed by hand."""

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from inspector.artifacts.meta import BundleMeta, DataRecord
from inspector.config import PreprocessSpec, Thresholds
from inspector.evaluation import report as report_module
from inspector.inference.postprocess import decide
from inspector.inference.predictor import Prediction

CLASSES = ("good", "crack")
# image fill value -> (p(good), predicted defect columns / rows): see the hand computation below
PLAN = {10: (0.9, None), 20: (0.4, (slice(0, 8), slice(0, 8))), 30: (0.2, (slice(None), slice(0, 24))), 40: (0.6, None)}


class StubPredictor:
    """Answers from PLAN, keyed by the frame's constant grey value."""

    classes, thresholds, version = CLASSES, Thresholds(), "stub/v1"

    def __init__(self, tmp_path):
        meta = BundleMeta(classes=CLASSES, preprocess=PreprocessSpec(64, 64), data=DataRecord(root="/elsewhere"))
        self.bundle = SimpleNamespace(meta=meta, path=tmp_path / "bundle")

    def predict(self, frames):
        out = []
        for frame in frames:
            p_good, box = PLAN[int(frame.flat[0])]
            probs = np.array([p_good, 1 - p_good])
            mask = np.zeros(frame.shape[:2], np.float32)
            if box:
                mask[box] = 0.9
            d = decide(probs, CLASSES, self.thresholds)
            out.append(Prediction(d.verdict, d.label, d.defect_class, d.defect_score, dict(zip(CLASSES, probs)),
                                  mask, [], self.version))
        return out


@pytest.fixture()
def data(tmp_path):
    for cls, value, mask_box in [("good", 10, None), ("good", 20, None), ("crack", 30, (slice(None), slice(0, 32))),
                                 ("crack", 40, (slice(0, 16), slice(None)))]:
        (tmp_path / "images" / cls).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "images" / cls / f"{value}.png"), np.full((64, 64), value, np.uint8))
        if mask_box:
            (tmp_path / "masks" / cls).mkdir(parents=True, exist_ok=True)
            mask = np.zeros((64, 64), np.uint8)
            mask[mask_box] = 255
            cv2.imwrite(str(tmp_path / "masks" / cls / f"{value}.png"), mask)
    return tmp_path


def test_report_figures_match_the_hand_computation(data, tmp_path, monkeypatch):
    monkeypatch.setattr(report_module.Predictor, "from_bundle", classmethod(lambda cls, *a, **k: StubPredictor(tmp_path)))
    report = report_module.run_evaluation("stub", data, tmp_path / "report", show_progress=False)
    # truth good, good, crack, crack; predicted good, crack, crack, good
    assert report["n_images"] == 4 and report["classes"] == ["good", "crack"]
    image = report["image"]
    assert image["accuracy"] == 0.5 and image["macro_f1"] == 0.5
    assert image["confusion"] == [[1, 1], [1, 1]]
    assert image["per_class"]["crack"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # defect scores 0.1, 0.6 (good) vs 0.8, 0.4 (crack): 3 of 4 pairs ordered; AP = 0.5 * 1 + 0.5 * 2/3
    assert image["auroc_defect"] == pytest.approx(0.75)
    assert image["ap_defect"] == pytest.approx(5 / 6)
    # pixels: TP 64*24, FP 8*8, FN 64*8 + 16*64
    tp, fp, fn = 1536, 64, 1536
    pixel = report["pixel"]
    assert pixel["iou_defect"] == pytest.approx(tp / (tp + fp + fn))
    assert pixel["dice_defect"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    bg_inter, bg_union = 4 * 4096 - (tp + fp + fn), (4 * 4096 - 3072) + (4 * 4096 - 1600) - (4 * 4096 - 3136)
    assert pixel["miou"] == pytest.approx((bg_inter / bg_union + tp / (tp + fp + fn)) / 2)
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written == report
    assert json.loads((tmp_path / "report" / "report_meta.json").read_text())["split"] == "all"
    for png in ("confusion_matrix.png", "roc_pr.png", "overlays.png"):
        assert cv2.imread(str(tmp_path / "report" / png)) is not None


def test_unknown_class_in_the_data_is_refused(data, tmp_path, monkeypatch):
    (data / "images" / "dent").mkdir()
    cv2.imwrite(str(data / "images" / "dent" / "50.png"), np.full((64, 64), 50, np.uint8))
    monkeypatch.setattr(report_module.Predictor, "from_bundle", classmethod(lambda cls, *a, **k: StubPredictor(tmp_path)))
    with pytest.raises(ValueError, match="classes the model does not know: \\['dent'\\]"):
        report_module.run_evaluation("stub", data, tmp_path / "report", show_progress=False)
