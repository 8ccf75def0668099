"""The review queue over an audit folder: its frames newest first, filters, a frame's neighbours, and the summary of
what reviewers answered (how often the model was right, per label, and the escapes found among sampled accepts).

Plain Python over ``index.jsonl`` and ``reviews.jsonl``; no web library. A :class:`Folder` re-reads the two files only
when one of them changed (size, mtime or inode), so a page load on a folder of 100 000 frames costs one ``stat`` pair
unless the service kept a frame or somebody answered since.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from inspector.artifacts.audit_folder import INDEX_FILE, REVIEWS_FILE, latest_reviews, read_lines
from inspector.config import GOOD_CLASS
from inspector.errors import UsageError

REVIEWED = ("yes", "no")  # the values of the ``reviewed`` filter


@dataclass(frozen=True)
class Filters:
    """What the queue shows; an empty value lets every frame through. The names are the pages' query parameters."""

    verdict: str = ""
    camera: str = ""  # the record's camera_id
    defect_class: str = ""
    model_version: str = ""  # "name/version"
    reviewed: str = ""  # "yes", "no" or "" (both)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        """The filters among ``query`` (a page's query parameters; other keys are ignored).

        Raises:
            UsageError: ``reviewed`` is neither ``yes``, ``no`` nor empty.
        """
        values = {f.name: str(query.get(f.name) or "") for f in fields(cls)}
        if values["reviewed"] not in ("", *REVIEWED):
            raise UsageError(f"reviewed must be yes or no, got {values['reviewed']!r}")
        return cls(**values)

    def admit(self, record: dict, answer: dict | None) -> bool:
        """Whether the frame ``record`` (with its latest ``answer``, or None) passes every filter."""
        return ((not self.verdict or record.get("verdict") == self.verdict)
                and (not self.camera or record.get("camera_id") == self.camera)
                and (not self.defect_class or record.get("defect_class") == self.defect_class)
                and (not self.model_version or record.get("model_version") == self.model_version)
                and (not self.reviewed or (answer is not None) == (self.reviewed == "yes")))


@dataclass(frozen=True)
class Snapshot:
    """The audit folder as read at one moment."""

    frames: list[dict]  # index records with an ``image``, newest first
    by_image: dict[str, int]  # image path -> its position in ``frames``
    answers: dict[str, dict]  # image path -> its latest review line
    unreadable: int  # lines of the two files that were torn or not a record

    def answer(self, image: str) -> dict | None:
        return self.answers.get(image)


def read_snapshot(root: Path) -> Snapshot:
    """Reads ``root``'s index and reviews (the last index line for an image wins, as the last answer does)."""
    records, skipped = read_lines(root / INDEX_FILE)
    answers, unreadable = latest_reviews(root)
    latest: dict[str, tuple[int, dict]] = {}
    for order, record in enumerate(records):
        if isinstance(record.get("image"), str) and record["image"]:
            latest[record["image"]] = (order, record)
        else:
            skipped += 1
    # newest first: by the time the service received the frame, then by the order of the lines
    ranked = sorted(latest.values(), key=lambda item: (str(item[1].get("received_at") or ""), item[0]), reverse=True)
    frames = [record for _, record in ranked]
    return Snapshot(frames, {r["image"]: i for i, r in enumerate(frames)}, answers, skipped + unreadable)


class Folder:
    """An audit folder whose snapshot is re-read only when ``index.jsonl`` or ``reviews.jsonl`` changed; threads may
    share one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._snapshot: Snapshot | None = None

    def _stamp(self) -> tuple:
        stamps = []
        for name in (INDEX_FILE, REVIEWS_FILE):
            try:
                st = (self.root / name).stat()
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def snapshot(self) -> Snapshot:
        with self._lock:
            key = self._stamp()
            if self._snapshot is None or key != self._key:
                self._snapshot, self._key = read_snapshot(self.root), key
            return self._snapshot


def labels(record: dict) -> list[str]:
    """The labels a reviewer may give ``record``: ``good`` first, then the classes the model knows (its
    ``class_scores`` keys, in their order), and the model's own label should it be none of these (``anomaly``)."""
    found = [GOOD_CLASS]
    scores = record.get("class_scores")
    for name in [*(scores if isinstance(scores, dict) else ()), record.get("label")]:
        if isinstance(name, str) and name and name not in found:
            found.append(name)
    return found


