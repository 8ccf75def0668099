"""Typed configuration, one dataclass per concern.

Every dataclass here round-trips through plain dicts (``asdict`` / ``from_dict``) so the resolved
configuration can be written next to every trained model and read back without surprises. A value a dataclass
refuses raises :class:`~inspector.errors.UsageError` (a ``ValueError``) naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, TypeVar

from inspector.errors import FieldError, UsageError

GOOD_CLASS = "good"
ANOMALY_CLASS = "anomaly"  # the one defect class of a model trained on good parts only (train --good-only)

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Builds dataclass ``cls`` from ``data``, ignoring unknown keys and turning lists into tuples."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**kwargs)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a decoded frame becomes the model input. Travels with the weights in every bundle.

    The frame is letterboxed: scaled (aspect ratio kept) so that it fits ``height`` x ``width``, then
    padded with ``pad_value`` (per channel, in model colour order) around the centred image.
    """

    height: int = 256  # model input height, px (multiple of 32)
    width: int = 256  # model input width, px (multiple of 32)
    color_order: Literal["RGB", "BGR"] = "RGB"  # channel order the encoder was trained with
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)  # subtracted, in 0..255 units
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)  # divided by, in 0..255 units
    pad_value: int = 127  # fill of the letterbox border, 0..255 (127 normalises to ~0)
    tile: int = 0  # frame px: trained on tiles of this side, and frames are inspected as such tiles (0: whole frames)

    def __post_init__(self) -> None:
        if self.height % 32 or self.width % 32 or min(self.height, self.width) < 32:
            raise UsageError(f"input size must be a multiple of 32 and >= 32, got {self.height}x{self.width}")
        if not (isinstance(self.tile, int) and not isinstance(self.tile, bool) and self.tile >= 0):
            raise UsageError(f"tile must be a whole number of px >= 0 (0: whole frames), got {self.tile!r}")


