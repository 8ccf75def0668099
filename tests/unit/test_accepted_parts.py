"""An accepted part answers no defect area: an all-zero mask and no region, whatever the mask threshold."""

import dataclasses

import numpy as np
import torch

from inspector.config import PreprocessSpec
from inspector.inference.postprocess import ACCEPT
from inspector.inference.predictor import Predictor


class Good(torch.nn.Module):
    """Sure the part is good; its mask a faint 0.0067 everywhere."""

    def forward(self, x):
        b = x.shape[0]
        return torch.tensor([[10.0, -10.0]]).expand(b, 2), torch.full((b, 1, *x.shape[-2:]), -5.0)


def test_an_accepted_part_has_no_region_even_at_a_zero_mask_threshold():
    predictor = Predictor.for_network(Good().eval(), ("good", "crack"), PreprocessSpec(height=32, width=32), "cpu")
    predictor.thresholds = dataclasses.replace(predictor.thresholds, mask=0.0)  # every pixel would count
    [prediction] = predictor.predict([np.full((40, 48), 90, np.uint8)])
    assert prediction.verdict == ACCEPT
    assert prediction.regions == [] and not prediction.mask.any() and prediction.mask.shape == (40, 48)
