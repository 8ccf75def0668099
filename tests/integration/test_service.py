"""The gRPC service end to end: in-process servers on 127.0.0.1 with a tiny model, and one `inspector serve` process."""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from inspector.artifacts.bundle import load_bundle, reseal
from inspector.cli import main
from inspector.config import ServeConfig
from inspector.inference.predictor import Predictor
from inspector.service.models import ModelManager
from inspector.service.server import start_server
from inspector.artifacts.store import active_version, promote
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

MODEL_NAME = "line"
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
VERDICT_NAMES = {pb.ACCEPT: "ACCEPT", pb.REJECT: "REJECT", pb.REVIEW: "REVIEW"}
DEFECT_CLASSES = ("crack", "scratch", "spot")
TIMEOUT = 30.0  # s, for calls that should answer at once (a safety net, not a timing assertion)


# ---------------------------------------------------------------- store and servers


V2_THRESHOLDS = {"reject": 0.02, "review": 0.01}  # v2 answers differently from v1: it rejects nearly every part


def copy_version(source: Path, model_dir: Path, version: str, thresholds: dict | None = None) -> Path:
    """``source`` copied to ``model_dir/version`` with bundle.json renamed (and ``thresholds`` changed), re-sealed."""
    target = model_dir / version
    shutil.copytree(source, target)
    meta_file = target / "bundle.json"
    meta = json.loads(meta_file.read_text())
    meta["name"], meta["version"] = MODEL_NAME, version
    meta["thresholds"] |= thresholds or {}
    meta_file.write_text(json.dumps(meta, indent=2))
    return reseal(target)


@pytest.fixture(scope="session")
def make_store(tiny_bundle, tmp_path_factory):
    """Returns a function that builds a fresh store ``<tmp>/store/line/{v1,v2}`` with v1 active; gives the model dir.
    v2 has the same weights and other thresholds (:data:`V2_THRESHOLDS`), so an answer shows which version gave it."""

    def make() -> Path:
        model_dir = tmp_path_factory.mktemp("served") / "store" / MODEL_NAME
        model_dir.mkdir(parents=True)
        copy_version(tiny_bundle, model_dir, "v1")
        copy_version(tiny_bundle, model_dir, "v2", V2_THRESHOLDS)
        promote(model_dir, "v1")
        return model_dir

    return make


def serve_config(**overrides) -> ServeConfig:
    """Loopback, ephemeral port, CPU, few threads, no store polling unless asked."""
    base = dict(host="127.0.0.1", grpc_port=0, device="cpu", workers=2, watch_seconds=0.0,
                grace_seconds=2.0, metrics_host="127.0.0.1", metrics_port=0)
    return ServeConfig(**(base | overrides))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Polls ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Servers:
    """Starts in-process servers and stops every one of them (and closes their channels) at teardown."""

    def __init__(self) -> None:
        self.running = []
        self.channels = []

    def start(self, model_dir: Path, wait: bool = True, **cfg):
        running = start_server(serve_config(**cfg), model_dir=model_dir)
        self.running.append(running)
        if wait:
            assert running.loaded.wait(60), "the model did not load"
        return running

    def channel(self, running) -> grpc.Channel:
        return self.channel_to(running.port)

    def channel_to(self, port: int) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.channels.append(channel)
        return channel

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for running in self.running:
            running.stop(grace=0.5)


@pytest.fixture
def servers():
    """Function-scoped servers for tests that change the service's state."""
    owner = Servers()
    try:
        yield owner
    finally:
        owner.close()


@pytest.fixture(scope="module")
def module_servers():
    owner = Servers()
    try:
        yield owner
    finally:
        owner.close()


