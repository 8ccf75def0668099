"""Tests for BundleMeta: bundle.json read and written through one type, format v1 read as it always was."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from inspector.artifacts.meta import (FORMAT, FORMAT_VERSION, META_FILE, AnomalyRecord, BundleError, BundleMeta,
                                      DataRecord, SplitRecord)
from inspector.config import PreprocessSpec, Thresholds

# bundle.json as the first release wrote it (inspector/bundle.py and train.py of the foundation commit): no seal, no
# drift reference, no anomaly head, no calibration yet, and thresholds without mask_weight or anomaly
FIRST_RELEASE = {
    "backbone": "efficientnet_lite0",
    "classes": ["good", "crack", "spot"],
    "preprocess": {"height": 320, "width": 320, "color_order": "RGB", "mean": [127.0, 127.0, 127.0],
                   "std": [128.0, 128.0, 128.0], "pad_value": 127},
    "thresholds": {"reject": 0.5, "review": 0.3, "mask": 0.5, "min_region_area": 16, "per_class": {}},
    "calibration": None,
    "validation": {"val_loss": 0.41, "val_macro_f1": 0.93, "val_miou": 0.71, "epoch": 7},
    "data": {"hash": "ab" * 32, "root": "/data/tiles", "layout": "class_folders", "n_images": 30,
             "per_class": {"good": 10, "crack": 10, "spot": 10}},
    "split": {"train": ["images/good/a.png", "images/crack/b.png"], "val": ["images/spot/c.png"]},
    "train_config": {"backbone": "efficientnet_lite0", "image_size": 320, "epochs_frozen": 4},
    "train_seconds": 812.4,
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "name": "tiles",
    "version": "v1",
    "created_at": "2026-11-27T23:30:00+00:00",
    "libraries": {"torch": "2.14.1", "numpy": "2.4.6"},
    "weights_sha256": "cd" * 32,
}


def _full() -> BundleMeta:
    """A meta with every field set, as training and calibration write them today."""
    return BundleMeta(
        classes=("good", "crack", "spot"), preprocess=PreprocessSpec(64, 96, color_order="BGR"),
        backbone="resnet18", thresholds=Thresholds(reject=0.7, review=0.2, mask_weight=0.75, per_class={"crack": 0.4}),
        name="line", version="v3", created_at="2026-11-30T06:00:00+00:00", weights_sha256="ef" * 32,
        manifest="SHA256SUMS", libraries={"torch": "2.14.1"},
        calibration={"method": "f1", "escape_rate": 0.02, "split": "val", "at": "train"},
        validation={"val_macro_f1": 0.9, "val_auroc": 0.97, "phase": "finetune"},
        reference={"defect_score": {"edges": [0.1, 0.5], "fractions": [0.3, 0.3, 0.4]}},
        anomaly=AnomalyRecord(bank_size=96, dim=152, only=False, stages=(3, 4), patches_seen=400, good_images=6,
                              reference=19.75, reference_images=40, reference_split="train_oof+val",
                              review_rate=0.01, review_rate_upper=0.07, reference_flagged=0, val_review_rate=0.0),
        data=DataRecord(hash="ab" * 32, root="/data/line", layout="mvtec", n_images=12, per_class={"good": 12}),
        split=SplitRecord(train=("a.png", "b.png"), val=("c.png",), group_by=r"_(p\d+)_"),
        train_config={"backbone": "resnet18", "epochs_frozen": 1}, train_seconds=12.5, train_processes=2,
        init_from="line/v2", derived_from="v2",
    )


def _through_json(meta: BundleMeta) -> dict:
    return json.loads(json.dumps(meta.to_dict()))


def test_every_field_survives_write_then_read(tmp_path: Path) -> None:
    meta = _full()
    assert meta.write(tmp_path) == tmp_path / META_FILE
    read = BundleMeta.read(tmp_path)
    assert read == meta
    assert (read.anomaly.stages, read.split.val, read.preprocess.mean) == ((3, 4), ("c.png",), (127.0,) * 3)
    assert BundleMeta.from_dict(_through_json(read)) == meta  # and again: stable
    raw = json.loads((tmp_path / META_FILE).read_text())
    assert (raw["format"], raw["format_version"]) == (FORMAT, FORMAT_VERSION)
    assert raw["split"] == {"train": ["a.png", "b.png"], "val": ["c.png"], "group_by": r"_(p\d+)_"}
    assert raw["anomaly"]["review_rate"] == 0.01 and raw["anomaly"]["reference_split"] == "train_oof+val"
    assert raw["thresholds"]["per_class"] == {"crack": 0.4} and raw["preprocess"]["color_order"] == "BGR"


def test_a_first_release_bundle_json_reads_with_newer_keys_absent() -> None:
    meta = BundleMeta.from_dict(copy.deepcopy(FIRST_RELEASE))
    assert (meta.name, meta.version, meta.backbone) == ("tiles", "v1", "efficientnet_lite0")
    assert meta.classes == ("good", "crack", "spot")
    assert meta.preprocess == PreprocessSpec(320, 320)
    assert meta.thresholds == Thresholds()  # mask_weight and anomaly at their defaults
    assert (meta.data.root, meta.data.hash, meta.data.n_images) == ("/data/tiles", "ab" * 32, 30)
    assert meta.split == SplitRecord(train=("images/good/a.png", "images/crack/b.png"), val=("images/spot/c.png",))
    assert meta.validation_figures == {"val_macro_f1": 0.93, "val_miou": 0.71, "epoch": 7.0}
    assert meta.training_figures == {"val_loss": 0.41}  # a loss is no validation figure
    assert meta.train_config["image_size"] == 320 and meta.train_seconds == 812.4
    # the keys added since: absent, not invented
    assert (meta.manifest, meta.reference, meta.anomaly, meta.calibration) == (None, None, None, None)
    assert (meta.train_processes, meta.init_from, meta.derived_from, meta.extra) == (None, None, None, {})
    assert not meta.anomaly_only
    # written back, every value it had is still there (thresholds, preprocess and split gain the fields added since,
    # at their defaults)
    again = _through_json(meta)
    newer = ("thresholds", "preprocess", "split")
    assert {k: v for k, v in again.items() if k in FIRST_RELEASE and k not in newer} == {
        k: v for k, v in FIRST_RELEASE.items() if k not in newer}
    assert again["split"] == FIRST_RELEASE["split"] | {"group_by": None}  # split image by image
    assert again["preprocess"] == FIRST_RELEASE["preprocess"] | {"tile": 0}  # whole frames
    assert again["thresholds"] == FIRST_RELEASE["thresholds"] | {"mask_weight": 0.0, "anomaly": 1.0,
                                                                 "anomaly_verdict": "REVIEW"}


def test_unknown_keys_survive_a_round_trip(tmp_path: Path) -> None:
    raw = _through_json(_full())
    raw["line_station"] = {"plant": "B", "cell": 4}  # a key from a newer writer, or added by hand
    raw["anomaly"]["backend_hint"] = "faiss"  # inside a record too
    raw["data"]["source"] = "camera-3"
    raw["split"]["test"] = ["d.png"]
    meta = BundleMeta.from_dict(raw)
    assert meta.extra == {"line_station": {"plant": "B", "cell": 4}}
    assert (meta.anomaly.extra, meta.data.extra, meta.split.extra) == (
        {"backend_hint": "faiss"}, {"source": "camera-3"}, {"test": ["d.png"]})
    meta.write(tmp_path)
    assert json.loads((tmp_path / META_FILE).read_text()) == raw
    derived = dataclasses.replace(meta, thresholds=Thresholds(reject=0.9))  # a change keeps them too
    assert _through_json(derived)["line_station"] == {"plant": "B", "cell": 4}


@pytest.mark.parametrize("key", ["name", "version", "backbone", "classes", "preprocess", "thresholds",
                                 "weights_sha256"])
def test_a_missing_required_key_is_named(key: str) -> None:
    raw = copy.deepcopy(FIRST_RELEASE)
    del raw[key]
    with pytest.raises(BundleError, match=f"lacks {key}; the file is incomplete"):
        BundleMeta.from_dict(raw)


@pytest.mark.parametrize("key, value, match", [
    ("classes", "good,crack", "list of class names"),
    ("classes", [], "list of class names"),
    ("preprocess", {"height": 100, "width": 64}, "multiple of 32"),
    ("preprocess", [320, 320], "expected an object"),
    ("thresholds", {"reject": 0.2, "review": 0.5}, "review <= reject"),
    ("thresholds", {"reject": float("nan")}, "reject must be a number"),
    ("backbone", 18, "expected a string"),
    ("anomaly", {"dim": 152}, "bank_size"),
    ("split", ["a.png"], "expected an object"),
    ("train_processes", "two", "invalid literal"),
])
def test_a_value_that_does_not_fit_its_key_is_refused_naming_the_key(key: str, value, match: str) -> None:
    raw = copy.deepcopy(FIRST_RELEASE) | {key: value}
    with pytest.raises(BundleError, match=f"key '{key}': .*{match}"):
        BundleMeta.from_dict(raw)


def test_thresholds_for_a_class_the_model_lacks_are_refused() -> None:
    raw = copy.deepcopy(FIRST_RELEASE)
    raw["thresholds"]["per_class"] = {"dent": 0.4}
    with pytest.raises(BundleError, match=r"per_class\['dent'\] is not a defect class"):
        BundleMeta.from_dict(raw)
    with pytest.raises(ValueError, match="dent"):
        dataclasses.replace(_full(), thresholds=Thresholds(per_class={"dent": 0.4}))


@pytest.mark.parametrize("content, match", [
    ("{not json", "unreadable"),
    (json.dumps(["inspector-bundle"]), "not an inspector model bundle"),
    (json.dumps(FIRST_RELEASE | {"format_version": 2}), "format version 2 is not supported"),
])
def test_read_refuses_what_is_not_a_v1_bundle_json(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / META_FILE).write_text(content)
    with pytest.raises(BundleError, match=match):
        BundleMeta.read(tmp_path)


def test_read_names_the_file(tmp_path: Path) -> None:
    (tmp_path / META_FILE).write_text(json.dumps(FIRST_RELEASE | {"classes": 3}))
    with pytest.raises(BundleError, match=f"^{tmp_path}/{META_FILE} key 'classes'"):
        BundleMeta.read(tmp_path)


def test_write_refuses_what_json_cannot_hold(tmp_path: Path) -> None:
    meta = dataclasses.replace(_full(), extra={"where": tmp_path, "oops": {1, 2}})
    with pytest.raises(TypeError, match="cannot write set"):
        meta.write(tmp_path)
    dataclasses.replace(meta, extra={"where": tmp_path}).write(tmp_path)  # a path is written as its text
    assert BundleMeta.read(tmp_path).extra == {"where": str(tmp_path)}


def test_anomaly_only_and_validation_figures() -> None:
    meta = _full()
    assert not meta.anomaly_only
    assert dataclasses.replace(meta, anomaly=dataclasses.replace(meta.anomaly, only=True)).anomaly_only
    assert meta.validation_figures == {"val_macro_f1": 0.9, "val_auroc": 0.97}  # text left out
    assert dataclasses.replace(meta, validation={"ok": True, "n": 3}).validation_figures == {"n": 3.0}
