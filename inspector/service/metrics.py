"""Prometheus metrics of the service, declared once. Every name ends in its unit or ``_total``; every label comes
from a small fixed set (verdict, defect class, stage, RPC method, status code, reason, configured cameras).

The registry also holds the process and Python metrics that prometheus_client's default registry would have
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``python_gc_*``, ``python_info``). The HTTP
endpoint answers ``/metrics`` and, when given a readiness check, ``/healthz``; any other path is 404.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector, make_wsgi_app)

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
AREA_BUCKETS = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
ANOMALY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0)  # multiples of the model's good-part reference
STAGES = ("decode", "preprocess", "queue", "infer", "postprocess")  # timed stages of a frame
PIPELINE_STAGES = ("prepare", "model", "finish")  # where a frame waits or works (inspector.service.pipeline)
STATISTICS = ("defect_score", "brightness", "contrast", "sharpness")  # drift, see inspector.inference.drift
OTHER_CAMERA = "other"
METRICS_PATH, HEALTH_PATH = "/metrics", "/healthz"


class Metrics:
    """All service metrics on one registry (a fresh one per instance unless given).

    Args:
        registry: Where to register; tests pass their own ``CollectorRegistry()``.
        cameras: Camera ids that get their own label value; any other id is counted as ``other``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, cameras: Iterable[str] = ()) -> None:
        self.registry = registry or CollectorRegistry()
        self.cameras = frozenset(cameras)
        r = self.registry
        self.frames = Counter("inspector_frames_total", "Frames answered with a verdict", ["verdict", "camera"], registry=r)
        self.defects = Counter("inspector_defects_total", "Rejected or reviewed frames by most likely defect class",
                               ["defect_class", "verdict", "camera"], registry=r)
        self.stage_seconds = Histogram("inspector_stage_seconds", "Time per pipeline stage", ["stage"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.request_seconds = Histogram("inspector_request_seconds", "RPC latency by method", ["method"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.requests = Counter("inspector_requests_total", "RPCs by method and status code", ["method", "code"],
                                registry=r)
        self.batch_frames = Histogram("inspector_batch_size_frames", "Frames per forward pass", buckets=BATCH_BUCKETS,
                                      registry=r)
        self.queue_frames = Gauge("inspector_queue_depth_frames", "Frames waiting for the model", registry=r)
        self.in_flight_frames = Gauge("inspector_in_flight_frames", "Frames accepted and not yet answered", registry=r)
        self.stage_frames = Gauge("inspector_stage_frames", "Frames in each pipeline stage now, waiting or working "
                                  "(prepare: decode and preprocess; model: batch queue and forward pass; finish: "
                                  "postprocess)", ["stage"], registry=r)
        self.open_streams = Gauge("inspector_open_streams", "InspectStream calls open now (idle ones included)",
                                  registry=r)
        self.capacity_used = Gauge("inspector_capacity_used_ratio", "Share of the replica's capacity in use: the "
                                   "larger of open streams / --max-streams and frames in flight / --max-in-flight; "
                                   "at 1 the replica is saturated (readiness NOT_SERVING)", registry=r)
        self.defect_score = Histogram("inspector_defect_score_ratio", "Defect score of answered frames",
                                      buckets=RATIO_BUCKETS, registry=r)
        self.defect_area = Histogram("inspector_defect_area_ratio", "Defect area as a fraction of the frame",
                                     buckets=AREA_BUCKETS, registry=r)
        self.anomaly_score = Histogram("inspector_anomaly_score_ratio", "Peak anomaly score of answered frames "
                                       "(1.0 = the model's good-part reference)", buckets=ANOMALY_BUCKETS, registry=r)
        self.anomaly_verdicts = Counter("inspector_anomaly_verdicts_total", "Frames whose verdict came from the "
                                        "anomaly head (the classifier accepted them)", ["verdict"], registry=r)
        self.invalid = Counter("inspector_invalid_frames_total", "Frames refused as invalid, by reason", ["reason"],
                               registry=r)
        self.frame_errors = Counter("inspector_frame_errors_total", "Frames not inspected, by status code", ["code"],
                                    registry=r)
        self.model_info = Gauge("inspector_model_info", "The model serving (value 1)", ["name", "version", "backbone"],
                                registry=r)
        self.swaps = Counter("inspector_model_swaps_total", "Model swap attempts by result", ["result"], registry=r)
        self.audit = Counter("inspector_audit_frames_total", "Frames offered to the audit sink, by outcome", ["result"],
                             registry=r)
        self.drift_psi = Gauge("inspector_drift_psi", "Population stability index of recent frames against the "
                               "validation reference (NaN until enough frames)", ["statistic"], registry=r)
        # memory, CPU, open files, garbage collections and the Python version: what an operator checks first when a
        # replica slows down or is killed for memory (registering raises ValueError if a name were taken twice)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def camera(self, camera_id: str) -> str:
        """The label value of a camera: its id when configured, else ``other`` (bounded cardinality)."""
        return camera_id if camera_id in self.cameras else OTHER_CAMERA

    def track(self, queue_depth: Callable[[], int], in_flight: Callable[[], int],
              drift: Callable[[str], float] | None = None, streams: Callable[[], int] | None = None,
              stages: Callable[[str], int] | None = None, capacity: Callable[[], float] | None = None) -> None:
        """Gauges read at scrape time; ``drift(statistic)`` gives the PSI of each statistic, ``stages(stage)`` the
        frames in each of :data:`PIPELINE_STAGES`."""
        self.queue_frames.set_function(queue_depth)
        self.in_flight_frames.set_function(in_flight)
        if streams:
            self.open_streams.set_function(streams)
        if capacity:
            self.capacity_used.set_function(capacity)
        for stage in PIPELINE_STAGES if stages else ():
            self.stage_frames.labels(stage).set_function(lambda s=stage: stages(s))
        for statistic in STATISTICS if drift else ():
            self.drift_psi.labels(statistic).set_function(lambda s=statistic: drift(s))

    def observe_frame(self, camera_id: str, verdict: str, defect_class: str, defect_score: float,
                      defect_area: float, timings: dict[str, float], anomaly_score: float | None = None,
                      by_anomaly: bool = False) -> None:
        """Counts an answered frame; ``anomaly_score`` is None for models without an anomaly head."""
        camera = self.camera(camera_id)
        self.frames.labels(verdict, camera).inc()
        if verdict != "ACCEPT":
            self.defects.labels(defect_class, verdict, camera).inc()
            self.defect_area.observe(defect_area)
        self.defect_score.observe(defect_score)
        if anomaly_score is not None:
            self.anomaly_score.observe(anomaly_score)
        if by_anomaly:
            self.anomaly_verdicts.labels(verdict).inc()
        for stage in STAGES:
            if stage in timings:
                self.stage_seconds.labels(stage).observe(timings[stage])

    def set_model(self, name: str, version: str, backbone: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name, version, backbone).set(1)

    def serve(self, port: int, host: str = "0.0.0.0",
              ready: Callable[[], bool] | None = None) -> tuple[MetricsServer, int]:
        """Serves :func:`endpoints` over HTTP on ``host:port`` (0 = any free port) on a daemon thread, a thread per
        request.

        Args:
            port: TCP port; 0 picks a free one.
            host: Address to bind (IPv4 or IPv6 literal, or a name).
            ready: Whether the service is ready, for ``/healthz``; None: no ``/healthz`` (404).

        Returns:
            The HTTP server (``shutdown()`` stops it and closes its socket) and the port it listens on.
        """
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server_class = type("MetricsServer", (MetricsServer,), {"address_family": family})
        httpd = make_server(address[0], port, endpoints(self.registry, ready), server_class, _QuietHandler)
        threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
        return httpd, httpd.server_port


class MetricsServer(ThreadingMixIn, WSGIServer):
    """The metrics HTTP server: a daemon thread per request (a slow scraper holds nothing up)."""

    daemon_threads = True

    def shutdown(self) -> None:
        """Stops serving and closes the listening socket (the port is free again)."""
        super().shutdown()
        self.server_close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the base class's signature
        """No access log: Prometheus scrapes every few seconds."""


def endpoints(registry: CollectorRegistry, ready: Callable[[], bool] | None = None) -> Callable:
    """The WSGI application of the metrics port.

    ``/metrics``: the exposition of ``registry`` as prometheus_client gives it (text or OpenMetrics by the Accept
    header, gzip when accepted; GET, HEAD and OPTIONS). ``/healthz`` when ``ready`` is given: 200 ``ok`` when
    ``ready()`` is true, else 503 with the reason (for load balancers and probes that speak HTTP, not gRPC health).
    Any other path: 404, so a wrong scrape path fails loudly instead of scraping the exposition under another name.
    """
    exposition = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == METRICS_PATH:
            if method != "HEAD":
                return exposition(environ, start_response)
            return _head(exposition, environ, start_response)
        if path == HEALTH_PATH and ready is not None:
            if method not in ("GET", "HEAD"):
                return _text(start_response, method, "405 Method Not Allowed", "use GET or HEAD\n",
                             [("Allow", "GET, HEAD")])
            status, text = _readiness(ready)
            return _text(start_response, method, status, text, [("Cache-Control", "no-store")])
        paths = METRICS_PATH if ready is None else f"{METRICS_PATH} and {HEALTH_PATH}"
        return _text(start_response, method, "404 Not Found", f"not found: this port serves {paths}\n")

    return app


def _readiness(ready: Callable[[], bool]) -> tuple[str, str]:
    """The status line and body of ``/healthz``."""
    try:
        if ready():
            return "200 OK", "ok\n"
    except Exception as err:  # noqa: BLE001 - a failing check answers 503 and says why, it does not 500
        return "503 Service Unavailable", f"not ready: the readiness check failed ({type(err).__name__}: {err})\n"
    return "503 Service Unavailable", "not ready: loading a model, shutting down or at capacity (see the log)\n"


def _text(start_response: Callable, method: str, status: str, text: str,
          headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *headers])
    return [] if method == "HEAD" else [body]


def _head(app: Callable, environ: dict, start_response: Callable) -> list[bytes]:
    """HEAD through a GET-only WSGI app (prometheus_client's answers HEAD with 405): the GET's headers, no body."""
    answered = []
    body = b"".join(app({**environ, "REQUEST_METHOD": "GET"},
                        lambda status, headers, exc_info=None: answered.append((status, headers))))
    status, headers = answered[0]
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return []
