"""Every threshold is checked in one place: bad values are refused with a message naming the field, and the values
trained and calibrated bundles hold are accepted."""

import dataclasses
import math

import numpy as np
import pytest

from inspector.config import Thresholds, from_dict
from inspector.inference.postprocess import decide
from inspector.service.convert import thresholds_from_pb
from inspector.v1 import inspector_pb2 as pb

CLASSES = ("good", "crack", "scratch", "spot")
NAN, INF = math.nan, math.inf
UNIT_FIELDS = ("reject", "review", "mask", "mask_weight")


def _with(field: str, value) -> dict:
    """Keyword arguments setting ``field`` to ``value``, with ``review`` at 0 beside ``reject`` (never out of order)."""
    return {field: value} | ({"review": 0.0} if field == "reject" else {})


@pytest.mark.parametrize("value", [NAN, -0.1, 1.5, INF, -INF, "0.5", True, None])
@pytest.mark.parametrize("field", UNIT_FIELDS)
def test_unit_thresholds_must_be_finite_numbers_in_0_1(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be a number in \[0, 1\], got "):
        Thresholds(**_with(field, value))


@pytest.mark.parametrize("value", [NAN, -0.1, 1.5, INF, "0.5"])
def test_per_class_values_must_be_finite_numbers_in_0_1(value):
    with pytest.raises(ValueError) as err:
        Thresholds(per_class={"crack": 0.4, "spot": value})
    assert str(err.value) == f"per_class['spot'] must be a number in [0, 1], got {value!r}"


@pytest.mark.parametrize("key", ["", 3, None])
def test_per_class_keys_must_be_class_names(key):
    with pytest.raises(ValueError, match="per_class keys must be class names"):
        Thresholds(per_class={key: 0.5})


@pytest.mark.parametrize("value", [NAN, -0.5, INF, -INF, "1"])
def test_anomaly_threshold_must_be_finite_and_not_negative(value):
    with pytest.raises(ValueError, match=r"^anomaly threshold must be >= 0 and finite, got "):
        Thresholds(anomaly=value)


@pytest.mark.parametrize("value", [NAN, -1, INF, "16"])
def test_min_region_area_must_be_a_finite_number_not_negative(value):
    with pytest.raises(ValueError, match=r"^min_region_area must be a number of px >= 0, got "):
        Thresholds(min_region_area=value)


def test_review_above_reject_is_refused():
    with pytest.raises(ValueError, match=r"review <= reject.*review=0\.6 reject=0\.4"):
        Thresholds(reject=0.4, review=0.6)


@pytest.mark.parametrize("values", [
    {},  # trained with calibrate=False
    {"reject": 0.0, "review": 0.0, "mask": 0.0, "mask_weight": 0.0, "min_region_area": 0, "anomaly": 0.0},
    {"reject": 1.0, "review": 1.0, "mask": 1.0, "mask_weight": 1.0, "anomaly": 1e9, "anomaly_verdict": "REJECT"},
    {"reject": 0.62, "review": 0.31, "mask_weight": 0.75, "min_region_area": 7,
     "per_class": {"crack": 0.25, "spot": 1.0}},  # calibrated with an escape-rate target
    {"reject": np.float32(0.5), "review": np.float64(0.25), "min_region_area": np.int64(3)},
])
def test_values_bundles_hold_are_accepted(values):
    thresholds = from_dict(Thresholds, dataclasses.asdict(Thresholds()) | values)
    thresholds.check_classes(CLASSES)
    assert dataclasses.asdict(thresholds) == dataclasses.asdict(Thresholds()) | values


@pytest.mark.parametrize("name", ["good", "dent", "Crack"])
def test_per_class_may_name_only_defect_classes_of_the_model(name):
    with pytest.raises(ValueError) as err:
        Thresholds(per_class={"crack": 0.4, name: 0.5}).check_classes(CLASSES)
    assert str(err.value) == (f"per_class[{name!r}] is not a defect class of the model; "
                              "its defect classes are: crack, scratch, spot")


def test_admin_thresholds_are_checked_against_the_model_classes():
    current = Thresholds(reject=0.5, review=0.25)
    update = pb.Thresholds(per_class={"dent": 0.25})
    assert thresholds_from_pb(update, current).per_class == {"dent": 0.25}  # no classes given: values only
    with pytest.raises(ValueError, match=r"per_class\['dent'\] is not a defect class"):
        thresholds_from_pb(update, current, classes=CLASSES)
    assert thresholds_from_pb(pb.Thresholds(per_class={"spot": 0.75}), current, classes=CLASSES).per_class == {
        "spot": 0.75}
    with pytest.raises(ValueError, match=r"^per_class\['crack'\] must be a number in \[0, 1\], got nan$"):
        thresholds_from_pb(pb.Thresholds(per_class={"crack": NAN}), current, classes=CLASSES)


def test_a_nan_per_class_threshold_can_no_longer_turn_a_reject_into_an_accept():
    crack = np.array([0.05, 0.9, 0.03, 0.02])  # (n_classes,): a confident crack
    assert decide(crack, CLASSES, Thresholds()).verdict == "REJECT"
    with pytest.raises(ValueError, match="per_class"):
        decide(crack, CLASSES, Thresholds(per_class={c: NAN for c in CLASSES[1:]}))
