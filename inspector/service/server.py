"""``serve()``: builds the gRPC server (grpc.aio on an event loop thread) with ``inspector.v1``, the Open Inference
Protocol, health and reflection on one port, the batcher, and drains it on shutdown.

Threads: the event loop (every RPC, health, streams), the batcher (forward passes), ``workers`` threads (decode,
postprocess), the model watcher and the metrics HTTP server. Open streams cost memory, not threads.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine, NamedTuple

import grpc
import torch
from grpc_health.v1 import health, health_pb2_grpc

from inspector.config import FrameLimits, ServeConfig
from inspector.service.metrics import Metrics
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor
from inspector.model.devices import resolve_device
from inspector.service.audit import AuditConfig, AuditSink
from inspector.service.batcher import MicroBatcher
from inspector.service.health import Capacity, Health
from inspector.service.interceptor import DrainGate, MetricsInterceptor
from inspector.service.models import ModelManager
from inspector.service.pipeline import Pipeline
from inspector.service.security import TokenInterceptor, read_secret, server_credentials
from inspector.service.oip.servicer import PROBES, SERVICE as OIP_SERVICE, InferenceServicer
from inspector.service.reflection import enable_reflection
from inspector.service.servicer import AdminServicer, InspectorServicer
from inspector.oip import inference_pb2_grpc as oip_grpc
from inspector.imaging.tiling import Window
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["Inspector"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
    OIP_SERVICE,
)
ADMIN_TOKEN_ENV, INFERENCE_TOKEN_ENV = "INSPECTOR_ADMIN_TOKEN", "INSPECTOR_TOKEN"
STREAMS_CLOSE_AT = 0.8  # share of the grace period after which open streams stop being read and are ended
TRANSPORT_HEADROOM = 64 * 1024  # bytes of a request's fields besides its frame
# Clients may ping every 10 s on an idle connection (keepalive of long-lived streams); faster pings get GOAWAY.
KEEPALIVE_OPTIONS = [("grpc.keepalive_permit_without_calls", 1),
                     ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                     ("grpc.http2.max_ping_strikes", 2)]


def transport_limit(frame_bytes: int) -> int:
    """The gRPC message limit for a frame limit: twice the frame limit, so a frame over the limit (up to twice it)
    is still received and answered ``too_large`` in its stream; only a message beyond this ends its call
    (RESOURCE_EXHAUSTED), since gRPC cannot skip one message of a stream."""
    return 2 * frame_bytes + TRANSPORT_HEADROOM


class EventLoopThread:
    """An asyncio event loop running on a daemon thread; synchronous code hands it coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="grpc-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine, timeout: float | None = None) -> Any:
        """Runs ``coroutine`` on the loop and waits for its result (never call it from the loop's own thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def running(self) -> bool:
        return self.loop.is_running()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@dataclass
class InspectionServer:
    """A running service; :meth:`stop` drains it."""

    server: grpc.aio.Server
    port: int
    models: ModelManager
    pipeline: Pipeline
    batcher: MicroBatcher
    workers: ThreadPoolExecutor
    health: Health
    capacity: Capacity
    servicer: InspectorServicer
    cfg: ServeConfig
    loaded: threading.Event
    metrics: Metrics
    metrics_port: int | None
    metrics_server: Any
    audit: AuditSink | None
    health_server: grpc.aio.Server | None
    health_port: int | None
    loop: EventLoopThread
    _tasks: list[asyncio.Task]

    def stop(self, grace: float | None = None) -> None:
        """Drains within ``grace`` seconds (``cfg.grace_seconds`` by default), then stops everything.

        Health turns NOT_SERVING and new calls are refused with UNAVAILABLE at once; frames already accepted are
        answered; frames that streams send from now on are answered ``shutting_down`` (UNAVAILABLE). Streams whose
        clients close them end normally; the rest are ended with UNAVAILABLE after ``STREAMS_CLOSE_AT`` of the grace.
        """
        grace = self.cfg.grace_seconds if grace is None else grace
        self.models.stop()
        try:
            self.loop.run(self._drain(grace), timeout=grace + 30)
        finally:
            self.batcher.close()
            self.workers.shutdown(wait=False, cancel_futures=True)
            if self.metrics_server is not None:
                self.metrics_server.shutdown()
            if self.audit is not None:
                self.audit.close()
            self.loop.close()

    def _busy(self) -> bool:
        return self.servicer.open_streams > 0 or self.pipeline.in_flight > 0

    async def _drain(self, grace: float) -> None:
        started = time.monotonic()
        self.servicer.draining = True
        await self.health.refresh()
        while self._busy() and time.monotonic() - started < STREAMS_CLOSE_AT * grace:
            await asyncio.sleep(0.05)
        self.servicer.close_streams()
        await self.server.stop(max(0.0, grace - (time.monotonic() - started)))
        for task in self._tasks:
            task.cancel()
        if self.health_server is not None:
            await self.health_server.stop(0)


def _credentials(cfg: ServeConfig) -> grpc.ServerCredentials | None:
    """TLS credentials when a certificate is configured (every port of the service speaks TLS then), else None."""
    if not (cfg.tls_cert or cfg.tls_key):
        return None
    if not (cfg.tls_cert and cfg.tls_key):
        raise ValueError("TLS needs both a certificate and a key file")
    return server_credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)


def _listen(server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None,
            what: str) -> int:
    """Binds ``host:port`` (TLS-only with ``credentials``); returns the port."""
    address = f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:  # grpc.aio raises where the sync server returned 0
        raise OSError(f"cannot listen on {address} for {what}: {err}") from err
    if bound == 0:
        raise OSError(f"cannot listen on {address} for {what}")
    return bound


def _grpc_server(cfg: ServeConfig, limits: FrameLimits, metrics: Metrics,
                 draining: Callable[[], bool]) -> grpc.aio.Server:
    """The gRPC server: message limits, the metrics interceptor (outermost: it also counts refusals), the drain
    gate, tokens."""
    limit = cfg.max_message_bytes or transport_limit(limits.max_bytes)
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
               *KEEPALIVE_OPTIONS]
    tokens = TokenInterceptor(read_secret(cfg.admin_token_file, ADMIN_TOKEN_ENV),
                              read_secret(cfg.inference_token_file, INFERENCE_TOKEN_ENV))
    interceptors = [MetricsInterceptor(metrics), DrainGate(draining, PROBES), tokens]
    return grpc.aio.server(options=options, interceptors=interceptors, maximum_concurrent_rpcs=None)


class Listening(NamedTuple):
    """The started gRPC servers and the loop's own tasks."""

    server: grpc.aio.Server
    port: int
    health_server: grpc.aio.Server | None
    health_port: int | None
    tasks: list[asyncio.Task]


