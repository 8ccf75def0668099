"""The serving process's heap: a replaced model is freed at once, and the first load's heap is frozen out of the
cyclic collector's full collections."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from contextlib import contextmanager
from typing import Iterator

from inspector.inference.predictor import Predictor
from inspector.service.models import ModelManager


@contextmanager
def collector_off() -> Iterator[None]:
    """Only reference counting frees objects in the block (an object in a cycle stays)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def thawed() -> Iterator[None]:
    """Whatever the block freezes goes back to the collector after it (this process runs other tests)."""
    try:
        yield
    finally:
        gc.unfreeze()


def test_a_predictor_holds_no_reference_cycle_and_is_freed_when_dropped(tiny_bundle):
    predictor = Predictor.from_bundle(tiny_bundle, "cpu")
    predictor.open_lanes(2)
    predictor.warm_up(2)
    gone = weakref.ref(predictor)
    with collector_off():
        del predictor
        assert gone() is None, "a swapped-out model would wait for a full collection (or forever, once frozen)"


SETTLE = """
import gc, weakref
from inspector.memory import settle_heap

kept = [[] for _ in range(1000)]  # objects the collector tracks
frozen = settle_heap()
assert frozen >= 1000 and gc.get_freeze_count() == frozen, frozen
assert not any(o is kept[0] for o in gc.get_objects())  # frozen: in no generation the collector walks

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the freeze is still the collector's
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None
print(frozen)
"""


def test_settle_heap_freezes_what_is_alive_and_later_cycles_are_still_collected():
    done = subprocess.run([sys.executable, "-c", SETTLE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 1000


def test_the_first_load_settles_the_heap_and_a_swap_frees_the_old_model_without_freezing_again(line_store, caplog):
    caplog.set_level("INFO", logger="inspector.service.models")
    models = ModelManager(model_dir=line_store, device="cpu", settle=True, max_batch=2)
    with thawed():
        first = weakref.ref(models.load())
        frozen = gc.get_freeze_count()
        assert frozen > 0 and any("heap settled after loading line/v1" in r.getMessage() for r in caplog.records)
        with collector_off():
            assert models.activate("v2").version == "line/v2"
            assert first() is None, "the frozen first model must be freed by reference counting alone"
        # fewer: the first model's objects left the frozen set, and the new one's were not frozen (a swap under load
        # would freeze the frames in flight with it)
        assert gc.get_freeze_count() < frozen
    models.stop()


def test_without_settle_nothing_is_frozen(line_store):
    models = ModelManager(model_dir=line_store, device="cpu", max_batch=2)
    with thawed():
        models.load()
        assert gc.get_freeze_count() == 0
    models.stop()
