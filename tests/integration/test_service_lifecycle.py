"""The served process: where metrics listen, and the drain on SIGTERM."""

import os
import queue
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (MODEL_NAME, SERVING, NOT_SERVING, wait_until, png_request, assert_valid, health_status,
                             served_port)


def test_metrics_listen_where_grpc_does(make_store, servers):
    running = servers.start(make_store(), metrics_host=None)  # serve_config binds 127.0.0.1
    assert running.metrics_server.server_address[0] == "127.0.0.1"


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

