"""End to end on generated data: train -> bundle -> predictor -> evaluate, and the CLI around them."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.artifacts.bundle import derive_bundle, load_bundle
from inspector.cli import main
from inspector.config import PreprocessSpec, Thresholds, from_dict
from inspector.data.demo import make_part
from inspector.data.layouts import load_dataset
from inspector.errors import UserError
from inspector.evaluation.report import collect
from inspector.inference.predictor import Predictor
from inspector.imaging.preprocess import read_image

REPORT_KEYS = {"n_images", "classes", "image", "pixel", "pixel_ungated", "operating_point", "anomaly", "ci95"}  # anomaly: the tiny bundle has the head
IMAGE_KEYS = {"accuracy", "macro_f1", "auroc_defect", "ap_defect", "per_class", "confusion"}
PIXEL_KEYS = {"n_images", "iou_defect", "dice_defect", "iou_per_image", "miou", "miou_defects", "iou_per_class"}
PIXEL_FIGURES = PIXEL_KEYS - {"n_images", "iou_per_class"}


def test_training_lowers_the_loss_and_records_everything(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    history = json.loads((tiny_bundle / "history.json").read_text())
    assert [row["phase"] for row in history] == ["frozen", "finetune", "finetune"]
    assert min(row["train_loss"] for row in history[1:]) < history[0]["train_loss"]
    meta = bundle.meta
    assert meta.classes == ("good", "crack", "scratch", "spot")
    assert meta.preprocess.height == 64 and meta.preprocess.mean == (127.0,) * 3
    assert meta.train_config["epochs_finetune"] == 2
    assert len(meta.data.hash) == 64 and meta.data.n_images == 32
    assert len(meta.split.val) == 8 and not set(meta.split.val) & set(meta.split.train)
    assert set(meta.validation) >= {"val_macro_f1", "val_miou", "val_auroc"}
    assert (tiny_bundle / "training_curves.png").stat().st_size > 1000
    assert set(meta.reference) == {"defect_score", "brightness", "contrast", "sharpness"}
    assert sum(meta.reference["brightness"]["fractions"]) == pytest.approx(1.0)
    assert meta.calibration is None and bundle.thresholds == Thresholds()  # trained with calibrate=False


def test_bundle_predicts_on_frames_of_any_size(tiny_bundle, demo_data):
    predictor = Predictor.from_bundle(tiny_bundle, device="cpu")
    image = read_image(demo_data / "images" / "spot" / "spot_0000.png")
    wide = np.ascontiguousarray(np.tile(image, (1, 3)))  # (64, 192)
    preds = predictor.predict([image, wide])
    assert [p.mask.shape for p in preds] == [image.shape, wide.shape]
    for p in preds:
        assert p.verdict in {"ACCEPT", "REVIEW", "REJECT"}
        assert sum(p.class_scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.defect_score == pytest.approx(1.0 - p.class_scores["good"], abs=1e-6)
        assert p.model_version == "tiny/v1"
        assert all(0 <= r.x and r.x + r.width <= p.mask.shape[1] for r in p.regions)


def test_evaluate_writes_the_report_and_plots(tiny_bundle, demo_data, tmp_path):
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(demo_data), "--report", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    assert set(report["image"]) == IMAGE_KEYS and set(report["pixel"]) == set(report["pixel_ungated"]) == PIXEL_KEYS
    assert report["n_images"] == 8  # the bundle's own validation split
    assert np.array(report["image"]["confusion"]).sum() == 8
    pixel = [report[section][k] for section in ("pixel", "pixel_ungated") for k in PIXEL_FIGURES]
    for value in [report["image"]["accuracy"], report["image"]["macro_f1"], *pixel]:
        assert 0.0 <= value <= 1.0
    for key, interval in report["ci95"].items():  # every figure defined here has an interval around it
        section, name = key.split(".")
        assert interval[0] <= report[section][name] <= interval[1], key
    for png in ["confusion_matrix.png", "roc_pr.png", "overlays.png", "training_curves.png"]:
        assert (tmp_path / png).stat().st_size > 1000
    assert json.loads((tmp_path / "report_meta.json").read_text())["split"] == "val"


def test_cli_predict_prints_json_lines_and_overlays(tiny_bundle, demo_data, tmp_path, capsys):
    folder = demo_data / "images" / "crack"
    assert main(["predict", "--model", str(tiny_bundle), str(folder), "--overlays", str(tmp_path)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 8
    assert all(line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"} for line in lines)
    assert all(line["anomaly_score"] >= 0 and isinstance(line["by_anomaly"], bool) for line in lines)
    assert all((tmp_path / f"{line['frame_id'].rsplit('/', 1)[1][:-4]}_overlay.png").is_file() for line in lines)


def test_cli_reports_user_errors_without_a_traceback(tiny_bundle, tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "nope"), "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    assert main(["predict", "--model", str(tiny_bundle), str(bad)]) == 0
    assert "does not start like a JPEG" in json.loads(capsys.readouterr().out)["error"]["message"]


def test_cli_train_makes_the_first_version_active(demo_data, tmp_path, capsys):
    args = ["train", "--data", str(demo_data), "--out", str(tmp_path), "--name", "line1", "--image-size", "64",
            "--epochs-frozen", "1", "--epochs-finetune", "0", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("line1/v1")
    assert (tmp_path / "line1" / "ACTIVE").read_text().strip() == "v1"
    bundle = load_bundle(tmp_path / "line1")
    assert bundle.version == "v1"
    cal = bundle.meta.calibration  # thresholds chosen on the validation split by default
    assert cal["at"] == "train" and cal["split"] == "val" and cal["method"] == "f1_optimal"
    assert cal["n_good"] + cal["n_defect"] == len(bundle.meta.split.val)
    t = bundle.thresholds
    assert 0.0 <= t.review <= t.reject <= 1.0 and t.reject != Thresholds().reject
    by_weight = {float(w): a for w, a in cal["auroc_by_mask_weight"].items()}
    assert t.mask_weight == max(by_weight, key=lambda w: (round(by_weight[w], 6), -w))
    assert 0 <= cal["escape_rate"] <= 1


def test_calibrate_replaces_the_anomaly_threshold_from_parts_confirmed_good(tiny_bundle, demo_data, tmp_path, capsys):
    confirmed = tmp_path / "confirmed" / "images" / "good"  # e.g. inspector audit export of reviewed-good parts
    confirmed.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for i in range(24):
        cv2.imwrite(str(confirmed / f"ok_{i:02d}.png"), make_part("good", rng, 64)[0])
    args = ["calibrate", "--model", str(tiny_bundle), "--data", str(tmp_path / "confirmed"),
            "--anomaly-review-rate", "0.05"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    original, derived = load_bundle(tiny_bundle), load_bundle(out["bundle"])
    assert out["method"] == "anomaly_only" and out["n_good"] == 24 and out["anomaly_n_good"] == 24
    before, after = original.thresholds, derived.thresholds
    assert after.anomaly == out["anomaly_threshold"] != before.anomaly
    assert (after.reject, after.review, after.mask_weight) == (before.reject, before.review, before.mask_weight)
    # about 5 % of those 24 good parts reach it: the conformal rank ceil(25 * 0.95) = 24 is their highest score
    scores = [p.anomaly_score for p in Predictor(derived, "cpu").predict(
        [read_image(f) for f in sorted(confirmed.iterdir())])]
    assert max(scores) < after.anomaly and out["anomaly_flagged"] == 0


def test_calibrate_writes_a_new_version_with_its_figures(tiny_bundle, demo_data, capsys):
    assert main(["calibrate", "--model", str(tiny_bundle), "--data", str(demo_data), "--target-escape-rate", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    derived = load_bundle(out["bundle"])
    original = load_bundle(tiny_bundle)
    assert derived.version != original.version and derived.meta.derived_from == original.version
    assert derived.meta.weights_sha256 == original.meta.weights_sha256
    cal = derived.meta.calibration
    assert cal["split"] == "val" and cal["n_good"] + cal["n_defect"] == 8
    assert cal["escape_rate"] <= 0.5 and cal["method"] == "escape_rate<=0.5"
    t = derived.thresholds
    assert 0.0 <= t.review <= t.reject <= 1.0 and t.reject == out["thresholds"]["reject"]
    assert (derived.path / "training_curves.png").is_file()
    predictor = Predictor.from_bundle(derived.path, device="cpu")
    assert predictor.thresholds == t


def test_train_init_continues_from_a_bundle_with_a_new_class(tiny_bundle, demo_data, tmp_path, capsys):
    import shutil

    import cv2

    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    (data / "images" / "dent").mkdir()
    for i, name in enumerate(sorted((data / "images" / "spot").iterdir())[:4]):
        cv2.imwrite(str(data / "images" / "dent" / f"dent_{i}.png"), 255 - cv2.imread(str(name), cv2.IMREAD_GRAYSCALE))
    args = ["train", "--data", str(data), "--out", str(tmp_path / "store"), "--name", "line", "--init", str(tiny_bundle),
            "--image-size", "96", "--epochs-frozen", "0", "--epochs-finetune", "1", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    bundle = load_bundle(capsys.readouterr().out.strip())
    original = load_bundle(tiny_bundle)
    assert bundle.meta.init_from == f"tiny/{original.version}"
    assert bundle.classes == ("good", "crack", "dent", "scratch", "spot")
    assert bundle.spec == original.spec  # preprocessing carries over (64 px), not the --image-size flag
    assert bundle.meta.backbone == original.meta.backbone


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_the_bundle_and_runs(tiny_bundle, demo_data, capsys, fmt):
    assert main(["export", "--model", str(tiny_bundle), "--format", fmt]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parity"]["max_abs_error"] <= out["parity"]["tolerance"] == 1e-4
    meta = json.loads((tiny_bundle / "export" / "export.json").read_text())
    assert from_dict(PreprocessSpec, meta["preprocess"]) == load_bundle(tiny_bundle).spec
    assert meta["classes"][0] == "good"
    assert fmt in meta["formats"]
    images = [read_image(demo_data / "images" / "scratch" / "scratch_0001.png"),
              read_image(demo_data / "images" / "good" / "good_0002.png")]
    eager = Predictor.from_bundle(tiny_bundle, device="cpu").predict(images)
    exported = Predictor.from_bundle(tiny_bundle, device="cpu", backend=fmt).predict(images)  # a batch of two
    for a, b in zip(eager, exported):
        assert a.verdict == b.verdict and abs(a.defect_score - b.defect_score) < 1e-4
        assert np.abs(a.mask - b.mask).max() < 1e-4


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """The tiny bundle copied without its exports: a test may export and tamper without touching the shared one."""
    import shutil

    return shutil.copytree(tiny_bundle, tmp_path / "b", ignore=shutil.ignore_patterns("export"))


def _rerecord(bundle: Path, fmt: str) -> None:
    """Records the current sha256 of each file of the ``fmt`` export, as a careless hand or tool would."""
    import hashlib

    meta_path = bundle / "export" / "export.json"
    meta = json.loads(meta_path.read_text())
    files = meta["formats"][fmt]["files"]
    for name in files:
        files[name] = hashlib.sha256((bundle / "export" / name).read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize("legacy", [False, True])  # legacy: export.json as written before it listed every file
def test_tampered_export_is_refused(bundle_copy, legacy):
    from inspector.inference.exporter import ExportError, export_model

    _, entry = export_model(bundle_copy, "torchscript")
    if legacy:
        meta_path = bundle_copy / "export" / "export.json"
        meta = json.loads(meta_path.read_text())
        meta["formats"]["torchscript"] = {"file": entry["file"], "sha256": entry["files"][entry["file"]]}
        meta_path.write_text(json.dumps(meta))
        Predictor.from_bundle(bundle_copy, device="cpu", backend="torchscript")  # still loads
    path = bundle_copy / "export" / "model.torchscript.pt"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ExportError, match="checksum") as refused:
        Predictor.from_bundle(bundle_copy, device="cpu", backend="torchscript")
    with pytest.raises(FileNotFoundError, match="no onnx export") as missing:
        Predictor.from_bundle(bundle_copy, device="cpu", backend="onnx")
    assert isinstance(refused.value, UserError) and isinstance(missing.value, UserError)  # one line from the CLI


def test_onnx_weights_are_named_after_the_graph_and_checked(bundle_copy, demo_data, tmp_path):
    import shutil

    from inspector.inference.exporter import ExportError, export_model

    export_model(bundle_copy, "onnx")
    folder = bundle_copy / "export"
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model.onnx", "model.onnx.data"]
    entry = json.loads((folder / "export.json").read_text())["formats"]["onnx"]
    assert sorted(entry["files"]) == ["model.onnx", "model.onnx.data"]
    other = shutil.copytree(bundle_copy, tmp_path / "other", ignore=shutil.ignore_patterns("export"))
    (other / "export").mkdir()
    for path in folder.glob("*"):  # cp export/* other/export/: hidden files would be left behind
        shutil.copy(path, other / "export")
    image = read_image(demo_data / "images" / "crack" / "crack_0000.png")
    copied = Predictor.from_bundle(other, device="cpu", backend="onnx").predict([image])[0]
    assert copied.defect_score == pytest.approx(Predictor.from_bundle(other, device="cpu").predict([image])[0].defect_score, abs=1e-4)
    data = other / "export" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ExportError, match="model.onnx.data: checksum mismatch"):
        Predictor.from_bundle(other, device="cpu", backend="onnx")


def test_export_with_replaced_weights_and_rerecorded_checksums_fails_parity(bundle_copy):
    import onnx
    from onnx import numpy_helper

    from inspector.inference.exporter import ExportError, check_export, export_model

    export_model(bundle_copy, "onnx")
    assert check_export(bundle_copy, "onnx")["max_abs_error"] <= 1e-4  # the untouched export passes
    graph_path = bundle_copy / "export" / "model.onnx"
    graph = onnx.load(str(graph_path))
    [weight] = [t for t in graph.graph.initializer if "classification_head.fc.weight" in t.name]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    onnx.save(graph, str(graph_path), save_as_external_data=True, location="model.onnx.data")
    _rerecord(bundle_copy, "onnx")
    Predictor.from_bundle(bundle_copy, device="cpu", backend="onnx")  # the checksums pass: they were re-recorded
    with pytest.raises(ExportError, match="onnx export differs from the bundle by .*; refused"):
        check_export(bundle_copy, "onnx")


def test_an_export_that_does_not_reproduce_the_bundle_is_not_written(bundle_copy, monkeypatch):
    import torch

    from inspector.inference import exporter as export
    from inspector.inference.exporter import ExportError, export_model

    write = export._write_torchscript

    def write_other_weights(model, example, path):
        with torch.no_grad():
            model.classification_head.fc.bias[0] += 1.0  # as if the exporter had traced another network
        write(model, example, path)

    monkeypatch.setattr(export, "_write_torchscript", write_other_weights)
    with pytest.raises(ExportError, match="torchscript export differs from the bundle by .*; not written"):
        export_model(bundle_copy, "torchscript")
    assert [p.name for p in (bundle_copy / "export").iterdir()] == []  # neither the file nor its staging folder


def test_compare_prints_both_models_and_their_disagreements(tiny_bundle, demo_data, capsys):
    """Against a copy that rejects every part (same weights), the original disagrees exactly on the validation frames
    it does not reject, and it does not reject them all (the good ones), so the rows cannot be empty."""
    reject_all = Thresholds(reject=0.0, review=0.0, per_class={c: 0.0 for c in ("crack", "scratch", "spot")})
    copy = derive_bundle(load_bundle(tiny_bundle), {"thresholds": reject_all})
    assert main(["compare", "--models", str(tiny_bundle), str(copy), "--data", str(demo_data), "--device", "cpu"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    head, rows = lines[0], lines[1:]
    assert head["split"] == "val" and head["n_images"] == 8
    assert head["A"] == f"tiny/{tiny_bundle.name}" and head["B"] == f"tiny/{copy.name}"
    for figure in ("image.accuracy", "image.macro_f1", "pixel.miou"):
        assert set(head["figures"][figure]) == {"A", "B"}
    assert head["figures"]["image.auroc_defect"]["A"] == head["figures"]["image.auroc_defect"]["B"]  # same weights
    # the validation frames (bundle.json, format v1), each predicted here by both models
    val = json.loads((tiny_bundle / "bundle.json").read_text())["split"]["val"]
    model_a, model_b = (Predictor.from_bundle(path, device="cpu") for path in (tiny_bundle, copy))
    differ = []
    for rel in val:
        image = read_image(demo_data / rel)
        a, b = model_a.predict([image])[0], model_b.predict([image])[0]
        assert (b.verdict, b.label) == ("REJECT", b.defect_class)  # the copy rejects every part
        if a.label != b.label:
            differ.append(str(demo_data / rel))
    assert differ
    assert sorted(row["image"] for row in rows) == sorted(differ)
    for row in rows:  # the original accepts (or sends to review) what the copy rejects as its likeliest defect
        assert row["A"] == "good" and row["B"] in ("crack", "scratch", "spot")
        assert row["truth"] in ("good", "crack", "scratch", "spot") and row["score_A"] == row["score_B"]


def test_no_pretrained_starts_from_random_weights(demo_data, tmp_path, capsys, monkeypatch):
    from inspector.model import lite0

    def forbidden():
        raise AssertionError("ImageNet weights must not be loaded")

    monkeypatch.setattr(lite0, "encoder_state_dict", forbidden)
    args = ["train", "--data", str(demo_data), "--out", str(tmp_path), "--name", "scratch", "--no-pretrained",
            "--image-size", "64", "--epochs-frozen", "0", "--epochs-finetune", "1", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    assert load_bundle(capsys.readouterr().out.strip()).meta.train_config["pretrained"] is False


def test_the_anomaly_head_is_fitted_and_scores_defects_higher(tiny_bundle, demo_data, tmp_path):
    record = load_bundle(tiny_bundle).meta.anomaly
    assert 0 < record.bank_size <= record.patches_seen and record.reference > 0 and not record.only
    assert record.good_images == 6 and record.reference_split == "train_oof+val"
    assert record.review_rate == 0.01 and record.reference_images == 8 and 0 < record.review_rate_upper <= 1
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(demo_data), "--report", str(tmp_path)]) == 0
    anomaly = json.loads((tmp_path / "report.json").read_text())["anomaly"]
    assert anomaly["image_auroc"] > 0.7 and anomaly["pixel_auroc"] > 0.7
    image = read_image(demo_data / "images" / "spot" / "spot_0000.png")
    predictor = Predictor.from_bundle(tiny_bundle, device="cpu")
    pred = predictor.predict([image])[0]
    assert pred.anomaly_map.shape == image.shape and pred.anomaly_score == pytest.approx(float(pred.anomaly_map.max()))
    # the classifier never rejects; the anomaly head flags the part and draws its regions from the anomaly map
    mask_at = 0.9 * pred.anomaly_score / (1 + pred.anomaly_score)
    predictor.thresholds = Thresholds(reject=1.0, review=1.0, anomaly=0.0, mask=mask_at, min_region_area=1)
    flagged = predictor.predict([image])[0]
    assert (flagged.verdict, flagged.label, flagged.by_anomaly) == ("REVIEW", "good", True)
    assert flagged.regions and {r.defect_class for r in flagged.regions} == {"anomaly"}
    # rejected by the anomaly head (label "anomaly"): evaluation counts it as the likeliest defect class
    predictor.thresholds = Thresholds(reject=1.0, review=1.0, anomaly=0.0, anomaly_verdict="REJECT")
    samples = load_dataset(demo_data).samples
    goods = [s for s in samples if s.label == "good"][:3]
    done = collect(predictor, goods + [s for s in samples if s.label != "good"][:3], show=False)
    anomaly = done.report()["anomaly"]
    assert anomaly["flagged_by_anomaly"] == 6 and anomaly["good_review_rate"] == 1.0  # every good part flagged
    assert anomaly["good_review_rate_upper"] == 1.0
    good = predictor.classes.index("good")
    assert all(0 <= o.pred < len(predictor.classes) and o.pred != good for o in done.outcomes)


def test_good_only_trains_an_anomaly_model_from_good_images(demo_data, tmp_path, capsys):
    args = ["train", "--data", str(demo_data), "--out", str(tmp_path), "--name", "go", "--image-size", "64",
            "--good-only", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    bundle = load_bundle(capsys.readouterr().out.strip().splitlines()[-1])
    assert bundle.classes == ("good", "anomaly") and bundle.meta.anomaly_only
    assert bundle.meta.validation["val_auroc"] > 0.7
    # the defects of the split give figures, not the threshold: it rejects at the anomaly operating point
    assert bundle.meta.calibration is None and bundle.thresholds.reject == bundle.thresholds.review == 0.5
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--model", str(bundle.path), "--data", str(demo_data), "--report", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["classes"] == ["good", "anomaly"] and report["n_images"] == 8
    assert report["anomaly"]["image_auroc"] == pytest.approx(report["image"]["auroc_defect"])
    image = read_image(demo_data / "images" / "crack" / "crack_0000.png")
    pred = Predictor.from_bundle(bundle.path, device="cpu").predict([image])[0]
    assert pred.defect_score == pytest.approx(pred.anomaly_score / (1 + pred.anomaly_score), abs=1e-6)
    assert all(r.defect_class == "anomaly" for r in pred.regions)


def test_good_only_learns_a_new_product_from_good_parts_alone(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data = tmp_path / "new-product"
    (data / "images" / "good").mkdir(parents=True)
    for i in range(30):  # hundreds on a real line; no defect seen yet
        cv2.imwrite(str(data / "images" / "good" / f"part_{i:03d}.png"), make_part("good", rng, 64)[0])
    args = ["train", "--data", str(data), "--out", str(tmp_path / "store"), "--name", "new", "--image-size", "64",
            "--good-only", "--anomaly-review-rate", "0.05", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    bundle = load_bundle(capsys.readouterr().out.strip().splitlines()[-1])
    record, validation = bundle.meta.anomaly, bundle.meta.validation
    assert bundle.classes == ("good", "anomaly") and record.review_rate == 0.05
    assert record.reference_images == 30 and record.reference_split == "train_oof+val"  # 24 out of fold + 6 held out
    assert "val_auroc" not in validation and 0 <= validation["val_review_rate"] <= 1  # no defects: no defect figures
    # a part unlike every good one is flagged; the good parts mostly pass
    predictor = Predictor.from_bundle(bundle.path, device="cpu")
    crack = predictor.predict([make_part("crack", rng, 64)[0]])[0]
    goods = predictor.predict([make_part("good", rng, 64)[0] for _ in range(20)])
    assert crack.anomaly_score > np.median([p.anomaly_score for p in goods])
    assert sum(p.verdict != "ACCEPT" for p in goods) <= 4


def test_too_few_good_images_for_the_review_rate_are_named(demo_data, tmp_path, caplog):
    from inspector.config import TrainConfig
    from inspector.train.fit import fit

    cfg = TrainConfig(image_size=64, good_only=True, workers=0, device="cpu", anomaly_review_rate=0.01)
    with caplog.at_level("WARNING"):
        fit(demo_data, tmp_path, "few", cfg)
    assert "only 8 good images for an anomaly review rate of 1.00 %: the target needs at least 99" in caplog.text


def _mvtec_category(root: Path) -> Path:
    """A small MVTec AD category from synthetic parts: train/good, test/{good,crack,spot}, ground_truth masks."""
    rng = np.random.default_rng(5)
    layout = [("train", "good", 12), ("test", "good", 4), ("test", "crack", 4), ("test", "spot", 4)]
    for split, kind, n in layout:
        for i in range(n):
            image, mask = make_part(kind, rng, 64)
            (root / split / kind).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / kind / f"{i:03d}.png"), image)
            if kind != "good":
                (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "ground_truth" / kind / f"{i:03d}_mask.png"), mask)
    return root


def test_good_only_on_mvtec_layout_follows_its_protocol(tmp_path, capsys):
    data = _mvtec_category(tmp_path / "part")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "store"), "--name", "mv", "--image-size", "64",
            "--good-only", "--workers", "0", "--device", "cpu"]
    assert main(args) == 0
    bundle = load_bundle(capsys.readouterr().out.strip().splitlines()[-1])
    split = bundle.meta.split
    assert all(p.startswith("train/good/") for p in split.train) and len(split.train) == 12
    assert all(p.startswith("test/") for p in split.val) and len(split.val) == 12
    report_dir = tmp_path / "report"
    assert main(["evaluate", "--model", str(bundle.path), "--data", str(data), "--report", str(report_dir)]) == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["n_images"] == 12  # test/ only: MVTec's image and pixel AUROC
    assert report["anomaly"]["image_auroc"] > 0.7 and report["anomaly"]["pixel_auroc"] > 0.7
