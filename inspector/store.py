"""The model store: ``<store>/<name>/<version>/`` bundles and an ``ACTIVE`` pointer per model name.

The pointer is a one-line file replaced atomically (write a temporary file, then ``os.replace``), so a reader
sees either the old or the new version, never a mix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ACTIVE_FILE = "ACTIVE"


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


def model_names(store: str | Path) -> list[str]:
    """Names of the models in the store that have an active version."""
    store = Path(store)
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and active_version(d) is not None)
