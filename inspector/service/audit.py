"""The audit sink: rejected and review frames, and a sample of accepted ones, kept for people to review.

Frames are written by one background thread from a bounded queue, so inference never waits on the disk: when the
queue is full, the rate limit is reached, the disk quota is used up or a write fails, the frame is dropped and
counted, and inspection goes on. Layout::

    <dir>/index.jsonl                 one JSON line per kept frame (metadata and the model's answer)
    <dir>/frames/<YYYY-MM-DD>/<key>.<jpg|png|bmp>   the frame as received (raw frames as PNG)
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

from inspector.preprocess import decode

log = logging.getLogger(__name__)
INDEX_FILE = "index.jsonl"
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp"}


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
        self.used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
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

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self.on_result(self._write(*item))
            except Exception as err:  # noqa: BLE001 - a full or broken disk degrades the audit, not inference
                log.warning("audit write failed: %s", err)
                self.on_result("error")

    def _write(self, record: AuditRecord, data: bytes, encoding: str, width: int, height: int, stride: int) -> str:
        if encoding not in EXTENSIONS:  # raw pixels: keep them as a lossless PNG
            data = cv2.imencode(".png", decode(data, encoding, width, height, stride))[1].tobytes()
            encoding = "PNG"
        now = datetime.now(timezone.utc)
        line_budget = 2048
        if self.used + len(data) + line_budget > self.cfg.quota_bytes:
            return "dropped_quota"
        rel = Path("frames") / now.strftime("%Y-%m-%d") / f"{_key(record, now)}.{EXTENSIONS[encoding]}"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)
        record.received_at, record.image = now.isoformat(timespec="milliseconds"), str(rel)
        line = json.dumps(asdict(record)) + "\n"
        with open(self.root / INDEX_FILE, "a") as index:
            index.write(line)
        self.used += len(data) + len(line)
        return "written"