def select(snapshot: Snapshot, filters: Filters) -> list[dict]:
    """The frames that pass ``filters``, newest first, each the index record plus ``answer`` (its latest review line,
    or None)."""
    return [{**record, "answer": snapshot.answer(record["image"])} for record in snapshot.frames
            if filters.admit(record, snapshot.answer(record["image"]))]


def options(snapshot: Snapshot) -> dict[str, list[str]]:
    """The values each filter can take in this folder (sorted), for the pages' ``<select>`` lists."""
    keys = {"verdict": "verdict", "camera": "camera_id", "defect_class": "defect_class",
            "model_version": "model_version"}
    return {name: sorted({str(r[key]) for r in snapshot.frames if r.get(key) not in (None, "")})
            for name, key in keys.items()}


def neighbours(snapshot: Snapshot, image: str, filters: Filters) -> dict:
    """Where ``image`` stands in the queue ``filters`` make: the frames before and after it (None at an end), the
    next one without an answer (after it, else from the top; None when every other frame has one), its 1-based
    position (None when the filters leave it out, as ``reviewed=no`` does once it is answered) and the queue's length.

    Raises:
        KeyError: ``image`` is not a frame of the folder.
    """
    at = snapshot.by_image[image]
    admitted = [i for i, r in enumerate(snapshot.frames) if filters.admit(r, snapshot.answer(r["image"]))]
    before = [i for i in admitted if i < at]
    after = [i for i in admitted if i > at]
    waiting = next((i for i in after + before if snapshot.answer(snapshot.frames[i]["image"]) is None), None)

    def name(i: int | None) -> str | None:
        return None if i is None else snapshot.frames[i]["image"]

    return {"prev": name(before[-1] if before else None), "next": name(after[0] if after else None),
            "next_unreviewed": name(waiting), "position": admitted.index(at) + 1 if at in admitted else None,
            "count": len(admitted)}


def summary(snapshot: Snapshot, filters: Filters = Filters()) -> dict:
    """What reviewers said about the model, over the frames ``filters`` admit.

    Returns:
        ``total`` frames and how many were ``reviewed``; ``agreement``: one row per label the model gave
        (``good`` first), with the ``answers`` reviewers gave such frames, how many ``confirmed`` the model's label,
        how many ``relabelled`` it, and ``agreement`` = confirmed / answers; ``escapes``: the accepted frames (the
        sampled accepts) a reviewer labelled a defect, as ``count`` and ``frames`` (image, camera_id, frame_id,
        model_label, label), newest first; ``unreadable_lines`` of the two files.
    """
    rows: dict[str, dict] = {}
    escapes, total, reviewed = [], 0, 0
    for record in snapshot.frames:
        answer = snapshot.answer(record["image"])
        if not filters.admit(record, answer):
            continue
        total += 1
        if answer is None:
            continue
        reviewed += 1
        model_label = str(record.get("label") or "")
        row = rows.setdefault(model_label, {"label": model_label, "answers": 0, "confirmed": 0, "relabelled": 0})
        row["answers"] += 1
        row["confirmed" if answer["label"] == model_label else "relabelled"] += 1
        if record.get("verdict") == "ACCEPT" and answer["label"] != GOOD_CLASS:
            escapes.append({"image": record["image"], "camera_id": record.get("camera_id", ""),
                            "frame_id": record.get("frame_id", ""), "model_label": model_label,
                            "label": answer["label"]})
    agreement = [{**row, "agreement": row["confirmed"] / row["answers"]}
                 for _, row in sorted(rows.items(), key=lambda item: (item[0] != GOOD_CLASS, item[0]))]
    return {"total": total, "reviewed": reviewed, "agreement": agreement,
            "escapes": {"count": len(escapes), "frames": escapes}, "unreadable_lines": snapshot.unreadable}
