"""Mistakes of the person running inspector raise a UserError subclass (one line, exit 2 from the CLI, see
tests/integration/test_cli_user_errors.py), keeping the built-in base that callers already catch."""

import numpy as np
import pytest
import torch

from inspector.config import PreprocessSpec, Thresholds
from inspector.data.demo import make_part, write_demo_data
from inspector.errors import MissingPathError, UsageError
from inspector.model.backbones import get_backbone
from inspector.service.security import read_secret, server_credentials


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("make, words", [
    (lambda tmp: Thresholds(review=0.6, reject=0.4), "need 0 <= review <= reject <= 1, got review=0.6 reject=0.4"),
    (lambda tmp: Thresholds(mask=float("nan")), "mask must be a number in [0, 1], got nan"),
    (lambda tmp: Thresholds(anomaly_verdict="ACCEPT"), "anomaly_verdict must be REVIEW or REJECT, got 'ACCEPT'"),
    (lambda tmp: Thresholds(per_class={"dent": 0.4}).check_classes(("good", "crack")),
     "per_class['dent'] is not a defect class of the model; its defect classes are: crack"),
    (lambda tmp: PreprocessSpec(height=100), "input size must be a multiple of 32 and >= 32, got 100x256"),
    (lambda tmp: get_backbone("resnet81"),
     "unknown backbone 'resnet81'; choose one of: efficientnet_lite0, mobilenet_v2, resnet18"),
    (lambda tmp: make_part("dent", np.random.default_rng(0)), "unknown part kind 'dent'"),
    (lambda tmp: write_demo_data(tmp, n_per_class=1, seed=-1), "seed must be >= 0, got -1"),
    (lambda tmp: read_secret(_write(tmp / "token", " \n"), "X_TOKEN"), "token file {tmp}/token is empty"),
], ids=["review-above-reject", "nan", "anomaly-verdict", "per-class", "input-size", "backbone", "part-kind",
        "seed", "empty-token"])
def test_a_bad_value_is_a_usage_error_that_is_still_a_value_error(make, words, tmp_path):
    with pytest.raises(UsageError) as err:
        make(tmp_path)
    assert isinstance(err.value, ValueError) and str(err.value).startswith(words.format(tmp=tmp_path))


def test_a_damaged_weights_file_is_a_usage_error(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name: the digest must start with f37072fd
    torch.save({"fc.weight": torch.zeros(1)}, path)
    with pytest.raises(UsageError, match=r"resnet18-f37072fd.pth: sha256 [0-9a-f]{8}\.\.\. does not match the "
                                         r"published f37072fd; the file is damaged"):
        get_backbone("resnet18").load_weights(str(path))


@pytest.mark.parametrize("read, words", [
    (lambda tmp: read_secret(str(tmp / "absent"), "X_TOKEN"), "cannot read token file {tmp}/absent: No such file"),
    (lambda tmp: server_credentials(str(tmp / "cert.pem"), str(tmp / "key.pem")),
     "cannot read TLS key {tmp}/key.pem: No such file"),
])
def test_an_unreadable_file_is_a_missing_path_error(read, words, tmp_path):
    with pytest.raises(MissingPathError) as err:
        read(tmp_path)
    assert str(err.value).startswith(words.format(tmp=tmp_path))
