"""A dynamic micro-batcher: frames from all calls and streams share forward passes.

Callers prepare (decode + preprocess) on their own threads and submit the model input; one thread collects up to
``max_batch`` inputs, waiting at most ``max_delay`` after the first while more frames are on their way (being
prepared), and runs them together: a lone camera's frame goes to the model at once. A frame whose deadline
has passed is answered with :class:`DeadlineExpired` and not run. Inputs prepared for different predictors (a swap
in between) are never mixed in one pass. A job whose caller gave up (its future cancelled) is dropped unrun.
:meth:`MicroBatcher.call` runs other work on the same thread between passes: warming a model where what the warm-up
caches is kept per thread (PyTorch's cuDNN execution plans).

With ``lanes`` (CPU predictors, :meth:`Predictor.open_lanes`), a batch formed while other frames are in flight goes
to one of ``lanes`` threads that each run a pass on their share of the CPU threads, side by side, instead of one
pass at a time on all of them: passes on few threads wait less for each other's threads, and frames decoded beside
them slow them less (``bench/lanes_bench.py``). The parts in flight are shared among the lanes (4 cameras on 2
lanes: 2 frames a pass; a lone frame cut into 6 tiles: 3 tiles a lane). A whole frame alone in the service still
runs on all the threads, at the lowest latency; such a pass never runs beside a lane's.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from inspector.errors import InspectorError
from inspector.inference.predictor import Outputs, Predictor

log = logging.getLogger(__name__)


class DeadlineExpired(InspectorError):
    """The caller's deadline passed before the frame reached the model."""


class BatcherClosed(InspectorError):
    """The batcher is shut down."""


class BatchResult(NamedTuple):
    """One part's answer from a forward pass."""

    outputs: Outputs  # this part's row of the batch
    queue_s: float  # seconds from submission to the start of its pass
    infer_s: float  # seconds the pass took
    batch_size: int  # parts in that pass


@dataclass
class Job:
    tensor: np.ndarray  # (3, H, W) float32 model input
    predictor: Predictor  # the predictor whose spec prepared it
    deadline: float | None  # time.monotonic() limit, None = no deadline
    future: Future = field(default_factory=Future)  # -> BatchResult
    queued_at: float = field(default_factory=time.monotonic)
    parts: int = 1  # parts its frame was cut into (tiles), each a job, queued together


@dataclass
class Call:
    """A function the batcher's thread runs between passes; its future gets the result or the exception."""

    fn: Callable[[], object]
    future: Future = field(default_factory=Future)

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            self.future.set_result(self.fn())
        except BaseException as err:  # noqa: BLE001 - the caller hears of it, the batcher goes on
            self.future.set_exception(err)


