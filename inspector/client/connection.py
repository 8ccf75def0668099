"""A small client of the inspection service: frames from files, folders or video, answers as protobuf messages
(``inspector client`` prints them as the JSON lines of :mod:`inspector.cli.lines`, the same as ``inspector predict``).

How it copes with the network (the constants below; the README cites them):

- a call waits for the connection (``wait_for_ready``) but never past a deadline: ``connect_timeout``
  (:data:`DEFAULT_CONNECT_TIMEOUT_S`) to open it, the caller's ``timeout`` (unary default
  :data:`DEFAULT_CALL_TIMEOUT_S`) for the call;
- gRPC retries a unary call that fails UNAVAILABLE (:data:`RETRY_POLICY` on :data:`RETRIED_METHODS`, passed as the
  ``grpc.service_config`` channel option); a stream is never retried: it raises
  :class:`~inspector.client.errors.StreamBroken` with the frames to resend;
- keepalive pings (:data:`KEEPALIVE_OPTIONS`) find a peer that vanished under a long-lived stream; the server
  accepts pings every >= 10 s.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import grpc
import numpy as np

from inspector.client.errors import (CallFailed, StreamBroken, Unreachable, connection_failure, describe_rpc_error,
                                     readable)
from inspector.imaging.preprocess import EXTENSIONS
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v"}
ENCODING_OF = {"JPEG": pb.JPEG, "PNG": pb.PNG, "BMP": pb.BMP}
MAX_MESSAGE = 64 * 1024 * 1024 + 4096

DEFAULT_CONNECT_TIMEOUT_S = 10.0  # s to open the connection (a refused one is tried again until then)
DEFAULT_CALL_TIMEOUT_S = 30.0  # s, deadline of a unary call made without a timeout
RETRY_POLICY = {  # gRPC's retry policy (gRFC A6): up to 3 retries, waits drawn in [0, 0.2], [0, 0.4], [0, 0.8] s
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
RETRIED_METHODS = (  # the unary calls; every Admin call is unary
    {"service": "inspector.v1.Inspector", "method": "Inspect"},
    {"service": "inspector.v1.Inspector", "method": "GetModelInfo"},
    {"service": "inspector.v1.Admin"},
)
SERVICE_CONFIG = json.dumps({"methodConfig": [{"name": list(RETRIED_METHODS), "retryPolicy": RETRY_POLICY}]})
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),  # a ping every 30 s while a call is open...
    ("grpc.keepalive_timeout_ms", 10_000),  # ...unanswered for 10 s closes the connection: the call fails UNAVAILABLE
    ("grpc.keepalive_permit_without_calls", 0),  # no pings on a connection without calls
    ("grpc.http2.max_pings_without_data", 0),  # pings while a stream sends nothing (a camera between parts): no limit
)
# a refused connection is tried again after 0.25 s, then at most every 2 s: a replica that comes up is reached
# within seconds (gRPC's defaults wait up to 120 s between attempts)
RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 250), ("grpc.max_reconnect_backoff_ms", 2_000))
CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.per_rpc_retry_buffer_size", MAX_MESSAGE),  # default 256 KiB: a larger frame would never be retried
    *KEEPALIVE_OPTIONS,
    *RECONNECT_OPTIONS,
)
PROBE_METHOD = "/grpc.health.v1.Health/Check"  # asked (without waiting) only to learn why a connection failed
ANSWERED = {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAUTHENTICATED,  # a server's
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclasses.dataclass
class FrameSource:
    """One frame to send: an encoded payload and where it came from."""

    frame_id: str
    data: bytes
    encoding: int  # pb.Encoding value


def frames_from_paths(paths: Iterable[str | Path], video_quality: int = 90) -> Iterator[FrameSource]:
    """Image files as they are (no re-encoding), folders as their images (sorted), videos frame by frame (JPEG)."""
    for path in map(Path, paths):
        if path.is_dir():
            yield from frames_from_paths(sorted(p for p in path.rglob("*") if p.suffix.lower() in EXTENSIONS))
        elif path.suffix.lower() in VIDEO_EXTENSIONS:
            yield from _video_frames(path, video_quality)
        elif path.suffix.lower() in EXTENSIONS:
            yield FrameSource(str(path), path.read_bytes(), ENCODING_OF[EXTENSIONS[path.suffix.lower()]])
        else:
            raise FileNotFoundError(f"{path}: not an image ({', '.join(EXTENSIONS)}), video or folder")


def _video_frames(path: Path, quality: int) -> Iterator[FrameSource]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            _, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
            yield FrameSource(f"{path}#{index}", jpeg.tobytes(), pb.JPEG)
            index += 1
    finally:
        capture.release()


def request_for(frame: FrameSource, camera_id: str = "", return_mask: bool = False) -> pb.InspectRequest:
    return pb.InspectRequest(data=frame.data, encoding=frame.encoding, frame_id=frame.frame_id,
                             camera_id=camera_id, return_mask=return_mask)


def decode_mask(response: pb.InspectResponse) -> np.ndarray | None:
    """The response's mask as a ``(h, w)`` uint8 array (0 / 255), if it carries one."""
    if not response.mask_png:
        return None
    return cv2.imdecode(np.frombuffer(response.mask_png, np.uint8), cv2.IMREAD_GRAYSCALE)


