"""The audit sink: rejected and review frames, and a sample of accepted ones, kept for people to review.

Frames are written by one background thread from a bounded queue, so inference never waits on the disk: when the
queue is full, the rate limit is reached, the disk quota is used up or a write fails, the frame is dropped and
counted, and inspection goes on. The folder's layout is :mod:`inspector.artifacts.audit_folder`'s: the frame as
received, the model's mask and anomaly map beside it, one index line per frame.

A crash or a full disk leaves only whole records: a frame is written under a temporary name and renamed when
complete (removed when not), and its index line is appended after it in one write; a line torn part-way is cut back
off, and a line that still ends torn (a crash) is followed by a fresh line, never glued to. ``read_lines`` skips
such a torn line. Failed writes are logged at most once a minute, with how many frames were dropped since, so a
full disk does not flood the log; writing resumes by itself once the disk has room.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from inspector.artifacts.audit_folder import INDEX_FILE, PARTIAL_SUFFIX, append_line, write_file
from inspector.imaging.preprocess import EXTENSIONS as FILE_EXTENSIONS
from inspector.imaging.preprocess import decode
from inspector.inference.postprocess import anomaly_pixels, mask_pixels

log = logging.getLogger(__name__)
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp"}
WARN_INTERVAL_S = 60.0  # at most one warning about failed writes this often


@dataclass(frozen=True)
class AuditConfig:
    directory: str
    sample_accept: float = 0.01  # share of accepted frames kept
    quota_bytes: int = 1 << 30  # disk the sink may use
    max_per_second: float = 20.0  # frames written per second at most
    queue_frames: int = 256  # frames waiting for the writer at most


@dataclass
class AuditRecord:
    camera_id: str
    frame_id: str
    verdict: str
    label: str
    defect_class: str
    defect_score: float
    class_scores: dict[str, float]
    regions: list[dict]
    model_version: str
    anomaly_score: float | None = None  # models with an anomaly head
    by_anomaly: bool = False
    capture_time: str = ""  # the camera's, when the request carried one (ISO 8601, UTC)
    received_at: str = ""
    image: str = ""  # path relative to the audit directory
    mask: str = ""  # the model's mask beside the frame, when it marked any pixel
    anomaly_map: str = ""  # the anomaly map beside the frame, anomaly models


@dataclass
class Maps:
    """What the model saw in a kept frame, at the frame's size; encoded by the writer thread, not the caller."""

    mask: np.ndarray | None = None  # defect probabilities
    mask_threshold: float = 0.5
    anomaly: np.ndarray | None = None  # anomaly map (1.0 = the reference)


def _key(record: AuditRecord, now: datetime) -> str:
    """``<time>_<camera>_<frame id>``, safe as a file name, without an image extension the frame id carries (the
    file gets its own: ``a.png`` is kept as ``..._a.png``, not ``..._a.png.png``)."""
    frame = record.frame_id or "frame"
    stem, dot, ext = frame.rpartition(".")
    frame = stem if dot and stem and f".{ext.lower()}" in FILE_EXTENSIONS else frame
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{record.camera_id or 'cam'}_{frame}")[:80]
    return f"{now.strftime('%H%M%S%f')}_{safe}"


class _FailureLog:
    """Failed writes, logged at most once per ``interval`` s with the count since the last line: a full disk fails
    every frame, and one line per frame would flood the log the operator needs to find the cause. The line saying
    writing works again shares that budget (a nearly full disk alternates between the two)."""

    def __init__(self, interval: float = WARN_INTERVAL_S) -> None:
        self.interval = interval
        self.dropped = 0  # since the last line
        self.failing = False  # failures not yet followed by a "writing again" line
        self._next_at = 0.0  # monotonic s

    def _may_log(self) -> bool:
        now = time.monotonic()
        if now < self._next_at:
            return False
        self._next_at = now + self.interval
        return True

    def failed(self, err: Exception) -> None:
        self.dropped += 1
        self.failing = True
        if self._may_log():
            log.warning("audit: %d frame(s) dropped since the last warning, the last because %s; inspection goes on, "
                        "and frames are kept again once the disk has room", self.dropped, err)
            self.dropped = 0

    def succeeded(self) -> None:
        if self.failing and self._may_log():
            log.warning("audit: writing frames again (%d more dropped since the last warning)", self.dropped)
            self.dropped, self.failing = 0, False


