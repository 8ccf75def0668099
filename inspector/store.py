"""The model store: ``<store>/<name>/<version>/`` bundles and an ``ACTIVE`` pointer per model name.

The pointer is a one-line file replaced atomically (write a temporary file, then ``os.replace``), so a reader
sees either the old or the new version, never a mix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACTIVE_FILE = "ACTIVE"
VERSION_RE = re.compile(r"^v(\d+)$")  # bundle folders: v1, v2, ...


def active_version(model_dir: str | Path) -> str | None:
    """The active version of the model in ``model_dir``, or None if none is set."""
    pointer = Path(model_dir) / ACTIVE_FILE
    if not pointer.is_file():
        return None
    version = pointer.read_text().strip()
    return version if version and (Path(model_dir) / version).is_dir() else None


def set_active(model_dir: str | Path, version: str) -> None:
    """Points ``model_dir``'s ACTIVE at ``version`` atomically."""
    model_dir = Path(model_dir)
    if not (model_dir / version).is_dir():
        raise FileNotFoundError(f"{model_dir} has no version {version}")
    fd, tmp = tempfile.mkstemp(prefix=".active-", dir=model_dir)
    with os.fdopen(fd, "w") as f:
        f.write(version + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, model_dir / ACTIVE_FILE)


def clean_stale(model_dir: str | Path, max_age_s: float = 3600.0) -> list[str]:
    """Removes temporary folders and pointer files older than ``max_age_s`` that a crashed writer left behind
    (younger ones may belong to a writer still at work); returns their names."""
    model_dir = Path(model_dir)
    removed = []
    for path in model_dir.glob(".*"):
        if path.name.startswith((".tmp-", ".active-")) and time.time() - path.stat().st_mtime > max_age_s:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed


def model_names(store: str | Path) -> list[str]:
    """Names of the models in the store that have an active version."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and active_version(d) is not None)


HISTORY_FILE = "HISTORY"


def versions(model_dir: str | Path) -> list[str]:
    """Bundle versions of one model, oldest first (``v1``, ``v2``, ... by number)."""
    model_dir = Path(model_dir)
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]
    return sorted(found, key=lambda v: int(v[1:]))


def validation_figures(meta: dict) -> dict[str, float]:
    """The numeric validation figures a bundle.json records."""
    return {k: float(v) for k, v in (meta.get("validation") or {}).items() if isinstance(v, (int, float))}


@dataclass(frozen=True)
class VersionInfo:
    version: str
    active: bool
    backbone: str | None
    created_at: str
    validation: dict[str, float]  # numeric validation figures recorded at training


def describe(model_dir: str | Path) -> list[VersionInfo]:
    """Every version of one model, oldest first, with what its bundle.json says (empty when unreadable)."""
    model_dir = Path(model_dir)
    active = active_version(model_dir)
    out = []
    for version in versions(model_dir):
        try:
            meta = json.loads((model_dir / version / "bundle.json").read_text())
        except (OSError, ValueError):
            meta = {}
        out.append(VersionInfo(version, version == active, meta.get("backbone"), meta.get("created_at", ""),
                               validation_figures(meta)))
    return out


def promote(model_dir: str | Path, version: str) -> None:
    """Makes ``version`` active and records it in the model's activation history (for rollback)."""
    set_active(model_dir, version)
    with open(Path(model_dir) / HISTORY_FILE, "a") as f:
        f.write(version + "\n")


def _history(model_dir: Path) -> list[str]:
    """Activation history without the trailing entries of the current version."""
    history_file = model_dir / HISTORY_FILE
    history = history_file.read_text().split() if history_file.is_file() else []
    current = active_version(model_dir)
    while history and history[-1] == current:
        history.pop()
    return history


def previous_version(model_dir: str | Path) -> str:
    """The version that was active before the current one.

    Raises:
        ValueError: There is no earlier version to go back to.
    """
    model_dir = Path(model_dir)
    earlier = [v for v in _history(model_dir) if (model_dir / v).is_dir()]
    if not earlier:
        raise ValueError(f"{model_dir}: no earlier active version to roll back to (current: {active_version(model_dir)})")
    return earlier[-1]


def rollback(model_dir: str | Path) -> str:
    """Re-activates :func:`previous_version` and drops the rolled-back version from the history; returns it."""
    model_dir = Path(model_dir)
    previous = previous_version(model_dir)
    history = _history(model_dir)
    set_active(model_dir, previous)
    (model_dir / HISTORY_FILE).write_text("".join(f"{v}\n" for v in history))
    return previous