async def _start(cfg: ServeConfig, limits: FrameLimits, metrics: Metrics, servicer: InspectorServicer,
                 models: ModelManager, health_state: Health) -> Listening:
    """Builds and starts the servers on the loop (grpc.aio objects belong to the loop that made them)."""
    credentials = _credentials(cfg)
    server = _grpc_server(cfg, limits, metrics, lambda: servicer.draining)
    pb_grpc.add_InspectorServicer_to_server(servicer, server)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(models), server)
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(servicer, health_state.ready), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
    port = _listen(server, cfg.host, cfg.grpc_port, credentials, "gRPC")
    health_server, health_port = None, None
    if cfg.health_port is not None:  # probes on a port of their own, with the main port's TLS unless told otherwise
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, health_server)
        health_port = _listen(health_server, cfg.host, cfg.health_port, None if cfg.health_plaintext else credentials,
                              "health")
    await health_state.refresh()
    await server.start()
    if health_server is not None:
        await health_server.start()
    return Listening(server, port, health_server, health_port, [asyncio.ensure_future(health_state.run())])


def uses_cuda_graphs(cfg: ServeConfig) -> bool:
    """``cfg.cuda_graphs``, or by default: on where the device is CUDA and the backend eager (on an H200 the network
    took 1.7 ms replayed as a graph against 9.1 ms in eager fp16, answers identical: ``bench/RESULTS.md``)."""
    if cfg.cuda_graphs is not None:
        return cfg.cuda_graphs
    return cfg.backend == "eager" and resolve_device(cfg.device).type == "cuda"


def _metrics_host(cfg: ServeConfig) -> str:
    """Where /metrics listens: ``metrics_host``, else where gRPC binds (brackets of an IPv6 literal removed)."""
    return cfg.metrics_host or cfg.host.strip("[]")


DEFAULT_LANES = 2  # on the CPU: on 2 cores, a thread each; on more, each half the threads (bench/lanes_bench.py)


def lanes(cfg: ServeConfig) -> int:
    """``cfg.lanes``, or by default: :data:`DEFAULT_LANES` on the CPU where torch has that many threads, else 1."""
    if cfg.lanes is not None:
        return cfg.lanes
    cpu = resolve_device(cfg.device).type == "cpu"
    return DEFAULT_LANES if cpu and torch.get_num_threads() >= DEFAULT_LANES else 1


