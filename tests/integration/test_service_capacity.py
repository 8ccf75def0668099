"""Capacity and faults: health until warm, idle streams, the stream ceiling and readiness, overload,
the pixel budget, deadlines, shared forward passes, failures answered once, oversize frames,
cancelled streams."""

import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inspector.service.models import ModelManager
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (SERVING, NOT_SERVING, TIMEOUT, wait_until, png_request, assert_valid, idle_streams,
                             health_status, hold_inference)


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


@pytest.mark.parametrize("lanes, passes", [(1, [(1, False), (5, False)]), (2, [(1, False), (2, True), (3, True)])])
def test_frames_of_different_calls_share_forward_passes(make_store, servers, monkeypatch, images, lanes, passes):
    """A lone frame runs on all the threads; the 5 that queue behind it share one pass, or with 2 lanes two passes
    side by side, one thread each."""
    running = servers.start(make_store(), lanes=lanes)
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
    ran = [(len(b), lane) for b, lane in zip(held.batches, held.in_lane)]
    assert ran[:1] + sorted(ran[1:]) == passes  # the lanes' passes run at once: either may enter first
    responses = [call.result() for call in calls]
    assert {r.frame_id for r in responses} == {f"c{i}" for i in range(5)}


def test_a_failing_forward_pass_answers_each_of_its_frames_once(make_store, servers, monkeypatch, images):
    """The frames of the batch whose pass raised get INTERNAL in their stream, once each; the stream goes on."""
    running = servers.start(make_store())
    predictor = running.models.current
    original, calls = predictor.infer, []

    def infer_failing_once(batch, lane=False):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return original(batch, lane=lane)

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
    for response in responses:  # the failed batch need not be the first frames: decodes finish in any order
        if not response.HasField("error"):
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


def test_cancelled_stream_leaves_nothing_behind(make_store, servers, monkeypatch, images):
    """A client that cancels while its window is full: the stream, its frames' budget and its queued frames go (the
    model never runs the frames nobody waits for: at most the passes held when it cancelled, one per lane)."""
    running = servers.start(make_store(), max_batch=4)
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
    assert sum(len(b) for b in held.batches) <= running.cfg.max_batch * running.batcher.lanes < running.cfg.stream_window


def test_a_frame_the_region_of_interest_does_not_fit_is_invalid(make_store, servers, images):
    running = servers.start(make_store(), roi=(8, 8, 48, 48))
    stub = pb_grpc.InspectorStub(servers.channel(running))
    small = np.ascontiguousarray(images["good_0000"][:40, :40])  # 40x40: the 48 px region does not fit
    with pytest.raises(grpc.RpcError) as err:
        stub.Inspect(png_request(small, "small"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "region of interest" in err.value.details()
    [answer] = list(stub.InspectStream(iter([png_request(small, "s")]), timeout=TIMEOUT))
    assert answer.error.reason == "outside_roi"
    assert_valid(stub.Inspect(png_request(images["good_0000"], "fits"), timeout=TIMEOUT), (64, 64))