# ---------------------------------------------------------------- frames


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def images(demo_data) -> dict[str, np.ndarray]:
    """Decoded demo frames (64 x 64 grayscale) by name, plus a non-square BGR frame."""
    out = {}
    for cls in ("good", "crack", "scratch", "spot"):
        for i in range(2):
            name = f"{cls}_{i:04d}"
            out[name] = cv2.imread(str(demo_data / "images" / cls / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    base = out["scratch_0000"]
    colour = cv2.merge([base, 255 - base, cv2.GaussianBlur(base, (5, 5), 0)])
    out["colour_wide"] = np.ascontiguousarray(cv2.resize(colour, (96, 72), interpolation=cv2.INTER_LINEAR))
    assert out["good_0000"].shape == (64, 64) and out["colour_wide"].shape == (72, 96, 3)
    return out


def png_request(image: np.ndarray, frame_id: str, return_mask: bool = False,
                camera_id: str = "cam-1", return_anomaly_map: bool = False) -> pb.InspectRequest:
    return pb.InspectRequest(data=png(image), encoding=pb.PNG, frame_id=frame_id, camera_id=camera_id,
                             return_mask=return_mask, return_anomaly_map=return_anomaly_map)


def raw_request(image: np.ndarray, encoding: int, frame_id: str, stride_pad: int = 0) -> pb.InspectRequest:
    """Raw pixels of ``image`` (gray or BGR) in ``encoding``, rows padded by ``stride_pad`` bytes of noise."""
    if encoding == pb.RAW_RGB8:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    rows = image.reshape(h, -1)
    stride = 0
    if stride_pad:
        pad = np.random.default_rng(1).integers(0, 256, (h, stride_pad), dtype=np.uint8)
        rows = np.concatenate([rows, pad], axis=1)
        stride = rows.shape[1]
    return pb.InspectRequest(data=np.ascontiguousarray(rows).tobytes(), encoding=encoding, width=w, height=h,
                             stride=stride, frame_id=frame_id, camera_id="cam-raw", return_mask=True)


def decode_mask(response: pb.InspectResponse) -> np.ndarray:
    mask = cv2.imdecode(np.frombuffer(response.mask_png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.dtype == np.uint8 and mask.ndim == 2
    return mask


def assert_valid(response: pb.InspectResponse, frame_shape: tuple[int, ...], version: str = "line/v1") -> None:
    """A full answer for a frame of ``frame_shape``: verdict consistent with its thresholds (the classifier's, or the
    anomaly head's for a part the classifier accepts), regions in the frame."""
    assert not response.HasField("error"), response.error
    h, w = frame_shape[:2]
    assert response.model_version == version
    assert set(response.class_scores) == {"good", "crack", "scratch", "spot"}
    assert sum(response.class_scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert response.defect_score == pytest.approx(1.0 - response.class_scores["good"], abs=1e-5)
    t = response.thresholds
    reject_at = t.per_class.get(response.defect_class, t.reject)
    score = response.defect_score
    expected = "REJECT" if score >= reject_at else "REVIEW" if score >= min(t.review, reject_at) else "ACCEPT"
    assert response.HasField("anomaly_score") and response.anomaly_score >= 0.0  # the tiny model has an anomaly head
    flagged = expected == "ACCEPT" and response.anomaly_score >= t.anomaly
    assert response.by_anomaly == flagged
    region_class = response.defect_class
    if flagged:
        expected = VERDICT_NAMES[t.anomaly_verdict]
        region_class = "anomaly"
    assert VERDICT_NAMES[response.verdict] == expected
    assert response.label == ("good" if expected != "REJECT" else "anomaly" if flagged else response.defect_class)
    for region in response.regions:
        assert region.defect_class == region_class
        assert region.x + region.width <= w and region.y + region.height <= h
        assert 0 < region.area_px <= region.width * region.height
        assert region.area_fraction == pytest.approx(region.area_px / (h * w), rel=1e-5)
        assert t.mask <= region.max_score <= 1.0
    areas = [r.area_px for r in response.regions]
    assert areas == sorted(areas, reverse=True)


def inspect_version(stub, image) -> str:
    response = stub.Inspect(png_request(image, "probe"), timeout=TIMEOUT)
    return response.model_version


# ---------------------------------------------------------------- the shared server (read-only tests)


@pytest.fixture(scope="module")
def served(make_store, module_servers):
    model_dir = make_store()
    running = module_servers.start(model_dir)
    channel = module_servers.channel(running)
    return running, model_dir, channel


@pytest.fixture(scope="module")
def stub(served):
    return pb_grpc.InspectorStub(served[2])


@pytest.fixture(scope="module")
def bundle_thresholds(tiny_bundle):
    return load_bundle(tiny_bundle).thresholds


# ---------------------------------------------------------------- 1. unary round trips


def test_unary_round_trip_every_encoding(stub, images, bundle_thresholds):
    gray, colour = images["crack_0000"], images["colour_wide"]
    cases = {
        "jpeg": (pb.InspectRequest(data=jpeg(colour), encoding=pb.JPEG, frame_id="jpeg", camera_id="cam-7",
                                   return_mask=True), colour.shape),
        "png": (png_request(gray, "png", return_mask=True, camera_id="cam-7"), gray.shape),
        "gray8-strided": (raw_request(gray, pb.RAW_GRAY8, "gray8-strided", stride_pad=7), gray.shape),
        "bgr8": (raw_request(colour, pb.RAW_BGR8, "bgr8"), colour.shape),
        "rgb8-strided": (raw_request(colour, pb.RAW_RGB8, "rgb8-strided", stride_pad=5), colour.shape),
    }
    responses = {}
    for frame_id, (request, shape) in cases.items():
        response = stub.Inspect(request, timeout=TIMEOUT)
        responses[frame_id] = response
        assert response.frame_id == frame_id and response.camera_id == request.camera_id
        assert_valid(response, shape)
        mask = decode_mask(response)
        assert mask.shape == shape[:2]
        assert set(np.unique(mask)) <= {0, 255}
        assert np.count_nonzero(mask) >= sum(r.area_px for r in response.regions)
        ms = response.timings
        assert min(ms.decode_ms, ms.preprocess_ms, ms.queue_ms, ms.infer_ms, ms.postprocess_ms) > 0
        assert ms.total_ms >= ms.decode_ms + ms.preprocess_ms + ms.infer_ms
        t, want = response.thresholds, bundle_thresholds
        assert (t.reject, t.review, t.mask, t.min_region_area) == pytest.approx(
            (want.reject, want.review, want.mask, want.min_region_area))

    # raw pixels (padding bytes ignored, channel order honoured) give exactly what the PNG of the same pixels gives
    reference = {"gray8-strided": stub.Inspect(png_request(gray, "ref-gray"), timeout=TIMEOUT),
                 "bgr8": stub.Inspect(png_request(colour, "ref-colour"), timeout=TIMEOUT)}
    reference["rgb8-strided"] = reference["bgr8"]
    for frame_id, ref in reference.items():
        got = responses[frame_id]
        assert got.verdict == ref.verdict
        for cls, score in ref.class_scores.items():
            assert got.class_scores[cls] == pytest.approx(score, abs=1e-5)
    assert np.array_equal(decode_mask(responses["gray8-strided"]), decode_mask(responses["png"]))
    # a frame with no mask requested gets none
    assert stub.Inspect(png_request(gray, "no-mask"), timeout=TIMEOUT).mask_png == b""


def test_model_info(stub, tiny_bundle, bundle_thresholds):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    meta = load_bundle(tiny_bundle).meta
    assert (info.name, info.version, info.backbone) == ("line", "v1", meta["backbone"])
    assert list(info.classes) == meta["classes"]
    assert (info.input_height, info.input_width) == (64, 64)
    assert info.thresholds.reject == pytest.approx(bundle_thresholds.reject)
    assert info.validation["val_macro_f1"] == pytest.approx(meta["validation"]["val_macro_f1"], abs=1e-6)


# ---------------------------------------------------------------- 2. server == predictor


def test_server_agrees_with_the_predictor(stub, served, images):
    model_dir = served[1]
    names = ["good_0000", "good_0001", "crack_0001", "scratch_0000", "spot_0001", "colour_wide"]
    frames = [images[n] for n in names]
    predictor = Predictor.from_bundle(model_dir / "v1", device="cpu")
    direct = predictor.predict(frames)
    thresholds = predictor.thresholds
    verdicts = set()
    for name, frame, pred in zip(names, frames, direct):
        response = stub.Inspect(png_request(frame, name, return_mask=True), timeout=TIMEOUT)
        assert_valid(response, frame.shape)
        assert VERDICT_NAMES[response.verdict] == pred.verdict
        verdicts.add(pred.verdict)
        assert response.defect_class == pred.defect_class
        assert response.defect_score == pytest.approx(pred.defect_score, abs=1e-4)
        # in units of the reference; a part seen in training scores about 0, where float noise is relatively large
        assert response.anomaly_score == pytest.approx(pred.anomaly_score, rel=1e-3, abs=1e-2)
        assert response.by_anomaly == pred.by_anomaly
        for cls, score in pred.class_scores.items():
            assert response.class_scores[cls] == pytest.approx(score, abs=1e-4)
        expected = (pred.mask >= thresholds.mask).astype(np.uint8) * 255
        mask = decode_mask(response)
        assert mask.shape == expected.shape
        assert np.mean(mask != expected) < 0.001
        assert len(response.regions) == len(pred.regions)
        for got, want in zip(response.regions, pred.regions):
            assert abs(got.area_px - want.area_px) <= max(2, want.area_px // 100)
    assert len(verdicts) >= 2, "the frames should not all get the same verdict"


# ---------------------------------------------------------------- 3. a stream with malformed frames


def test_stream_answers_every_frame_in_order_and_flags_bad_ones(stub, images):
    good = images["spot_0000"]
    rubbish = b"\x00" + np.random.default_rng(0).integers(0, 256, 700, dtype=np.uint8).tobytes()
    requests = [
        (png_request(good, "good-0"), None),
        (pb.InspectRequest(data=b"", encoding=pb.PNG, frame_id="empty"), "empty"),
        (pb.InspectRequest(data=rubbish, encoding=pb.JPEG, frame_id="random-jpeg"), "encoding_mismatch"),
        (pb.InspectRequest(data=b"\xff\xd8" + rubbish, encoding=pb.JPEG, frame_id="jpeg-garbage"), "undecodable"),
        (png_request(images["crack_0000"], "good-1"), None),
        (pb.InspectRequest(data=bytes(100), encoding=pb.RAW_GRAY8, width=64, height=64, frame_id="raw-short"),
         "size_mismatch"),
        (pb.InspectRequest(data=png(good), encoding=pb.ENCODING_UNSPECIFIED, frame_id="no-encoding"),
         "unknown_encoding"),
        (png_request(good[:16, :40], "too-small"), "bad_dimensions"),
        (pb.InspectRequest(data=bytes(16 * 16), encoding=pb.RAW_GRAY8, width=16, height=16, frame_id="raw-small"),
         "bad_dimensions"),
        (png_request(images["colour_wide"], "good-after"), None),
    ]
    responses = list(stub.InspectStream(iter([r for r, _ in requests]), timeout=TIMEOUT))
    assert [r.frame_id for r in responses] == [r.frame_id for r, _ in requests]
    for (request, reason), response in zip(requests, responses):
        if reason is None:
            shape = images["colour_wide"].shape if request.frame_id == "good-after" else good.shape
            assert_valid(response, shape)
            assert response.verdict != pb.VERDICT_UNSPECIFIED
        else:
            assert response.HasField("error"), request.frame_id
            assert response.error.code == INVALID
            assert response.error.reason == reason, (request.frame_id, response.error)
            assert response.error.message
            assert response.verdict == pb.VERDICT_UNSPECIFIED and response.model_version == ""


# ---------------------------------------------------------------- 4. unary bad frames


@pytest.mark.parametrize("request_fields, words", [
    (dict(data=b"", encoding=pb.PNG), "frame payload is empty"),
    (dict(data=b"\x00not a jpeg" * 20, encoding=pb.JPEG), "does not start like a JPEG"),
    (dict(data=b"\xff\xd8not a jpeg" * 20, encoding=pb.JPEG), "not a decodable JPEG"),
    (dict(data=bytes(100), encoding=pb.RAW_GRAY8, width=64, height=64), "needs 4096 bytes, got 100"),
    (dict(data=bytes(100), encoding=pb.ENCODING_UNSPECIFIED), "unknown encoding 'ENCODING_UNSPECIFIED'"),
    (dict(data=bytes(16 * 16), encoding=pb.RAW_GRAY8, width=16, height=16), "16x16 px"),
])
def test_unary_bad_frame_is_invalid_argument(stub, request_fields, words):
    with pytest.raises(grpc.RpcError) as info:
        stub.Inspect(pb.InspectRequest(frame_id="bad-1", **request_fields), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details() and "bad-1" in info.value.details()


# ---------------------------------------------------------------- 5. health


def test_health_is_not_serving_until_the_model_is_warm(make_store, servers, monkeypatch, images):
    gate, building = threading.Event(), threading.Event()
    original = ModelManager._build

    def held_build(self, path):
        building.set()
        assert gate.wait(30), "test never released the model load"
        return original(self, path)

    monkeypatch.setattr(ModelManager, "_build", held_build)
    try:
        running = servers.start(make_store(), wait=False)
        channel = servers.channel(running)
        health = health_pb2_grpc.HealthStub(channel)
        stub = pb_grpc.InspectorStub(channel)
        assert building.wait(30)

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status

        assert status("") == NOT_SERVING and status("inspector.v1.Inspector") == NOT_SERVING
        with pytest.raises(grpc.RpcError) as info:
            stub.Inspect(png_request(images["good_0000"], "early"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "loading" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert pb_grpc.AdminStub(channel).ListModels(pb.ListModelsRequest(), timeout=TIMEOUT).serving == ""
    finally:
        gate.set()
    assert running.loaded.wait(60)
    assert [status(s) for s in ("", "inspector.v1.Inspector", "inspector.v1.Admin")] == [SERVING] * 3
    assert_valid(stub.Inspect(png_request(images["good_0000"], "late"), timeout=TIMEOUT), (64, 64))


def idle_streams(channel: grpc.Channel, image: np.ndarray, count: int, release: threading.Event) -> list:
    """``count`` streams that each send one frame, read its answer, then stay open sending nothing (cameras between
    parts) until ``release`` is set."""

    def one_then_idle(i: int):
        yield png_request(image, f"open-{i}")
        release.wait(60)

    streams = [pb_grpc.InspectorStub(channel).InspectStream(one_then_idle(i), timeout=60) for i in range(count)]
    for i, stream in enumerate(streams):
        assert next(stream).frame_id == f"open-{i}"
    return streams


def health_status(channel: grpc.Channel, service: str = "") -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT).status


def test_idle_streams_starve_neither_unary_calls_nor_health(make_store, servers, images):
    """More streams than the old server had RPC threads (32): a unary call, health on both ports and a new stream
    are still answered, and the gauge counts the streams."""
    running = servers.start(make_store(), health_port=0)
    channel = servers.channel(running)
    release = threading.Event()
    try:
        streams = idle_streams(channel, images["good_0000"], 40, release)
        assert running.metrics.registry.get_sample_value("inspector_open_streams") == 40
        assert_valid(pb_grpc.InspectorStub(channel).Inspect(png_request(images["crack_0000"], "unary"),
                                                             timeout=TIMEOUT), (64, 64))
        assert health_status(channel) == SERVING
        side = servers.channel_to(running.health_port)
        assert health_status(side) == SERVING and health_status(side, "inspector.v1.Inspector") == SERVING
        [late] = list(pb_grpc.InspectorStub(channel).InspectStream(
            iter([png_request(images["spot_0000"], "late")]), timeout=TIMEOUT))
        assert_valid(late, (64, 64))
    finally:
        release.set()
    for stream in streams:
        assert list(stream) == []
    wait_until(lambda: running.servicer.open_streams == 0)


def test_stream_beyond_max_streams_is_refused_and_readiness_follows(make_store, servers, images):
    running = servers.start(make_store(), max_streams=3)
    channel = servers.channel(running)
    release = threading.Event()
    try:
        streams = idle_streams(channel, images["good_0000"], 3, release)
        with pytest.raises(grpc.RpcError) as info:
            list(pb_grpc.InspectorStub(channel).InspectStream(iter([png_request(images["good_0000"], "x")]),
                                                              timeout=TIMEOUT))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-streams 3" in info.value.details()
        # saturated: readiness says so, liveness does not (a busy replica must not be restarted)
        wait_until(lambda: health_status(channel, "inspector.v1.Inspector") == NOT_SERVING)
        assert health_status(channel) == SERVING
        assert running.metrics.registry.get_sample_value("inspector_capacity_used_ratio") == pytest.approx(1.0)
        assert_valid(pb_grpc.InspectorStub(channel).Inspect(png_request(images["crack_0000"], "unary"),
                                                             timeout=TIMEOUT), (64, 64))
    finally:
        release.set()
    for stream in streams:
        assert list(stream) == []
    wait_until(lambda: health_status(channel, "inspector.v1.Inspector") == SERVING)
    [after] = list(pb_grpc.InspectorStub(channel).InspectStream(iter([png_request(images["good_0000"], "after")]),
                                                                timeout=TIMEOUT))
    assert_valid(after, (64, 64))


# ---------------------------------------------------------------- 6. reflection


def test_reflection_lists_the_services(served):
    services = set(ProtoReflectionDescriptorDatabase(served[2]).get_services())
    assert {"inspector.v1.Inspector", "inspector.v1.Admin", "grpc.health.v1.Health"} <= services


# ---------------------------------------------------------------- 7, 8. overload and deadlines


class HeldInfer:
    """Wraps a predictor's ``infer``: records every batch and holds each pass until :attr:`release` is set."""

    def __init__(self, predictor: Predictor) -> None:
        self.original = predictor.infer
        self.batches: list[np.ndarray] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray):
        self.batches.append(batch.copy())
        self.entered.set()
        assert self.release.wait(30), "test never released inference"
        return self.original(batch)


def hold_inference(running, monkeypatch) -> HeldInfer:
    predictor = running.models.current
    held = HeldInfer(predictor)
    monkeypatch.setattr(predictor, "infer", held)
    return held


def test_overload_gives_resource_exhausted(make_store, servers, monkeypatch, images):
    running = servers.start(make_store(), max_in_flight=1)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    held = hold_inference(running, monkeypatch)
    try:
        first = stub.Inspect.future(png_request(images["crack_0000"], "first"), timeout=TIMEOUT)
        assert held.entered.wait(TIMEOUT)
        wait_until(lambda: running.pipeline.in_flight == 1)
        with pytest.raises(grpc.RpcError) as info:
            stub.Inspect(png_request(images["good_0000"], "second"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "in flight" in info.value.details()
        # in a stream the overload is a per-frame error and the stream goes on
        [streamed] = list(stub.InspectStream(iter([png_request(images["good_0000"], "streamed")]), timeout=TIMEOUT))
        assert streamed.frame_id == "streamed"
        assert streamed.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert streamed.error.reason == "overloaded"
    finally:
        held.release.set()
    response = first.result(timeout=TIMEOUT)
    assert response.frame_id == "first"
    assert_valid(response, (64, 64))
    wait_until(lambda: running.pipeline.in_flight == 0)
    assert_valid(stub.Inspect(png_request(images["good_0000"], "after"), timeout=TIMEOUT), (64, 64))


def test_pixel_budget_bounds_memory_but_a_lone_frame_passes(make_store, servers, monkeypatch, images):
    running = servers.start(make_store(), max_in_flight_pixels=5000)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    big = np.ascontiguousarray(np.tile(images["good_0000"], (2, 2)))  # 128 x 128 = 16384 px, over the budget
    assert_valid(stub.Inspect(png_request(big, "alone"), timeout=TIMEOUT), big.shape)  # nothing else in flight
    held = hold_inference(running, monkeypatch)
    try:
        first = stub.Inspect.future(png_request(images["crack_0000"], "first"), timeout=TIMEOUT)  # 4096 px
        assert held.entered.wait(TIMEOUT)
        with pytest.raises(grpc.RpcError) as info:  # 4096 + 4096 > 5000
            stub.Inspect(png_request(images["good_0000"], "second"), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "px budget" in info.value.details()
    finally:
        held.release.set()
    assert first.result(timeout=TIMEOUT).frame_id == "first"


def test_expired_frame_is_not_run(make_store, servers, monkeypatch, images):
    running = servers.start(make_store())
    stub = pb_grpc.InspectorStub(servers.channel(running))
    held = hold_inference(running, monkeypatch)
    try:
        blocker = stub.Inspect.future(png_request(images["crack_0000"], "blocker"), timeout=TIMEOUT)
        assert held.entered.wait(TIMEOUT)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Inspect(png_request(images["good_0000"], "late"), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 5
        wait_until(lambda: running.pipeline.in_flight == 1)  # the late frame gave its place back at its deadline
    finally:
        held.release.set()
    assert_valid(blocker.result(timeout=TIMEOUT), (64, 64))
    # the batcher runs passes in order: once a later frame is answered, the late one was skipped, not run
    assert_valid(stub.Inspect(png_request(images["spot_0000"], "probe"), timeout=TIMEOUT), (64, 64))
    assert [len(b) for b in held.batches] == [1, 1], "the expired frame must not reach the model"
    assert np.array_equal(held.batches[0], running.models.current.prepare([images["crack_0000"]]).batch)
    assert np.array_equal(held.batches[1], running.models.current.prepare([images["spot_0000"]]).batch)


# ---------------------------------------------------------------- 9. hot swap


def test_hot_swap_during_a_stream_then_rollback(make_store, servers, images):
    model_dir = make_store()
    running = servers.start(model_dir)
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "crack_0000", "scratch_0001", "spot_0000")]
    result: dict = {}

    def activate() -> None:
        try:
            result["info"] = admin.ActivateVersion(pb.ActivateVersionRequest(version="v2"), timeout=TIMEOUT)
        except grpc.RpcError as err:  # reported by the assertions below
            result["error"] = err

    swapper = threading.Thread(target=activate)

    def requests():
        for i in range(30):
            if i == 10:
                swapper.start()
            if i == 25:
                swapper.join(TIMEOUT)  # the last frames are sent after the swap finished
            yield png_request(frames[i % len(frames)], f"f{i}")
            time.sleep(0.03)

    responses = list(stub.InspectStream(requests(), timeout=60))
    assert "error" not in result, result.get("error")
    assert (result["info"].name, result["info"].version) == ("line", "v2")
    assert [r.frame_id for r in responses] == [f"f{i}" for i in range(30)]
    for i, response in enumerate(responses):
        assert_valid(response, frames[i % len(frames)].shape, version=response.model_version)
    versions = [r.model_version for r in responses]
    assert set(versions) == {"line/v1", "line/v2"}
    assert versions[:10] == ["line/v1"] * 10 and versions[25:] == ["line/v2"] * 5
    switch = versions.index("line/v2")
    assert versions[switch:] == ["line/v2"] * (30 - switch), versions
    assert active_version(model_dir) == "v2"

    info = admin.Rollback(pb.RollbackRequest(), timeout=TIMEOUT)
    assert (info.name, info.version) == ("line", "v1")
    assert active_version(model_dir) == "v1"
    assert inspect_version(stub, images["good_0000"]) == "line/v1"

    with pytest.raises(grpc.RpcError) as err:
        admin.ActivateVersion(pb.ActivateVersionRequest(version="v9"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "v9" in err.value.details() and "line/v1" in err.value.details()
    assert inspect_version(stub, images["good_0000"]) == "line/v1"
    assert active_version(model_dir) == "v1"


def test_hot_swaps_under_concurrent_streams_and_unary_calls(make_store, servers, images, bundle_thresholds):
    """Swaps back and forth while 3 streams and 2 unary callers run: no call fails, every answer is complete, and its
    thresholds are those of the version it names (v1 and v2 answer differently)."""
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    expected = {"line/v1": bundle_thresholds.reject, "line/v2": V2_THRESHOLDS["reject"]}
    frames = [images[n] for n in ("good_0000", "crack_0000", "scratch_0001", "spot_0000")]
    done, answers, failures = threading.Event(), [], []

    def stream(k: int) -> None:
        def requests():
            i = 0
            while not done.is_set():
                yield png_request(frames[i % 4], f"s{k}-{i}")
                i += 1
        try:
            answers.extend(stub.InspectStream(requests(), timeout=120))
        except grpc.RpcError as err:
            failures.append(err)

    def unary(k: int) -> None:
        i = 0
        while not done.is_set():
            try:
                answers.append(stub.Inspect(png_request(frames[i % 4], f"u{k}-{i}"), timeout=TIMEOUT))
            except grpc.RpcError as err:
                failures.append(err)
            i += 1

    callers = [threading.Thread(target=stream, args=(k,)) for k in range(3)]
    callers += [threading.Thread(target=unary, args=(k,)) for k in range(2)]
    for caller in callers:
        caller.start()
    try:
        for version in ("v2", "v1", "v2", "v1"):
            admin.ActivateVersion(pb.ActivateVersionRequest(version=version), timeout=60)
            seen = len(answers)
            wait_until(lambda: len(answers) > seen + 5, timeout=60)  # answers from this version come through
    finally:
        done.set()
        for caller in callers:
            caller.join(120)
    assert failures == []
    assert {a.model_version for a in answers} == {"line/v1", "line/v2"}
    for answer in answers:
        assert_valid(answer, frames[0].shape, version=answer.model_version)
        assert answer.thresholds.reject == pytest.approx(expected[answer.model_version])
    assert running.metrics.registry.get_sample_value("inspector_model_swaps_total", {"result": "success"}) == 5


def test_frames_of_different_calls_share_forward_passes(make_store, servers, monkeypatch, images):
    running = servers.start(make_store())
    stub = pb_grpc.InspectorStub(servers.channel(running))
    held = hold_inference(running, monkeypatch)
    try:
        first = stub.Inspect.future(png_request(images["crack_0000"], "first"), timeout=TIMEOUT)
        assert held.entered.wait(TIMEOUT)  # the model is busy: what comes now queues up
        calls = [stub.Inspect.future(png_request(images["good_0000"], f"c{i}"), timeout=TIMEOUT) for i in range(5)]
        wait_until(lambda: running.batcher.depth() == 5)
    finally:
        held.release.set()
    for call in [first, *calls]:
        assert_valid(call.result(timeout=TIMEOUT), (64, 64))
    assert [len(b) for b in held.batches] == [1, 5]
    responses = [call.result() for call in calls]
    assert {r.frame_id for r in responses} == {f"c{i}" for i in range(5)}


def test_a_failing_forward_pass_answers_each_of_its_frames_once(make_store, servers, monkeypatch, images):
    """The frames of the batch whose pass raised get INTERNAL in their stream, once each; the stream goes on."""
    running = servers.start(make_store())
    predictor = running.models.current
    original, calls = predictor.infer, []

    def infer_failing_once(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(batch)

    monkeypatch.setattr(predictor, "infer", infer_failing_once)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    requests = [png_request(images["good_0000"], f"f{i}") for i in range(6)]
    responses = list(stub.InspectStream(iter(requests), timeout=TIMEOUT))
    assert [r.frame_id for r in responses] == [f"f{i}" for i in range(6)]
    failed = [r for r in responses if r.HasField("error")]
    assert len(failed) == calls[0] >= 1
    for response in failed:
        assert response.error.code == grpc.StatusCode.INTERNAL.value[0]
        assert response.error.reason == "inference_failed" and "illegal memory access" in response.error.message
    for response in responses[len(failed):]:
        assert_valid(response, (64, 64))
    assert running.pipeline.in_flight == 0


def test_an_unexpected_failure_is_internal_unary_and_in_a_stream(make_store, servers, monkeypatch, images):
    running = servers.start(make_store())
    predictor = running.models.current
    monkeypatch.setattr(predictor, "finish", lambda *args: (_ for _ in ()).throw(ValueError("regions out of frame")))
    stub = pb_grpc.InspectorStub(servers.channel(running))
    with pytest.raises(grpc.RpcError) as err:
        stub.Inspect(png_request(images["good_0000"], "u"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "regions out of frame" in err.value.details() and "Traceback" not in err.value.details()
    [answer] = list(stub.InspectStream(iter([png_request(images["good_0000"], "s")]), timeout=TIMEOUT))
    assert (answer.error.code, answer.error.reason) == (grpc.StatusCode.INTERNAL.value[0], "internal")
    monkeypatch.undo()
    assert_valid(stub.Inspect(png_request(images["good_0000"], "after"), timeout=TIMEOUT), (64, 64))


def test_a_frame_over_the_limit_is_answered_too_large_and_the_stream_goes_on(make_store, servers, images):
    running = servers.start(make_store(), max_frame_mb=0.01)  # 10 KiB frames; the transport takes twice that
    limit = int(0.01 * 2**20)
    noise = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    oversize = png_request(noise, "oversize")
    assert limit < len(oversize.data) < 2 * limit
    requests = [png_request(images["good_0000"], "before"), oversize, png_request(images["crack_0000"], "after")]
    responses = list(pb_grpc.InspectorStub(servers.channel(running)).InspectStream(iter(requests), timeout=TIMEOUT))
    assert [r.frame_id for r in responses] == ["before", "oversize", "after"]
    assert responses[1].error.reason == "too_large" and f"limit is {limit}" in responses[1].error.message
    assert_valid(responses[0], (64, 64))
    assert_valid(responses[2], (64, 64))


def test_metrics_listen_where_grpc_does(make_store, servers):
    running = servers.start(make_store(), metrics_host=None)  # serve_config binds 127.0.0.1
    assert running.metrics_server.server_address[0] == "127.0.0.1"


# ---------------------------------------------------------------- 10. store watch


def test_store_watch_follows_promotions_and_refuses_a_corrupt_bundle(make_store, servers, images, caplog):
    model_dir = make_store()
    running = servers.start(model_dir, watch_seconds=0.2)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    frame = images["good_0000"]
    assert inspect_version(stub, frame) == "line/v1"

    promote(model_dir, "v2")
    wait_until(lambda: inspect_version(stub, frame) == "line/v2", timeout=10, interval=0.1)

    broken = copy_version(model_dir / "v1", model_dir, "v3")
    weights = (broken / "weights.pt").read_bytes()
    (broken / "weights.pt").write_bytes(weights[: len(weights) // 2])
    caplog.set_level("ERROR", logger="inspector.service.models")
    promote(model_dir, "v3")
    wait_until(lambda: any("line/v3" in r.getMessage() for r in caplog.records), timeout=10, interval=0.1)
    assert any("truncated" in r.getMessage() for r in caplog.records)
    time.sleep(0.5)  # a few more polls: the bad version is not retried into service
    response = stub.Inspect(png_request(frame, "after-bad"), timeout=TIMEOUT)
    assert_valid(response, frame.shape, version="line/v2")
    assert running.models.current.bundle.version == "v2"


# ---------------------------------------------------------------- 11. admin


def test_list_models(served):
    admin = pb_grpc.AdminStub(served[2])
    listing = admin.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT)
    assert listing.serving == "line/v1"
    assert [(v.name, v.version, v.active) for v in listing.versions] == [("line", "v1", True), ("line", "v2", False)]
    for version in listing.versions:
        assert version.created_at and "val_macro_f1" in version.validation


def test_set_thresholds(make_store, servers, images, bundle_thresholds):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "good_0001", "crack_0001", "spot_0001")]

    with pytest.raises(grpc.RpcError) as err:
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(reject=0.4, review=0.6, mask=0.5)),
                            timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "review <= reject" in err.value.details()
    echoed = stub.Inspect(png_request(frames[0], "unchanged"), timeout=TIMEOUT).thresholds
    assert echoed.reject == pytest.approx(bundle_thresholds.reject)

    partial = pb.Thresholds(reject=0.0, review=0.0)  # unset fields keep their values
    new = pb.Thresholds(reject=0.0, review=0.0, mask=bundle_thresholds.mask,
                        min_region_area=bundle_thresholds.min_region_area, per_class={},
                        anomaly=bundle_thresholds.anomaly,
                        anomaly_verdict=pb.Verdict.Value(bundle_thresholds.anomaly_verdict))
    assert admin.SetThresholds(pb.SetThresholdsRequest(thresholds=partial), timeout=TIMEOUT) == new
    for i, frame in enumerate(frames):
        response = stub.Inspect(png_request(frame, f"t{i}"), timeout=TIMEOUT)
        assert response.verdict == pb.REJECT and response.label == response.defect_class
        assert response.thresholds == new
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds == new


def decode_anomaly_map(response: pb.InspectResponse) -> np.ndarray:
    assert response.anomaly_map_png, "no anomaly map in the response"
    image = cv2.imdecode(np.frombuffer(response.anomaly_map_png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8 and image.ndim == 2
    return image


def test_anomaly_score_and_map(stub, images, bundle_thresholds):
    for name in ("crack_0000", "scratch_0001", "colour_wide"):  # unlike the training parts of the anomaly bank
        frame = images[name]
        response = stub.Inspect(png_request(frame, name, return_anomaly_map=True), timeout=TIMEOUT)
        assert_valid(response, frame.shape)
        assert response.HasField("anomaly_score") and response.anomaly_score > 0.0
        assert response.mask_png == b""  # each PNG only when asked for
        assert response.thresholds.anomaly == pytest.approx(bundle_thresholds.anomaly)
        assert VERDICT_NAMES[response.thresholds.anomaly_verdict] == bundle_thresholds.anomaly_verdict
        heat = decode_anomaly_map(response)
        assert heat.shape == frame.shape[:2]
        a = response.anomaly_score  # the map's peak, encoded as 255 * a / (1 + a)
        assert abs(int(heat.max()) - round(255 * a / (1 + a))) <= 1
        plain = stub.Inspect(png_request(frame, name), timeout=TIMEOUT)
        assert plain.anomaly_map_png == b"" and plain.anomaly_score == pytest.approx(a, rel=1e-3)


def test_anomaly_thresholds_decide_what_the_classifier_accepts(make_store, servers, images):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "crack_0001", "colour_wide")]
    # the classifier never rejects nor reviews (a defect score reaches 1.0 only if p(good) is exactly 0), and any
    # anomaly score reaches 0: every frame is rejected by the anomaly head
    never = pb.Thresholds(reject=1.0, review=1.0, per_class={c: 1.0 for c in DEFECT_CLASSES}, anomaly=0.0,
                          anomaly_verdict=pb.REJECT)
    echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=never), timeout=TIMEOUT)
    assert (echoed.anomaly, echoed.anomaly_verdict, echoed.reject) == (0.0, pb.REJECT, 1.0)
    for i, frame in enumerate(frames):
        response = stub.Inspect(png_request(frame, f"a{i}", return_mask=True), timeout=TIMEOUT)
        assert response.defect_score < 1.0
        assert response.verdict == pb.REJECT and response.by_anomaly and response.label == "anomaly"
        assert response.thresholds == echoed
        assert all(r.defect_class == "anomaly" for r in response.regions)
        assert decode_mask(response).shape == frame.shape[:2]

    # a partial update keeps the anomaly threshold: flagged parts now go to review, labelled good
    echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(anomaly_verdict=pb.REVIEW)),
                                 timeout=TIMEOUT)
    assert (echoed.anomaly, echoed.anomaly_verdict) == (0.0, pb.REVIEW)
    response = stub.Inspect(png_request(frames[0], "review"), timeout=TIMEOUT)
    assert (response.verdict, response.by_anomaly, response.label) == (pb.REVIEW, True, "good")

    # an anomaly threshold above any score: the classifier's verdict (accept) stands
    admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(anomaly=1e9)), timeout=TIMEOUT)
    response = stub.Inspect(png_request(frames[0], "accept"), timeout=TIMEOUT)
    assert (response.verdict, response.by_anomaly, response.label) == (pb.ACCEPT, False, "good")
    assert response.HasField("anomaly_score") and response.regions == []


def test_invalid_anomaly_thresholds_are_refused(make_store, servers, images, bundle_thresholds):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    cases = [(pb.Thresholds(anomaly_verdict=pb.ACCEPT), "REVIEW or REJECT, got ACCEPT"),
             (pb.Thresholds(anomaly_verdict=pb.VERDICT_UNSPECIFIED, anomaly=0.0), "got VERDICT_UNSPECIFIED"),
             (pb.Thresholds(anomaly=-0.5), "anomaly threshold must be >= 0"),
             (pb.Thresholds(anomaly=float("nan"), anomaly_verdict=pb.REJECT), "anomaly threshold must be >= 0")]
    for thresholds, words in cases:
        with pytest.raises(grpc.RpcError) as err:
            admin.SetThresholds(pb.SetThresholdsRequest(thresholds=thresholds), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in err.value.details()
    kept = stub.Inspect(png_request(images["good_0000"], "kept"), timeout=TIMEOUT).thresholds  # nothing changed
    assert kept.anomaly == pytest.approx(bundle_thresholds.anomaly)
    assert VERDICT_NAMES[kept.anomaly_verdict] == bundle_thresholds.anomaly_verdict


def test_cancelled_stream_leaves_nothing_behind(make_store, servers, monkeypatch, images):
    """A client that cancels while its window is full: the stream, its frames' budget and its queued frames go (the
    model never runs the frames nobody waits for)."""
    running = servers.start(make_store())
    held = hold_inference(running, monkeypatch)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    call = pb_grpc.InspectorStub(channel).InspectStream(
        iter([png_request(images["good_0000"], f"c{i}") for i in range(100)]), timeout=TIMEOUT)
    try:
        assert held.entered.wait(TIMEOUT)
        wait_until(lambda: running.pipeline.in_flight >= running.cfg.stream_window)  # the window is full
        assert running.servicer.open_streams == 1
        call.cancel()
        wait_until(lambda: running.servicer.open_streams == 0 and running.pipeline.in_flight == 0)
    finally:
        held.release.set()
        channel.close()
    wait_until(lambda: running.batcher.depth() == 0)
    assert sum(len(b) for b in held.batches) <= running.cfg.max_batch < running.cfg.stream_window


# ---------------------------------------------------------------- 12. SIGTERM drains a real process


def served_port(proc: subprocess.Popen, log_path: Path) -> int:
    """The gRPC port a served process bound (it listens on port 0 and logs the port it got)."""

    def logged() -> int | None:
        assert proc.poll() is None, f"serve exited with {proc.returncode}: {log_path.read_text()[-3000:]}"
        found = re.search(r"gRPC listening on [^:]+:(\d+)", log_path.read_text())
        return int(found.group(1)) if found else None

    return wait_until(logged, timeout=60, interval=0.1)


def test_sigterm_drains_the_served_process(make_store, images, tmp_path):
    """SIGTERM: health NOT_SERVING and new calls refused while the grace period runs; every frame a stream sent is
    answered exactly once (inspected if it came before the signal, else refused with UNAVAILABLE in the stream);
    the stream ends cleanly when its client closes it, and the process exits 0."""
    model_dir = make_store()
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    log_path = tmp_path / "serve.log"
    repo = Path(__file__).resolve().parents[2]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inspector", "serve", "--store", str(model_dir.parent), "--name", MODEL_NAME,
             "--host", "127.0.0.1", "--grpc-port", "0", "--device", "cpu", "--metrics-port", "0",
             "--grace-seconds", "60"],  # the drain lasts as long as the test's stream is open, on a slow machine too
            env=env, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    channel = None
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{served_port(proc, log_path)}")

        def status() -> int | None:
            try:
                return health_status(channel)
            except grpc.RpcError:
                return None

        wait_until(lambda: status() == SERVING, timeout=60, interval=0.2)
        stub = pb_grpc.InspectorStub(channel)
        frame = images["scratch_0000"]
        outbox: queue.Queue = queue.Queue()
        call = stub.InspectStream(iter(outbox.get, None), timeout=60)
        outbox.put(png_request(frame, "s0"))
        assert_valid(next(call), frame.shape)
        for i in range(1, 9):  # a burst in flight when the signal comes
            outbox.put(png_request(frame, f"s{i}"))
        proc.send_signal(signal.SIGTERM)
        seen = []
        try:
            wait_until(lambda: seen.append((status(), proc.poll())) or seen[-1][0] == NOT_SERVING, timeout=40,
                       interval=0.05)
        except AssertionError as err:
            raise AssertionError(f"{err}; seen {seen[-5:]}; log: {log_path.read_text()[-3000:]}") from None
        with pytest.raises(grpc.RpcError) as err:  # a new call during the grace period
            stub.Inspect(png_request(frame, "new-call"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert proc.poll() is None, "the process should still be draining: the stream is open"
        outbox.put(png_request(frame, "s9"))  # sent after the signal, on the open stream
        outbox.put(None)  # the client closes its side
        responses = list(call)  # ends without an error
        assert [r.frame_id for r in responses] == [f"s{i}" for i in range(1, 10)]
        inspected = [not r.HasField("error") for r in responses]
        assert inspected == sorted(inspected, reverse=True), "inspected frames come first, in order"
        for response in responses:
            if response.HasField("error"):
                assert response.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
                assert response.error.reason == "shutting_down"
            else:
                assert_valid(response, frame.shape)
        assert responses[-1].error.reason == "shutting_down"
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]
        with pytest.raises(grpc.RpcError) as err:
            stub.Inspect(png_request(frame, "after"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if channel is not None:
            channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------- 13. the client CLI


def test_client_cli(served, images, tmp_path, capsys):
    running = served[0]
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["good_0000", "crack_0000", "colour_wide"]
    for name in names:
        cv2.imwrite(str(folder / f"{name}.png"), images[name])
    overlays = tmp_path / "overlays"
    target = f"127.0.0.1:{running.port}"
    assert main(["client", "--target", target, str(folder), "--overlays", str(overlays)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["frame_id"]).stem for line in lines] == sorted(names)
    for line in lines:
        assert line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"}
        assert line["model_version"] == "line/v1" and "error" not in line
        assert isinstance(line["anomaly_score"], float) and line["anomaly_score"] > 0
        assert "anomaly_map_png" not in line and "mask_png" not in line
        overlay = cv2.imread(line["overlay"], cv2.IMREAD_UNCHANGED)
        source = images[Path(line["frame_id"]).stem]
        assert overlay.shape == (*source.shape[:2], 3)
    assert sorted(p.name for p in overlays.iterdir()) == sorted(f"{n}_overlay.png" for n in names)

    missing = tmp_path / "nowhere.png"
    assert main(["client", "--target", target, str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No such file" in captured.err and "nowhere.png" in captured.err
    # frames before a missing path are still answered, then the error names the path
    assert main(["client", "--target", target, str(folder / "good_0000.png"), str(missing)]) == 2
    captured = capsys.readouterr()
    [line] = [json.loads(line) for line in captured.out.splitlines()]
    assert line["frame_id"].endswith("good_0000.png") and line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"}
    assert "nowhere.png" in captured.err


def test_client_streams_a_video_file(served, images, tmp_path, capsys):
    video = tmp_path / "line.avi"
    frame = cv2.cvtColor(images["crack_0000"], cv2.COLOR_GRAY2BGR) if images["crack_0000"].ndim == 2 else images[
        "crack_0000"]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    assert writer.isOpened()
    for _ in range(5):
        writer.write(frame)
    writer.release()
    assert main(["client", "--target", f"127.0.0.1:{served[0].port}", str(video), "--camera-id", "cam-7"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["frame_id"] for line in lines] == [f"{video}#{i}" for i in range(5)]
    assert all(line["camera_id"] == "cam-7" and line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"} for line in lines)


def test_tiled_frames_are_answered_at_full_size(make_store, servers, images):
    running = servers.start(make_store(), tile=48, max_batch=16)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    frame = np.ascontiguousarray(np.tile(images["crack_0000"], (2, 3)))  # (128, 192): 5 x 3 tiles of 48 px
    response = stub.Inspect(png_request(frame, "tiled"), timeout=TIMEOUT)
    assert_valid(response, frame.shape[:2])
    local = Predictor.from_bundle(running.models.current.bundle.path, "cpu", tile=48)
    assert len(local.prepare([frame]).batch) == 15
    direct = local.predict([frame])[0]
    assert response.defect_score == pytest.approx(direct.defect_score, abs=1e-4)