@dataclass(frozen=True)
class FrameLimits:
    """What the service and the CLI accept as a frame."""

    min_side: int = 32  # px
    max_side: int = 8192  # px
    max_bytes: int = 64 * 1024 * 1024  # encoded or raw payload size


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool): NaN fails every comparison, so a NaN threshold silently decides nothing."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_unit(name: str, value: Any, field: str | None = None) -> None:
    """Raises FieldError (``field``, else ``name``) naming ``name`` unless ``value`` is a finite number in [0, 1] (a
    probability or a share)."""
    if not (_is_number(value) and 0.0 <= value <= 1.0):
        raise FieldError(field or name, f"{name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds applied to the model's outputs.

    Every value is checked on construction, so bundle loading, calibration and ``Admin.SetThresholds`` refuse the
    same bad values: a NaN or out-of-range threshold would otherwise not fail but quietly change verdicts (NaN
    compares false, so a NaN reject threshold never rejects). Which classes ``per_class`` may name depends on the
    model: :meth:`check_classes`. A refused value raises :class:`~inspector.errors.FieldError` whose ``field`` names
    it as a request does (``reject``, ``per_class[scratch]``, ``anomaly_verdict``).
    """

    reject: float = 0.5  # defect score at or above which a part is rejected
    review: float = 0.3  # defect score at or above which (and below ``reject``) a part goes to review
    mask: float = 0.5  # per-pixel defect probability that marks a pixel as defect
    min_region_area: int = 16  # px of the frame; smaller connected components are ignored
    mask_weight: float = 0.0  # share of the mask's highest pixel in the defect score (0: classifier alone)
    per_class: dict[str, float] = field(default_factory=dict)  # optional reject threshold per defect class
    anomaly: float = 1.0  # anomaly score at or above which a part the classifier accepts goes to anomaly_verdict
    anomaly_verdict: str = "REVIEW"  # REVIEW or REJECT: what an abnormal part the classifier accepts gets

    def __post_init__(self) -> None:
        for name in ("reject", "review", "mask", "mask_weight"):
            _check_unit(name, getattr(self, name))
        if not self.review <= self.reject:
            raise FieldError("review", f"need 0 <= review <= reject <= 1, got review={self.review} "
                             f"reject={self.reject}")
        for cls, value in self.per_class.items():
            if not isinstance(cls, str) or not cls:
                raise FieldError("per_class", f"per_class keys must be class names, got {cls!r}")
            _check_unit(f"per_class[{cls!r}]", value, f"per_class[{cls}]")
        if not (_is_number(self.min_region_area) and self.min_region_area >= 0):
            raise FieldError("min_region_area", f"min_region_area must be a number of px >= 0, "
                             f"got {self.min_region_area!r}")
        # anomaly scores are >= 0 (1.0: the bank's reference): 0 sends every part the classifier accepts to
        # anomaly_verdict, a large value turns the head off; not inf, which bundle.json (standard JSON) cannot hold
        if not (_is_number(self.anomaly) and self.anomaly >= 0):
            raise FieldError("anomaly", f"anomaly threshold must be >= 0 and finite, got {self.anomaly!r}")
        if self.anomaly_verdict not in ("REVIEW", "REJECT"):
            raise FieldError("anomaly_verdict", f"anomaly_verdict must be REVIEW or REJECT, "
                             f"got {self.anomaly_verdict!r}")

    def check_classes(self, classes: Sequence[str]) -> None:
        """Raises FieldError (``per_class[<class>]``) when ``per_class`` names a class that is not a defect class of the
        model.

        A threshold for a class the model never predicts (a typo, another model's class, ``good``) is never applied,
        so the operator who set it would believe a rule is in force that is not.

        Args:
            classes: The model's classes, ``good`` included (``Predictor.classes``).
        """
        defects = [c for c in classes if c != GOOD_CLASS]
        for cls in self.per_class:
            if cls not in defects:
                raise FieldError(f"per_class[{cls}]", f"per_class[{cls!r}] is not a defect class of the model; "
                                 f"its defect classes are: {', '.join(defects)}")


@dataclass(frozen=True)
class TrainConfig:
    """Two-phase training: transfer learning (encoder frozen), then fine-tuning (encoder unfrozen)."""

    backbone: str = "efficientnet_lite0"
    image_size: int = 320  # px: the input holds about image_size² px (the side of a square input)
    input_size: tuple[int, int] | None = None  # model input height x width, px (multiples of 32); None: chosen from
    #   the training images' median aspect ratio with about image_size² px (inspector.data.geometry)
    tile: int | None = None  # train on, and inspect as, tiles of this side, frame px; 0: whole frames; None: chosen
    #   from the defect masks' sizes (tiles when defects are small against the frame)
    epochs_frozen: int = 2  # phase 1: heads and decoder only
    epochs_finetune: int = 12  # phase 2: whole network
    batch_size: int = 16
    lr_heads: float = 1e-3  # Adam, phase 1 and the heads/decoder group of phase 2
    lr_encoder: float = 1e-4  # Adam, encoder group of phase 2 (fine-tuning, low)
    weight_decay: float = 1e-5
    mask_loss_weight: float = 1.0  # weight of (BCE + Dice) beside the cross-entropy
    label_smoothing: float = 0.05
    finetune_bn_stats: bool = False  # update encoder BatchNorm statistics in phase 2 (False: keep ImageNet's)
    keep_stride: int = 4  # phase 2: encoder layers at this output stride or finer (the stem and first stage) keep
    #   their ImageNet weights (0: the whole encoder trains): a fifth less CPU time per fine-tuning step
    val_every: int = 2  # validate every this many epochs of a phase, and after its last
    val_fraction: float = 0.2  # stratified, seeded
    group_by: str | None = None  # regex on the file name: images whose match is equal share a side of the split
    seed: int = 0
    workers: int = 1  # DataLoader worker processes
    device: str = "auto"  # "auto" picks CUDA when present
    pretrained: bool = True  # start the encoder from ImageNet weights (False: random, for comparison)
    weights_path: str | None = None  # ImageNet weights file for backbones that need one
    init: str | None = None  # continue from this bundle (its backbone and preprocessing) instead of ImageNet
    bf16: bool = True  # bf16 autocast where the hardware runs it natively (about 2x faster on CPU); fp32 elsewhere
    anomaly: bool = True  # also fit the anomaly head (memory bank of good training patches) after training
    anomaly_bank: int = 8192  # patches kept in the anomaly memory bank (greedy coreset)
    anomaly_review_rate: float = 0.01  # share of good parts the anomaly head may send to review (its operating point)
    good_only: bool = False  # anomaly head alone, from the good images (no classifier or segmentation training)
    calibrate: bool = True  # choose the bundle's thresholds on the validation split (F1-optimal) after training


@dataclass(frozen=True)
class ServeConfig:
    """The inspection service."""

    host: str = "0.0.0.0"  # gRPC bind address
    grpc_port: int = 50051  # 0 picks a free port
    health_port: int | None = None  # also answer grpc.health.v1 on this port (same TLS as the gRPC port)
    health_plaintext: bool = False  # health port without TLS beside a TLS gRPC port (Kubernetes' gRPC probes)
    metrics_host: str | None = None  # None: where the gRPC port binds (host)
    metrics_port: int | None = 9400  # None: no metrics endpoint; 0 picks a free port
    cameras: tuple[str, ...] = ()  # camera ids with their own metric label; others count as "other"
    device: str = "auto"
    backend: str = "eager"  # or torchscript, onnx, openvino, onnx-int8, openvino-int8: the bundle's checked export
    cuda_graphs: bool | None = None  # the network replayed as CUDA graphs; None: where the device is CUDA and the
    #   backend eager
    tile: int | None = None  # tile side in frame px (0: whole frame resized); None: the bundle's (PreprocessSpec.tile)
    tile_overlap: float = 0.125  # least overlap of neighbouring tiles, fraction of their side
    roi: tuple[int, int, int, int] | None = None  # region of interest x, y, width, height in frame px
    max_batch: int = 8  # frames per forward pass
    lanes: int | None = None  # forward passes side by side on the CPU while frames queue up, each on its share of the
    #   threads; None: 2 on the CPU (1 on a GPU or with one thread); 1: one pass at a time on all the threads
    max_delay_ms: float = 2.0  # how long the batcher waits to fill a batch after its first frame (while others are
    #   being decoded; a frame with none behind it runs at once)
    max_in_flight: int = 64  # frames accepted and not yet answered, over all calls; beyond: RESOURCE_EXHAUSTED
    max_in_flight_pixels: int = 256_000_000  # decoded pixels of those frames (a lone frame always passes)
    max_streams: int = 1024  # streams open at once; one more is refused with RESOURCE_EXHAUSTED (an idle one costs KiB)
    stream_window: int = 16  # frames of one stream in the pipeline at once (more waits: gRPC flow control)
    workers: int = 4  # threads decoding, preprocessing and postprocessing frames
    watch_seconds: float = 2.0  # how often the store's ACTIVE pointer is checked; 0 disables
    grace_seconds: float = 10.0  # on SIGTERM, time given to calls in flight
    max_frame_mb: float = 64.0  # encoded or raw frame payload, MiB; larger frames are answered too_large
    max_message_bytes: int | None = None  # gRPC message limit; None: twice the frame limit (see server.transport_limit)
    tls_cert: str | None = None  # PEM certificate file; with tls_key, the gRPC port speaks TLS only
    tls_key: str | None = None  # PEM private key file
    tls_client_ca: str | None = None  # PEM CA file: clients must present a certificate it signed (mutual TLS)
    admin_token_file: str | None = None  # bearer token for Admin calls (else $INSPECTOR_ADMIN_TOKEN)
    inference_token_file: str | None = None  # bearer token for inference calls (else $INSPECTOR_TOKEN); none: open
    audit_dir: str | None = None  # keep rejected/review frames (and a sample of accepted ones) here; None: off
    audit_sample_accept: float = 0.01  # share of accepted frames kept
    audit_quota_mb: float = 1024.0  # disk the audit may use, MiB
    audit_max_per_second: float = 20.0  # frames kept per second at most
