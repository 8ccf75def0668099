"""Server interceptors (grpc.aio): latency and final status of every RPC into the metrics, and the gate that refuses
new calls while the service drains. :func:`refusal` is the one way a call is refused before its handler runs."""

from __future__ import annotations

import time
from typing import Any, AsyncIterator, Callable

import grpc

from inspector.service.metrics import Metrics
from inspector.status_details import rich_status

# the product's own services (inspector.v1, and the Open Inference Protocol's); health and reflection pass untouched
SERVICE_PREFIX = ("/inspector.", "/inference.")


def refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str,
            reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that ends the call with ``code``, ``message`` and an
    ``ErrorInfo`` of ``reason``."""
    status = rich_status(code, message, reason)

    async def abort(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort_with_status(status)

    async def abort_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort_with_status(status)
        yield  # never reached: an async generator, as the streaming handler it stands for

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, handler.request_deserializer,
                                                     handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(abort, handler.request_deserializer, handler.response_serializer)


def _code(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code()
    if code is None or code == 0:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else grpc.StatusCode(code).name


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times unary and streaming handlers; a stream's latency is its whole life."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, started: float, context: grpc.aio.ServicerContext, failed: bool) -> None:
        self.metrics.request_seconds.labels(method).observe(time.perf_counter() - started)
        self.metrics.requests.labels(method, _code(context, failed)).inc()

    def _unary(self, method: str, behaviour: Callable) -> Callable:
        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                response = await behaviour(request, context)
                failed = False
                return response
            finally:
                self._record(method, started, context, failed)

        return handler

    def _streaming(self, method: str, behaviour: Callable) -> Callable:
        async def handler(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started, failed = time.perf_counter(), True
            try:
                async for response in behaviour(requests, context):
                    yield response
                failed = False
            finally:
                self._record(method, started, context, failed)

        return handler

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(SERVICE_PREFIX):
            return handler  # unknown methods (UNIMPLEMENTED), health and reflection are not counted
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._streaming(method, handler.stream_stream),
                                                         handler.request_deserializer, handler.response_serializer)
        return handler


class DrainGate(grpc.aio.ServerInterceptor):
    """Refuses new calls to the product's services with UNAVAILABLE once ``draining()`` says so; health and the
    ``probes`` (full method names, such as the Open Inference Protocol's readiness calls) keep answering, so probes
    see the drain instead of a closed port."""

    def __init__(self, draining: Callable[[], bool], probes: frozenset[str] = frozenset()) -> None:
        self.draining = draining
        self.probes = probes

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.draining() or not method.startswith(SERVICE_PREFIX) or method in self.probes:
            return handler
        return refusal(handler, grpc.StatusCode.UNAVAILABLE,
                       "the service is shutting down; send this call to another replica", "shutting_down")
