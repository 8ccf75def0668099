"""Which model answers: loading, warm-up, hot swap on admin calls or store changes, threshold overrides.

A new version is loaded beside the current one and warmed up before a single reference assignment makes it
current, so no request sees a half-loaded model; a version that fails to load leaves the current one serving.

The store watcher survives whatever it reads: an unusable ACTIVE pointer or a version that fails to load is
logged once (naming the file) and the current model keeps serving, with its threshold overrides. A failed version
is not retried on every poll, only when ACTIVE is written again (``inspector models promote``, even of the same
version once fixed).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable

from inspector.artifacts.bundle import check_identity
from inspector.config import Thresholds
from inspector.inference.drift import DriftMonitor
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor
from inspector.memory import settle_heap
from inspector.artifacts.store import (ACTIVE_FILE, PROMOTE_HINT, StoreError, active_version, clean_stale, previous_version,
                             promote, rollback, version_dir)

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """No model is loaded yet."""


def _pointer_key(model_dir: Path) -> tuple[int, int, int] | None:
    """Identifies one write of ACTIVE (inode, mtime, size): ``promote`` replaces the file, so even re-promoting the
    same version gives a new key; None when there is no ACTIVE."""
    try:
        st = os.stat(model_dir / ACTIVE_FILE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class ModelManager:
    """Holds the serving :class:`Predictor`.

    Args:
        model_dir: ``<store>/<name>``: serve its active version; admin calls and store changes swap versions.
        bundle: Alternatively a fixed bundle folder (no swaps).
        device: Torch device for the predictors.
        backend: ``eager``, ``torchscript`` or ``onnx`` (each version's export).
        options: Tiling and region of interest (:class:`InferenceOptions`) of every version's predictor.
        max_batch: The batcher's largest batch: each version is warmed at every batch shape it will run.
        cuda_graphs: Each version's network replayed as CUDA graphs (``Predictor(cuda_graphs=True)``).
        warm_on: Runs a version's warm-up (a function) where its forward passes will run; None: on the loading thread.
        lanes: Lanes each version opens (:meth:`Predictor.open_lanes`; the batcher's).
        settle: After the first load, freeze the process's heap (:func:`~inspector.memory.settle_heap`), so that
            Python's full collections mid-stream walk only what is newer; for a serving process (``inspector serve``).
            Only then: a later swap would freeze the frames in flight with it, and the old model they hold.
        on_swap: Called with ``"success"`` and the new predictor, or ``"failure"`` and None, after each swap.
    """

    def __init__(self, model_dir: Path | None = None, bundle: Path | None = None, device: str = "auto",
                 on_swap: Callable[[str, Predictor | None], None] | None = None, backend: str = "eager",
                 options: InferenceOptions = InferenceOptions(), max_batch: int = 8,
                 cuda_graphs: bool = False, warm_on: Callable[[Callable[[], None]], object] | None = None,
                 lanes: int = 1, settle: bool = False) -> None:
        if (model_dir is None) == (bundle is None):
            raise ValueError("serve either a model of a store or one bundle")
        self.model_dir = Path(model_dir) if model_dir else None
        self.bundle_path = Path(bundle) if bundle else None
        self.device = device
        self.backend = backend
        self.options = options
        self.max_batch = max_batch
        self.cuda_graphs = cuda_graphs
        self.lanes = lanes
        self.settle = settle
        self.warm_on = warm_on or (lambda warm: warm())
        self.on_swap = on_swap or (lambda result, predictor: None)
        self._current: Predictor | None = None
        self.drift = DriftMonitor({})  # replaced with each swap: the new model's validation reference
        self._override: Thresholds | None = None
        self._swap_lock = threading.RLock()  # one swap at a time; store polling waits for admin swaps
        self._failed: tuple[int, int, int] | None = None  # the ACTIVE write whose version failed to load
        self._problem: str | None = None  # the unusable ACTIVE last logged, so each is logged once
        self._stop = threading.Event()

    @property
    def current(self) -> Predictor:
        predictor = self._current
        if predictor is None:
            raise ModelUnavailable("the model is still loading")
        return predictor

    @property
    def ready(self) -> bool:
        return self._current is not None

    def thresholds(self, predictor: Predictor) -> Thresholds:
        return self._override or predictor.thresholds

    def set_thresholds(self, thresholds: Thresholds) -> Thresholds:
        self._override = thresholds
        return thresholds

    def _build(self, path: Path) -> Predictor:
        predictor = Predictor.from_bundle(path, self.device, backend=self.backend, options=self.options,
                                          cuda_graphs=self.cuda_graphs)
        predictor.open_lanes(self.lanes)
        self.warm_on(lambda: predictor.warm_up(self.max_batch))
        return predictor

    def _swap(self, path: Path, before_switch: Callable[[], None] = lambda: None) -> Predictor:
        with self._swap_lock:
            try:
                predictor = self._build(path)
                if self.model_dir is not None:  # a store version must be what its folder says
                    check_identity(predictor.bundle, self.model_dir.name, path.name)
                before_switch()
                if self.settle and self._current is None:  # before serving: no frame's objects are frozen with it
                    log.info("heap settled after loading %s: %d objects frozen", predictor.version, settle_heap())
            except Exception:
                self.on_swap("failure", None)
                raise
            self._current, self._override = predictor, None
            self.drift = DriftMonitor(predictor.bundle.meta.reference or {})
            self.on_swap("success", predictor)
            log.info("serving %s", predictor.version)
            return predictor

    def load(self) -> Predictor:
        """Loads the initial model (the store's active version, or the fixed bundle)."""
        if self.bundle_path is not None:
            return self._swap(self.bundle_path)
        for name in clean_stale(self.model_dir):
            log.warning("removed %s left in %s by an interrupted write", name, self.model_dir)
        key = _pointer_key(self.model_dir)
        try:
            version = active_version(self.model_dir)
            if version is None:
                raise StoreError(f"{self.model_dir / ACTIVE_FILE} is missing or empty; {PROMOTE_HINT}")
            return self._swap(self.model_dir / version)
        except Exception as err:
            self._problem, self._failed = str(err), key  # the caller logs it; the watcher need not again
            raise

    def _version_dir(self, version: str) -> Path:
        if self.model_dir is None:
            raise ValueError("serving a single bundle: there is no store to choose versions from")
        return version_dir(self.model_dir, version)  # never a path: only the store's own version folders

    def activate(self, version: str) -> Predictor:
        """Loads and warms ``version``, makes it active in the store, then switches to it."""
        path = self._version_dir(version)
        return self._swap(path, before_switch=lambda: promote(self.model_dir, version))

    def rollback(self) -> Predictor:
        """Switches back to the version active before the current one."""
        if self.model_dir is None:
            raise ValueError("serving a single bundle: nothing to roll back to")
        previous = previous_version(self.model_dir)
        return self._swap(self.model_dir / previous, before_switch=lambda: rollback(self.model_dir))

    def _report(self, problem: str, serving: str) -> None:
        """Logs a store problem once, not on every poll that meets it again."""
        if problem != self._problem:
            self._problem = problem
            log.error("%s (still serving %s)", problem, serving)

    def sync_with_store(self) -> bool:
        """Swaps to the store's active version if it changed (e.g. ``inspector models promote``).

        Never raises: a problem is logged once and the current model keeps serving.
        """
        if self.model_dir is None:
            return False
        with self._swap_lock:  # an admin swap writes ACTIVE just before switching: never race it
            current = self._current.bundle.version if self._current else None
            serving = self._current.version if self._current else "nothing"
            key = _pointer_key(self.model_dir)  # before reading: a newer write then gets a new key and a new try
            try:
                version = active_version(self.model_dir)
            except Exception as err:  # noqa: BLE001 - unreadable, undecodable or wrong: keep serving, say it once
                self._report(str(err), serving)
                return False
            self._problem = None
            if version is None or version == current or key == self._failed:
                return False
            try:
                self._swap(self.model_dir / version)
            except Exception as err:  # noqa: BLE001 - a bad bundle must never stop the service
                self._failed = key  # tried once per write of ACTIVE, so logged once per write too
                log.error("cannot switch to %s/%s, still serving %s: %s", self.model_dir.name, version, serving, err)
                return False
            self._failed = None
            return True

    def watch(self, interval: float) -> threading.Thread:
        """Polls the store every ``interval`` seconds on a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(interval):
                self.sync_with_store()

        thread = threading.Thread(target=loop, name="store-watch", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

