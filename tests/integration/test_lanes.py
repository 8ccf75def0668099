"""Lanes: passes side by side on one CPU thread each (``Predictor.open_lanes``), for every backend on the CPU.

Two lanes run at once and answer as the pass on all the threads does; OpenVINO's lanes are streams of one thread;
a thread that ran a lane keeps one torch thread, every other thread its own count."""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from inspector.errors import UsageError
from inspector.imaging.preprocess import read_image
from inspector.inference.exporter import export_model
from inspector.inference.predictor import Outputs, Predictor

FRAMES = ["scratch/scratch_0001.png", "good/good_0002.png", "crack/crack_0000.png", "spot/spot_0003.png"]


@pytest.fixture(scope="module")
def exported(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the tiny bundle (with its anomaly head) with ONNX and OpenVINO exports."""
    folder = tmp_path_factory.mktemp("lanes") / "b"
    bundle = shutil.copytree(tiny_bundle, folder, ignore=shutil.ignore_patterns("export"))
    for fmt in ("onnx", "openvino"):
        export_model(bundle, fmt)
    return bundle


@pytest.fixture(scope="module")
def batch(exported, demo_data) -> np.ndarray:
    frames = [read_image(demo_data / "images" / name) for name in FRAMES]
    return Predictor.from_bundle(exported, device="cpu", fp16=False).prepare(frames).batch


def side_by_side(predictor: Predictor, halves: list[np.ndarray]) -> tuple[list[Outputs], list[int]]:
    """Each half on a lane of its own thread, both passes in progress at once (a barrier inside the model call);
    returns the outputs and each lane thread's torch thread count."""
    inside = threading.Barrier(2, timeout=30)
    model = predictor._lane_model  # noqa: SLF001 - the test makes both passes meet inside the runtime's call

    def meeting(x):
        inside.wait()  # both lanes are in a pass now: neither waits for the other to finish
        return model(x)

    predictor._lane_model = meeting  # noqa: SLF001
    outputs: list[Outputs | None] = [None, None]
    threads = [0, 0]

    def lane(i: int) -> None:
        outputs[i] = predictor.infer(halves[i], lane=True)
        threads[i] = torch.get_num_threads()

    runs = [threading.Thread(target=lane, args=(i,)) for i in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    predictor._lane_model = model  # noqa: SLF001
    assert all(o is not None for o in outputs), "a lane's pass did not finish"
    return outputs, threads


@pytest.mark.parametrize("backend", ["eager", "onnx", "openvino"])
def test_two_lanes_run_at_once_and_answer_as_one_pass_on_all_threads(exported, batch, backend):
    predictor = Predictor.from_bundle(exported, device="cpu", fp16=False, backend=backend)
    assert predictor.open_lanes(2) == 2
    wide = predictor.infer(batch)
    (first, second), threads = side_by_side(predictor, [batch[:2], batch[2:]])
    got = Outputs.concat([first, second])
    assert got.anomaly is not None
    for a, b in [(wide.probs, got.probs), (wide.masks, got.masks), (wide.anomaly, got.anomaly)]:
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4
    assert threads == [1, 1]  # torch's own work in a lane (the output's softmax and sigmoid) ran on one thread
    assert torch.get_num_threads() == 2  # this thread, and threads started later, keep the budget
    later = []
    fresh = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    fresh.start()
    fresh.join()
    assert later == [2]


def test_openvino_lanes_are_streams_of_one_thread(exported):
    predictor = Predictor.from_bundle(exported, device="cpu", backend="openvino")
    predictor.open_lanes(2)
    compiled = predictor._lane_model.compiled  # noqa: SLF001
    assert compiled.get_property("NUM_STREAMS") == 2 and compiled.get_property("INFERENCE_NUM_THREADS") == 2
    assert predictor.model.compiled.get_property("NUM_STREAMS") == 1  # the lone frame's pass: all threads, one stream


def test_onnx_lanes_share_a_session_of_one_thread(exported):
    predictor = Predictor.from_bundle(exported, device="cpu", backend="onnx")
    predictor.open_lanes(2)
    lane_options = predictor._lane_model.session.get_session_options()  # noqa: SLF001
    assert lane_options.intra_op_num_threads == 1
    assert predictor.model.session.get_session_options().intra_op_num_threads == torch.get_num_threads()


def test_a_lane_pass_needs_lanes_opened(exported, batch):
    predictor = Predictor.from_bundle(exported, device="cpu")
    assert predictor.open_lanes(1) == 1 and predictor.lanes == 1
    with pytest.raises(UsageError, match="no lanes are open on this predictor: call open_lanes first"):
        predictor.infer(batch, lane=True)


def test_lanes_share_a_larger_budget(exported):
    """On more cores each lane gets its share: 4 threads, 2 lanes -> sessions of 2 threads; OpenVINO's streams share
    the model's threads (as many as it may have: OpenVINO caps them at the machine's cores)."""
    from inspector.inference.runtimes import OnnxModel, OpenVinoModel

    cpu = torch.device("cpu")
    onnx = OnnxModel(exported / "export" / "model.onnx", cpu, threads=4).lanes(2)
    assert onnx.session.get_session_options().intra_op_num_threads == 2
    whole = OpenVinoModel(exported / "export" / "model.xml", cpu, threads=4)
    lanes = whole.lanes(2)
    assert lanes.compiled.get_property("NUM_STREAMS") == 2 and lanes.threads == 4
    assert lanes.compiled.get_property("INFERENCE_NUM_THREADS") == whole.compiled.get_property("INFERENCE_NUM_THREADS")


def test_the_service_opens_two_lanes_on_the_cpu_unless_told():
    from inspector.config import ServeConfig
    from inspector.service.server import lanes

    assert lanes(ServeConfig(device="cpu")) == 2 and lanes(ServeConfig(device="cpu", lanes=1)) == 1
    assert lanes(ServeConfig(device="cpu", lanes=3)) == 3
