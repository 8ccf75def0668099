"""Thin gRPC adapters: protobuf in, the pipeline or the model manager, protobuf out."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import grpc

from inspector.metrics import Metrics
from inspector.service import convert
from inspector.service.audit import AuditSink
from inspector.service.models import ModelManager, ModelUnavailable
from inspector.service.pipeline import Pipeline, Rejected
from inspector.store import describe
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
NO_DEADLINE = 365 * 24 * 3600.0  # s; longer remaining times mean none was set


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()  # a huge number when the client set no deadline
    return None if remaining is None or remaining > NO_DEADLINE else time.monotonic() + remaining


class InspectorServicer(pb_grpc.InspectorServicer):
    """Inspect (unary), InspectStream (one response per request, in request order), GetModelInfo."""

    def __init__(self, pipeline: Pipeline, workers: ThreadPoolExecutor, stream_window: int, metrics: Metrics,
                 audit: AuditSink | None = None) -> None:
        self.pipeline = pipeline
        self.workers = workers
        self.stream_window = stream_window
        self.metrics = metrics
        self.audit = audit

    def _inspect(self, request: pb.InspectRequest, deadline: float | None) -> pb.InspectResponse:
        """Inspects one frame and counts it; raises Rejected."""
        frame = convert.frame_in(request)
        try:
            result = self.pipeline.inspect(frame, deadline)
        except Rejected as err:
            self.metrics.frame_errors.labels(err.code.name).inc()
            if err.code == grpc.StatusCode.INVALID_ARGUMENT:
                self.metrics.invalid.labels(err.reason).inc()
            raise
        p = result.prediction
        self.metrics.observe_frame(request.camera_id, p.verdict, p.defect_class, p.defect_score,
                                   sum(r.area_fraction for r in p.regions), result.timings, p.anomaly_score,
                                   p.by_anomaly)
        if self.audit is not None:
            self.audit.offer(convert.audit_record(request, p), frame.data, frame.encoding, frame.width, frame.height,
                             frame.stride)
        return convert.response(request, result)

    def Inspect(self, request: pb.InspectRequest, context: grpc.ServicerContext) -> pb.InspectResponse:
        try:
            return self._inspect(request, _deadline(context))
        except Rejected as err:
            context.abort(err.code, f"frame {request.frame_id!r}: {err.message}")

    def _answer(self, request: pb.InspectRequest, deadline: float | None) -> pb.InspectResponse:
        try:
            return self._inspect(request, deadline)
        except Rejected as err:
            return convert.error_response(request, err)
        except Exception as err:  # noqa: BLE001 - one frame's failure must not end the stream
            log.exception("frame %r failed", request.frame_id)
            self.metrics.frame_errors.labels("INTERNAL").inc()
            return convert.error_response(request, Rejected(grpc.StatusCode.INTERNAL, "internal", str(err)))

    def InspectStream(self, requests: Iterator[pb.InspectRequest], context: grpc.ServicerContext):
        deadline = _deadline(context)
        pending: queue.Queue[Future | None] = queue.Queue(maxsize=self.stream_window)  # bounded: back-pressure
        ended = threading.Event()
        context.add_callback(ended.set)  # the call finished or the client cancelled

        def put(item: Future | None) -> bool:
            while not ended.is_set():
                try:
                    pending.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for request in requests:
                    if not put(self.workers.submit(self._answer, request, deadline)):
                        return
            except Exception as err:  # noqa: BLE001 - client went away or cancelled
                log.debug("stream reader ended: %s", err)
            put(None)

        threading.Thread(target=read, name="stream-reader", daemon=True).start()
        while True:
            try:
                future = pending.get(timeout=0.2)
            except queue.Empty:
                if ended.is_set():
                    return  # cancelled: nobody reads the answers any more
                continue
            if future is None:
                return
            yield future.result()

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        try:
            predictor = self.pipeline.models.current
        except ModelUnavailable as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        return convert.model_info(predictor, self.pipeline.models.thresholds(predictor))


class AdminServicer(pb_grpc.AdminServicer):
    """The model store and running thresholds."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        serving = self.models.current.version if self.models.ready else ""
        model_dir = self.models.model_dir
        if model_dir is None:
            return pb.ListModelsResponse(serving=serving)
        out = [pb.ModelVersion(name=model_dir.name, version=v.version, active=v.active, created_at=v.created_at,
                               validation=v.validation) for v in describe(model_dir)]
        return pb.ListModelsResponse(versions=out, serving=serving)

    def _switch(self, action, context: grpc.ServicerContext) -> pb.ModelInfo:
        try:
            predictor = action()
        except Exception as err:  # noqa: BLE001 - report it; the current model keeps serving
            serving = self.models.current.version if self.models.ready else "nothing"
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{err} (still serving {serving})")
        return convert.model_info(predictor, self.models.thresholds(predictor))

    def ActivateVersion(self, request: pb.ActivateVersionRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return self._switch(lambda: self.models.activate(request.version), context)

    def Rollback(self, request: pb.RollbackRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        return self._switch(self.models.rollback, context)

    def SetThresholds(self, request: pb.SetThresholdsRequest, context: grpc.ServicerContext) -> pb.Thresholds:
        try:
            predictor = self.models.current
            thresholds = convert.thresholds_from_pb(request.thresholds, self.models.thresholds(predictor))
        except ModelUnavailable as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return convert.thresholds_pb(self.models.set_thresholds(thresholds))
