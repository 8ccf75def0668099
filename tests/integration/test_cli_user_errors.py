"""User mistakes found by the library inside a command (not by argparse, often after torch has loaded) are one line
on stderr with exit 2, naming the problem, and nothing is written."""

import json

import cv2
import numpy as np
import torch

from inspector.cli import main
from inspector.data.demo import make_part

TRAIN = ["--image-size", "64", "--epochs-frozen", "0", "--epochs-finetune", "1", "--workers", "0", "--device", "cpu"]


def one_line_error(capsys, command: str) -> str:
    """The message of the one stderr line ``inspector <command>: error: <message>``, nothing on stdout."""
    captured = capsys.readouterr()
    prefix = f"inspector {command}: error: "
    assert captured.err.startswith(prefix) and captured.err.count("\n") == 1 and captured.err.endswith("\n"), \
        captured.err
    assert captured.out == ""
    return captured.err[len(prefix):-1]


def test_predict_with_a_region_of_interest_outside_the_frame(tiny_bundle, demo_data, capsys):
    image = demo_data / "images" / "good" / "good_0000.png"
    assert cv2.imread(str(image)).shape[:2] == (64, 64)
    argv = ["predict", "--model", str(tiny_bundle), str(image), "--device", "cpu", "--roi", "32", "8", "48", "16"]
    assert main(argv) == 2
    assert one_line_error(capsys, "predict") == (
        "region of interest at x=32 y=8 of 48x16 px is not inside the 64x64 px frame")


def test_train_with_an_unknown_backbone(demo_data, tmp_path, capsys):
    argv = ["train", "--data", str(demo_data), "--out", str(tmp_path / "store"), "--backbone", "resnet81", *TRAIN]
    assert main(argv) == 2
    assert one_line_error(capsys, "train") == (
        "unknown backbone 'resnet81'; choose one of: efficientnet_lite0, mobilenet_v2, resnet18")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("bundle.json"))


def test_train_with_damaged_weights(demo_data, tmp_path, capsys):
    weights = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name: the digest must start with f37072fd
    torch.save({"fc.weight": torch.zeros(1)}, weights)
    argv = ["train", "--data", str(demo_data), "--out", str(tmp_path / "store"), "--backbone", "resnet18",
            "--weights", str(weights), *TRAIN]
    assert main(argv) == 2
    message = one_line_error(capsys, "train")
    assert message.startswith(f"{weights}: sha256 ") and message.endswith(
        "does not match the published f37072fd; the file is damaged")
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("bundle.json"))


def test_a_data_folder_without_good_parts(tiny_bundle, tmp_path, capsys):
    data = tmp_path / "data"
    for i, kind in enumerate(("scratch", "crack")):
        (data / "images" / kind).mkdir(parents=True)
        image, _ = make_part(kind, np.random.default_rng(i), 64)
        assert cv2.imwrite(str(data / "images" / kind / f"{kind}_0.png"), image)
    words = f"{data}: need a 'good' class and at least one defect class (or train --good-only), found ['crack', 'scratch']"
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "store"), *TRAIN]) == 2
    assert one_line_error(capsys, "train") == words
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(data), "--report", str(tmp_path / "r"),
                 "--device", "cpu"]) == 2
    assert one_line_error(capsys, "evaluate") == f"{data}: need a 'good' class, found ['crack', 'scratch']"
    assert not (tmp_path / "store").exists() and not (tmp_path / "r").exists()


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