def start_server(cfg: ServeConfig, model_dir: Path | None = None, bundle: Path | None = None,
                 limits: FrameLimits | None = None, metrics: Metrics | None = None,
                 settle_heap: bool = False) -> InspectionServer:
    """Starts serving on ``cfg.host:cfg.grpc_port`` at once; the model loads in the background (health tells).

    Metrics go to ``metrics`` (a fresh registry by default), served over HTTP unless ``cfg.metrics_port`` is None.
    Frame limits default to ``cfg.max_frame_mb``. Sets ``torch.backends.cudnn.benchmark`` for the process (input
    sizes are fixed by the bundle's spec and batches padded to a few shapes, each tuned while a model is warmed).
    PyTorch keeps cuDNN's execution plans per thread: with CUDA graphs (:func:`uses_cuda_graphs`) replays need none,
    and the loading thread warms; without them the model is warmed on the batcher's thread, which would otherwise
    stall seconds at each new batch shape mid-stream (2.8-5 s on an H200). No effect on the CPU.
    ``settle_heap``: freeze the heap after the first model load (``ModelManager(settle=True)``), for a process
    that serves and nothing else (:func:`serve`).
    """
    graphs = uses_cuda_graphs(cfg)
    torch.backends.cudnn.benchmark = True  # here, not in the predictor: a process-wide flag set where serving starts
    on_batcher = resolve_device(cfg.device).type == "cuda" and not graphs
    limits = limits or FrameLimits(max_bytes=int(cfg.max_frame_mb * 2**20))
    metrics = metrics or Metrics(cameras=cfg.cameras)
    loaded = threading.Event()
    loop = EventLoopThread()

    def on_swap(result: str, predictor: Predictor | None) -> None:
        metrics.swaps.labels(result).inc()
        if predictor is not None:  # a model is loaded and warm: serving (also after a failed start, once fixed)
            metrics.set_model(predictor.bundle.name, predictor.bundle.version, predictor.bundle.meta.backbone)
            if loop.running:  # SERVING before anyone is told the model is loaded (a load may end after a stop)
                loop.run(health_state.refresh(), timeout=10)
            loaded.set()

    options = InferenceOptions(cfg.tile, cfg.tile_overlap, Window(*cfg.roi) if cfg.roi else None)
    models = ModelManager(model_dir=model_dir, bundle=bundle, device=cfg.device, backend=cfg.backend,
                          on_swap=on_swap, options=options, max_batch=cfg.max_batch, cuda_graphs=graphs,
                          warm_on=(lambda warm: batcher.call(warm).result()) if on_batcher else None,
                          lanes=lanes(cfg), settle=settle_heap)
    batcher = MicroBatcher(cfg.max_batch, cfg.max_delay_ms / 1000.0,
                           on_batch=lambda size, seconds: metrics.batch_frames.observe(size),
                           coming=lambda: pipeline.stages["prepare"], lanes=models.lanes,
                           in_flight=lambda: pipeline.in_flight)
    pipeline = Pipeline(models, batcher, cfg.max_in_flight, limits, cfg.max_in_flight_pixels)
    capacity = Capacity(cfg.max_streams, pipeline.load)
    health_state = Health(capacity, lambda: models.ready and not servicer.draining)
    workers = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="frame")
    audit = None if cfg.audit_dir is None else AuditSink(
        AuditConfig(cfg.audit_dir, cfg.audit_sample_accept, int(cfg.audit_quota_mb * 2**20), cfg.audit_max_per_second),
        on_result=lambda result: metrics.audit.labels(result).inc())
    servicer = InspectorServicer(pipeline, workers, cfg.stream_window, capacity, metrics, audit)
    metrics.track(batcher.depth, lambda: pipeline.in_flight, lambda statistic: models.drift.value(statistic),
                  streams=lambda: servicer.open_streams, stages=lambda stage: pipeline.stages[stage],
                  capacity=capacity.used)
    try:
        listening = loop.run(_start(cfg, limits, metrics, servicer, models, health_state), timeout=60)
        metrics_server, metrics_port = (None, None) if cfg.metrics_port is None else metrics.serve(
            cfg.metrics_port, _metrics_host(cfg), ready=health_state.ready)
    except BaseException:
        batcher.close()
        workers.shutdown(wait=False)
        loop.close()
        raise
    running = InspectionServer(listening.server, listening.port, models, pipeline, batcher, workers, health_state,
                               capacity, servicer, cfg, loaded, metrics, metrics_port, metrics_server, audit,
                               listening.health_server, listening.health_port, loop, listening.tasks)

    def load() -> None:
        try:
            models.load()
        except Exception as err:  # noqa: BLE001 - stay up, NOT_SERVING, and say why; a promotion can fix it
            log.error("no model could be loaded, health stays NOT_SERVING until one is: %s", err)
        if cfg.watch_seconds > 0:
            models.watch(cfg.watch_seconds)

    threading.Thread(target=load, name="model-load", daemon=True).start()
    return running


def serve(cfg: ServeConfig, model_dir: Path | None = None, bundle: Path | None = None) -> None:
    """Runs the service until SIGTERM or SIGINT, then drains it."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before listening: an early SIGTERM drains too
        signal.signal(sig, lambda *_: done.set())
    running = start_server(cfg, model_dir, bundle, settle_heap=True)
    log.info("gRPC listening on %s:%d (health NOT_SERVING until the model is warm); metrics on http://%s:%s/metrics",
             cfg.host, running.port, _metrics_host(cfg), running.metrics_port)
    if running.health_port is not None:
        log.info("health also on %s:%d", cfg.host, running.health_port)
    shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "[::]", "::") else cfg.host
    log.info("send it a frame: inspector client --target %s:%d IMAGE_OR_FOLDER", shown, running.port)
    while not done.wait(timeout=0.5):  # a signal that lands on another thread only sets the flag: look again
        pass
    log.info("shutting down: answering frames in flight, refusing new ones (up to %.0f s)", cfg.grace_seconds)
    running.stop()
