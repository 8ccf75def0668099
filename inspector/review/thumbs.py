"""Thumbnails of audit frames: a JPEG at most ``MAX_SIDE`` px on its longer side, made with OpenCV and kept in memory.

Frames can be megapixels; the queue page shows hundreds of them, so it loads these instead (a few kB each). The
cache is keyed by path, size and modification time, so a rewritten file gets a new thumbnail, and holds at most
``CACHE_ITEMS`` of them (least recently used out first: ~5 kB each, ~10 MB in all).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2

MAX_SIDE = 160  # px
CACHE_ITEMS = 2048
JPEG_QUALITY = 80


def thumbnail_jpeg(path: Path, max_side: int = MAX_SIDE) -> bytes | None:
    """The JPEG thumbnail of the image at ``path``, or None when it is not a decodable image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # (h, w, 3) BGR; 16-bit and grey frames become 8-bit BGR
    if image is None:
        return None
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return data.tobytes() if ok else None


class Thumbnails:
    """A thread-safe LRU cache of :func:`thumbnail_jpeg` results."""

    def __init__(self, max_items: int = CACHE_ITEMS) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> bytes | None:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = thumbnail_jpeg(path)  # outside the lock: other thumbnails are made meanwhile
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data
