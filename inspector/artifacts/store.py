"""The model store: ``<store>/<name>/<version>/`` bundles and an ``ACTIVE`` pointer per model name.

The pointer is a one-line file replaced atomically (write a temporary file, then ``os.replace``), so a reader
sees either the old or the new version, never a mix. It may only name one of the model's own version folders
(``v1``, ``v2``, ...: a real folder, not a symbolic link): a path such as ``/srv/x`` or ``../other/v1`` in a
hand-edited pointer would otherwise serve a model from outside the store.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from inspector.artifacts.meta import BundleError, BundleMeta
from inspector.errors import UserError

ACTIVE_FILE = "ACTIVE"
VERSION_RE = re.compile(r"^v(\d+)$")  # bundle folders: v1, v2, ...
PROMOTE_HINT = "point it at a version with `inspector models promote --name NAME VERSION`"


class StoreError(UserError, ValueError):
    """An ACTIVE pointer or version name that does not lead to one of the store's own version folders, or a
    rollback with no earlier version to go back to."""


def _why_not_a_version(model_dir: Path, version: str) -> str | None:
    """Why ``version`` is not one of ``model_dir``'s version folders, or None if it is one.

    The name rule (``v`` and digits: no separator, no ``..``) and the symlink rule together keep the folder inside
    ``model_dir``: a real folder named like that can only be ``model_dir``'s own child.
    """
    if not VERSION_RE.match(version):
        return "versions are folders named v1, v2, ... in the model folder"
    path = model_dir / version
    if path.is_symlink():
        return f"{path} is a symbolic link; copy the bundle into the store instead"
    if not path.is_dir():
        return f"{path} does not exist"
    return None


def version_dir(model_dir: str | Path, version: str) -> Path:
    """``model_dir/version`` after checking that it is one of the model's own version folders.

    Raises:
        StoreError: ``version`` is not a version name, or not a real folder in ``model_dir``.
    """
    model_dir = Path(model_dir)
    why = _why_not_a_version(model_dir, version)
    if why:
        raise StoreError(f"{model_dir.name} has no version {version!r}: {why}")
    return model_dir / version


def active_version(model_dir: str | Path) -> str | None:
    """The active version of the model in ``model_dir``, or None if no ACTIVE pointer is set (no file, or blank).

    Raises:
        StoreError: ACTIVE is unreadable, not text, or names no version folder of this model (the message names
            the file and what is wrong).
    """
    model_dir = Path(model_dir)
    pointer = model_dir / ACTIVE_FILE
    try:
        raw = pointer.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StoreError(f"{pointer}: cannot read it ({err.strerror}); {PROMOTE_HINT}") from err
    try:
        version = raw.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise StoreError(f"{pointer}: byte {raw[err.start]:#04x} at offset {err.start} is not ASCII; it must hold "
                         f"a version name such as v3; {PROMOTE_HINT}") from None
    why = _why_not_a_version(model_dir, version) if version else None
    if why:
        raise StoreError(f"{pointer} names {version[:80]!r}, which is not a version of {model_dir.name} ({why}); "
                         f"{PROMOTE_HINT}")
    return version or None


def set_active(model_dir: str | Path, version: str) -> None:
    """Points ``model_dir``'s ACTIVE at ``version`` atomically.

    Raises:
        StoreError: ``version`` is not one of the model's own version folders (see :func:`version_dir`).
    """
    model_dir = version_dir(model_dir, version).parent
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
    """Names of the models in the store that have an ACTIVE pointer.

    A pointer that cannot be used still counts: serving that model then says what is wrong with the file (and
    waits for a promotion) instead of claiming there is no such model.
    """
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and (d / ACTIVE_FILE).is_file())


HISTORY_FILE = "HISTORY"


def versions(model_dir: str | Path) -> list[str]:
    """Bundle versions of one model, oldest first (``v1``, ``v2``, ... by number; real folders, no symlinks)."""
    model_dir = Path(model_dir)
    found = [p.name for p in model_dir.iterdir() if _why_not_a_version(model_dir, p.name) is None]
    return sorted(found, key=lambda v: int(v[1:]))


@dataclass(frozen=True)
class VersionInfo:
    version: str
    active: bool
    backbone: str | None
    created_at: str
    validation: dict[str, float]  # numeric validation figures recorded at training, no losses
    training: dict[str, float] = field(default_factory=dict)  # training losses recorded at training


def describe(model_dir: str | Path) -> list[VersionInfo]:
    """Every version of one model, oldest first, with what its bundle.json says (empty when it cannot be read as
    one: :meth:`BundleMeta.read`)."""
    model_dir = Path(model_dir)
    try:
        active = active_version(model_dir)
    except StoreError:
        active = None  # an unusable pointer makes no version active; serving it reports the problem
    out = []
    for version in versions(model_dir):
        try:
            meta = BundleMeta.read(model_dir / version)
        except BundleError:
            out.append(VersionInfo(version, version == active, None, "", {}))
        else:
            out.append(VersionInfo(version, version == active, meta.backbone, meta.created_at, meta.validation_figures,
                                   meta.training_figures))
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
        StoreError: There is no earlier version to go back to.
    """
    model_dir = Path(model_dir)
    earlier = [v for v in _history(model_dir) if _why_not_a_version(model_dir, v) is None]
    if not earlier:
        raise StoreError(f"{model_dir}: no earlier active version to roll back to (current: {active_version(model_dir)})")
    return earlier[-1]


def rollback(model_dir: str | Path) -> str:
    """Re-activates :func:`previous_version` and drops the rolled-back version from the history; returns it."""
    model_dir = Path(model_dir)
    previous = previous_version(model_dir)
    history = _history(model_dir)
    set_active(model_dir, previous)
    (model_dir / HISTORY_FILE).write_text("".join(f"{v}\n" for v in history))
    return previous
