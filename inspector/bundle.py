"""Model bundles: ``<store>/<name>/<version>/`` holding ``weights.pt`` and ``bundle.json``.

``bundle.json`` carries everything needed to rebuild the serving pipeline without defaults of its own: the
backbone, class names, preprocessing spec, thresholds, calibration, validation metrics, training data hash and
split, library versions, creation time and the sha256 of the weights. A bundle is written to a temporary
folder and renamed into place, so a reader never sees half of one; loading verifies the checksum.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from inspector.config import PreprocessSpec, Thresholds, from_dict
from inspector.model import DefectNet
from inspector.model.anomaly import MemoryBank
from inspector.store import active_version, versions

FORMAT = "inspector-bundle"
FORMAT_VERSION = 1
META_FILE = "bundle.json"
WEIGHTS_FILE = "weights.pt"
REQUIRED_KEYS = ("name", "version", "backbone", "classes", "preprocess", "thresholds", "weights_sha256")


class BundleError(ValueError):
    """A bundle that is missing, corrupt, foreign or of an unsupported format."""


@dataclass
class Bundle:
    """A loaded, verified bundle: its folder and its metadata."""

    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def spec(self) -> PreprocessSpec:
        return from_dict(PreprocessSpec, self.meta["preprocess"])

    @property
    def thresholds(self) -> Thresholds:
        return from_dict(Thresholds, self.meta["thresholds"])

    def build_model(self, device: str | torch.device = "cpu") -> DefectNet:
        """The network with the bundle's weights, in eval mode on ``device``."""
        model = DefectNet(self.meta["backbone"], len(self.classes), pretrained=False)
        if self.meta.get("anomaly"):
            model.attach_anomaly(MemoryBank(self.meta["anomaly"]["bank_size"], self.meta["anomaly"]["dim"]))
        data = (self.path / WEIGHTS_FILE).read_bytes()
        _verify_digest(data, self.meta["weights_sha256"], self.path)
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any failure here means an unusable weights file
            raise BundleError(f"{self.path / WEIGHTS_FILE}: cannot load weights: {err}") from err
        return model.to(device).eval()


def _verify_digest(data: bytes, expected: str, path: Path) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise BundleError(
            f"{path / WEIGHTS_FILE}: sha256 {actual[:12]}... does not match bundle.json's {expected[:12]}...; "
            "the file is truncated or was modified"
        )


def library_versions() -> dict[str, str]:
    import cv2
    import numpy
    import segmentation_models_pytorch
    import timm
    import torchvision

    mods = {"torch": torch, "torchvision": torchvision, "segmentation_models_pytorch": segmentation_models_pytorch}
    mods |= {"timm": timm, "opencv": cv2, "numpy": numpy}
    return {name: str(mod.__version__) for name, mod in mods.items()}


def next_version(model_dir: Path) -> str:
    """``v1``, ``v2``, ...: one more than the highest version in ``model_dir``."""
    return f"v{max((int(v[1:]) for v in versions(model_dir)), default=0) + 1}"


def write_bundle(
    store: Path, name: str, model: torch.nn.Module, meta: dict[str, Any], extra_files: dict[str, bytes] | None = None
) -> Path:
    """Writes a new version of model ``name`` under ``store`` atomically and returns its folder.

    Args:
        store: The model store root (``models/``).
        name: Model name (a folder under the store).
        model: The trained network; its state dict is saved.
        meta: Metadata (backbone, classes, preprocess, thresholds, metrics, ...); format fields are added here.
        extra_files: Other files to put in the bundle (plots, history), by file name.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"model name {name!r} must be letters, digits, '_', '.', '-'")
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return _publish(Path(store) / name, buffer.getvalue(), meta, extra_files or {})


def derive_bundle(bundle: Bundle, changes: dict[str, Any]) -> Path:
    """A new version of ``bundle``'s model with the same (verified) weights and ``changes`` to its metadata."""
    weights = (bundle.path / WEIGHTS_FILE).read_bytes()
    _verify_digest(weights, bundle.meta["weights_sha256"], bundle.path)
    extra = {p.name: p.read_bytes() for p in bundle.path.iterdir() if p.is_file() and p.name not in (META_FILE, WEIGHTS_FILE)}
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "created_at")}
    return _publish(bundle.path.parent, weights, meta | changes | {"derived_from": bundle.version}, extra)


def _publish(model_dir: Path, weights: bytes, meta: dict[str, Any], extra_files: dict[str, bytes]) -> Path:
    """Writes weights, files and bundle.json into a temporary folder and renames it to the next free version."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    try:
        (tmp / WEIGHTS_FILE).write_bytes(weights)
        for file_name, content in extra_files.items():
            (tmp / file_name).write_bytes(content)
        tmp.chmod(0o755)  # mkdtemp makes it private
        while True:
            version = next_version(model_dir)
            full = meta | {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "name": model_dir.name,
                "version": version,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "libraries": library_versions(),
                "weights_sha256": hashlib.sha256(weights).hexdigest(),
            }
            (tmp / META_FILE).write_text(json.dumps(full, indent=2, default=_jsonable))
            try:
                os.rename(tmp, model_dir / version)  # atomic; fails if another writer took this version
                return model_dir / version
            except OSError:
                if not (model_dir / version).exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to bundle.json")


def load_bundle(path: str | Path) -> Bundle:
    """Loads and checks ``bundle.json`` of the bundle at ``path`` (the weights are verified when built).

    ``path`` may be a bundle folder or a model folder ``<store>/<name>`` (its active version).

    Raises:
        BundleError: Missing folder or files, not an inspector bundle, unsupported format version.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist")
    if not (path / META_FILE).is_file():
        version = active_version(path)
        if version is None:
            raise BundleError(f"{path} is neither a bundle (no {META_FILE}) nor a model folder with an active version")
        path = path / version
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BundleError(f"{path / META_FILE}: unreadable: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{path} is not an inspector model bundle ({META_FILE} lacks format={FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format version {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise BundleError(f"{path / META_FILE} lacks {', '.join(missing)}; the file is incomplete or was modified")
    if not (path / WEIGHTS_FILE).is_file():
        raise BundleError(f"{path}: {WEIGHTS_FILE} is missing")
    return Bundle(path, meta)
