"""Writing a data folder whole or not at all, for the commands that build one (``inspector import``,
``inspector audit export``).

The folder is built in a hidden one beside ``out`` and renamed to ``out`` only when complete; on any error that
folder is removed and ``out`` is as it was. ``out`` must not exist or be empty; ``force`` replaces an earlier run of
the same command (a folder holding its summary file, the ``marker``), never any other folder, so a mistyped
``--out`` cannot delete someone's data. ``out`` and the source must not contain each other.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from inspector.errors import UsageError


def check_out(out: Path, source: Path, marker: str, force: bool, what: str, source_what: str = "source") -> None:
    """Refuses an ``out`` that may not be written (see the module docstring).

    Args:
        out: The folder to write, absolute.
        source: What it is built from, absolute.
        marker: The file an earlier run writes into ``out`` (its summary): only such a folder is replaced.
        force: Replace an earlier run's ``out``.
        what: The command's output, for the messages: ``import``, ``audit export``.
        source_what: The source, for the messages.

    Raises:
        UsageError: ``out`` and ``source`` contain each other, ``out`` is a file, or a folder that is not empty and
            not (or, without ``force``) an earlier run's.
    """
    if out.is_relative_to(source) or source.is_relative_to(out):
        raise UsageError(f"--out {out} and the {source_what} {source} must not contain each other")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"--out {out} is not empty; choose a new folder (or --force to replace an earlier {what})")
        if not (out / marker).is_file():
            raise UsageError(f"--out {out} is not an earlier {what} (no {marker}); --force replaces only those")


def _replace(staging: Path, out: Path) -> None:
    """Renames the finished ``staging`` to ``out``; an earlier ``out`` is moved aside first and removed after."""
    old = None
    if out.is_dir() and any(out.iterdir()):
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        out.rename(old)
    elif out.is_dir():
        out.rmdir()
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old)


@contextmanager
def staged(out: Path, doing: str) -> Iterator[Path]:
    """A fresh hidden folder beside ``out`` (``.<out>.<doing>-<pid>``) to build in; renamed to ``out`` when the block
    ends, removed when it raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{doing}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
