"""Mistakes of the person running inspector raise a UserError subclass (one line, exit 2 from the CLI), keeping the
built-in base that callers already catch; the CLI cases here need no trained model (see
tests/integration/test_cli_user_errors.py for those that do)."""

import json

import numpy as np
import pytest
import torch

from inspector.cli import main
from inspector.config import PreprocessSpec, Thresholds
from inspector.data.demo import make_part, write_demo_data
from inspector.errors import MissingPathError, UsageError
from inspector.model.backbones import get_backbone
from inspector.service.security import read_secret, server_credentials


def one_line_error(capsys, command: str) -> str:
    """The message of the one stderr line ``inspector <command>: error: <message>``, nothing on stdout."""
    captured = capsys.readouterr()
    prefix = f"inspector {command}: error: "
    assert captured.err.startswith(prefix) and captured.err.count("\n") == 1 and captured.err.endswith("\n"), \
        captured.err
    assert captured.out == ""
    return captured.err[len(prefix):-1]


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


def test_models_rollback_without_history_is_one_line(tmp_path, capsys):
    (tmp_path / "line" / "v1").mkdir(parents=True)
    (tmp_path / "line" / "v1" / "bundle.json").write_text(json.dumps({"backbone": "b"}))
    assert main(["models", "promote", "--store", str(tmp_path), "--name", "line", "v1"]) == 0
    capsys.readouterr()
    assert main(["models", "rollback", "--store", str(tmp_path), "--name", "line"]) == 2
    assert one_line_error(capsys, "models") == (
        f"{tmp_path / 'line'}: no earlier active version to roll back to (current: v1)")
    assert (tmp_path / "line" / "ACTIVE").read_text().strip() == "v1"


def test_client_with_an_empty_token_file_is_one_line(tmp_path, capsys):
    (tmp_path / "token").write_text("\n")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    argv = ["client", "--target", "127.0.0.1:1", "--token-file", str(tmp_path / "token"), str(image)]
    assert main(argv) == 2
    assert one_line_error(capsys, "client") == f"token file {tmp_path / 'token'} is empty"


def test_demo_data_with_a_negative_seed_is_one_line(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path / "demo"), "--per-class", "1", "--seed", "-1"]) == 2
    assert one_line_error(capsys, "demo-data") == "seed must be >= 0, got -1"
    assert not (tmp_path / "demo").exists()  # refused before anything is written
