"""One frame through the service: bound check, decode, preprocess, micro-batched inference, postprocess.

Plain Python in, plain Python out: the servicer converts to and from protobuf. Failures are :class:`Rejected`
with the gRPC status they map to and a message that says what is wrong.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import cv2
import grpc
import numpy as np

from inspector.config import FrameLimits, Thresholds
from inspector.drift import frame_statistics
from inspector.postprocess import anomaly_probability
from inspector.predictor import Outputs, Prediction
from inspector.headers import MAGIC, probe_size
from inspector.preprocess import RAW_CHANNELS, FrameError, decode
from inspector.service.batcher import BatcherClosed, DeadlineExpired, Job, MicroBatcher
from inspector.service.models import ModelManager, ModelUnavailable


class Rejected(Exception):
    """A frame the service does not answer with a result."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class FrameIn:
    data: bytes
    encoding: str
    width: int = 0
    height: int = 0
    stride: int = 0
    return_mask: bool = False
    return_anomaly_map: bool = False


@dataclass
class Inspection:
    prediction: Prediction
    thresholds: Thresholds
    mask_png: bytes
    timings: dict[str, float]  # seconds: decode, preprocess, queue, infer, postprocess, total
    batch_size: int
    anomaly_map_png: bytes = b""


def encode_png(image: np.ndarray) -> bytes:
    """An ``(h, w)`` uint8 image -> PNG bytes."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


def encode_mask(mask: np.ndarray, threshold: float) -> bytes:
    """Defect probabilities -> 8-bit PNG, 255 where the probability reaches ``threshold``."""
    return encode_png(np.where(mask >= threshold, 255, 0).astype(np.uint8))


def encode_anomaly_map(anomaly_map: np.ndarray) -> bytes:
    """Anomaly map (>= 0, 1.0 = the reference) -> 8-bit PNG of ``round(255 * a / (1 + a))``: 128 = the reference."""
    return encode_png(np.rint(255.0 * anomaly_probability(np.maximum(anomaly_map, 0.0))).astype(np.uint8))


def claimed_pixels(frame: FrameIn, limits: FrameLimits) -> int:
    """Pixels the frame will take once decoded, from its header; sides beyond the limits count as the limit (decoding
    refuses those frames as invalid, so they must not be mistaken for overload). 0 when unknown."""
    if frame.encoding in RAW_CHANNELS:
        w, h = frame.width, frame.height
    else:
        w, h = (probe_size(frame.data, frame.encoding) if frame.encoding in MAGIC else None) or (0, 0)
    return min(w, limits.max_side) * min(h, limits.max_side)


class Pipeline:
    """Inspects frames for any number of concurrent callers: at most ``max_in_flight`` frames and, unless a frame is
    alone, ``max_pixels`` decoded pixels at once (memory stays bounded whatever the frame sizes)."""

    def __init__(self, models: ModelManager, batcher: MicroBatcher, max_in_flight: int, limits: FrameLimits,
                 max_pixels: int = 256_000_000) -> None:
        self.models = models
        self.batcher = batcher
        self.limits = limits
        self.max_in_flight = max_in_flight
        self.max_pixels = max_pixels
        self._count = self._pixels = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._count

    def _admit(self, pixels: int) -> None:
        with self._lock:
            if self._count >= self.max_in_flight:
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded",
                               f"{self.max_in_flight} frames already in flight; retry later")
            if self._count and self._pixels + pixels > self.max_pixels:
                raise Rejected(grpc.StatusCode.RESOURCE_EXHAUSTED, "overloaded",
                               f"{self._pixels} px already in flight, this frame's {pixels} px would pass the "
                               f"{self.max_pixels} px budget; retry later")
            self._count += 1
            self._pixels += pixels

    def inspect(self, frame: FrameIn, deadline: float | None = None) -> Inspection:
        """Inspects one frame; ``deadline`` is a ``time.monotonic()`` limit.

        Raises:
            Rejected: Bad frame, overload, no model yet, deadline passed, shutting down.
        """
        pixels = claimed_pixels(frame, self.limits)
        self._admit(pixels)
        try:
            return self._inspect(frame, deadline)
        finally:
            with self._lock:
                self._count -= 1
                self._pixels -= pixels

    def _inspect(self, frame: FrameIn, deadline: float | None) -> Inspection:
        t0 = time.monotonic()
        try:
            image = decode(frame.data, frame.encoding, frame.width, frame.height, frame.stride, self.limits)
        except FrameError as err:
            raise Rejected(grpc.StatusCode.INVALID_ARGUMENT, err.reason, str(err)) from err
        try:
            predictor = self.models.current
        except ModelUnavailable as err:
            raise Rejected(grpc.StatusCode.UNAVAILABLE, "not_ready", str(err)) from err
        t1 = time.monotonic()
        prepared = predictor.prepare([image])  # one part, or a region of interest, or tiles
        t2 = time.monotonic()
        results = self._run([Job(tensor, predictor, deadline) for tensor in prepared.batch], deadline)
        t3 = time.monotonic()
        outputs = Outputs.concat([r[0] for r in results])
        queue_s, infer_s, batch_size = max(r[1] for r in results), max(r[2] for r in results), results[0][3]
        thresholds = self.models.thresholds(predictor)
        prediction = predictor.finish(outputs, prepared, thresholds)[0]
        self.models.drift.add(frame_statistics(image) | {"defect_score": prediction.defect_score})
        png = encode_mask(prediction.mask, thresholds.mask) if frame.return_mask else b""
        wants_map = frame.return_anomaly_map and prediction.anomaly_map is not None
        anomaly_png = encode_anomaly_map(prediction.anomaly_map) if wants_map else b""
        t4 = time.monotonic()
        timings = {"decode": t1 - t0, "preprocess": t2 - t1, "queue": queue_s, "infer": infer_s,
                   "postprocess": t4 - t3, "total": t4 - t0}
        return Inspection(prediction, thresholds, png, timings, batch_size, anomaly_png)

    def _run(self, jobs: list[Job], deadline: float | None) -> list[tuple]:
        """Submits a frame's parts to the batcher and waits for all of them."""
        try:
            futures = [self.batcher.submit(job) for job in jobs]
        except BatcherClosed as err:
            raise Rejected(grpc.StatusCode.UNAVAILABLE, "shutting_down", str(err)) from err
        try:
            return [f.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()) + 1.0)
                    for f in futures]
        except (DeadlineExpired, FutureTimeout) as err:
            raise Rejected(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline", "deadline passed before the frame was inspected") from err
