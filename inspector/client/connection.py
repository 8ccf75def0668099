"""A small client of the inspection service: frames from files, folders or video, answers as protobuf messages
(``inspector client`` prints them as the JSON lines of :mod:`inspector.cli.lines`, the same as ``inspector predict``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import grpc
import numpy as np

from inspector.imaging.preprocess import EXTENSIONS
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".m4v"}
ENCODING_OF = {"JPEG": pb.JPEG, "PNG": pb.PNG, "BMP": pb.BMP}
MAX_MESSAGE = 64 * 1024 * 1024 + 4096


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
    """A channel to ``target``: TLS when a CA file is given (plus a client certificate for mutual TLS)."""
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    if not tls_ca:
        return grpc.insecure_channel(target, options=options)
    read = lambda path: Path(path).read_bytes() if path else None  # noqa: E731
    credentials = grpc.ssl_channel_credentials(read(tls_ca), read(tls_key), read(tls_cert))
    return grpc.secure_channel(target, credentials, options=options)


class InspectorClient:
    """Connection to a service at ``target`` (``host:port``).

    Args:
        target: ``host:port``.
        tls_ca: CA file that signed the server certificate (TLS); ``tls_cert``/``tls_key`` for mutual TLS.
        token: Bearer token sent with every call (when the service requires one).
    """

    def __init__(self, target: str, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, token: str | None = None) -> None:
        self.channel = channel(target, tls_ca, tls_cert, tls_key)
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.stub = pb_grpc.InspectorStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)

    def inspect(self, request: pb.InspectRequest, timeout: float | None = None) -> pb.InspectResponse:
        return self.stub.Inspect(request, timeout=timeout, metadata=self.metadata)

    def stream(self, requests: Iterable[pb.InspectRequest], timeout: float | None = None) -> Iterator[pb.InspectResponse]:
        """One response per request, in request order."""
        return self.stub.InspectStream(iter(requests), timeout=timeout, metadata=self.metadata)

    def wait_ready(self, timeout: float = 60.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> InspectorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
