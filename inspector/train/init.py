"""Continuing from an existing bundle (``inspector train --init BUNDLE``): the retraining case."""

from __future__ import annotations

import logging

import torch

from inspector.artifacts.bundle import Bundle
from inspector.model import DefectNet

log = logging.getLogger(__name__)


def model_from_bundle(bundle: Bundle, classes: tuple[str, ...]) -> DefectNet:
    """A DefectNet with the bundle's weights for ``classes``.

    Encoder, decoder and mask head carry over. Classifier rows carry over for the classes both have; a class new
    to the data starts from fresh weights, and a class the data no longer has is dropped.
    """
    old = bundle.build_model("cpu")
    model = DefectNet(bundle.meta.backbone, len(classes), pretrained=False)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("classification_head.fc.")}
    model.load_state_dict(state, strict=False)
    fc_old, fc_new = old.classification_head.fc, model.classification_head.fc
    kept = [c for c in classes if c in bundle.classes]
    with torch.no_grad():
        for c in kept:
            fc_new.weight[classes.index(c)] = fc_old.weight[bundle.classes.index(c)]
            fc_new.bias[classes.index(c)] = fc_old.bias[bundle.classes.index(c)]
    new = sorted(set(classes) - set(bundle.classes))
    log.info("continuing from %s/%s; classes kept %s, new %s", bundle.name, bundle.version, kept, new or "none")
    return model
