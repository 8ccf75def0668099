"""inspector.v1's additive changes against a running service: mask_weight set through Admin.SetThresholds is served
and reported, ModelInfo keeps validation figures and training losses apart, and an encoding the proto does not
define is refused naming `encoding` (unary) or answered with the stream's `unknown_encoding` as before."""

import math

import grpc
import pytest

from inspector.artifacts.bundle import load_bundle
from inspector.config import ServeConfig
from inspector.service.server import start_server
from inspector.status_details import details_of
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

TIMEOUT = 30.0  # s, a safety net, not a timing assertion
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def served(tiny_bundle):
    """The running service of the tiny bundle and a channel to it."""
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                      grace_seconds=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        assert running.loaded.wait(60), "the model did not load"
        yield running, channel
    finally:
        channel.close()
        running.stop(grace=1)


@pytest.fixture(scope="module")
def png(demo_data) -> bytes:
    return (demo_data / "images" / "crack" / "crack_0000.png").read_bytes()


def test_mask_weight_round_trip(served, png):
    _, channel = served
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    before = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds
    assert before.HasField("mask_weight")  # every field is set in answers
    try:
        echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(mask_weight=0.75)),
                                     timeout=TIMEOUT)
        assert echoed.mask_weight == 0.75
        assert (echoed.reject, echoed.review, echoed.mask) == (before.reject, before.review, before.mask)  # kept
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds == echoed
        answer = stub.Inspect(pb.InspectRequest(data=png, encoding=pb.PNG, frame_id="mw"), timeout=TIMEOUT)
        assert answer.thresholds.mask_weight == 0.75
    finally:
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(mask_weight=before.mask_weight)),
                            timeout=TIMEOUT)


@pytest.mark.parametrize("thresholds, words", [
    (pb.Thresholds(mask_weight=1.5), "mask_weight must be a number in [0, 1], got 1.5"),
    (pb.Thresholds(mask_weight=math.nan), "mask_weight must be a number in [0, 1], got nan"),
    (pb.Thresholds(anomaly_verdict=9), "anomaly_verdict must be REVIEW or REJECT, got 9"),
])
def test_bad_new_or_unknown_threshold_values_are_refused(served, thresholds, words):
    _, channel = served
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    before = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds
    with pytest.raises(grpc.RpcError) as info:
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=thresholds), timeout=TIMEOUT)
    assert info.value.code() == INVALID and words in info.value.details(), info.value.details()
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds == before


def test_model_info_keeps_validation_figures_and_training_losses_apart(served, tiny_bundle):
    _, channel = served
    info = pb_grpc.InspectorStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    meta = load_bundle(tiny_bundle).meta
    assert not [k for k in info.validation if "loss" in k], dict(info.validation)
    assert {"val_macro_f1", "val_auroc", "val_miou"} <= set(info.validation)
    assert "val_loss" in info.training
    assert info.training["val_loss"] == pytest.approx(meta.validation["val_loss"], rel=1e-6)
    assert set(info.validation) | set(info.training) == set(meta.validation_figures) | set(meta.training_figures)


@pytest.mark.parametrize("encoding, words", [
    (pb.ENCODING_UNSPECIFIED, "encoding is not set"),
    (99, "encoding: unknown encoding 99"),
])
def test_unary_unknown_encoding_is_invalid_argument_naming_the_field(served, png, encoding, words):
    running, channel = served
    refused = running.metrics.registry.get_sample_value("inspector_invalid_frames_total",
                                                        {"reason": "unknown_encoding"}) or 0.0
    with pytest.raises(grpc.RpcError) as info:
        pb_grpc.InspectorStub(channel).Inspect(pb.InspectRequest(data=png, encoding=encoding, frame_id="enc"),
                                               timeout=TIMEOUT)
    assert info.value.code() == INVALID
    assert words in info.value.details() and "'enc'" in info.value.details(), info.value.details()
    details = details_of(info.value)
    assert details.reason == "unknown_encoding" and list(details.fields) == ["encoding"]
    assert running.metrics.registry.get_sample_value("inspector_invalid_frames_total",
                                                     {"reason": "unknown_encoding"}) == refused + 1


def test_stream_answers_unknown_encodings_with_the_same_reason(served, png):
    _, channel = served
    requests = [pb.InspectRequest(data=png, encoding=pb.PNG, frame_id="good-0"),
                pb.InspectRequest(data=png, encoding=pb.ENCODING_UNSPECIFIED, frame_id="unset"),
                pb.InspectRequest(data=png, encoding=99, frame_id="ninety-nine"),
                pb.InspectRequest(data=png, encoding=pb.PNG, frame_id="good-1")]
    answers = list(pb_grpc.InspectorStub(channel).InspectStream(iter(requests), timeout=TIMEOUT))
    assert [a.frame_id for a in answers] == ["good-0", "unset", "ninety-nine", "good-1"]
    assert [a.HasField("error") for a in answers] == [False, True, True, False]
    for answer in answers[1:3]:
        assert (answer.error.code, answer.error.reason) == (INVALID.value[0], "unknown_encoding")
        assert "encoding" in answer.error.message and answer.verdict == pb.VERDICT_UNSPECIFIED
