"""The drift reference of a bundle is what the service will measure: the validation frames, run through the serving
predictor under the bundle's final thresholds, score a PSI near 0 against their own reference.

The mask weight is forced above 0 (calibration picks 0 on the tiny data, where every blend separates as well): with
it, the calibrated defect score differs from the classifier's ``1 - p(good)``, so a reference of the latter drifts.
"""

from pathlib import Path

import pytest

from inspector.artifacts.bundle import load_bundle
from inspector.config import TrainConfig
from inspector.data.layouts import load_dataset
from inspector.data.split import samples_from_record
from inspector.inference.drift import STATISTICS, DriftMonitor, frame_statistics
from inspector.evaluation import calibrate as calibrate_module
from inspector.evaluation.calibrate import run_calibration
from inspector.inference.predictor import Predictor
from inspector.imaging.preprocess import read_image

MASK_WEIGHT = 0.75
NEAR_ZERO = 0.05


@pytest.fixture()
def forced_mask_weight(monkeypatch):
    """Calibration picks :data:`MASK_WEIGHT` whatever the AUROCs say."""
    monkeypatch.setattr(calibrate_module, "choose_mask_weight", lambda *args, **kwargs: (MASK_WEIGHT, {}))


def served_psi(bundle_path: Path, data: Path) -> dict[str, float]:
    """PSI of each statistic for the bundle's own validation frames, fed as the service feeds its monitor."""
    bundle = load_bundle(bundle_path)
    frames = [read_image(s.image) for s in samples_from_record(load_dataset(data), list(bundle.meta.split.val))]
    monitor = DriftMonitor(bundle.meta.reference, min_frames=len(frames))
    predictor = Predictor(bundle, device="cpu")
    for frame in frames:  # one frame at a time, as a camera sends them
        [prediction] = predictor.predict([frame])
        monitor.add(frame_statistics(frame) | {"defect_score": prediction.defect_score})
    return {name: monitor.value(name) for name in STATISTICS}


def test_calibrate_writes_a_reference_of_the_calibrated_score(tiny_bundle, demo_data, forced_mask_weight):
    stale = served_psi(tiny_bundle, demo_data)["defect_score"]
    path, _ = run_calibration(tiny_bundle, demo_data, device="cpu", show_progress=False)
    derived = load_bundle(path)
    assert derived.thresholds.mask_weight == MASK_WEIGHT
    psi = served_psi(path, demo_data)
    assert all(value < NEAR_ZERO for value in psi.values()), psi
    assert derived.meta.reference["defect_score"] != load_bundle(tiny_bundle).meta.reference["defect_score"]
    assert stale < NEAR_ZERO  # the uncalibrated bundle (mask weight 0) matched its own reference too


def test_train_writes_the_reference_after_calibration(demo_data, tmp_path, forced_mask_weight):
    from inspector.train.fit import fit

    cfg = TrainConfig(image_size=64, epochs_frozen=1, epochs_finetune=1, batch_size=8, workers=0, device="cpu")
    path = fit(demo_data, tmp_path, "cal", cfg)  # calibrates on the validation split by default
    assert load_bundle(path).thresholds.mask_weight == MASK_WEIGHT
    psi = served_psi(path, demo_data)
    assert all(value < NEAR_ZERO for value in psi.values()), psi


def test_the_reference_from_the_calibration_pass_is_the_one_the_predictor_measures(tiny_bundle, demo_data,
                                                                                  forced_mask_weight):
    from inspector.evaluation.calibrate import calibrated_changes
    from inspector.evaluation.runner import drift_reference

    predictor = Predictor.from_bundle(tiny_bundle, device="cpu")
    samples = list(load_dataset(demo_data).samples)
    changes = calibrated_changes(predictor, samples, show_progress=False)  # one pass: thresholds and reference
    assert predictor.thresholds.mask_weight == MASK_WEIGHT
    assert changes["reference"] == drift_reference(predictor, samples)  # a second pass under the new thresholds