def channel(target: str, tls_ca: str | None = None, tls_cert: str | None = None,
            tls_key: str | None = None) -> grpc.Channel:
    """A channel to ``target`` with :data:`CHANNEL_OPTIONS`: TLS when a CA file is given (plus a client certificate
    for mutual TLS)."""
    if not tls_ca:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
    return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)


class InspectorClient:
    """Connection to a service at ``target`` (``host:port``).

    Every call waits for the connection (``wait_for_ready``) within a deadline. The first call opens it with
    :meth:`connect`: a refused connection is tried again until ``connect_timeout`` (the service may be starting),
    any other failure (TLS, DNS) raises :class:`Unreachable` at once. Unary calls are retried on UNAVAILABLE
    (:data:`RETRY_POLICY`); a stream that breaks raises :class:`StreamBroken` naming the unanswered frames.

    Args:
        target: ``host:port``.
        tls_ca: CA file that signed the server certificate (TLS); ``tls_cert``/``tls_key`` for mutual TLS.
        token: Bearer token sent with every call (when the service requires one).
        connect_timeout: Seconds to wait for the connection to open before the first call.
        call_timeout: Deadline in seconds of a unary call made without a timeout.
    """

    def __init__(self, target: str, tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                 token: str | None = None, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT_S) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.channel = channel(target, tls_ca, tls_cert, tls_key)
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.stub = pb_grpc.InspectorStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self._connected = False

    def inspect(self, request: pb.InspectRequest, timeout: float | None = None) -> pb.InspectResponse:
        """One frame's answer. Raises CallFailed (a ``grpc.RpcError``) with a readable message."""
        return self._unary(self.stub.Inspect, request, timeout)

    def model_info(self, timeout: float | None = None) -> pb.ModelInfo:
        return self._unary(self.stub.GetModelInfo, pb.GetModelInfoRequest(), timeout)

    def inspect_frames(self, requests: Iterable[pb.InspectRequest],
                       timeout: float | None = None) -> Iterator[pb.InspectResponse]:
        """Streams ``requests``; yields one response per request, in request order.

        Args:
            requests: The frames; taken one at a time as the stream has room. An exception they raise ends the
                stream after the frames already taken are answered, and is raised then.
            timeout: Deadline of the whole stream in seconds, connecting included (None: none; keepalive pings
                find a dead peer).

        Raises:
            Unreachable: no connection within the connect timeout; no frame was taken.
            StreamBroken: the stream ended early; ``unanswered`` names the frames taken but not answered.
        """
        left = self._connect_once(timeout)
        ledger = _Ledger()
        # connected: a stream does not wait for the channel again (without a deadline it could wait forever), it
        # fails and names the frames to resend
        responses = self.stub.InspectStream(ledger.track(requests), timeout=left, metadata=self.metadata)
        try:
            for response in responses:
                ledger.answered(response.frame_id)
                yield response
        except grpc.RpcError as err:
            raise ledger.broken(readable(err, self.target, timeout), err) from None
        finally:
            responses.cancel()  # a no-op once the call ended; stops the stream when the caller stops reading
        if ledger.failed is not None:
            raise ledger.failed
        if ledger.pending:
            raise ledger.broken(f"{self.target}: the stream ended early", code=grpc.StatusCode.DATA_LOSS)

    stream = inspect_frames  # the earlier name

    def connect(self, timeout: float | None = None) -> None:
        """Waits until the channel is ready, at most ``timeout`` seconds (default: ``connect_timeout``).

        Raises:
            Unreachable: why the last attempt failed (``cannot reach HOST:PORT: connection refused``), or that
                nothing answered within ``timeout``.
        """
        timeout = self.connect_timeout if timeout is None else timeout
        end = time.monotonic() + timeout
        failure, pause = None, RECONNECT_OPTIONS[0][1] / 1000.0
        while (left := end - time.monotonic()) > 0:
            failure = self._probe(left)
            if failure is None:
                self._connected = True
                return
            if not _worth_waiting(failure):
                break
            time.sleep(min(pause, max(0.0, end - time.monotonic())))  # gRPC reconnects on its own backoff
        if failure is None or failure.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise Unreachable(f"cannot reach {self.target}: no answer within {timeout:g} s",
                              code=grpc.StatusCode.DEADLINE_EXCEEDED)
        why = connection_failure(failure.details() or "", connecting=True) or describe_rpc_error(failure)
        raise Unreachable(f"cannot reach {self.target}: {why}", failure)

    def _probe(self, timeout: float) -> grpc.RpcError | None:
        """Why the channel is down: a call that does not wait for it (and has no retry policy) fails at once with
        the last connection error. None when a service answered it (whatever it answered: a status only a server
        gives); a transport failure (UNAVAILABLE, UNKNOWN, INTERNAL, a deadline...) is returned."""
        check = self.channel.unary_unary(PROBE_METHOD, request_serializer=bytes, response_deserializer=bytes)
        try:
            check(b"", timeout=min(timeout, 2.0), wait_for_ready=False)
        except grpc.RpcError as err:
            if err.code() not in ANSWERED:
                return err
        return None

    def _connect_once(self, timeout: float | None) -> float | None:
        """Opens the connection on the first call; returns what is left of the call's ``timeout``."""
        end = None if timeout is None else time.monotonic() + timeout
        if not self._connected:
            self.connect(self.connect_timeout if timeout is None else min(self.connect_timeout, timeout))
        return None if end is None else max(end - time.monotonic(), 1e-3)

    def _unary(self, method: grpc.UnaryUnaryMultiCallable, request, timeout: float | None):
        timeout = self.call_timeout if timeout is None else timeout
        left = self._connect_once(timeout)
        try:
            return method(request, timeout=left, metadata=self.metadata, wait_for_ready=True)
        except grpc.RpcError as err:
            raise CallFailed(readable(err, self.target, timeout), err) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> InspectorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _worth_waiting(failure: grpc.RpcError) -> bool:
    """A refused, timed-out or silent connection may be a service still starting: wait; TLS, DNS and the like
    will not change by waiting."""
    if failure.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # connected, nothing answered yet: keep asking
        return True
    why = connection_failure(failure.details() or "")
    return why in ("connection refused", "the connection timed out")


