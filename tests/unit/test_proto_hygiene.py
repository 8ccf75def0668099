"""inspector.v1 at the edge: enum numbers the proto does not define are refused naming the field, every threshold
travels both ways (mask_weight included), a refused threshold names its field for BadRequest, and a model's
validation figures are kept apart from its training losses."""

import math

import pytest

from inspector.artifacts.meta import BundleMeta
from inspector.artifacts.store import VersionInfo, describe
from inspector.config import PreprocessSpec, Thresholds
from inspector.errors import FieldError, UsageError
from inspector.service.convert import frame_in, thresholds_from_pb, thresholds_pb
from inspector.service.refusal import Kind, Rejected
from inspector.v1 import inspector_pb2 as pb

CLASSES = ("good", "crack", "scratch", "spot")
EXPECTED = "expected one of JPEG, PNG, BMP, RAW_GRAY8, RAW_BGR8, RAW_RGB8"
# bundle.json's "validation" as training writes it (older versions also wrote the last epoch's training losses)
VALIDATION = {"train_loss": 2.52, "train_ce_loss": 1.56, "train_dice_loss": 0.87, "val_loss": 1.94,
              "val_accuracy": 0.625, "val_macro_f1": 0.575, "val_auroc": 1.0, "val_miou": 0.354,
              "val_iou_defect": 0.281, "ci95": {"image.macro_f1": [0.4, 0.7]}}


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize("encoding, words", [
    (pb.ENCODING_UNSPECIFIED, "encoding is not set: unknown encoding 'ENCODING_UNSPECIFIED'; "),
    (99, "encoding: unknown encoding 99, no inspector.v1.Encoding value; "),
    (7, "encoding: unknown encoding 7, "),
])
def test_an_encoding_the_proto_does_not_define_is_refused_naming_the_field(encoding, words):
    with pytest.raises(Rejected) as info:
        frame_in(pb.InspectRequest(data=b"\x89PNG", encoding=encoding))
    err = info.value
    assert (err.kind, err.reason) == (Kind.INVALID, "unknown_encoding")  # the decoder's word: error.reason unchanged
    assert err.message.startswith(words) and err.message.endswith(EXPECTED), err.message


@pytest.mark.parametrize("encoding", [v for v in pb.Encoding.values() if v != pb.ENCODING_UNSPECIFIED])
def test_every_defined_encoding_reaches_the_decoder_by_name(encoding):
    frame = frame_in(pb.InspectRequest(data=b"x", encoding=encoding, width=3, height=2, stride=4, return_mask=True))
    assert (frame.encoding, frame.width, frame.height, frame.stride) == (pb.Encoding.Name(encoding), 3, 2, 4)
    assert frame.return_mask and not frame.return_anomaly_map


# ---------------------------------------------------------------- thresholds


def test_every_threshold_travels_both_ways():
    served = Thresholds(reject=0.625, review=0.25, mask=0.375, min_region_area=9, mask_weight=0.75,
                        per_class={"crack": 0.5}, anomaly=2.5, anomaly_verdict="REJECT")
    message = thresholds_pb(served)
    assert {f.name for f, _ in message.ListFields()} == {f.name for f in pb.Thresholds.DESCRIPTOR.fields}
    assert message.mask_weight == 0.75
    assert thresholds_from_pb(message, Thresholds(), CLASSES) == served


def test_mask_weight_alone_changes_only_mask_weight():
    current = Thresholds(reject=0.6, review=0.2, mask_weight=0.0)
    changed = thresholds_from_pb(pb.Thresholds(mask_weight=0.5), current, CLASSES)
    assert changed == Thresholds(reject=0.6, review=0.2, mask_weight=0.5)
    assert thresholds_from_pb(pb.Thresholds(), changed, CLASSES) == changed  # unset: kept


