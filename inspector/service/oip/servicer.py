"""``inference.GRPCInferenceService``: the Open Inference Protocol over the service's own pipeline.

Liveness and readiness are the service's (a model warm, not draining, not saturated); the model is the one being
served, named as the store names it (``default``, version ``v3``): a request for another name or version is refused
NOT_FOUND, never answered by another model. Frames go through :meth:`InspectorServicer.inspect`, so limits, batching,
metrics and audit are those of ``Inspect``; refusals carry the same ``ErrorInfo`` reasons.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import AsyncIterator, Callable

import grpc

from inspector.inference.predictor import Predictor
from inspector.oip import inference_pb2 as oip
from inspector.oip import inference_pb2_grpc as oip_grpc
from inspector.service.models import ModelUnavailable
from inspector.service.oip import convert
from inspector.service.refusal import Kind, Rejected
from inspector.service.servicer import InspectorServicer, deadline_of, refuse

Context = grpc.aio.ServicerContext
SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
PROBES = frozenset(f"/{SERVICE}/{m}" for m in ("ServerLive", "ServerReady", "ModelReady"))  # answer while draining


def _version() -> str:
    try:
        return version("inspector")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol's calls.

    Args:
        inspector: The ``inspector.v1`` servicer whose pipeline, streams and counters it shares.
        ready: Whether the service takes frames now (the readiness that health publishes).
    """

    def __init__(self, inspector: InspectorServicer, ready: Callable[[], bool]) -> None:
        self.inspector = inspector
        self.models = inspector.pipeline.models
        self.ready = ready

    def _serving(self, name: str, version: str) -> Predictor:
        """The predictor answering for model ``name`` at ``version`` ("" = the one served).

        Raises:
            Rejected: UNAVAILABLE while no model is loaded; NOT_FOUND for another name or version.
        """
        try:
            predictor = self.models.current
        except ModelUnavailable as err:
            raise Rejected(Kind.UNAVAILABLE, "not_ready", str(err)) from err
        bundle = predictor.bundle
        if name != bundle.name:
            raise Rejected(Kind.NOT_FOUND, "unknown_model", f"model {name!r}: this service serves {bundle.name!r}")
        if version not in ("", bundle.version):
            raise Rejected(Kind.NOT_FOUND, "unknown_version", f"model {name!r} version {version!r} is not served; "
                           f"{bundle.version!r} is (leave the version empty for the one served)")
        return predictor

    async def ServerLive(self, request: oip.ServerLiveRequest, context: Context) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=not self.inspector.draining)

    async def ServerReady(self, request: oip.ServerReadyRequest, context: Context) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=self.ready())

    async def ModelReady(self, request: oip.ModelReadyRequest, context: Context) -> oip.ModelReadyResponse:
        try:
            self._serving(request.name, request.version)
        except Rejected:
            return oip.ModelReadyResponse(ready=False)
        return oip.ModelReadyResponse(ready=self.ready())

    async def ServerMetadata(self, request: oip.ServerMetadataRequest, context: Context) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(name="inspector", version=_version(), extensions=[])

    async def ModelMetadata(self, request: oip.ModelMetadataRequest, context: Context) -> oip.ModelMetadataResponse:
        try:
            return convert.metadata(self._serving(request.name, request.version))
        except Rejected as err:
            await refuse(context, err)

    async def _infer(self, request: oip.ModelInferRequest, deadline: float | None) -> oip.ModelInferResponse:
        """One request through the service's pipeline; raises Rejected."""
        try:
            predictor = self._serving(request.model_name, request.model_version)
            call = convert.call(request, convert.outputs_of(predictor))
        except Rejected as err:
            self.inspector.count_refusal(err)
            raise
        result = await self.inspector.inspect(call.frame, call.camera_id, call.frame_id, deadline)
        if request.model_version and not result.prediction.model_version.endswith("/" + request.model_version):
            raise Rejected(Kind.NOT_FOUND, "unknown_version", f"model version {request.model_version!r} was swapped "
                           f"out while the frame waited ({result.prediction.model_version} serves now); resend it")
        return convert.response(request, call, result)

    async def ModelInfer(self, request: oip.ModelInferRequest, context: Context) -> oip.ModelInferResponse:
        frame_id = convert.frame_id_of(request)
        try:
            return await self._infer(request, deadline_of(context))
        except Rejected as err:
            await refuse(context, err, frame_id)
        except Exception as err:  # noqa: BLE001 - INTERNAL with a message, not UNKNOWN with a traceback
            await refuse(context, self.inspector.internal(frame_id, err), frame_id)

    async def _answer(self, request: oip.ModelInferRequest, deadline: float | None) -> oip.ModelStreamInferResponse:
        """A stream's answer for any outcome: a refusal is the answer's ``error_message`` (``reason: message``)."""
        frame_id = convert.frame_id_of(request)
        try:
            return oip.ModelStreamInferResponse(infer_response=await self._infer(request, deadline))
        except Rejected as err:
            refusal = err
        except Exception as err:  # noqa: BLE001 - one frame's failure must not end the stream
            refusal = self.inspector.internal(frame_id, err)
        return oip.ModelStreamInferResponse(error_message=f"{refusal.reason}: frame {frame_id!r}: {refusal.message}",
                                            infer_response=oip.ModelInferResponse(id=request.id))

    async def ModelStreamInfer(self, requests: AsyncIterator[oip.ModelInferRequest],
                               context: Context) -> AsyncIterator[oip.ModelStreamInferResponse]:
        async for response in self.inspector.serve_stream(requests, context, self._answer):
            yield response
