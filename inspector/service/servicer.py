"""Thin gRPC adapters (grpc.aio): protobuf in, the pipeline or the model manager, protobuf out.

Every handler runs on the server's event loop, so an open stream costs a coroutine and its buffers, not a thread:
a line of idle cameras cannot starve unary calls or health. Blocking work (decode, postprocess, model loads, store
reads) goes to thread pools.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Any, AsyncIterator, Awaitable, Callable, NoReturn

import grpc

from inspector.service.metrics import Metrics
from inspector.service import convert
from inspector.service.audit import AuditSink, Maps
from inspector.service.health import Capacity
from inspector.service.models import ModelManager, ModelUnavailable
from inspector.service.pipeline import FrameIn, Inspection, Pipeline
from inspector.service.refusal import Kind, Rejected
from inspector.artifacts.store import StoreError, describe
from inspector.errors import FieldError
from inspector.status_details import rich_status
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
NO_DEADLINE = 365 * 24 * 3600.0  # s; longer remaining times mean none was set
SHUTTING_DOWN = Rejected(Kind.UNAVAILABLE, "shutting_down",
                         "the service is shutting down and takes no new frames; resend this one to another replica")
STREAM_CLOSED = Rejected(Kind.UNAVAILABLE, "shutting_down", "the service is shutting down: every frame it read was "
                         "answered; resend the unanswered ones to another replica")


async def refuse(context: grpc.aio.ServicerContext, err: Rejected, frame_id: str | None = None) -> NoReturn:
    """Ends the call with the refusal's status, message and error details (``ErrorInfo.reason`` = ``err.reason``,
    the frame id in its metadata when there is one)."""
    message = f"frame {frame_id!r}: {err.message}" if frame_id else err.message
    metadata = {"frame_id": frame_id} if frame_id else {}
    fields = {err.field: err.message} if err.field else None
    await context.abort_with_status(rich_status(convert.status(err), message, err.reason, metadata, fields))


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()  # a huge number when the client set no deadline
    return None if remaining is None or remaining > NO_DEADLINE else time.monotonic() + remaining


class InspectorServicer(pb_grpc.InspectorServicer):
    """Inspect (unary), InspectStream (one response per request, in request order), GetModelInfo.

    Args:
        pipeline: Inspects frames.
        workers: Threads for decode and postprocess.
        stream_window: Frames of one stream in the pipeline at once; more wait in gRPC's flow control.
        capacity: Counts streams against ``--max-streams`` and hears of overload.
        metrics: Frame counters.
        audit: Keeps frames for review, when configured.
    """

    def __init__(self, pipeline: Pipeline, workers: Executor, stream_window: int, capacity: Capacity,
                 metrics: Metrics, audit: AuditSink | None = None) -> None:
        self.pipeline = pipeline
        self.workers = workers
        self.stream_window = stream_window
        self.capacity = capacity
        self.metrics = metrics
        self.audit = audit
        self.draining = False  # set on shutdown: frames read from now on are refused with UNAVAILABLE
        self._streams: set[_Stream] = set()

    async def inspect(self, frame: FrameIn, camera_id: str, frame_id: str, deadline: float | None,
                      capture_time: str = "") -> Inspection:
        """Inspects one frame, counts it and offers it to the audit sink: the one path of every inference API
        (``inspector.v1`` and the Open Inference Protocol). Raises Rejected."""
        try:
            if self.draining:
                raise SHUTTING_DOWN
            result = await self.pipeline.inspect_async(frame, deadline, self.workers)
        except Rejected as err:
            self.count_refusal(err)
            raise
        p = result.prediction
        self.metrics.observe_frame(camera_id, p.verdict, p.defect_class, p.defect_score,
                                   sum(r.area_fraction for r in p.regions), result.timings, p.anomaly_score,
                                   p.by_anomaly)
        if self.audit is not None:
            maps = Maps(p.mask, result.thresholds.mask, p.anomaly_map)
            self.audit.offer(convert.audit_record(camera_id, frame_id, p, capture_time), frame.data, frame.encoding,
                             frame.width, frame.height, frame.stride, maps)
        return result

    async def _inspect(self, request: pb.InspectRequest, deadline: float | None) -> pb.InspectResponse:
        """One ``inspector.v1`` request; raises Rejected."""
        try:
            frame = convert.frame_in(request)
        except Rejected as err:
            self.count_refusal(err)
            raise
        result = await self.inspect(frame, request.camera_id, request.frame_id, deadline, convert.capture_time(request))
        return convert.response(request, result)

    def count_refusal(self, err: Rejected) -> None:
        self.metrics.frame_errors.labels(convert.status(err).name).inc()
        if err.kind is Kind.INVALID:
            self.metrics.invalid.labels(err.reason).inc()
        elif err.kind is Kind.OVERLOADED:
            self.capacity.note_refusal()

    def internal(self, frame_id: str, err: Exception) -> Rejected:
        """An unexpected failure of one frame: logged with its traceback, answered INTERNAL without it."""
        log.exception("frame %r failed", frame_id)
        self.metrics.frame_errors.labels("INTERNAL").inc()
        return Rejected(Kind.INTERNAL, "internal", f"internal error ({type(err).__name__}: {err})")

    async def Inspect(self, request: pb.InspectRequest, context: grpc.aio.ServicerContext) -> pb.InspectResponse:
        try:
            return await self._inspect(request, deadline_of(context))
        except Rejected as err:
            await refuse(context, err, request.frame_id)
        except Exception as err:  # noqa: BLE001 - INTERNAL with a message, not UNKNOWN with a traceback
            await refuse(context, self.internal(request.frame_id, err), request.frame_id)

    async def _answer(self, request: pb.InspectRequest, deadline: float | None) -> pb.InspectResponse:
        """A response for any outcome: one frame's failure never ends its stream."""
        try:
            return await self._inspect(request, deadline)
        except Rejected as err:
            return convert.error_response(request, err)
        except Exception as err:  # noqa: BLE001 - one frame's failure must not end the stream
            return convert.error_response(request, self.internal(request.frame_id, err))

    async def InspectStream(self, requests: AsyncIterator[pb.InspectRequest],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[pb.InspectResponse]:
        async for response in self.serve_stream(requests, context, self._answer):
            yield response

    async def serve_stream(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                           answer: Callable[[Any, float | None], Awaitable[Any]]) -> AsyncIterator[Any]:
        """One answer per request, in request order, for any streaming API: counts the stream against
        ``--max-streams``, ends it UNAVAILABLE when the service drains. ``answer`` never raises."""
        try:
            self.capacity.open_stream()
        except Rejected as err:  # counted by the metrics interceptor (requests_total by code)
            await refuse(context, err)
        stream = _Stream(requests, deadline_of(context), self.stream_window, answer)
        self._streams.add(stream)
        try:
            async for response in stream.answers():
                yield response
        finally:
            self._streams.discard(stream)
            self.capacity.close_stream()
        if stream.closed_by_server:
            await refuse(context, STREAM_CLOSED)

    def close_streams(self) -> None:
        """Stops reading every open stream; each answers the frames it read, then ends with UNAVAILABLE."""
        for stream in list(self._streams):
            stream.close()

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest,
                           context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        try:
            predictor = self.pipeline.models.current
        except ModelUnavailable as err:
            await refuse(context, Rejected(Kind.UNAVAILABLE, "not_ready", str(err)))
        return convert.model_info(predictor, self.pipeline.models.thresholds(predictor))


class _Stream:
    """One InspectStream: a reader task feeds a bounded window of answers, which are given back in request order.

    At most ``window`` frames of the stream are in the pipeline; beyond that the reader waits, and gRPC's flow control
    slows the client. :meth:`close` (shutdown) stops the reading: the frames read are still answered.
    """

    def __init__(self, requests: AsyncIterator[pb.InspectRequest], deadline: float | None, window: int,
                 answer: Callable[[pb.InspectRequest, float | None], Awaitable[pb.InspectResponse]]) -> None:
        self.requests = requests
        self.deadline = deadline
        self.answer = answer
        self.slots = asyncio.Semaphore(window)  # places in the window; a request is read only into a free one
        self.answers_due: asyncio.Queue[asyncio.Future | None] = asyncio.Queue()  # in request order; None: the end
        self.closed_by_server = False
        self.reader: asyncio.Task | None = None

    async def _read(self) -> None:
        incoming = aiter(self.requests)
        try:
            while True:
                await self.slots.acquire()
                request = await anext(incoming, None)
                if request is None:
                    break
                self.answers_due.put_nowait(asyncio.ensure_future(self.answer(request, self.deadline)))
        except asyncio.CancelledError:
            if not self.closed_by_server:
                return  # the call itself ended: nobody reads the answers
        except Exception as err:  # noqa: BLE001 - the client went away or broke the stream
            log.debug("stream reader ended: %s", err)
        self.answers_due.put_nowait(None)

    async def answers(self) -> AsyncIterator[pb.InspectResponse]:
        self.reader = asyncio.ensure_future(self._read())
        try:
            while (answer := await self.answers_due.get()) is not None:
                response = await answer
                self.slots.release()
                yield response
        finally:
            self.reader.cancel()
            while not self.answers_due.empty():
                if (pending := self.answers_due.get_nowait()) is not None:
                    pending.cancel()

    def close(self) -> None:
        self.closed_by_server = True
        if self.reader is not None:
            self.reader.cancel()


class AdminServicer(pb_grpc.AdminServicer):
    """The model store and running thresholds; loads and store reads run on the loop's default thread pool."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models

    def _list(self) -> pb.ListModelsResponse:
        serving = self.models.current.version if self.models.ready else ""
        model_dir = self.models.model_dir
        if model_dir is None:
            return pb.ListModelsResponse(serving=serving)
        out = [pb.ModelVersion(name=model_dir.name, version=v.version, active=v.active, created_at=v.created_at,
                               validation=v.validation, training=v.training) for v in describe(model_dir)]
        return pb.ListModelsResponse(versions=out, serving=serving)

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        return await asyncio.get_running_loop().run_in_executor(None, self._list)

    async def _switch(self, action: Callable, context: grpc.aio.ServicerContext, reason: str,
                      field: str | None = None) -> pb.ModelInfo:
        """Runs a swap; a failure is FAILED_PRECONDITION with ``reason``, and a ``BadRequest`` on ``field`` when the
        store refused the version asked for."""
        try:
            predictor = await asyncio.get_running_loop().run_in_executor(None, action)
        except Exception as err:  # noqa: BLE001 - report it; the current model keeps serving
            serving = self.models.current.version if self.models.ready else "nothing"
            message = f"{err} (still serving {serving})"
            fields = {field: str(err)} if field and isinstance(err, StoreError) else None
            await context.abort_with_status(rich_status(grpc.StatusCode.FAILED_PRECONDITION, message, reason,
                                                        {"serving": serving}, fields))
        return convert.model_info(predictor, self.models.thresholds(predictor))

    async def ActivateVersion(self, request: pb.ActivateVersionRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return await self._switch(lambda: self.models.activate(request.version), context, "activation_failed",
                                  "version")

    async def Rollback(self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        return await self._switch(self.models.rollback, context, "rollback_failed")

    async def SetThresholds(self, request: pb.SetThresholdsRequest,
                            context: grpc.aio.ServicerContext) -> pb.Thresholds:
        try:
            predictor = self.models.current
            thresholds = convert.thresholds_from_pb(request.thresholds, self.models.thresholds(predictor),
                                                    classes=predictor.classes)
        except ModelUnavailable as err:
            await refuse(context, Rejected(Kind.UNAVAILABLE, "not_ready", str(err)))
        except FieldError as err:  # every threshold the request sets is checked; this names the one refused
            await context.abort_with_status(rich_status(grpc.StatusCode.INVALID_ARGUMENT, str(err), "bad_thresholds",
                                                        fields={f"thresholds.{err.field}": str(err)}))
        return convert.thresholds_pb(self.models.set_thresholds(thresholds))