class MicroBatcher:
    """Runs submitted jobs in batches on one thread (and its lanes).

    Args:
        max_batch: Most frames per forward pass.
        max_delay: Seconds to wait for more frames after the first of a batch.
        on_batch: Optional callback ``(batch_size, infer_seconds)`` after each pass (for metrics).
        coming: How many frames are being prepared now, on their way to :meth:`submit`; the batcher waits for more
            only while this is positive. None: always wait up to ``max_delay``.
        lanes: Passes that may run at once, for predictors with lanes open; 1: one at a time.
        in_flight: How many frames the service holds now (being prepared, waiting, in a pass or postprocessed):
            with lanes, what decides between a lane and all the threads, and how many parts a lane's pass takes
            (each frame counted as cut like the pass's first: tiles are parts).
    """

    def __init__(self, max_batch: int = 8, max_delay: float = 0.002, on_batch=None,
                 coming: Callable[[], int] | None = None, lanes: int = 1,
                 in_flight: Callable[[], int] | None = None) -> None:
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.on_batch = on_batch
        self.coming = coming or (lambda: 1)
        self.lanes = max(1, lanes)
        self.in_flight = in_flight or (lambda: 0)
        self._queue: queue.Queue[Job | Call | None] = queue.Queue()
        self._closed = False
        self._handoff: queue.Queue[tuple[Predictor, list[Job]] | None] = queue.Queue()  # batches for the lanes
        self._busy = 0  # lanes running a pass
        self._idle = threading.Condition()
        self._lanes = [threading.Thread(target=self._lane, name=f"batcher-lane-{i}", daemon=True)
                       for i in range(self.lanes if self.lanes > 1 else 0)]
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        for thread in (*self._lanes, self._thread):
            thread.start()

    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, job: Job) -> Future:
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[], object]) -> Future:
        """Runs ``fn`` on the batcher's thread after the jobs queued before it; the future holds its result."""
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        item = Call(fn)
        self._queue.put(item)
        return item.future

    def close(self) -> None:
        """Finishes what is queued, then stops the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _parts(self, job: Job) -> int:
        """Parts in flight, counting each frame as cut like ``job``'s."""
        return self.in_flight() * job.parts

    def _limit(self, first: Job) -> int:
        """Most parts for the next pass: ``max_batch``; with lanes, the parts in flight shared among them."""
        if self.lanes == 1:
            return self.max_batch
        return max(1, min(self.max_batch, -(-self._parts(first) // self.lanes)))

    def _collect(self, first: Job) -> tuple[list[Job], list[Call], bool]:
        jobs, calls, stop = [first], [], False
        until = time.monotonic() + self.max_delay
        limit = self._limit(first)
        while len(jobs) < limit:
            wait = max(0.0, until - time.monotonic()) if self.coming() > 0 else 0.0  # nothing coming: run now
            try:
                job = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                stop = True
                break
            if isinstance(job, Call):  # after this pass, before the jobs queued behind it
                calls.append(job)
                break
            jobs.append(job)
        return jobs, calls, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            if isinstance(first, Call):
                self._wait_lanes()
                first.run()
                continue
            jobs, calls, stop = self._collect(first)
            for predictor in {id(j.predictor): j.predictor for j in jobs}.values():
                self._dispatch(predictor, [j for j in jobs if j.predictor is predictor])
            for call in calls:
                self._wait_lanes()
                call.run()
        for _ in self._lanes:
            self._handoff.put(None)
        for lane in self._lanes:
            lane.join()

    @staticmethod
    def _live(jobs: list[Job]) -> list[Job]:
        """The jobs someone still waits for, marked running; an expired one is answered :class:`DeadlineExpired`."""
        now, live = time.monotonic(), []
        for job in jobs:
            if not job.future.set_running_or_notify_cancel():
                continue  # the caller gave up (cancelled call, deadline): nobody waits for this part
            if job.deadline is not None and now > job.deadline:
                job.future.set_exception(DeadlineExpired("deadline passed before the frame reached the model"))
            else:
                live.append(job)
        return live

    def _dispatch(self, predictor: Predictor, jobs: list[Job]) -> None:
        """Runs the pass here on all the threads, or hands it to a lane when the predictor has lanes and other parts
        are in flight (other frames, or the other tiles of this one). It waits for a free lane, or for all the lanes
        to be idle, before it looks at which jobs are still wanted: a caller may give up meanwhile."""
        lane = self.lanes > 1 and predictor.lanes > 1 and (self._busy or self._parts(jobs[0]) > len(jobs))
        with self._idle:  # only this thread takes a lane: once true, the condition holds until the pass starts
            self._idle.wait_for(lambda: self._busy < self.lanes if lane else self._busy == 0)
        jobs = self._live(jobs)
        if not jobs:
            return
        if lane:
            with self._idle:
                self._busy += 1
            self._handoff.put((predictor, jobs))
        else:
            self._infer(predictor, jobs)

    def _wait_lanes(self) -> None:
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0)

    def _lane(self) -> None:
        while (item := self._handoff.get()) is not None:
            try:
                self._infer(*item, lane=True)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _infer(self, predictor: Predictor, jobs: list[Job], lane: bool = False) -> None:
        start = time.monotonic()
        try:
            outputs = predictor.infer(np.stack([j.tensor for j in jobs]), lane=lane)
        except Exception as err:  # noqa: BLE001 - every waiting caller must hear about it
            log.exception("inference failed for a batch of %d", len(jobs))
            for j in jobs:
                j.future.set_exception(err)
            return
        infer_s = time.monotonic() - start
        if self.on_batch:
            self.on_batch(len(jobs), infer_s)
        for i, j in enumerate(jobs):
            j.future.set_result(BatchResult(outputs.row(i), start - j.queued_at, infer_s, len(jobs)))