class _Ledger:
    """The frame ids of one stream taken from the caller and not answered yet, in order.

    gRPC takes requests on its own thread while answers arrive on the caller's, hence the lock. Once the stream
    broke nothing more is taken; a request whose taking was under way then joins the exception's ``unanswered``.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: collections.deque[str] = collections.deque()
        self.error: StreamBroken | None = None
        self.failed: Exception | None = None  # raised by the caller's requests

    def track(self, requests: Iterable[pb.InspectRequest]) -> Iterator[pb.InspectRequest]:
        iterator = iter(requests)
        try:
            while self.error is None:  # once broken, take nothing more
                request = next(iterator, None)
                if request is None:
                    return
                with self.lock:
                    if self.error is not None:  # broke while this one was being taken
                        self.error.unanswered.append(request.frame_id)
                        return
                    self.pending.append(request.frame_id)
                yield request
        except Exception as err:  # noqa: BLE001 - raised to the caller once the frames taken are answered
            # in gRPC's thread it would only cancel the stream as UNKNOWN "Exception iterating requests!"
            self.failed = err

    def answered(self, frame_id: str) -> None:
        with self.lock:
            if self.pending and self.pending[0] == frame_id:  # answers come in request order
                self.pending.popleft()
            elif frame_id in self.pending:
                self.pending.remove(frame_id)

    def broken(self, reason: str, call: grpc.RpcError | None = None,
               code: grpc.StatusCode | None = None) -> StreamBroken:
        with self.lock:
            self.error = StreamBroken(reason, list(self.pending), call, code)
            return self.error
