"""The OpenVINO backend: ``inspector export --format openvino`` writes a checked IR, and the predictor, ``predict``
and the service run it with the eager model's answers; a modified weights file is refused."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.cli import main
from inspector.errors import UsageError, UserError
from inspector.imaging.preprocess import read_image
from inspector.inference.predictor import Predictor

from service_support import TIMEOUT, VERDICT_NAMES, png_request, serve_config

FRAMES = ["scratch/scratch_0001.png", "good/good_0002.png", "crack/crack_0000.png", "spot/spot_0003.png"]


@pytest.fixture(scope="module")
def ov_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the tiny bundle (it has the anomaly head) with an OpenVINO export, made through the CLI."""
    bundle = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("ov") / "b", ignore=shutil.ignore_patterns("export"))
    assert main(["export", "--model", str(bundle), "--format", "openvino"]) == 0
    return bundle


@pytest.fixture(scope="module")
def frames(demo_data) -> list[np.ndarray]:
    return [read_image(demo_data / "images" / name) for name in FRAMES]


def test_export_is_recorded_with_its_parity_and_files(ov_bundle):
    record = json.loads((ov_bundle / "export" / "export.json").read_text())
    entry = record["formats"]["openvino"]
    assert entry["file"] == "model.xml" and sorted(entry["files"]) == ["model.bin", "model.xml"]
    assert entry["parity"]["max_abs_error"] <= entry["parity"]["tolerance"] == 1e-4
    assert sorted(p.name for p in (ov_bundle / "export").iterdir()) == ["export.json", "model.bin", "model.xml"]


def test_openvino_answers_as_the_eager_model(ov_bundle, frames):
    eager = Predictor.from_bundle(ov_bundle, device="cpu", fp16=False)
    openvino = Predictor.from_bundle(ov_bundle, device="cpu", backend="openvino")
    batch = eager.prepare(frames).batch
    ref, got = eager.infer(batch), openvino.infer(batch)  # a batch of four: the IR's batch is dynamic
    assert ref.anomaly is not None and got.anomaly is not None  # the anomaly head (memory bank) is in the IR
    for a, b in [(ref.probs, got.probs), (ref.masks, got.masks), (ref.anomaly, got.anomaly)]:
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    for a, b in zip(eager.predict(frames), openvino.predict(frames[:1]) + openvino.predict(frames[1:])):
        assert (a.verdict, a.label, a.defect_class) == (b.verdict, b.label, b.defect_class)
        assert a.defect_score == pytest.approx(b.defect_score, abs=1e-4)
        assert np.abs(a.mask - b.mask).max() < 1e-4


def test_openvino_threads_follow_the_process_budget(ov_bundle):
    """The CPU plugin runs as many threads as torch (the budget ONNX Runtime also takes), in one stream, in fp32."""
    from inspector.inference.runtimes import OpenVinoModel

    model = OpenVinoModel(ov_bundle / "export" / "model.xml", torch.device("cpu"))
    assert model.ov_device == "CPU"
    assert model.compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads()
    assert model.compiled.get_property("NUM_STREAMS") == 1
    assert str(model.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    one = OpenVinoModel(ov_bundle / "export" / "model.xml", torch.device("cpu"), threads=1)
    assert one.compiled.get_property("INFERENCE_NUM_THREADS") == 1


def test_a_device_openvino_does_not_have_is_a_usage_error(ov_bundle, monkeypatch):
    monkeypatch.setenv("INSPECTOR_OPENVINO_DEVICE", "NPU.7")
    with pytest.raises(UsageError, match="OpenVINO device 'NPU.7' is not on this machine; available: .*CPU"):
        Predictor.from_bundle(ov_bundle, device="cpu", backend="openvino")


def test_tampered_weights_are_refused_on_load(ov_bundle, tmp_path):
    from inspector.artifacts.export import ExportError

    bundle = shutil.copytree(ov_bundle, tmp_path / "b")
    weights = bundle / "export" / "model.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one weight's bits flipped: the IR still loads, its answers would not be the bundle's
    weights.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"model\.bin: checksum mismatch; the file was modified") as refused:
        Predictor.from_bundle(bundle, device="cpu", backend="openvino")
    assert isinstance(refused.value, UserError)  # one line from the CLI, exit 2
    weights.unlink()
    with pytest.raises(ExportError, match=r"model\.bin is missing; copy the whole export folder"):
        Predictor.from_bundle(bundle, device="cpu", backend="openvino")


