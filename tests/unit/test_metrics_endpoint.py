"""The metrics port: ``/metrics`` (with the process and Python metrics beside the service's), ``/healthz`` when the
service gives a readiness check, 404 for every other path; and the port is free again after ``shutdown()``."""

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from inspector.service.metrics import Metrics

PLATFORM = ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "python_info",
            "python_gc_collections_total")


def fetch(port: int, path: str, method: str = "GET", **headers: str) -> tuple[int, dict, bytes]:
    """Status, headers and body of one request (an HTTP error status is an answer here, not an exception)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def served():
    """A Metrics on its own registry, served on a free port with a readiness flag the tests set (and reset)."""
    metrics, flag = Metrics(CollectorRegistry(), cameras=("cam-1",)), {"ready": False}
    server, port = metrics.serve(0, "127.0.0.1", ready=lambda: flag["ready"])
    yield metrics, port, flag
    server.shutdown()


def test_metrics_holds_the_service_and_the_process_metrics(served):
    metrics, port, _ = served
    metrics.observe_frame("cam-1", "REJECT", "crack", 0.9, 0.01, {"infer": 0.02})
    status, headers, body = fetch(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in PLATFORM:
        family = name.removesuffix("_total")
        assert family in families, name
        assert families[family].samples, name
    assert families["process_resident_memory_bytes"].samples[0].value > 10 * 2**20  # a live process
    assert {s.labels["implementation"] for s in families["python_info"].samples} == {"CPython"}
    frames = families["inspector_frames"].samples
    assert [(s.labels, s.value) for s in frames if s.name == "inspector_frames_total"] == [
        ({"verdict": "REJECT", "camera": "cam-1"}, 1.0)]
    assert all(name.startswith(("inspector_", "process_", "python_")) for name in families)


def test_no_metric_name_is_taken_twice():
    """The registry refuses a second collector of a name; these are every series name the port exports."""
    registry = CollectorRegistry()
    Metrics(registry)
    families = [family.name for family in registry.collect()]
    assert len(families) == len(set(families))
    assert {"process_resident_memory_bytes", "python_info", "inspector_model_swaps"} <= set(families)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)  # the same names again on the same registry


def test_content_negotiation_is_prometheus_clients(served):
    _, port, _ = served
    status, headers, body = fetch(port, "/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, _ = fetch(port, "/metrics", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"


def test_head_of_metrics_gives_the_headers_without_a_body(served):
    _, port, _ = served
    status, headers, body = fetch(port, "/metrics", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000


@pytest.mark.parametrize("path", ["/", "/nope", "/metrics/", "/metricsx", "/healthz/", "/favicon.ico"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_every_other_path_is_not_found(served, path, method):
    _, port, _ = served
    status, _, body = fetch(port, path, method)
    assert status == 404
    assert body == (b"" if method == "HEAD" else b"not found: this port serves /metrics and /healthz\n")


def test_healthz_follows_readiness(served):
    _, port, flag = served
    status, headers, body = fetch(port, "/healthz")
    assert (status, headers["Cache-Control"]) == (503, "no-store")
    assert body.startswith(b"not ready: ")
    flag["ready"] = True
    assert fetch(port, "/healthz")[::2] == (200, b"ok\n")
    assert fetch(port, "/healthz", "HEAD")[::2] == (200, b"")
    flag["ready"] = False
    assert fetch(port, "/healthz")[0] == 503
    assert fetch(port, "/healthz", "POST")[0] == 405


def test_a_failing_readiness_check_is_503_with_its_error():
    def broken() -> bool:
        raise RuntimeError("model manager gone")

    server, port = Metrics(CollectorRegistry()).serve(0, "127.0.0.1", ready=broken)
    try:
        status, _, body = fetch(port, "/healthz")
    finally:
        server.shutdown()
    assert status == 503 and b"RuntimeError: model manager gone" in body


def test_without_readiness_healthz_is_not_found_and_shutdown_frees_the_port():
    server, port = Metrics(CollectorRegistry()).serve(0, "127.0.0.1")
    try:
        assert fetch(port, "/healthz") == (404, fetch(port, "/healthz")[1], b"not found: this port serves /metrics\n")
        assert fetch(port, "/metrics")[0] == 200
    finally:
        server.shutdown()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
