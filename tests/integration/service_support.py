"""What the service tests share: the store they serve, in-process servers, frames and requests, and the checks
of a full answer."""

import json
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inspector.artifacts.bundle import reseal
from inspector.config import ServeConfig
from inspector.inference.predictor import Predictor
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


MODEL_NAME = "line"


INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


SERVING = health_pb2.HealthCheckResponse.SERVING


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


VERDICT_NAMES = {pb.ACCEPT: "ACCEPT", pb.REJECT: "REJECT", pb.REVIEW: "REVIEW"}


DEFECT_CLASSES = ("crack", "scratch", "spot")


TIMEOUT = 30.0  # s, for calls that should answer at once (a safety net, not a timing assertion)


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

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        for running in self.running:
            running.stop(grace=0.5)


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


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


class HeldInfer:
    """Wraps a predictor's ``infer``: records every batch and holds each pass until :attr:`release` is set."""

    def __init__(self, predictor: Predictor) -> None:
        self.original = predictor.infer
        self.batches: list[np.ndarray] = []
        self.in_lane: list[bool] = []  # each pass: on a lane (one thread, beside others) or on all the threads
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, batch: np.ndarray, lane: bool = False):
        self.batches.append(batch.copy())
        self.in_lane.append(lane)
        self.entered.set()
        assert self.release.wait(30), "test never released inference"
        return self.original(batch, lane=lane)


def hold_inference(running, monkeypatch) -> HeldInfer:
    predictor = running.models.current
    held = HeldInfer(predictor)
    monkeypatch.setattr(predictor, "infer", held)
    return held


def decode_anomaly_map(response: pb.InspectResponse) -> np.ndarray:
    assert response.anomaly_map_png, "no anomaly map in the response"
    image = cv2.imdecode(np.frombuffer(response.anomaly_map_png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.dtype == np.uint8 and image.ndim == 2
    return image


def served_port(proc: subprocess.Popen, log_path: Path) -> int:
    """The gRPC port a served process bound (it listens on port 0 and logs the port it got)."""

    def logged() -> int | None:
        assert proc.poll() is None, f"serve exited with {proc.returncode}: {log_path.read_text()[-3000:]}"
        found = re.search(r"gRPC listening on [^:]+:(\d+)", log_path.read_text())
        return int(found.group(1)) if found else None

    return wait_until(logged, timeout=60, interval=0.1)

