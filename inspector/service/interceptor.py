"""One server interceptor: latency and final status of every RPC, by method, into the metrics."""

from __future__ import annotations

import time
from typing import Any, Callable

import grpc

from inspector.metrics import Metrics


def _code(context: grpc.ServicerContext, failed: bool) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Times unary and streaming handlers; a stream's latency is its whole life."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, started: float, context: grpc.ServicerContext, failed: bool) -> None:
        self.metrics.request_seconds.labels(method).observe(time.perf_counter() - started)
        self.metrics.requests.labels(method, _code(context, failed)).inc()

    def _unary(self, method: str, behaviour: Callable) -> Callable:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            started, failed = time.perf_counter(), True
            try:
                response = behaviour(request, context)
                failed = False
                return response
            finally:
                self._record(method, started, context, failed)

        return handler

    def _streaming(self, method: str, behaviour: Callable) -> Callable:
        def handler(request: Any, context: grpc.ServicerContext):
            started, failed = time.perf_counter(), True
            try:
                yield from behaviour(request, context)
                failed = False
            finally:
                self._record(method, started, context, failed)

        return handler

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith("/inspector."):
            return handler  # health and reflection are not counted
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(method, handler.unary_unary),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._streaming(method, handler.stream_stream),
                                                         handler.request_deserializer, handler.response_serializer)
        return handler
