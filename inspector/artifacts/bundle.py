"""Model bundles: ``<store>/<name>/<version>/`` holding ``weights.pt``, ``bundle.json`` and ``SHA256SUMS``.

``bundle.json`` carries everything needed to rebuild the serving pipeline without defaults of its own: the
backbone, class names, preprocessing spec, thresholds, calibration, validation metrics, training data hash and
split, library versions, creation time and the sha256 of the weights; :class:`~inspector.artifacts.meta.BundleMeta`
reads and writes it. A bundle is written to a temporary folder and renamed into place, so a reader never sees half
of one.

The bundle is sealed: ``SHA256SUMS`` (see :mod:`inspector.artifacts.manifest`) lists every file the writer put there,
bundle.json included, and loading refuses a bundle whose files differ from it (a file changed, missing or added).
An edited threshold or class order changes what the line rejects as surely as damaged weights, so it must not
load silently; a deliberate change is a new version (:func:`derive_bundle`) or, for a hand edit that is meant,
:func:`reseal`. ``export/`` is not sealed: ``inspector export`` adds it later, to a bundle that may be serving
(rewriting the seal then would race its readers), and ``export/export.json`` holds the sha256 of each export,
checked before an export is loaded. Bundles written before the seal existed load with one warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch

from inspector.artifacts import manifest
from inspector.artifacts.meta import (FORMAT, FORMAT_VERSION, META_FILE, BundleError,  # noqa: F401 - also named here
                                      BundleMeta)
from inspector.config import PreprocessSpec, Thresholds
from inspector.errors import UsageError
from inspector.artifacts.manifest import MANIFEST_FILE
from inspector.model import DefectNet
from inspector.model.anomaly import MemoryBank
from inspector.artifacts.store import active_version, versions

log = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.pt"
UNSEALED = ("export",)  # added later by `inspector export`, with its own checksums (inspector.artifacts.export.EXPORT_DIR)
REMEDY = ("restore the bundle from its source; to change a bundle, derive a new version (`inspector calibrate`, "
          "bundle.derive_bundle); to keep a deliberate edit, re-seal it (`inspector models reseal`, bundle.reseal)")
_warned_unsealed: set[Path] = set()  # bundles without a seal already warned about (once each per process)


@dataclass
class Bundle:
    """A loaded, verified bundle: its folder and its metadata."""

    path: Path
    meta: BundleMeta

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def spec(self) -> PreprocessSpec:
        return self.meta.preprocess

    @property
    def thresholds(self) -> Thresholds:
        """The bundle's thresholds (checked when read: values, and per-class keys against the bundle's classes)."""
        return self.meta.thresholds

    def build_model(self, device: str | torch.device = "cpu") -> DefectNet:
        """The network with the bundle's weights, in eval mode on ``device``."""
        model = DefectNet(self.meta.backbone, len(self.classes), pretrained=False)
        if self.meta.anomaly is not None:
            model.attach_anomaly(MemoryBank(self.meta.anomaly.bank_size, self.meta.anomaly.dim))
        data = (self.path / WEIGHTS_FILE).read_bytes()
        _verify_digest(data, self.meta.weights_sha256, self.path)
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
    store: Path, name: str, model: torch.nn.Module, meta: BundleMeta, extra_files: dict[str, bytes] | None = None
) -> Path:
    """Writes a new version of model ``name`` under ``store`` atomically and returns its folder.

    Args:
        store: The model store root (``models/``).
        name: Model name (a folder under the store).
        model: The trained network; its state dict is saved.
        meta: Metadata (backbone, classes, preprocess, thresholds, metrics, ...); the writer's fields (name,
            version, creation time, library versions, weights checksum, manifest) are set here.
        extra_files: Other files to put in the bundle (plots, history), by file name.

    Raises:
        UsageError: ``name`` is not a usable folder name.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f"model name {name!r} must be letters, digits, '_', '.', '-'")
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return _publish(Path(store) / name, buffer.getvalue(), meta, extra_files or {})


def derive_bundle(bundle: Bundle, changes: Mapping[str, Any]) -> Path:
    """A new version of ``bundle``'s model with the same (verified) weights and ``changes`` to its metadata.

    Args:
        bundle: The loaded bundle to derive from.
        changes: New values of :class:`BundleMeta` fields, by name (``{"thresholds": Thresholds(...)}``).
    """
    weights = (bundle.path / WEIGHTS_FILE).read_bytes()
    _verify_digest(weights, bundle.meta.weights_sha256, bundle.path)
    own = (META_FILE, WEIGHTS_FILE, MANIFEST_FILE)  # written anew for the new version
    extra = {p.name: p.read_bytes() for p in bundle.path.iterdir() if p.is_file() and p.name not in own}
    meta = dataclasses.replace(bundle.meta, **{**changes, "derived_from": bundle.version})
    return _publish(bundle.path.parent, weights, meta, extra)


def _publish(model_dir: Path, weights: bytes, meta: BundleMeta, extra_files: dict[str, bytes]) -> Path:
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
            dataclasses.replace(
                meta,
                name=model_dir.name,
                version=version,
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                libraries=library_versions(),
                weights_sha256=hashlib.sha256(weights).hexdigest(),
                manifest=MANIFEST_FILE,  # a bundle born sealed: a missing SHA256SUMS is damage, not age
            ).write(tmp)
            manifest.write(tmp, UNSEALED)
            try:
                os.rename(tmp, model_dir / version)  # atomic; fails if another writer took this version
                return model_dir / version
            except OSError:
                if not (model_dir / version).exists():
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_meta(path: Path) -> BundleMeta:
    """``bundle.json`` of the bundle folder ``path``, checked to be a complete bundle of a supported format."""
    meta = BundleMeta.read(path)
    if not (path / WEIGHTS_FILE).is_file():
        raise BundleError(f"{path}: {WEIGHTS_FILE} is missing")
    return meta


def _check_seal(path: Path, meta: BundleMeta) -> None:
    """Refuses a bundle whose files differ from its SHA256SUMS; warns once about one written before seals."""
    try:
        listed = manifest.read(path)
    except ValueError as err:
        raise BundleError(f"{err}; {REMEDY}") from err
    if listed is None and meta.manifest:
        raise BundleError(f"{path / MANIFEST_FILE} is missing, but {META_FILE} says the bundle was sealed; {REMEDY}")
    if listed is None:
        if path.resolve() not in _warned_unsealed:
            _warned_unsealed.add(path.resolve())
            log.warning("%s has no %s (written before bundles were sealed): only its weights are checked, not %s or "
                        "its other files; check it, then seal it with `inspector models reseal` (bundle.reseal)",
                        path, MANIFEST_FILE, META_FILE)
        return
    wrong = manifest.differences(path, listed, UNSEALED)
    if wrong:
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise BundleError(f"{wrong[0]}{more}; {REMEDY}")


def check_identity(bundle: Bundle, name: str, version: str) -> None:
    """Refuses a store version whose bundle.json names another model or version than its folders do.

    A folder copied by hand (``cp -r v1 v5``) still says v1 inside: served, every response would name v1 while
    ACTIVE says v5, and the store watcher, comparing the two, would reload it on every poll.

    Raises:
        BundleError: Naming both, and what to do.
    """
    said, folder = f"{bundle.name}/{bundle.version}", f"{name}/{version}"
    if said != folder:
        raise BundleError(
            f"{bundle.path / META_FILE} says it is {said}, but its folder is {folder} (a copy?); promote the "
            f"original, or make a new version with `inspector calibrate` (bundle.derive_bundle); to keep the copy, set "
            f"name and version in its {META_FILE} and re-seal it (`inspector models reseal`, bundle.reseal)"
        )


def reseal(path: str | Path) -> Path:
    """Seals the bundle at ``path`` as it is now (rewrites its SHA256SUMS) and returns the folder.

    For a deliberate hand edit of a bundle (a copy renamed into another store, a fixed label). A changed model
    should be a new version instead (:func:`derive_bundle`), which keeps the original and says what it came from.
    The weights stay checked against ``weights_sha256`` in bundle.json, recorded at training: replaced weights
    do not load after a reseal.

    Raises:
        BundleError: ``path`` is not a complete bundle of a supported format, or holds a symbolic link.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist")
    _read_meta(path)
    try:
        manifest.write(path, UNSEALED)
    except ValueError as err:
        raise BundleError(str(err)) from err
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Loads the bundle at ``path`` after checking bundle.json and its seal (the weights are verified again when
    built).

    ``path`` may be a bundle folder or a model folder ``<store>/<name>`` (its active version, whose bundle.json
    must then name that model and version).

    Raises:
        BundleError: Missing folder or files, not an inspector bundle, unsupported format version, files that
            differ from SHA256SUMS, a version that says it is another one.
        StoreError: The model folder's ACTIVE pointer is unusable.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"model bundle {path} does not exist")
    if (path / META_FILE).is_file():
        return _load_folder(path)
    version = active_version(path)
    if version is None:
        raise BundleError(f"{path} is neither a bundle (no {META_FILE}) nor a model folder with an active version")
    bundle = _load_folder(path / version)
    check_identity(bundle, path.name, version)
    return bundle


def _load_folder(path: Path) -> Bundle:
    meta = _read_meta(path)
    _check_seal(path, meta)
    return Bundle(path, meta)
