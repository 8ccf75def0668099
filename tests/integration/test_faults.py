"""Faults in the model store: bad bundles are refused while the current model keeps serving; interrupted writes
leave nothing a reader can see, and their leftovers are cleaned at start."""

import json
import os
import time

import cv2
import grpc
import pytest

from inspector.config import ServeConfig
from inspector.service.server import start_server
from inspector.artifacts.store import active_version, clean_stale, promote
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


@pytest.fixture()
def store(tiny_bundle, tmp_path, add_version):
    model_dir = tmp_path / "store" / "line"
    for v in ("v1", "v2", "v3", "v4"):
        add_version(tiny_bundle, model_dir, v)
    weights = model_dir / "v2" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    meta = json.loads((model_dir / "v3" / "bundle.json").read_text())
    (model_dir / "v3" / "bundle.json").write_text(json.dumps(meta | {"format_version": 99}))  # from the future
    meta = json.loads((model_dir / "v4" / "bundle.json").read_text())
    (model_dir / "v4" / "bundle.json").write_text(json.dumps(meta | {"weights_sha256": "0" * 64}))  # tampered, unsealed
    promote(model_dir, "v1")
    return model_dir


def test_bad_versions_are_refused_and_the_current_one_keeps_serving(store, demo_data):
    stale = store / ".tmp-crashed-writer"
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = store / ".tmp-writer-at-work"
    fresh.mkdir()
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                      grace_seconds=1.0)
    running = start_server(cfg, model_dir=store)
    try:
        assert running.loaded.wait(60)
        assert not stale.exists() and fresh.exists()  # only leftovers older than an hour are removed
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        admin, stub = pb_grpc.AdminStub(channel), pb_grpc.InspectorStub(channel)
        frame = pb.InspectRequest(data=cv2.imencode(".png", cv2.imread(str(demo_data / "images/good/good_0000.png")))[1]
                                  .tobytes(), encoding=pb.PNG, frame_id="f")
        for version, words in [("v2", "does not match"), ("v3", "format version 99"), ("v4", "does not match"),
                               ("../line/v1", "no version"), ("/etc", "no version"), ("v9", "no version")]:
            with pytest.raises(grpc.RpcError) as err:
                admin.ActivateVersion(pb.ActivateVersionRequest(version=version), timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, version
            assert words in err.value.details() and "still serving line/v1" in err.value.details(), version
            assert stub.Inspect(frame, timeout=30).model_version == "line/v1"
        assert active_version(store) == "v1"  # a refused version never becomes active
    finally:
        running.stop(grace=0)


def test_clean_stale_keeps_young_temporaries(tmp_path):
    (tmp_path / ".tmp-young").mkdir()
    (tmp_path / ".active-old").write_text("v1")
    old = time.time() - 7200
    os.utime(tmp_path / ".active-old", (old, old))
    assert clean_stale(tmp_path) == [".active-old"]
    assert (tmp_path / ".tmp-young").exists()


def test_a_service_that_started_without_a_usable_model_recovers_on_promotion(store):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    promote(store, "v2")  # truncated weights: the start fails
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.2,
                      grace_seconds=1.0)
    running = start_server(cfg, model_dir=store)
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
        failures = lambda: running.metrics.registry.get_sample_value(  # noqa: E731
            "inspector_model_swaps_total", {"result": "failure"})
        deadline = time.monotonic() + 30
        while failures() != 1.0:  # the first load has been tried and refused
            assert time.monotonic() < deadline, "the truncated version was never tried"
            time.sleep(0.02)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
        promote(store, "v1")
        assert running.loaded.wait(30)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        assert running.models.current.bundle.path.name == "v1"
    finally:
        running.stop(grace=0)
