"""One frame through the service: admission, decode + preprocess, micro-batched inference, postprocess.

Plain Python in, plain Python out (no gRPC here): the servicer converts to and from protobuf. Failures are
:class:`~inspector.service.refusal.Rejected`, with a kind, a reason word and a message that says what is wrong.

A frame moves through three stages, each visible in :attr:`Pipeline.stages` (frames waiting or working there):
``prepare`` (decode and preprocess, on a worker thread), ``model`` (the batcher's queue and the forward pass, on the
batcher's thread) and ``finish`` (postprocess, on a worker thread). :meth:`Pipeline.inspect_async` drives them from
an event loop without holding a thread while the frame waits for the model, so waiting frames cost memory only.

A JPEG the model looks at whole, and smaller than it is, is decoded at reduced scale (1/2, 1/4 or 1/8, never below
the model's input): a 5 MP frame for a 320 px model decodes 64x fewer pixels. Masks and regions are still at the
frame's size. Of the drift statistics of the frame, brightness and contrast come out the same at any decoding scale
(within 1 % measured); sharpness (the Laplacian's variance) does not (-40 % to +140 %), so it is taken only from
frames decoded whole: for one reduced frame in :data:`SHARPNESS_EVERY`, while the model's reference tracks
sharpness, a worker decodes it again whole after the frame is answered (one at a time, off the answer's path).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from inspector.config import FrameLimits, Thresholds
from inspector.errors import UsageError
from inspector.inference.drift import frame_statistics, frame_values
from inspector.imaging.headers import MAGIC, probe_size
from inspector.service.metrics import PIPELINE_STAGES as STAGES
from inspector.inference.postprocess import anomaly_pixels, mask_pixels
from inspector.inference.predictor import Outputs, Prediction, Predictor
from inspector.inference.predictor import Prepared as Parts
from inspector.imaging.preprocess import RAW_CHANNELS, FrameError, decode_frame
from inspector.imaging.reduced import Fit, Frame
from inspector.service.batcher import BatcherClosed, BatchResult, DeadlineExpired, Job, MicroBatcher
from inspector.service.models import ModelManager, ModelUnavailable
from inspector.service.refusal import Kind, Rejected

log = logging.getLogger(__name__)
SHARPNESS_EVERY = 16  # frames; one of them is decoded whole again for the drift monitor's sharpness (see above)


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


@dataclass
class Decoded:
    """A frame after the prepare stage: its pixels, the predictor that prepared it and the model input."""

    image: np.ndarray  # the decoded pixels: fewer than the frame's when decoded at reduced scale
    predictor: Predictor
    parts: Parts
    started: float  # time.monotonic() when the frame entered the pipeline
    decode_s: float
    preprocess_s: float
    reduced: bool = False  # decoded at reduced scale: its sharpness is not the reference's


def encode_png(image: np.ndarray) -> bytes:
    """An ``(h, w)`` uint8 image -> PNG bytes."""
    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()


def encode_mask(mask: np.ndarray, threshold: float) -> bytes:
    """Defect probabilities -> 8-bit PNG of :func:`mask_pixels`."""
    return encode_png(mask_pixels(mask, threshold))


def encode_anomaly_map(anomaly_map: np.ndarray) -> bytes:
    """Anomaly map -> 8-bit PNG of :func:`anomaly_pixels`."""
    return encode_png(anomaly_pixels(anomaly_map))


def claimed_pixels(frame: FrameIn, limits: FrameLimits) -> int:
    """Pixels the frame will take once decoded, from its header; 0 when unknown, and 0 when a side is outside the
    limits: decoding refuses such a frame from its header alone (``bad_dimensions``), so it needs no budget and must
    not be mistaken for overload (a stream of decompression bombs is answered invalid, not overloaded)."""
    if frame.encoding in RAW_CHANNELS:
        w, h = frame.width, frame.height
    else:
        w, h = (probe_size(frame.data, frame.encoding) if frame.encoding in MAGIC else None) or (0, 0)
    inside = limits.min_side <= min(w, h) and max(w, h) <= limits.max_side
    return w * h if inside else 0


def _remaining(deadline: float | None) -> float | None:
    """Seconds to wait for the model: until the deadline plus a second (the batcher answers expired frames itself)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic()) + 1.0


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
        self.stages: Counter[str] = Counter({stage: 0 for stage in STAGES})
        self._count = self._pixels = 0
        self._lock = threading.Lock()
        self._frames = itertools.count(1)  # reduced frames answered (next() is atomic)
        self._measuring = threading.Lock()  # held while a frame is decoded whole for its sharpness

    @property
    def in_flight(self) -> int:
        return self._count

    def load(self) -> float:
        """Share of the frame budget in use now, in [0, 1]."""
        return min(1.0, self._count / self.max_in_flight)

    @contextmanager
    def admitted(self, frame: FrameIn) -> Iterator[None]:
        """Holds the frame's share of the budgets for the ``with`` block.

        Raises:
            Rejected: OVERLOADED when the frame or its pixels do not fit now.
        """
        pixels = claimed_pixels(frame, self.limits)
        with self._lock:
            if self._count >= self.max_in_flight:
                raise Rejected(Kind.OVERLOADED, "overloaded",
                               f"{self.max_in_flight} frames already in flight; retry later")
            if self._count and self._pixels + pixels > self.max_pixels:
                raise Rejected(Kind.OVERLOADED, "overloaded",
                               f"{self._pixels} px already in flight, this frame's {pixels} px would pass the "
                               f"{self.max_pixels} px budget; retry later")
            self._count += 1
            self._pixels += pixels
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1
                self._pixels -= pixels

    @contextmanager
    def _stage(self, stage: str) -> Iterator[None]:
        with self._lock:
            self.stages[stage] += 1
        try:
            yield
        finally:
            with self._lock:
                self.stages[stage] -= 1

    def prepare(self, frame: FrameIn, started: float) -> Decoded:
        """Decodes the frame (at reduced scale when the current model looks at it whole, smaller) and prepares the
        current model's input."""
        t0 = time.monotonic()
        try:
            predictor = self.models.current
        except ModelUnavailable as err:
            self._decode(frame, None)  # a bad frame is refused as such before the missing model
            raise Rejected(Kind.UNAVAILABLE, "not_ready", str(err)) from err
        decoded = self._decode(frame, predictor.decode_size)
        t1 = time.monotonic()
        try:
            parts = predictor.prepare([decoded])  # one part, or a region of interest, or tiles
        except UsageError as err:  # the configured region of interest does not fit this frame
            raise Rejected(Kind.INVALID, "outside_roi", str(err)) from err
        return Decoded(decoded.image, predictor, parts, started, t1 - t0, time.monotonic() - t1, decoded.reduced)

    def measure_sharpness(self, frame: FrameIn) -> None:
        """Adds the sharpness of ``frame`` decoded whole to the drift monitor, for one reduced frame in
        :data:`SHARPNESS_EVERY` (call it after the frame is answered); skipped while another is being measured."""
        if next(self._frames) % SHARPNESS_EVERY or "sharpness" not in self.models.drift.ref:
            return
        if not self._measuring.acquire(blocking=False):
            return
        try:
            whole = decode_frame(frame.data, frame.encoding, frame.width, frame.height, frame.stride, self.limits)
            self.models.drift.add({"sharpness": frame_statistics(whole.image)["sharpness"]})
        except Exception as err:  # noqa: BLE001 - nobody waits for this: say it, and go on
            log.warning("sharpness of a frame not measured for drift: %s", err)
        finally:
            self._measuring.release()

    def _decode(self, frame: FrameIn, fit: Fit | None) -> Frame:
        try:
            return decode_frame(frame.data, frame.encoding, frame.width, frame.height, frame.stride, self.limits, fit)
        except FrameError as err:
            raise Rejected(Kind.INVALID, err.reason, str(err)) from err

    def submit(self, decoded: Decoded, deadline: float | None) -> list[Future]:
        """Queues the frame's parts for the model; each future gives a :class:`BatchResult`."""
        try:
            parts = len(decoded.parts.batch)
            return [self.batcher.submit(Job(tensor, decoded.predictor, deadline, parts=parts))
                    for tensor in decoded.parts.batch]
        except BatcherClosed as err:
            raise Rejected(Kind.UNAVAILABLE, "shutting_down", str(err)) from err

    def finish(self, frame: FrameIn, decoded: Decoded, results: list[BatchResult]) -> Inspection:
        """Postprocesses the model's answers into the frame's inspection."""
        t3 = time.monotonic()
        predictor = decoded.predictor
        thresholds = self.models.thresholds(predictor)
        prediction = predictor.finish(Outputs.concat([r.outputs for r in results]), decoded.parts, thresholds)[0]
        values = frame_values(decoded.image, prediction.defect_score)
        if decoded.reduced:
            del values["sharpness"]  # measured on fewer pixels, it is not what the reference measured
        self.models.drift.add(values)
        png = encode_mask(prediction.mask, thresholds.mask) if frame.return_mask else b""
        wants_map = frame.return_anomaly_map and prediction.anomaly_map is not None
        anomaly_png = encode_anomaly_map(prediction.anomaly_map) if wants_map else b""
        t4 = time.monotonic()
        timings = {"decode": decoded.decode_s, "preprocess": decoded.preprocess_s,
                   "queue": max(r.queue_s for r in results), "infer": max(r.infer_s for r in results),
                   "postprocess": t4 - t3, "total": t4 - decoded.started}
        return Inspection(prediction, thresholds, png, timings, results[0].batch_size, anomaly_png)

    async def inspect_async(self, frame: FrameIn, deadline: float | None, workers: Executor) -> Inspection:
        """Inspects one frame from an event loop: decode and postprocess on ``workers``, the wait for the model on no
        thread at all; ``deadline`` is a ``time.monotonic()`` limit. A caller that is cancelled while its frame waits
        takes the frame out of the batcher's queue.

        Raises:
            Rejected: Bad frame, overload, no model yet, deadline passed, inference failed, shutting down.
        """
        loop = asyncio.get_running_loop()
        with self.admitted(frame):
            with self._stage("prepare"):
                decoded = await loop.run_in_executor(workers, self.prepare, frame, time.monotonic())
            with self._stage("model"):
                waits = [asyncio.wrap_future(f) for f in self.submit(decoded, deadline)]
                try:
                    results = await asyncio.wait_for(asyncio.gather(*waits), _remaining(deadline))
                except (DeadlineExpired, asyncio.TimeoutError) as err:
                    raise Rejected(Kind.DEADLINE, "deadline",
                                   "deadline passed before the frame was inspected") from err
                except Exception as err:  # the pass failed (a cancelled call is no Exception: it goes through)
                    raise Rejected(Kind.INTERNAL, "inference_failed",
                                   f"the forward pass of this frame's batch failed ({type(err).__name__}: {err}); "
                                   "the service goes on, resend the frame") from err
            with self._stage("finish"):
                inspection = await loop.run_in_executor(workers, self.finish, frame, decoded, results)
        if decoded.reduced:
            with contextlib.suppress(RuntimeError):  # the workers shut down meanwhile: the answer still goes out
                workers.submit(self.measure_sharpness, frame)
        return inspection

