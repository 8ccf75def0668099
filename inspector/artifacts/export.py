"""Exports on disk: ``<bundle>/export/`` holds ``model.torchscript.pt`` and/or ``model.onnx`` with its weights in
``model.onnx.data``, and ``export.json`` with the bundle's preprocessing, classes and thresholds (they travel with the
files) and, per format, the sha256 of each of its files and the parity figures; ``export/`` holds nothing else, so
copying ``export/*`` copies a whole, checked export. Writing one (with its parity check) is
:mod:`inspector.inference.exporter`; running one is :mod:`inspector.inference.runtimes`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from inspector.artifacts.bundle import Bundle
from inspector.artifacts.manifest import file_digest
from inspector.errors import MissingPathError, UserError

EXPORT_DIR, EXPORT_META = "export", "export.json"
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx"}  # the graph; ONNX weights: model.onnx.data
STAGING = ".tmp-"  # prefix of the hidden folder an export is written and checked in before it is moved into place
MAX_BATCH = 64  # largest batch an ONNX export accepts



class ExportError(UserError, RuntimeError):
    """The exported model does not reproduce the bundle, or one of its files is missing or was modified: export
    again (or restore the export folder)."""


def read_record(folder: Path) -> dict[str, Any]:
    """``export.json`` of the export folder (empty when there is none yet)."""
    try:
        return json.loads((folder / EXPORT_META).read_text())
    except (OSError, ValueError):
        return {}


def write_record(folder: Path, bundle: Bundle, fmt: str, entry: dict[str, Any]) -> None:
    """Writes ``fmt``'s entry into export.json (atomically), then removes the files no entry lists (the hidden
    ``.model.onnx.tmp.data`` of exports written before every file was listed), so ``export/`` holds only what
    export.json checks."""
    record = read_record(folder) | {"bundle": f"{bundle.name}/{bundle.version}", "classes": list(bundle.classes),
                                     "preprocess": dataclasses.asdict(bundle.spec),
                                     "thresholds": dataclasses.asdict(bundle.thresholds)}
    record.setdefault("formats", {})[fmt] = entry
    (folder / f".{EXPORT_META}.tmp").write_text(json.dumps(record, indent=2))
    os.replace(folder / f".{EXPORT_META}.tmp", folder / EXPORT_META)
    if all("files" in e for e in record["formats"].values()):  # an older entry may rely on a file it does not list
        listed = {EXPORT_META} | {name for e in record["formats"].values() for name in e["files"]}
        for path in folder.iterdir():
            if path.is_file() and path.name not in listed:
                path.unlink(missing_ok=True)


def verified_file(bundle: Bundle, fmt: str) -> Path:
    """The graph file of the bundle's export in ``fmt``, after every file of that export matched its checksum."""
    folder = bundle.path / EXPORT_DIR
    entry = read_record(folder).get("formats", {}).get(fmt)
    if entry is None or not (folder / entry["file"]).is_file():
        raise MissingPathError(f"{bundle.path} has no {fmt} export; run `inspector export --format {fmt}`")
    files = entry.get("files") or {entry["file"]: entry["sha256"]}  # written before every file was listed
    for name, digest in files.items():
        if not (folder / name).is_file():
            raise ExportError(f"{folder / name} is missing; copy the whole export folder, or run `inspector export "
                              f"--format {fmt}` again")
        if file_digest(folder / name) != digest:
            raise ExportError(f"{folder / name}: checksum mismatch; the file was modified")
    return folder / entry["file"]
