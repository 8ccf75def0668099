"""A real Prometheus scrapes the service on loopback; a reject-rate query through its HTTP API matches the answers."""

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import cv2
import grpc
import numpy as np
import pytest

from inspector.config import ServeConfig
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(fn, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            value = fn()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


@pytest.fixture()
def service(tiny_bundle):
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_host="127.0.0.1", metrics_port=0,
                      watch_seconds=0.0, grace_seconds=1.0, cameras=("cam-a", "cam-b"))
    running = start_server(cfg, bundle=tiny_bundle)
    assert running.loaded.wait(60)
    yield running
    running.stop(grace=0)


@pytest.fixture()
def prometheus(prometheus_server_binary, service, tmp_path):
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: inspector
    static_configs:
      - targets: ["127.0.0.1:{service.metrics_port}"]
""")
    proc = subprocess.Popen([prometheus_server_binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_prometheus_scrapes_and_computes_the_reject_rate(service, prometheus, demo_data):
    stub = pb_grpc.InspectorStub(grpc.insecure_channel(f"127.0.0.1:{service.port}"))
    images = sorted((demo_data / "images").rglob("*.png"))[:12]
    verdicts = {"cam-a": [], "cam-b": []}
    for i, path in enumerate(images):
        camera = "cam-a" if i % 3 else "cam-b"
        data = cv2.imencode(".png", cv2.imread(str(path)))[1].tobytes()
        response = stub.Inspect(pb.InspectRequest(data=data, encoding=pb.PNG, frame_id=str(i), camera_id=camera),
                                timeout=30)
        verdicts[camera].append(pb.Verdict.Name(response.verdict))
    with pytest.raises(grpc.RpcError):
        stub.Inspect(pb.InspectRequest(data=b"junk", encoding=pb.JPEG, frame_id="bad"), timeout=30)

    wait_for(lambda: [r for r in query(prometheus, "sum(inspector_frames_total)") if float(r["value"][1]) == 12])
    total = "sum by (camera) (inspector_frames_total)"
    expr = f'(sum by (camera) (inspector_frames_total{{verdict="REJECT"}}) or {total} * 0) / {total}'
    result = {r["metric"]["camera"]: float(r["value"][1]) for r in query(prometheus, expr)}
    assert result == pytest.approx({c: seen.count("REJECT") / len(seen) for c, seen in verdicts.items()})
    invalid = query(prometheus, 'inspector_invalid_frames_total{reason="encoding_mismatch"}')
    assert [float(r["value"][1]) for r in invalid] == [1.0]
    up = query(prometheus, 'up{job="inspector"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    assert np.isfinite(float(query(prometheus, "sum(inspector_stage_seconds_count)")[0]["value"][1]))