def test_unknown_and_missing_backends_say_what_to_do(ov_bundle):
    from inspector.cli.serve import BACKENDS
    from inspector.inference import runtimes

    assert BACKENDS == runtimes.BACKENDS  # the CLI's choices (no torch import there) are the runtimes'
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'; choose one of eager, torchscript, onnx, openvino"):
        Predictor.from_bundle(ov_bundle, device="cpu", backend="tensorrt")
    with pytest.raises(FileNotFoundError, match="no onnx export; run `inspector export --format onnx`"):
        Predictor.from_bundle(ov_bundle, device="cpu", backend="onnx")
    with pytest.raises(FileNotFoundError, match="no openvino-int8 export; run `inspector export --format openvino --int8`"):
        Predictor.from_bundle(ov_bundle, device="cpu", backend="openvino-int8")


def test_predict_command_runs_the_export(ov_bundle, demo_data, capsys):
    paths = [str(demo_data / "images" / name) for name in FRAMES[:2]]
    assert main(["predict", "--model", str(ov_bundle), "--device", "cpu", "--backend", "openvino", *paths]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    eager = Predictor.from_bundle(ov_bundle, device="cpu").predict([read_image(p) for p in paths])
    assert [line["verdict"] for line in lines] == [p.verdict for p in eager]
    assert [line["defect_score"] for line in lines] == pytest.approx([p.defect_score for p in eager], abs=1e-4)


def test_the_service_serves_the_openvino_export(ov_bundle, frames):
    import grpc

    from inspector.service.server import start_server
    from inspector.v1 import inspector_pb2_grpc as pb_grpc

    running = start_server(serve_config(backend="openvino"), bundle=ov_bundle)
    try:
        assert running.loaded.wait(60), "the model did not load"
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.InspectorStub(channel)
            eager = Predictor.from_bundle(ov_bundle, device="cpu").predict(frames)
            for i, (frame, pred) in enumerate(zip(frames, eager)):
                response = stub.Inspect(png_request(frame, f"f{i}"), timeout=TIMEOUT)
                assert VERDICT_NAMES[response.verdict] == pred.verdict
                assert response.defect_score == pytest.approx(pred.defect_score, abs=1e-4)
                for cls, score in pred.class_scores.items():
                    assert response.class_scores[cls] == pytest.approx(score, abs=1e-4)
    finally:
        running.stop(grace=0.5)


def test_evaluate_measures_the_export_as_served(ov_bundle, demo_data, tmp_path, capsys):
    """``evaluate --backend openvino``: the figures of the runtime the line runs, equal to eager's within the parity."""
    reports = {}
    for backend in ("eager", "openvino"):
        out = tmp_path / backend
        assert main(["evaluate", "--model", str(ov_bundle), "--data", str(demo_data), "--report", str(out),
                     "--device", "cpu", "--backend", backend]) == 0
        capsys.readouterr()
        reports[backend] = json.loads((out / "report.json").read_text())
        assert json.loads((out / "report_meta.json").read_text())["backend"] == backend
    eager, ov = reports["eager"], reports["openvino"]
    assert ov["image"]["confusion"] == eager["image"]["confusion"]
    assert ov["operating_point"]["reviewed"] == eager["operating_point"]["reviewed"]
    assert ov["image"]["auroc_defect"] == pytest.approx(eager["image"]["auroc_defect"], abs=1e-3)
