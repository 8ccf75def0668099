"""The micro-batcher: shared passes, versions never mixed, failures and cancellations answered once."""

import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest

from inspector.inference.predictor import Outputs
from inspector.service.batcher import BatchResult, Job, MicroBatcher


class FakePredictor:
    """Records each batch it runs; the first pass waits for :attr:`release` so that jobs queue up behind it."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[np.ndarray] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.fail = fail

    def infer(self, batch: np.ndarray, lane: bool = False) -> Outputs:
        self.batches.append(batch)
        self.entered.set()
        assert self.release.wait(10)
        if self.fail:
            raise RuntimeError("device lost")
        b = len(batch)
        return Outputs(batch[:, 0, 0, :2].copy(), np.zeros((b, 2, 2), np.float32))


def job(predictor: FakePredictor, value: float) -> Job:
    return Job(np.full((1, 2, 2), value, np.float32), predictor, None)


@pytest.fixture
def batcher():
    b = MicroBatcher(max_batch=8, max_delay=0.001)
    yield b
    b.close()


def test_jobs_of_two_versions_queued_together_never_share_a_pass(batcher):
    v1, v2 = FakePredictor(), FakePredictor()
    v2.release.set()
    first = batcher.submit(job(v1, 0.0))
    assert v1.entered.wait(10)  # the batcher is busy: the next jobs queue up together
    mixed = [batcher.submit(job(v1 if i % 2 else v2, float(i))) for i in range(1, 7)]
    threading.Timer(0.05, v1.release.set).start()
    results = [f.result(10) for f in [first, *mixed]]
    assert all(isinstance(r, BatchResult) for r in results)
    assert [len(b) for b in v1.batches] == [1, 3] and [len(b) for b in v2.batches] == [3]
    assert sorted(float(part[0, 0, 0]) for part in v1.batches[1]) == [1.0, 3.0, 5.0]
    for i, result in enumerate(results[1:], 1):  # each job gets its own row back
        assert float(result.outputs.probs[0, 0]) == float(i)


def test_a_failing_pass_fails_each_of_its_jobs_once_and_the_batcher_goes_on(batcher):
    broken, healthy = FakePredictor(fail=True), FakePredictor()
    healthy.release.set()
    futures = [batcher.submit(job(broken, float(i))) for i in range(3)]
    broken.release.set()
    for future in futures:
        with pytest.raises(RuntimeError, match="device lost"):
            future.result(10)
    assert batcher.submit(job(healthy, 1.0)).result(10).batch_size == 1


def test_a_cancelled_job_is_never_run(batcher):
    predictor = FakePredictor()
    first = batcher.submit(job(predictor, 0.0))
    assert predictor.entered.wait(10)
    gone: Future = batcher.submit(job(predictor, 1.0))
    kept = batcher.submit(job(predictor, 2.0))
    assert gone.cancel()  # the caller gave up while its job waited
    predictor.release.set()
    assert kept.result(10).batch_size == 1 and first.result(10).batch_size == 1
    assert [float(b[0, 0, 0, 0]) for b in predictor.batches] == [0.0, 2.0]


class Passes:
    """A predictor that answers at once and records the size of each pass."""

    lanes = 1

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def infer(self, batch: np.ndarray, lane: bool = False) -> Outputs:
        self.sizes.append(len(batch))
        return Outputs(batch[:, 0, 0, :2].copy(), np.zeros((len(batch), 2, 2), np.float32))


def test_a_frame_with_nothing_behind_it_runs_at_once_whatever_the_delay():
    predictor, b = Passes(), MicroBatcher(max_batch=8, max_delay=60.0, coming=lambda: 0)
    try:
        assert b.submit(job(predictor, 1.0)).result(timeout=10).batch_size == 1  # not 60 s later
    finally:
        b.close()
    assert predictor.sizes == [1]


def test_the_batcher_waits_for_frames_still_being_prepared():
    predictor, preparing = Passes(), [1]
    b = MicroBatcher(max_batch=8, max_delay=60.0, coming=lambda: preparing[0])
    try:
        first = b.submit(job(predictor, 1.0))
        assert not first.done()  # one more frame is on its way: the pass waits for it
        preparing[0] = 0  # it is prepared...
        second = b.submit(job(predictor, 2.0))  # ...and submitted: nothing else is coming, the pass runs
        assert first.result(timeout=10).batch_size == second.result(timeout=10).batch_size == 2
    finally:
        b.close()
    assert predictor.sizes == [2]


def test_a_call_runs_on_the_batchers_thread_between_passes(batcher):
    predictor, order = FakePredictor(), []
    first = batcher.submit(job(predictor, 0.0))
    assert predictor.entered.wait(10)  # busy: what follows queues up
    queued = batcher.submit(job(predictor, 1.0))
    call = batcher.call(lambda: order.append(("call", len(predictor.batches))) or threading.current_thread().name)
    behind = batcher.submit(job(predictor, 2.0))
    predictor.release.set()
    assert call.result(10) == "batcher"  # the thread that runs every pass
    assert order == [("call", 2)]  # after the job queued before it, before the one behind it
    assert [f.result(10).batch_size for f in (first, queued, behind)] == [1, 1, 1]
    failing = batcher.call(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    assert batcher.submit(job(predictor, 3.0)).result(10).batch_size == 1  # and the batcher goes on


class Laned:
    """A predictor with 2 lanes: records each pass (size, lane, thread, lanes busy beside it); with ``meet``, lane
    passes wait until both lanes are inside, so passes that did not run side by side fail the test."""

    lanes = 2

    def __init__(self, meet: bool = False) -> None:
        self.passes: list[tuple[int, bool, str, int]] = []
        self.values: list[float] = []  # the jobs run, by their value
        self.meet = threading.Barrier(2, timeout=10) if meet else None
        self.release = threading.Event()  # lane passes end once it is set
        self.release.set()
        self.busy = 0
        self._lock = threading.Lock()

    def infer(self, batch: np.ndarray, lane: bool = False) -> Outputs:
        with self._lock:
            self.passes.append((len(batch), lane, threading.current_thread().name, self.busy))
            self.values += [float(v) for v in batch[:, 0, 0, 0]]
            self.busy += lane
        if lane:
            if self.meet:
                self.meet.wait()
            assert self.release.wait(10)
            with self._lock:
                self.busy -= 1
        return Outputs(batch[:, 0, 0, :2].copy(), np.zeros((len(batch), 2, 2), np.float32))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_a_lone_frame_runs_on_all_threads_and_frames_in_flight_share_two_lanes_side_by_side():
    predictor, in_flight = Laned(meet=True), [1]
    b = MicroBatcher(max_batch=8, max_delay=0.0, coming=lambda: 0, lanes=2, in_flight=lambda: in_flight[0])
    try:
        assert b.submit(job(predictor, 0.0)).result(10).batch_size == 1  # alone in the service: one wide pass
        in_flight[0] = 4  # four cameras: 2 frames a lane, both lanes at once
        futures = [b.submit(job(predictor, float(i))) for i in range(1, 5)]
        results = [f.result(10) for f in futures]
    finally:
        b.close()
    wide, *lanes = predictor.passes
    assert wide == (1, False, "batcher", 0)
    assert sum(size for size, *_ in lanes) == 4 and all(size <= 2 for size, *_ in lanes)
    assert {lane for _, lane, *_ in lanes} == {True}
    assert {t for *_, t, _ in lanes} <= {"batcher-lane-0", "batcher-lane-1"}
    assert sorted(float(r.outputs.probs[0, 0]) for r in results) == [1.0, 2.0, 3.0, 4.0]


def test_a_frame_behind_busy_lanes_takes_the_next_free_one_and_a_pass_on_all_threads_runs_alone():
    laned, plain, in_flight = Laned(), Passes(), [3]
    laned.release.clear()
    b = MicroBatcher(max_batch=1, max_delay=0.0, coming=lambda: 0, lanes=2, in_flight=lambda: in_flight[0])
    try:
        held = [b.submit(job(laned, float(i))) for i in range(2)]  # one lane each, held inside their passes
        wait_until(lambda: laned.busy == 2)
        in_flight[0] = 1
        late = b.submit(job(laned, 2.0))  # alone now, but the lanes are busy: the first lane to be free takes it
        laned.release.set()
        assert [f.result(10).batch_size for f in (*held, late)] == [1, 1, 1]
        alone = b.submit(job(laned, 3.0))  # alone and the lanes idle: all the threads
        other = b.submit(job(plain, 5.0))  # a swap to a model without lanes: on the batcher's thread
        assert alone.result(10).batch_size == other.result(10).batch_size == 1
    finally:
        b.close()
    assert [p[:2] for p in laned.passes] == [(1, True), (1, True), (1, True), (1, False)]
    assert laned.passes[-1][2:] == ("batcher", 0)  # no lane was busy during the pass on all threads
    assert plain.sizes == [1]


def test_closing_answers_what_the_lanes_hold():
    predictor = Laned()
    b = MicroBatcher(max_batch=1, max_delay=0.0, coming=lambda: 0, lanes=2, in_flight=lambda: 2)
    futures = [b.submit(job(predictor, float(i))) for i in range(2)]
    b.close()
    assert all(f.done() and f.result().batch_size == 1 for f in futures)


def test_a_lone_frame_cut_into_tiles_shares_its_tiles_among_the_lanes():
    predictor, gate = Laned(meet=True), threading.Event()
    b = MicroBatcher(max_batch=8, max_delay=0.0, coming=lambda: 0, lanes=2, in_flight=lambda: 1)
    try:
        b.call(gate.wait)  # the batcher waits while the frame's 6 tiles are queued
        tiles = [Job(np.full((1, 2, 2), float(i), np.float32), predictor, None, parts=6) for i in range(6)]
        futures = [b.submit(tile) for tile in tiles]
        gate.set()
        assert [f.result(10).batch_size for f in futures] == [3] * 6
    finally:
        b.close()
    assert sorted(p[:2] for p in predictor.passes) == [(3, True), (3, True)]  # side by side: they met inside


def test_a_frame_cancelled_while_it_waits_for_a_lane_is_never_run():
    predictor = Laned()
    predictor.release.clear()
    b = MicroBatcher(max_batch=1, max_delay=0.0, coming=lambda: 0, lanes=2, in_flight=lambda: 3)
    try:
        held = [b.submit(job(predictor, float(i))) for i in range(2)]
        wait_until(lambda: predictor.busy == 2)  # both lanes busy: the next frame waits for one
        waiting = b.submit(job(predictor, 2.0))
        wait_until(lambda: b.depth() == 0)  # taken from the queue, waiting for a lane
        assert waiting.cancel()  # the caller gives up: still possible, it is not running
        predictor.release.set()
        assert [f.result(10).batch_size for f in held] == [1, 1]
        assert b.submit(job(predictor, 3.0)).result(10).batch_size == 1
    finally:
        b.close()
    assert sorted(predictor.values) == [0.0, 1.0, 3.0]  # never the cancelled frame
