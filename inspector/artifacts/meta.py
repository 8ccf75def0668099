"""``bundle.json`` as a type: what a model bundle says about itself, read and written in one place.

:class:`BundleMeta` is the one reader and writer of the file (format version 1, read as it always was): every
other module reads typed fields (``meta.backbone``, ``meta.split.val``) instead of keys of a raw dict, so a
renamed or missing key fails here, naming it, rather than as a ``KeyError`` three layers away. Keys this version of
inspector does not know (written by a newer one, or added by hand) are kept in ``extra`` and written back unchanged,
so reading and writing a bundle loses nothing.

Only ``name``, ``version``, ``backbone``, ``classes``, ``preprocess``, ``thresholds`` and ``weights_sha256`` must be
present (:data:`REQUIRED_KEYS`); the keys added later (``manifest``, ``reference``, ``anomaly``...) default to
"absent" (None or empty), so a bundle written before them reads as it did.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from inspector.config import PreprocessSpec, Thresholds, from_dict
from inspector.errors import UserError

FORMAT = "inspector-bundle"
FORMAT_VERSION = 1
META_FILE = "bundle.json"
REQUIRED_KEYS = ("name", "version", "backbone", "classes", "preprocess", "thresholds", "weights_sha256")

R = TypeVar("R")


class BundleError(UserError, ValueError):
    """A bundle that is missing, corrupt, foreign or of an unsupported format."""


def _record(cls: type[R], raw: Mapping[str, Any]) -> R:
    """Dataclass ``cls`` (which has an ``extra`` field) from ``raw``: lists become tuples, unknown keys go to extra."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected an object, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}  # type: ignore[arg-type]
    known = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in names}
    return cls(**known, extra={k: v for k, v in raw.items() if k not in names})  # type: ignore[call-arg]


def _plain(record: Any) -> dict[str, Any]:
    """A record's JSON object: its fields, then its extra keys as they were read."""
    out = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "extra"}
    return out | dict(record.extra)


@dataclass(frozen=True)
class AnomalyRecord:
    """The anomaly head (:func:`inspector.train.anomaly.fit_anomaly`): its memory bank and its reference scale."""

    bank_size: int  # patch features kept in the bank (rows of MemoryBank.bank)
    dim: int  # channels of one patch feature
    only: bool = False  # trained with --good-only: the anomaly score is the whole decision (no classifier)
    stages: tuple[int, ...] = ()  # encoder feature indices the patches come from
    patches_seen: int | None = None  # good training patches the coreset was chosen from
    good_images: int | None = None  # good training images those patches came from
    reference: float | None = None  # distance that scores 1.0: the operating point on good parts' peak distances
    reference_quantile: float | None = None  # older bundles: the reference was this quantile of good validation parts
    reference_images: int | None = None  # good images it was placed on
    reference_split: str | None = None  # "train_oof+val": training images out of fold and the validation split
    review_rate: float | None = None  # target share of good parts at or above the reference (--anomaly-review-rate)
    review_rate_upper: float | None = None  # Clopper-Pearson 95 % upper bound on that share at the reference
    reference_flagged: int | None = None  # of the good images it was placed on, how many reach it
    val_review_rate: float | None = None  # good validation parts reaching a reference placed without them
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys not known here, kept as read


@dataclass(frozen=True)
class DataRecord:
    """The data set a model was trained on."""

    hash: str = ""  # sha256 over every image and mask, path and content (inspector.data.layouts.data_hash)
    root: str = ""  # its folder at training, absolute: evaluate and calibrate use the saved split on it
    layout: str = ""  # "class_folders" or "mvtec"
    n_images: int = 0  # images found
    per_class: Mapping[str, int] = field(default_factory=dict)  # images per class
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys not known here, kept as read


@dataclass(frozen=True)
class SplitRecord:
    """The seeded, stratified split of that data, as image paths relative to its root."""

    train: tuple[str, ...] = ()
    val: tuple[str, ...] = ()  # what thresholds, validation figures and the drift reference were measured on
    group_by: str | None = None  # the regex whose match on file names kept groups on one side (train --group-by)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys not known here, kept as read


