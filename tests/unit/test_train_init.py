"""Continuing from a bundle keeps what carries over and starts fresh only where it must."""

import torch

from inspector.artifacts.bundle import BundleMeta, load_bundle, write_bundle
from inspector.config import PreprocessSpec, Thresholds
from inspector.model import DefectNet
from inspector.train.init import model_from_bundle


def test_weights_carry_over_and_classifier_rows_follow_their_class(tmp_path):
    torch.manual_seed(0)
    source = DefectNet("efficientnet_lite0", 3, pretrained=False)
    meta = BundleMeta(backbone="efficientnet_lite0", classes=("good", "crack", "spot"), preprocess=PreprocessSpec(64, 64),
                      thresholds=Thresholds())
    bundle = load_bundle(write_bundle(tmp_path, "m", source, meta))
    model = model_from_bundle(bundle, ("good", "dent", "spot"))
    for name, tensor in source.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor)
    assert torch.equal(model.segmentation_head[0].weight, source.segmentation_head[0].weight)
    old, new = source.classification_head.fc, model.classification_head.fc
    assert new.weight.shape[0] == 3
    assert torch.equal(new.weight[0], old.weight[0]) and torch.equal(new.weight[2], old.weight[2])  # good, spot
    assert not torch.equal(new.weight[1], old.weight[1])  # dent is new: not crack's row
