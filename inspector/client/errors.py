"""A failed call in one sentence: the client's exceptions, and the description of a gRPC status.

Each exception is a :class:`~inspector.errors.ServiceError` (the CLI prints its message in one line) and still a
``grpc.RpcError`` whose ``code()``, ``details()`` and ``trailing_metadata()`` are the failed call's, so callers that
catch ``grpc.RpcError`` or read the status details with ``grpc_status`` keep working. Never shows gRPC's
``debug_error_string`` (a JSON blob of C-core internals) or a traceback.
"""

from __future__ import annotations

import re

import grpc

from inspector.errors import ServiceError
from inspector.status_details import details_of

SHOWN_IDS = 5  # unanswered frame ids a StreamBroken message names; the rest are counted


class CallFailed(ServiceError, grpc.RpcError):
    """A call that failed; ``str()`` is the readable sentence, the methods of ``grpc.Call`` are the call's."""

    def __init__(self, message: str, call: grpc.RpcError | None = None,
                 code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.call = call
        self._code = code or getattr(call, "code", lambda: grpc.StatusCode.UNKNOWN)()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self.call.details() if hasattr(self.call, "details") else str(self)

    def trailing_metadata(self) -> tuple:
        return self.call.trailing_metadata() if hasattr(self.call, "trailing_metadata") else ()


class Unreachable(CallFailed):
    """No connection within the connect deadline, or one that failed to set up (TLS, DNS): nothing was sent."""


class StreamBroken(CallFailed):
    """A stream that ended before every frame taken from the caller was answered.

    Attributes:
        reason: Why it ended, in one sentence.
        unanswered: Frame ids taken from the caller's requests but not answered, in request order: resend them,
            then go on with the rest of the requests (those were never taken).
    """

    def __init__(self, reason: str, unanswered: list[str], call: grpc.RpcError | None = None,
                 code: grpc.StatusCode | None = None) -> None:
        super().__init__(reason, call, code)
        self.reason = reason
        self.unanswered = unanswered

    def __str__(self) -> str:
        n = len(self.unanswered)
        if not n:
            return f"{self.reason}; every frame sent was answered"
        more = f" and {n - SHOWN_IDS} more" if n > SHOWN_IDS else ""
        return f"{self.reason}; {n} frame{'s' * (n != 1)} unanswered: {', '.join(self.unanswered[:SHOWN_IDS])}{more}"


def describe_rpc_error(err: grpc.RpcError) -> str:
    """``CODE (reason): details`` of a failed call in one line; ``(reason)`` is the ``ErrorInfo`` reason of the
    status details when the service sent one that says more than the code."""
    code = err.code() if hasattr(err, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    details = err.details() if hasattr(err, "details") else str(err)
    reason = details_of(err).reason
    shown = f" ({reason})" if reason and reason != name.lower() else ""
    return f"{name}{shown}: {details}"


# what gRPC says (lower-cased) when it cannot open a connection -> the sentence shown
_CONNECTION_FAILURES = (
    ("connection refused", "connection refused"),
    ("domain name not found", "unknown host name"),
    ("name or service not known", "unknown host name"),
    ("dns resolution failed", "unknown host name"),
    ("errors resolving", "unknown host name"),
    ("connection timed out", "the connection timed out"),
)
_TLS_REASONS = {  # OpenSSL's reason -> what it means here
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not signed by the CA given (--tls-ca)",
    "WRONG_VERSION_NUMBER": "the service does not speak TLS (connect without --tls-ca)",
}
_CLOSED = ("socket closed", "connection reset", "broken pipe", "end of tcp stream")
CLOSED_WHILE_CONNECTING = ("the connection closed while it was set up (a TLS service reached without --tls-ca, "
                           "or a client certificate it does not accept?)")


def connection_failure(details: str, connecting: bool = False) -> str | None:
    """Why a connection could not be opened, from a failed call's details; None when they say something else.

    ``connecting``: the call was a connection attempt, so a connection closed by the peer is a failed setup
    (the usual sign of a TLS mismatch) rather than a broken call.
    """
    text = details.lower()
    if "handshake failed" in text or "ssl_error" in text:
        found = re.search(r"OPENSSL_internal:([A-Z_]+)", details)
        key = found.group(1) if found else ""
        return f"TLS handshake failed: {_TLS_REASONS.get(key, key.lower().replace('_', ' ') or details)}"
    if "peer name" in text and "not in peer certificate" in text:
        return "TLS handshake failed: the server certificate does not name this host"
    found = next((shown for pattern, shown in _CONNECTION_FAILURES if pattern in text), None)
    if found is None and connecting and any(pattern in text for pattern in _CLOSED):
        return CLOSED_WHILE_CONNECTING
    return found


def readable(err: grpc.RpcError, target: str, timeout: float | None = None) -> str:
    """One sentence for a failed call to ``target``: why it could not reach it, or what the service answered.

    Args:
        err: The failed call.
        target: ``host:port``, named first in the sentence.
        timeout: The call's deadline in seconds, named when it ran out.
    """
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.UNAVAILABLE:
        why = connection_failure(err.details() or "")
        if why:
            return f"cannot reach {target}: {why}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
        return f"{target}: DEADLINE_EXCEEDED: not done within {timeout:g} s"
    return f"{target}: {describe_rpc_error(err)}"
