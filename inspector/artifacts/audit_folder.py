"""The audit folder on disk: the service keeps frames in it, reviewers answer in it, ``inspector audit export`` and
``inspector review`` read it. Layout::

    <dir>/index.jsonl                          one JSON line per kept frame (the model's answer)
    <dir>/frames/<YYYY-MM-DD>/<key>.<jpg|png|bmp>      the frame as received (raw frames as PNG)
    <dir>/frames/<YYYY-MM-DD>/<key>.mask.png    the model's mask (255 = defect), when it marked any pixel
    <dir>/frames/<YYYY-MM-DD>/<key>.anomaly.png the anomaly map (128 = the good-part reference), anomaly models
    <dir>/reviews.jsonl                         one JSON line per reviewer's answer; the last for a frame wins
    <dir>/reviews/masks/<YYYY-MM-DD>/<key>.<n>.png  the masks reviewers painted (255 = defect), one per answer

Files are written under a temporary name and renamed when complete; lines are appended whole (a torn line is cut
back, or skipped on reading). Answers of several reviewers, threads or processes, are appended under a file lock,
so each is in the file once and whole.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

INDEX_FILE = "index.jsonl"
REVIEWS_FILE = "reviews.jsonl"
REVIEW_MASKS = Path("reviews") / "masks"
PARTIAL_SUFFIX = ".part"  # a file being written; removed on failure, and by the sink on start after a crash
MODEL_MASK, NO_MASK = "model", "none"  # a review's ``mask``: the model's kept, erased, or a painted file's path
_LOCK = threading.Lock()  # flock is per open file: threads of one process need their own lock too


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` (``os.write`` errors name no file), so the warning says where the disk failed."""
    if err.filename is None:
        err.filename = str(path)
    return err


def write_file(path: Path, data: bytes) -> None:
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


def read_lines(path: Path) -> tuple[list[dict], int]:
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


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` when it is a file inside ``root`` (no ``..``, no absolute path, no link out); else None."""
    if not relative or Path(relative).is_absolute():
        return None
    root = root.resolve()
    path = (root / relative).resolve()
    return path if root in path.parents and path.is_file() else None


@dataclass
class Review:
    """A reviewer's answer for one kept frame: one line of ``reviews.jsonl``.

    ``mask`` is ``model`` (the model's mask is right), ``none`` (no defect pixels marked: erased, or a good part) or
    the path of a painted mask under ``reviews/masks/``. Lines of older versions hold only ``image`` and ``label``.
    """

    image: str  # the frame's path, as in index.jsonl
    label: str  # good, or a defect class
    mask: str = MODEL_MASK
    reviewer: str = ""
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="milliseconds"))


@contextmanager
def _reviews_locked(root: Path) -> Iterator[None]:
    with _LOCK, open(root / (REVIEWS_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_review(root: Path, review: Review, painted_png: bytes | None = None) -> Review:
    """Saves ``review`` (and its painted mask first, when given: ``review.mask`` is set to its path).

    The mask file is complete before the line that names it is written, and the line is appended whole under a lock
    that other threads and processes take too.
    """
    with _reviews_locked(root):
        if painted_png is not None:
            image = Path(review.image)
            folder = REVIEW_MASKS / image.parent.name  # the frame's day
            taken = len(list((root / folder).glob(f"{image.stem}.*.png"))) if (root / folder).is_dir() else 0
            relative = folder / f"{image.stem}.{taken}.png"  # one file per answer: earlier answers stay readable
            write_file(root / relative, painted_png)
            review.mask = str(relative)
        append_line(root / REVIEWS_FILE, (json.dumps(asdict(review)) + "\n").encode())
    return review


def latest_reviews(root: Path) -> tuple[dict[str, dict], int]:
    """The last answer for each frame (by its ``image``), and how many lines were unreadable."""
    lines, skipped = read_lines(root / REVIEWS_FILE)
    latest: dict[str, dict] = {}
    for line in lines:
        if isinstance(line.get("image"), str) and isinstance(line.get("label"), str):
            latest[line["image"]] = line
        else:
            skipped += 1
    return latest, skipped


def reviewed_mask(record: dict, review: dict) -> str | None:
    """The path (relative to the folder) of the mask a review stands for, or None for no marked pixel.

    A painted mask is its file; ``model`` is the model's mask; a line without ``mask`` (older versions) keeps the
    model's mask when the reviewer confirmed the model's label. A good part has none.
    """
    if review["label"] == "good":
        return None
    mask = review.get("mask", MODEL_MASK if review["label"] == record.get("label") else NO_MASK)
    if mask == MODEL_MASK:
        return record.get("mask") or None
    return None if mask == NO_MASK else mask