def _optional(convert: Callable[[Any], R]) -> Callable[[Any], R | None]:
    return lambda value: None if value is None else convert(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return dict(value)


def _is_training_figure(key: str) -> bool:
    """A key of ``bundle.json``'s ``validation`` that is a training loss, not a validation figure."""
    return "loss" in key or key.startswith("train_")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _classes(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) and c for c in value):
        raise TypeError(f"expected a list of class names, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class BundleMeta:
    """The contents of ``bundle.json``. Treat the mappings as read-only; change a bundle with ``dataclasses.replace``
    and write it as a new version (:func:`inspector.artifacts.bundle.derive_bundle`).

    The writer (:func:`inspector.artifacts.bundle.write_bundle`) fills ``name``, ``version``, ``created_at``,
    ``libraries``, ``weights_sha256`` and ``manifest``; a meta about to be written may leave them empty.
    """

    classes: tuple[str, ...]  # class names in the model's output order, "good" among them
    preprocess: PreprocessSpec  # how a frame becomes the model input: it travels with the weights
    backbone: str = ""  # encoder name in the backbone registry ("" only for a draft with no bundle yet)
    thresholds: Thresholds = field(default_factory=Thresholds)  # the decision thresholds served by default
    name: str = ""  # the model's name: its folder in the store
    version: str = ""  # "v1", "v2"...: its folder under the model's
    created_at: str = ""  # ISO 8601 with time zone, when the writer published it
    weights_sha256: str = ""  # sha256 of weights.pt; loading refuses other weights
    manifest: str | None = None  # "SHA256SUMS" when the bundle was born sealed; None: written before seals
    libraries: Mapping[str, str] = field(default_factory=dict)  # versions of torch, timm, opencv... at writing
    calibration: Mapping[str, Any] | None = None  # the figures behind the thresholds (rates, AUROC by mask weight,
    #   n_good/n_defect, split, data, at); None: the thresholds are the defaults
    validation: Mapping[str, Any] = field(default_factory=dict)  # figures on the validation split at training
    reference: Mapping[str, Any] | None = None  # drift reference: validation frames' statistics as quantile bins,
    #   under the served thresholds (inspector.inference.drift)
    anomaly: AnomalyRecord | None = None  # the anomaly head; None: the model has none
    data: DataRecord | None = None  # the training data; None: not recorded
    split: SplitRecord | None = None  # the training split; None: not recorded
    train_config: Mapping[str, Any] | None = None  # the resolved TrainConfig, as written at training
    train_seconds: float | None = None  # wall time of training
    train_processes: int | None = None  # processes that trained it (torchrun)
    train_hardware: Mapping[str, Any] | None = None  # device, autocast precision ("bf16"/"fp32"), CPU model, vector
    #   flags, torch's kernels and threads at training (inspector.model.cpu.training_hardware); None: not recorded
    init_from: str | None = None  # "name/version" training continued from (train --init); None: ImageNet
    derived_from: str | None = None  # the version this one copies the weights of (calibrate); None: trained
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys not known here, kept as read and written back

    def __post_init__(self) -> None:
        self.thresholds.check_classes(self.classes)  # a per-class threshold must name one of the defect classes

    @property
    def anomaly_only(self) -> bool:
        """Trained with ``--good-only``: the anomaly head is the model."""
        return self.anomaly is not None and self.anomaly.only

    @property
    def validation_figures(self) -> dict[str, float]:
        """The numeric validation figures (``val_macro_f1``, ``val_miou``, ``val_auroc``...), no losses: those are
        :attr:`training_figures`."""
        return {k: v for k, v in self._numeric_validation().items() if not _is_training_figure(k)}

    @property
    def training_figures(self) -> dict[str, float]:
        """The training losses recorded beside the validation figures: every ``*loss*`` key (``val_loss``, the
        objective on the validation split) and every ``train_*`` one (bundles of older versions: ``train_loss``,
        ``train_ce_loss``...). A loss has no fixed scale, so it compares runs of one recipe, not models."""
        return {k: v for k, v in self._numeric_validation().items() if _is_training_figure(k)}

    def _numeric_validation(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.validation.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    # --- to and from the file ------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BundleMeta:
        """The meta of a ``bundle.json`` object (format and version already checked; see :meth:`read`).

        Raises:
            BundleError: A required key is missing, or a value is not what its key needs, naming the key.
        """
        missing = [key for key in REQUIRED_KEYS if key not in raw]
        if missing:
            raise BundleError(f"{META_FILE} lacks {', '.join(missing)}; the file is incomplete or was modified")
        parsers: dict[str, Callable[[Any], Any]] = {
            "name": _text, "version": _text, "backbone": _text, "weights_sha256": _text, "classes": _classes,
            "preprocess": lambda v: from_dict(PreprocessSpec, _object(v)),
            "thresholds": lambda v: from_dict(Thresholds, _object(v)),
            "created_at": _text, "manifest": _optional(_text), "libraries": _object,
            "calibration": _optional(_object), "validation": lambda v: _object(v or {}),
            "reference": _optional(_object), "anomaly": _optional(lambda v: _record(AnomalyRecord, v)),
            "data": _optional(lambda v: _record(DataRecord, v)), "split": _optional(lambda v: _record(SplitRecord, v)),
            "train_config": _optional(_object), "train_seconds": _optional(float), "train_processes": _optional(int),
            "train_hardware": _optional(_object),
            "init_from": _optional(_text), "derived_from": _optional(_text),
        }
        fields: dict[str, Any] = {}
        for key, parse in parsers.items():
            if key in raw:
                try:
                    fields[key] = parse(raw[key])
                except (TypeError, ValueError) as err:
                    raise BundleError(f"{META_FILE} key {key!r}: {err}") from err
        extra = {k: v for k, v in raw.items() if k not in parsers and k not in ("format", "format_version")}
        try:
            return cls(**fields, extra=extra)
        except ValueError as err:  # thresholds that do not fit the classes
            raise BundleError(f"{META_FILE}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        """The ``bundle.json`` object: format and version, every field (records as objects), then ``extra``."""
        out: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (AnomalyRecord, DataRecord, SplitRecord)):
                value = _plain(value)
            elif isinstance(value, (PreprocessSpec, Thresholds)):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            if f.name != "extra":
                out[f.name] = value
        return out | dict(self.extra)

    @classmethod
    def read(cls, folder: str | Path) -> BundleMeta:
        """``folder``'s ``bundle.json``.

        Raises:
            BundleError: Unreadable, not an inspector bundle, an unsupported format version, or incomplete; naming
                the file.
        """
        path = Path(folder) / META_FILE
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BundleError(f"{path}: unreadable: {err}") from err
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise BundleError(f"{folder} is not an inspector model bundle ({META_FILE} lacks format={FORMAT!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"{folder}: bundle format version {raw.get('format_version')} is not supported "
                              f"(expected {FORMAT_VERSION})")
        try:
            return cls.from_dict(raw)
        except BundleError as err:
            raise BundleError(f"{folder}/{err}") from err

    def write(self, folder: str | Path) -> Path:
        """Writes ``bundle.json`` into ``folder`` (as it is: sealing and atomic publishing are the writer's) and
        returns its path.

        Raises:
            TypeError: A value (of ``extra``, most likely) that JSON cannot hold.
        """
        path = Path(folder) / META_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable))
        return path


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot write {type(value).__name__} to {META_FILE}")
