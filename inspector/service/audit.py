"""The audit sink: rejected and review frames, and a sample of accepted ones, kept for people to review.

Frames are written by one background thread from a bounded queue, so inference never waits on the disk: when the
queue is full, the rate limit is reached, the disk quota is used up or a write fails, the frame is dropped and
counted, and inspection goes on. Layout::

    <dir>/index.jsonl                 one JSON line per kept frame (metadata and the model's answer)
    <dir>/frames/<YYYY-MM-DD>/<key>.<jpg|png|bmp>   the frame as received (raw frames as PNG)

A crash or a full disk leaves only whole records: a frame is written under a temporary name and renamed when
complete (removed when not), and its index line is appended after it in one write; a line torn part-way is cut back
off, and a line that still ends torn (a crash) is followed by a fresh line, never glued to. :func:`read_index` skips
such a torn line. Failed writes are logged at most once a minute, with how many frames were dropped since, so a
full disk does not flood the log; writing resumes by itself once the disk has room.
"""

from __future__ import annotations

import errno
import json
import logging
import os
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

from inspector.imaging.preprocess import decode

log = logging.getLogger(__name__)
INDEX_FILE = "index.jsonl"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp"}
PARTIAL_SUFFIX = ".part"  # a frame being written; removed on failure, and on start after a crash
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
    received_at: str = ""
    image: str = ""  # path relative to the audit directory


def _key(record: AuditRecord, now: datetime) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{record.camera_id or 'cam'}_{record.frame_id or 'frame'}")[:80]
    return f"{now.strftime('%H%M%S%f')}_{safe}"


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` (``os.write`` errors name no file), so the warning says where the disk failed."""
    if err.filename is None:
        err.filename = str(path)
    return err


def write_frame(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` under a temporary name, renamed when complete: a reader never sees a partial
    frame, and a failed write (a full disk) leaves nothing behind."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise _named(err, partial) from None


def append_line(path: Path, line: bytes) -> None:
    """Appends one ``\\n``-terminated ``line`` to ``path`` so that the file holds only whole lines afterwards.

    The line goes out in as few writes as the OS allows (one, unless the disk fills up part-way); when a write fails
    part-way the file is cut back to where the line began. Should that fail too, or a crash have left a torn last
    line, the next line starts on a line of its own: a record is never glued to a torn one.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: the last byte
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        if start and os.pread(fd, 1, start - 1) != b"\n":
            line = b"\n" + line  # a torn tail (a crash, or a cut back that failed): start afresh
        view = memoryview(line)
        try:
            while view:
                written = os.write(fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError as err:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # the next line starts on a fresh line instead
            raise _named(err, path) from None
    finally:
        os.close(fd)


def read_index(path: Path) -> tuple[list[dict], int]:
    """The JSON object lines of an index (or reviews) file, and how many lines were skipped as unreadable.

    A line that is not a JSON object was torn by a crash or a full disk (or glued to such a line by an older writer):
    it is skipped, not fatal, so one bad line does not make a whole audit folder unusable.
    """
    if not path.is_file():
        return [], 0
    records, skipped = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # UnicodeDecodeError too
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


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
              stride: int = 0) -> None:
        """Queues a frame if its verdict (or the accept sample) asks for it; never blocks."""
        if record.verdict == "ACCEPT" and self._random.random() >= self.cfg.sample_accept:
            self.on_result("sampled_out")
            return
        if not self._take_token():
            self.on_result("dropped_rate")
            return
        try:
            self._queue.put_nowait((record, data, encoding, width, height, stride))
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

    def _write(self, record: AuditRecord, data: bytes, encoding: str, width: int, height: int, stride: int) -> str:
        if encoding not in EXTENSIONS:  # raw pixels: keep them as a lossless PNG
            data = cv2.imencode(".png", decode(data, encoding, width, height, stride))[1].tobytes()
            encoding = "PNG"
        now = datetime.now(timezone.utc)
        line_budget = 2048
        if self.used + len(data) + line_budget > self.cfg.quota_bytes:
            return "dropped_quota"
        rel = Path("frames") / now.strftime("%Y-%m-%d") / f"{_key(record, now)}.{EXTENSIONS[encoding]}"
        write_frame(self.root / rel, data)
        record.received_at, record.image = now.isoformat(timespec="milliseconds"), str(rel)
        line = (json.dumps(asdict(record)) + "\n").encode()
        try:
            append_line(self.root / INDEX_FILE, line)
        except OSError:
            (self.root / rel).unlink(missing_ok=True)  # an unindexed frame would only take space
            raise
        self.used += len(data) + len(line)
        return "written"
