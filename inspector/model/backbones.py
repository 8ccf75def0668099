"""Backbone registry: which encoder, which ImageNet weights, and the preprocessing those weights expect.

Weights are never downloaded: they come from an installed package or a local file, and a missing file is an
error that names the file to provide.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from inspector.errors import UsageError, UserError
from inspector.model import lite0

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
WEIGHTS_DIR_ENV = "INSPECTOR_WEIGHTS_DIR"


class WeightsNotFoundError(UserError, FileNotFoundError):
    """ImageNet weights for a backbone are not available offline."""


@dataclass(frozen=True)
class Backbone:
    """An encoder and the preprocessing its pretrained weights expect."""

    smp_name: str  # segmentation-models-pytorch encoder name
    mean: tuple[float, float, float]  # 0..255 units, model colour order
    std: tuple[float, float, float]
    color_order: str
    load_weights: Callable[[str | None], dict[str, torch.Tensor]]  # (optional path) -> encoder state dict


def _file_weights(file_name: str, drop_prefixes: tuple[str, ...]) -> Callable[[str | None], dict[str, torch.Tensor]]:
    """A loader for a torchvision ImageNet file: an explicit path, $INSPECTOR_WEIGHTS_DIR, or the torch cache."""

    def load(path: str | None) -> dict[str, torch.Tensor]:
        candidates = [Path(path)] if path else []
        if os.environ.get(WEIGHTS_DIR_ENV):
            candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]) / file_name)
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / file_name)
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            looked = ", ".join(str(c) for c in candidates)
            raise WeightsNotFoundError(
                f"ImageNet weights {file_name} not found (looked in: {looked}); nothing is downloaded at run time: "
                f"provide the file with --weights PATH or put it in ${WEIGHTS_DIR_ENV}"
            )
        _check_hash_prefix(found, file_name)
        state = torch.load(found, map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}

    return load


def _check_hash_prefix(path: Path, file_name: str) -> None:
    """torchvision names files ``<arch>-<first 8 hex of sha256>.pth``; a file under that name must match it.

    Raises:
        UsageError: The file's digest does not start with the one in its name (a damaged or different file).
    """
    expected = file_name.rsplit("-", 1)[-1].split(".")[0]
    if path.name != file_name:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise UsageError(f"{path}: sha256 {digest[:8]}... does not match the published {expected}; the file is damaged")


BACKBONES: dict[str, Backbone] = {
    "efficientnet_lite0": Backbone(
        "tu-tf_efficientnet_lite0", (127.0,) * 3, (128.0,) * 3, "RGB", lambda _path: lite0.encoder_state_dict()
    ),
    "mobilenet_v2": Backbone(
        "mobilenet_v2", IMAGENET_MEAN, IMAGENET_STD, "RGB", _file_weights("mobilenet_v2-b0353104.pth", ("classifier.",))
    ),
    "resnet18": Backbone("resnet18", IMAGENET_MEAN, IMAGENET_STD, "RGB", _file_weights("resnet18-f37072fd.pth", ("fc.",))),
}


def get_backbone(name: str) -> Backbone:
    """Looks up a registered backbone.

    Raises:
        UsageError: ``name`` is not registered; the message lists the valid ones.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise UsageError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None