class AuditSink:
    """Keeps frames for review without ever blocking the caller.

    Args:
        cfg: Where and how much.
        on_result: Called with ``written``, ``sampled_out``, ``dropped_queue``, ``dropped_rate``, ``dropped_quota``
            or ``error`` for every frame offered (for metrics).
    """

    def __init__(self, cfg: AuditConfig, on_result: Callable[[str], None] = lambda result: None) -> None:
        self.cfg = cfg
        self.root = Path(cfg.directory)
        self.root.mkdir(parents=True, exist_ok=True)
        self.on_result = on_result
        self.used = self._sweep()
        self._failures = _FailureLog()
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_frames)
        self._tokens, self._last = cfg.max_per_second, time.monotonic()
        self._random = random.Random(0)
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()

    def offer(self, record: AuditRecord, data: bytes, encoding: str, width: int = 0, height: int = 0,
              stride: int = 0, maps: Maps | None = None) -> None:
        """Queues a frame (and what the model saw in it) if its verdict or the accept sample asks; never blocks."""
        if record.verdict == "ACCEPT" and self._random.random() >= self.cfg.sample_accept:
            self.on_result("sampled_out")
            return
        if not self._take_token():
            self.on_result("dropped_rate")
            return
        try:
            self._queue.put_nowait((record, data, encoding, width, height, stride, maps or Maps()))
        except queue.Full:
            self.on_result("dropped_queue")

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.cfg.max_per_second, self._tokens + (now - self._last) * self.cfg.max_per_second)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued, then stops."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _sweep(self) -> int:
        """Removes frames a crash left half-written; returns the bytes the sink's files use."""
        used = 0
        for path in self.root.rglob("*"):
            if path.name.endswith(PARTIAL_SUFFIX):
                path.unlink(missing_ok=True)
            elif path.is_file():
                used += path.stat().st_size
        return used

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                result = self._write(*item)
            except Exception as err:  # noqa: BLE001 - a full or broken disk degrades the audit, not inference
                self._failures.failed(err)
                result = "error"
            else:
                if result == "written":
                    self._failures.succeeded()
            self.on_result(result)

    def _write(self, record: AuditRecord, data: bytes, encoding: str, width: int, height: int, stride: int,
               maps: Maps) -> str:
        if encoding not in EXTENSIONS:  # raw pixels: keep them as a lossless PNG
            data = cv2.imencode(".png", decode(data, encoding, width, height, stride))[1].tobytes()
            encoding = "PNG"
        now = datetime.now(timezone.utc)
        key = Path("frames") / now.strftime("%Y-%m-%d") / _key(record, now)
        files = {f"{key}.{EXTENSIONS[encoding]}": data, **_map_files(key, maps)}
        size, line_budget = sum(map(len, files.values())), 2048
        if self.used + size + line_budget > self.cfg.quota_bytes:
            return "dropped_quota"
        written = []
        try:
            for rel, content in files.items():
                write_file(self.root / rel, content)
                written.append(rel)
            record.received_at, record.image = now.isoformat(timespec="milliseconds"), written[0]
            record.mask = next((r for r in written if r.endswith(".mask.png")), "")
            record.anomaly_map = next((r for r in written if r.endswith(".anomaly.png")), "")
            line = (json.dumps(asdict(record)) + "\n").encode()
            append_line(self.root / INDEX_FILE, line)
        except OSError:
            for rel in written:  # unindexed files would only take space
                (self.root / rel).unlink(missing_ok=True)
            raise
        self.used += size + len(line)
        return "written"


def _map_files(key: Path, maps: Maps) -> dict[str, bytes]:
    """The PNGs of the model's mask (when it marked a pixel) and anomaly map, by their paths beside the frame."""
    files = {}
    if maps.mask is not None:
        mask = mask_pixels(maps.mask, maps.mask_threshold)
        if mask.any():
            files[f"{key}.mask.png"] = cv2.imencode(".png", mask)[1].tobytes()
    if maps.anomaly is not None:
        files[f"{key}.anomaly.png"] = cv2.imencode(".png", anomaly_pixels(maps.anomaly))[1].tobytes()
    return files
