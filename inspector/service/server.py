"""``serve()``: builds the gRPC server, health, reflection, the batcher, and shuts down gracefully."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from inspector.config import FrameLimits, ServeConfig
from inspector.metrics import Metrics
from inspector.predictor import Predictor
from inspector.service.audit import AuditConfig, AuditSink
from inspector.service.batcher import MicroBatcher
from inspector.service.interceptor import MetricsInterceptor
from inspector.service.models import ModelManager
from inspector.service.pipeline import Pipeline
from inspector.service.security import TokenInterceptor, read_secret, server_credentials
from inspector.service.servicer import AdminServicer, InspectorServicer
from inspector.tiling import Window
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["Inspector"].full_name,
    pb.DESCRIPTOR.services_by_name["Admin"].full_name,
)
ADMIN_TOKEN_ENV, INFERENCE_TOKEN_ENV = "INSPECTOR_ADMIN_TOKEN", "INSPECTOR_TOKEN"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _health(server: grpc.Server) -> health.HealthServicer:
    """Registers grpc.health.v1; everything reports NOT_SERVING until the model is loaded and warm."""
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", *SERVICE_NAMES):
        servicer.set(name, NOT_SERVING)
    return servicer


def _health_only_server(servicer: health.HealthServicer, host: str, port: int) -> tuple[grpc.Server, int]:
    """A second, tiny server answering health on its own threads: every stream holds an RPC thread of the main
    server, so under many streams a probe there could wait; here it cannot."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} for health")
    server.start()
    return server, bound


def _set_health(servicer: health.HealthServicer, status: int) -> None:
    for name in ("", *SERVICE_NAMES):
        servicer.set(name, status)


@dataclass
class InspectionServer:
    """A running service; :meth:`stop` drains it."""

    server: grpc.Server
    port: int
    models: ModelManager
    pipeline: Pipeline
    batcher: MicroBatcher
    workers: ThreadPoolExecutor
    health: health.HealthServicer
    cfg: ServeConfig
    loaded: threading.Event
    metrics: Metrics
    metrics_port: int | None
    metrics_server: Any
    audit: AuditSink | None
    health_server: grpc.Server | None
    health_port: int | None

    def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, new calls refused, calls in flight answered (up to ``grace`` s), then stopped."""
        _set_health(self.health, NOT_SERVING)
        self.models.stop()
        self.server.stop(self.cfg.grace_seconds if grace is None else grace).wait()
        if self.health_server is not None:
            self.health_server.stop(0).wait()
        self.batcher.close()
        self.workers.shutdown(wait=False, cancel_futures=True)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        if self.audit is not None:
            self.audit.close()


def _grpc_server(cfg: ServeConfig, metrics: Metrics) -> grpc.Server:
    """The gRPC server: message size limits, the metrics interceptor (outermost: it also counts refusals), tokens."""
    options = [("grpc.max_receive_message_length", cfg.max_message_bytes),
               ("grpc.max_send_message_length", cfg.max_message_bytes)]
    tokens = TokenInterceptor(read_secret(cfg.admin_token_file, ADMIN_TOKEN_ENV),
                              read_secret(cfg.inference_token_file, INFERENCE_TOKEN_ENV))
    return grpc.server(ThreadPoolExecutor(max_workers=cfg.grpc_threads, thread_name_prefix="rpc"), options=options,
                       interceptors=[MetricsInterceptor(metrics), tokens])


def _listen(server: grpc.Server, cfg: ServeConfig) -> int:
    """Binds the gRPC port, TLS-only when a certificate is configured; returns the port."""
    address = f"{cfg.host}:{cfg.grpc_port}"
    if cfg.tls_cert or cfg.tls_key:
        if not (cfg.tls_cert and cfg.tls_key):
            raise ValueError("TLS needs both a certificate and a key file")
        port = server.add_secure_port(address, server_credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def start_server(cfg: ServeConfig, model_dir: Path | None = None, bundle: Path | None = None,
                 limits: FrameLimits = FrameLimits(), metrics: Metrics | None = None) -> InspectionServer:
    """Starts serving on ``cfg.host:cfg.grpc_port`` at once; the model loads in the background (health tells).

    Metrics go to ``metrics`` (a fresh registry by default), served over HTTP unless ``cfg.metrics_port`` is None.
    """
    metrics = metrics or Metrics(cameras=cfg.cameras)
    loaded = threading.Event()

    def on_swap(result: str, predictor: Predictor | None) -> None:
        metrics.swaps.labels(result).inc()
        if predictor is not None:  # a model is loaded and warm: serving (also after a failed start, once fixed)
            metrics.set_model(predictor.bundle.name, predictor.bundle.version, predictor.bundle.meta["backbone"])
            _set_health(health_servicer, SERVING)
            loaded.set()

    options = {"tile": cfg.tile, "tile_overlap": cfg.tile_overlap, "roi": Window(*cfg.roi) if cfg.roi else None}
    models = ModelManager(model_dir=model_dir, bundle=bundle, device=cfg.device, backend=cfg.backend,
                          on_swap=on_swap, options=options)
    batcher = MicroBatcher(cfg.max_batch, cfg.max_delay_ms / 1000.0,
                           on_batch=lambda size, seconds: metrics.batch_frames.observe(size))
    pipeline = Pipeline(models, batcher, cfg.max_in_flight, limits, cfg.max_in_flight_pixels)
    metrics.track(batcher.depth, lambda: pipeline.in_flight, lambda statistic: models.drift.value(statistic))
    workers = ThreadPoolExecutor(max_workers=max(cfg.workers, cfg.max_in_flight), thread_name_prefix="frame")
    server = _grpc_server(cfg, metrics)
    audit = None if cfg.audit_dir is None else AuditSink(
        AuditConfig(cfg.audit_dir, cfg.audit_sample_accept, int(cfg.audit_quota_mb * 2**20), cfg.audit_max_per_second),
        on_result=lambda result: metrics.audit.labels(result).inc())
    servicer = InspectorServicer(pipeline, workers, cfg.stream_window, metrics, audit)
    pb_grpc.add_InspectorServicer_to_server(servicer, server)
    pb_grpc.add_AdminServicer_to_server(AdminServicer(models), server)
    health_servicer = _health(server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _listen(server, cfg)
    metrics_server, metrics_port = (None, None) if cfg.metrics_port is None else metrics.serve(cfg.metrics_port,
                                                                                               cfg.metrics_host)
    server.start()
    health_server, health_port = (None, None) if cfg.health_port is None else _health_only_server(
        health_servicer, cfg.host, cfg.health_port)
    running = InspectionServer(server, port, models, pipeline, batcher, workers, health_servicer, cfg, loaded,
                               metrics, metrics_port, metrics_server, audit, health_server, health_port)

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
    running = start_server(cfg, model_dir, bundle)
    log.info("gRPC listening on %s:%d (health NOT_SERVING until the model is warm); metrics on http://%s:%s/metrics",
             cfg.host, running.port, cfg.metrics_host, running.metrics_port)
    shown = "127.0.0.1" if cfg.host in ("0.0.0.0", "[::]", "::") else cfg.host
    log.info("send it a frame: inspector client --target %s:%d IMAGE_OR_FOLDER", shown, running.port)
    done.wait()
    log.info("shutting down: draining calls in flight (up to %.0f s)", cfg.grace_seconds)
    running.stop()