@pytest.mark.parametrize("thresholds, field, words", [
    (pb.Thresholds(reject=1.5), "reject", "reject must be a number in [0, 1], got 1.5"),
    (pb.Thresholds(review=math.nan), "review", "review must be a number in [0, 1], got nan"),
    (pb.Thresholds(mask=-0.5), "mask", "mask must be a number in [0, 1]"),
    (pb.Thresholds(mask_weight=2.0), "mask_weight", "mask_weight must be a number in [0, 1], got 2.0"),
    (pb.Thresholds(mask_weight=math.inf), "mask_weight", "mask_weight must be a number in [0, 1], got inf"),
    (pb.Thresholds(anomaly=-1.0), "anomaly", "anomaly threshold must be >= 0"),
    (pb.Thresholds(per_class={"scratch": 2.0}), "per_class[scratch]", "per_class['scratch'] must be a number"),
    (pb.Thresholds(per_class={"dent": 0.5}), "per_class[dent]", "per_class['dent'] is not a defect class"),
    (pb.Thresholds(anomaly_verdict=pb.ACCEPT), "anomaly_verdict", "must be REVIEW or REJECT, got ACCEPT"),
    (pb.Thresholds(anomaly_verdict=pb.VERDICT_UNSPECIFIED), "anomaly_verdict", "got VERDICT_UNSPECIFIED"),
    (pb.Thresholds(anomaly_verdict=7), "anomaly_verdict", "got 7 (no inspector.v1.Verdict value)"),
    # review above reject: the field the request set
    (pb.Thresholds(reject=0.125), "reject", "need 0 <= review <= reject <= 1, got review=0.3 reject=0.125"),
    (pb.Thresholds(review=0.75), "review", "need 0 <= review <= reject <= 1, got review=0.75 reject=0.5"),
    (pb.Thresholds(review=0.75, reject=0.625), "review", "got review=0.75 reject=0.625"),
])
def test_a_refused_threshold_names_its_field(thresholds, field, words):
    with pytest.raises(FieldError) as info:
        thresholds_from_pb(thresholds, Thresholds(reject=0.5, review=0.3), CLASSES)
    err = info.value
    assert err.field == field
    assert words in str(err), str(err)
    assert isinstance(err, UsageError) and isinstance(err, ValueError)  # callers catching either go on working


@pytest.mark.parametrize("kwargs, field", [
    ({"reject": math.nan}, "reject"), ({"mask_weight": -1}, "mask_weight"),
    ({"min_region_area": -3}, "min_region_area"),
    ({"per_class": {"": 0.5}}, "per_class"), ({"per_class": {"crack": "0.4"}}, "per_class[crack]"),
    ({"anomaly_verdict": "ACCEPT"}, "anomaly_verdict"), ({"reject": 0.2, "review": 0.4}, "review"),
])
def test_thresholds_raise_field_errors(kwargs, field):
    with pytest.raises(FieldError) as info:
        Thresholds(**kwargs)
    assert info.value.field == field


# ---------------------------------------------------------------- validation figures and training losses


def _meta(validation: dict) -> BundleMeta:
    return BundleMeta(classes=CLASSES, preprocess=PreprocessSpec(), backbone="b", name="line", version="v1",
                      created_at="2026-11-30", weights_sha256="0" * 64, validation=validation)


def test_validation_figures_hold_no_loss_and_training_figures_hold_the_losses():
    meta = _meta(VALIDATION)
    assert meta.validation_figures == {"val_accuracy": 0.625, "val_macro_f1": 0.575, "val_auroc": 1.0,
                                       "val_miou": 0.354, "val_iou_defect": 0.281}
    assert meta.training_figures == {"train_loss": 2.52, "train_ce_loss": 1.56, "train_dice_loss": 0.87,
                                     "val_loss": 1.94}
    assert _meta({"val_review_rate": 0.0, "val_auroc": 0.93}).training_figures == {}  # a good-only model


def test_the_store_lists_both(tmp_path):
    model_dir = tmp_path / "line"
    (model_dir / "v1").mkdir(parents=True)
    _meta(VALIDATION).write(model_dir / "v1")
    [info] = describe(model_dir)
    assert info == VersionInfo("v1", False, "b", "2026-11-30", _meta(VALIDATION).validation_figures,
                               _meta(VALIDATION).training_figures)
    assert "val_loss" in info.training and not any("loss" in k for k in info.validation)
