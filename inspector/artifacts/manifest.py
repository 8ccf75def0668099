"""``SHA256SUMS``: the sha256 of every file of a folder, one ``<sha256>  <relative path>`` line each.

This is the format ``sha256sum`` writes and checks, so ``cd <bundle> && sha256sum -c SHA256SUMS`` verifies a bundle
without this package. The functions here say what differs; :mod:`inspector.artifacts.bundle` decides what that means.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Collection
from pathlib import Path

MANIFEST_FILE = "SHA256SUMS"
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")  # sha256sum's text (" ") and binary ("*") mode lines


def file_digest(path: Path) -> str:
    """The sha256 of one file, read in blocks (weights can be hundreds of MB)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def contents(folder: Path, skip: Collection[str] = ()) -> dict[str, Path]:
    """Every file below ``folder`` by relative POSIX name, but the manifest and the top-level entries in ``skip``.

    Symbolic links are listed (a link to a folder too) but never followed, so nothing outside ``folder`` is read.
    """
    found = {}
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here == folder:
            dirs[:] = [d for d in dirs if d not in skip]
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            found[(here / name).relative_to(folder).as_posix()] = here / name
    found.pop(MANIFEST_FILE, None)
    return found


def write(folder: Path, skip: Collection[str] = ()) -> None:
    """Writes ``folder``'s manifest of the files it holds now, atomically (a reader sees the old or the new one).

    Raises:
        ValueError: ``folder`` holds a symbolic link, which a manifest cannot vouch for.
    """
    found = contents(folder, skip)
    links = [name for name, path in found.items() if path.is_symlink()]
    if links:
        raise ValueError(f"{folder / links[0]} is a symbolic link; a sealed folder holds plain files only")
    lines = "".join(f"{file_digest(path)}  {name}\n" for name, path in sorted(found.items()))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder.parent)  # outside: never seen as an unlisted file
    with os.fdopen(fd, "w") as f:
        f.write(lines)
    os.chmod(tmp, 0o644)
    os.replace(tmp, folder / MANIFEST_FILE)


def read(folder: Path) -> dict[str, str] | None:
    """The manifest's sha256 by relative name, or None when ``folder`` has no manifest.

    Raises:
        ValueError: A line is not ``<sha256>  <name>`` (the message names the file and line).
    """
    try:
        text = (folder / MANIFEST_FILE).read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    listed = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{folder / MANIFEST_FILE}:{number}: not a '<sha256>  <file>' line")
        listed[match[2]] = match[1]
    return listed


def _difference(path: Path, name: str, found: Collection[str], listed: dict[str, str]) -> str | None:
    if name not in found:
        return f"listed in {MANIFEST_FILE} but missing"
    if path.is_symlink():
        return "a symbolic link (a sealed folder holds plain files only)"
    if name not in listed:
        return f"not listed in {MANIFEST_FILE} (added after the folder was sealed)"
    actual = file_digest(path)
    if actual != listed[name]:
        return (f"sha256 {actual[:12]}... does not match {MANIFEST_FILE}' {listed[name][:12]}...; "
                "the file is truncated or was modified")
    return None


def differences(folder: Path, listed: dict[str, str], skip: Collection[str] = ()) -> list[str]:
    """``"<path>: <what differs>"`` for each file that differs from ``listed``, by name; empty when all match."""
    found = contents(folder, skip)
    out = []
    for name in sorted(found.keys() | listed.keys()):
        why = _difference(folder / name, name, found, listed)
        if why:
            out.append(f"{folder / name}: {why}")
    return out
