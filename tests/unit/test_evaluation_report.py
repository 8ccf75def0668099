"""``inspector evaluate`` on a tiny case whose figures are computed by hand."""

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import torch

from inspector.artifacts.meta import BundleMeta, DataRecord
from inspector.config import PreprocessSpec, Thresholds
from inspector.evaluation import report as report_module
from inspector.evaluation.runner import run_served_and_raw
from inspector.inference.postprocess import ACCEPT, decide
from inspector.inference.predictor import Prediction, Predictor
from inspector.data.layouts import Sample

CLASSES = ("good", "crack")
# image fill value -> (p(good), the segmentation head's defect rows / columns): see the hand computation below.
# 10 is accepted, so the served mask of its 4x4 box is zeroed; 40 goes to review (score 0.4), its mask is empty.
PLAN = {10: (0.9, (slice(0, 4), slice(0, 4))), 20: (0.4, (slice(0, 8), slice(0, 8))),
        30: (0.2, (slice(None), slice(0, 24))), 40: (0.6, None)}


class StubPredictor:
    """Answers from PLAN, keyed by the frame's constant grey value, through the predictor's three stages (one
    forward pass, finished under any thresholds; an accepted part's mask zeroed as the predictor does)."""

    classes, version = CLASSES, "stub/v1"

    def __init__(self, tmp_path):
        meta = BundleMeta(classes=CLASSES, preprocess=PreprocessSpec(64, 64), data=DataRecord(root="/elsewhere"))
        self.bundle = SimpleNamespace(meta=meta, path=tmp_path / "bundle")
        self.thresholds = Thresholds()
        self.forward_passes = 0

    def prepare(self, frames):
        return SimpleNamespace(batch=[int(f.flat[0]) for f in frames], shapes=[f.shape[:2] for f in frames])

    def infer(self, batch):
        self.forward_passes += 1
        return batch

    def finish(self, out, prepared, thresholds=None):
        thresholds = thresholds or self.thresholds
        preds = []
        for value, shape in zip(out, prepared.shapes):
            p_good, box = PLAN[value]
            probs = np.array([p_good, 1 - p_good])
            mask = np.zeros(shape, np.float32)
            if box:
                mask[box] = 0.9
            d = decide(probs, CLASSES, thresholds, float(mask.max()))
            if d.verdict == ACCEPT:
                mask.fill(0.0)
            preds.append(Prediction(d.verdict, d.label, d.defect_class, d.defect_score, dict(zip(CLASSES, probs)),
                                    mask, [], self.version))
        return preds


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
    assert pixel["n_images"] == 4
    assert pixel["iou_defect"] == pytest.approx(tp / (tp + fp + fn))
    assert pixel["dice_defect"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    bg_inter, bg_union = 4 * 4096 - (tp + fp + fn), (4 * 4096 - 3072) + (4 * 4096 - 1600) - (4 * 4096 - 3136)
    assert pixel["miou"] == pytest.approx((bg_inter / bg_union + tp / (tp + fp + fn)) / 2)
    assert pixel["miou_defects"] == pytest.approx(tp / (tp + fp + fn))  # crack, the one defect class
    assert pixel["iou_per_class"] == {"crack": pytest.approx(tp / (tp + fp + fn))}
    # per image, over 20 (IoU 0: a good part with a mask), 30 (1536 / 2048) and 40 (IoU 0: missed); 10 is clean
    assert pixel["iou_per_image"] == pytest.approx(0.75 / 3)
    # ungated: the accepted part 10 keeps its 16 px box, a fourth image with IoU 0
    ungated = report["pixel_ungated"]
    assert ungated["iou_defect"] == pytest.approx(tp / (tp + fp + 16 + fn))
    assert ungated["iou_per_image"] == pytest.approx(0.75 / 4)
    # verdicts: 10 ACCEPT (good), 20 REJECT (good), 30 REJECT (crack), 40 REVIEW (crack)
    op = report["operating_point"]
    assert {k: v for k, v in op.items() if not k.endswith("_upper")} == {
        "parts": 4, "defective": 2, "escaped": 0, "escape_rate": 0.0, "good": 2, "falsely_rejected": 1,
        "false_reject_rate": 0.5, "reviewed": 1, "review_rate": 0.25, "per_class": op["per_class"]}
    assert op["per_class"]["crack"] | {"escape_rate_upper": None} == {
        "parts": 2, "escaped": 0, "escape_rate": 0.0, "escape_rate_upper": None, "reviewed": 1, "review_rate": 0.5}
    assert op["per_class"]["good"]["false_reject_rate"] == 0.5 and op["per_class"]["good"]["review_rate"] == 0.0
    assert op["escape_rate_upper"] == pytest.approx(1 - 0.05 ** 0.5)  # no escape among 2: up to 78 %
    assert set(report["ci95"]) == {f"image.{k}" for k in ("accuracy", "macro_f1", "auroc_defect", "ap_defect")} | {
        f"{section}.{k}" for section in ("pixel", "pixel_ungated")
        for k in ("iou_defect", "dice_defect", "iou_per_image", "miou", "miou_defects")} | {
        f"operating_point.{k}" for k in ("escape_rate", "false_reject_rate", "review_rate")}
    assert report["ci95"]["operating_point.escape_rate"] == [0.0, 0.0]  # no escape in any resample
    for key, (lo, hi) in report["ci95"].items():
        section, name = key.split(".")
        assert lo <= report[section][name] <= hi, key
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written == report
    assert json.loads((tmp_path / "report" / "report_meta.json").read_text())["split"] == "all"
    for png in ("confusion_matrix.png", "roc_pr.png", "overlays.png"):
        assert cv2.imread(str(tmp_path / "report" / png)) is not None


def test_evaluate_prints_the_operating_point(data, tmp_path, monkeypatch, capsys):
    from inspector.cli import main

    monkeypatch.setattr(report_module.Predictor, "from_bundle", classmethod(lambda cls, *a, **k: StubPredictor(tmp_path)))
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(data), "--report", str(tmp_path / "r")]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (summary["escape_rate"], summary["false_reject_rate"], summary["review_rate"]) == (0.0, 0.5, 0.25)


def test_unknown_class_in_the_data_is_refused(data, tmp_path, monkeypatch):
    (data / "images" / "dent").mkdir()
    cv2.imwrite(str(data / "images" / "dent" / "50.png"), np.full((64, 64), 50, np.uint8))
    monkeypatch.setattr(report_module.Predictor, "from_bundle", classmethod(lambda cls, *a, **k: StubPredictor(tmp_path)))
    with pytest.raises(ValueError, match="classes the model does not know: \\['dent'\\]"):
        report_module.run_evaluation("stub", data, tmp_path / "report", show_progress=False)


def test_one_forward_pass_gives_the_served_and_the_raw_masks(data, tmp_path):
    stub = StubPredictor(tmp_path)
    samples = [Sample(data / "images" / "good" / "10.png", "good", None),
               Sample(data / "images" / "crack" / "30.png", "crack", None)]
    (_, _, served10, raw10), (_, _, served30, raw30) = run_served_and_raw(stub, samples, "test", show=False)
    assert stub.forward_passes == 1 and stub.thresholds == Thresholds()  # the predictor's own thresholds untouched
    assert served10.verdict == "ACCEPT" and not served10.mask.any() and raw10.mask.max() == pytest.approx(0.9)
    np.testing.assert_array_equal(served30.mask, raw30.mask)  # a rejected part is served its mask


class _Net(torch.nn.Module):
    """Class logits and a mask from the image's mean: bright parts look defective, their bright half is the defect."""

    def forward(self, x):  # (b, 3, h, w)
        level = x.mean(dim=(1, 2, 3))  # (b,)
        logits = torch.stack([-4 * level, 4 * level], dim=1)  # (b, 2)
        return logits, 8 * (x[:, :1] - 0.25 * level[:, None, None, None].abs())  # (b, 1, h, w)


def test_served_predictions_are_the_predictors_own(tmp_path):
    """Against the real predictor: the served predictions equal ``predict``'s, verdicts included, and the raw masks
    equal the served ones wherever the part is not accepted."""
    predictor = Predictor.for_network(_Net().eval(), CLASSES, PreprocessSpec(32, 32), device="cpu")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(12):
        image = np.clip(rng.normal(60 + 15 * i, 40, (40, 48, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"{i}.png"), image)
        samples.append(Sample(tmp_path / f"{i}.png", "good", None))
    got = list(run_served_and_raw(predictor, samples, "test", batch_size=5, show=False))
    expected = predictor.predict([image for _, image, _, _ in got])
    assert {p.verdict for _, _, p, _ in got} >= {"ACCEPT", "REJECT"}  # both kinds of part occur
    for (_, _, served, raw), want in zip(got, expected):
        assert (served.verdict, served.label, served.defect_score) == (want.verdict, want.label, want.defect_score)
        np.testing.assert_array_equal(served.mask, want.mask)
        if served.verdict == ACCEPT:
            assert not served.mask.any() and raw.mask.any()
        else:
            np.testing.assert_array_equal(raw.mask, served.mask)
