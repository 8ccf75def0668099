"""The training loss terms."""

import torch

from inspector.model import DefectOutput
from inspector.train.losses import defect_loss, dice_loss

BIG = 50.0  # a logit that saturates the sigmoid


def _mask(*boxes):
    m = torch.zeros(1, 1, 32, 32)
    for y0, y1, x0, x1 in boxes:
        m[..., y0:y1, x0:x1] = 1
    return m


def test_dice_is_zero_for_a_perfect_mask_and_weighs_images_equally():
    small, large = _mask((0, 2, 0, 2)), _mask((0, 32, 0, 16))
    target = torch.cat([small, large])
    perfect = (target * 2 - 1) * BIG
    assert dice_loss(perfect, target) < 1e-3
    # missing a 4-px defect costs nearly as much as missing a 512-px one (pooled over the batch it would cost ~0)
    miss_small = torch.cat([-BIG * torch.ones_like(small), perfect[1:]])
    miss_large = torch.cat([perfect[:1], -BIG * torch.ones_like(large)])
    assert dice_loss(miss_small, target) > 0.75 * dice_loss(miss_large, target) > 0.3


def test_dice_penalises_area_predicted_on_a_good_part():
    empty = torch.zeros(1, 1, 32, 32)
    assert dice_loss(-BIG * torch.ones_like(empty), empty) < 1e-3
    assert dice_loss(BIG * _mask((0, 8, 0, 8)) - BIG * (1 - _mask((0, 8, 0, 8))), empty) > 0.9


def test_unlabelled_masks_do_not_enter_the_mask_terms():
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    masks = torch.cat([_mask((0, 4, 0, 4)), _mask()])
    mask_logits = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])
    both = defect_loss(DefectOutput(logits, mask_logits), labels, masks, torch.tensor([1.0, 1.0]))
    first = defect_loss(DefectOutput(logits, mask_logits), labels, masks, torch.tensor([1.0, 0.0]))
    only = defect_loss(DefectOutput(logits[:1], mask_logits[:1]), labels[:1], masks[:1], torch.tensor([1.0]))
    # the same sums over other batch shapes: equal up to float rounding
    assert torch.isclose(first["bce"], only["bce"], rtol=1e-4) and torch.isclose(first["dice"], only["dice"], rtol=1e-4)
    assert not torch.isclose(both["bce"], first["bce"])
    assert torch.isclose(first["ce"], both["ce"])
    none = defect_loss(DefectOutput(logits, mask_logits), labels, masks, torch.tensor([0.0, 0.0]))
    assert none["bce"] == 0 and none["dice"] == 0 and torch.isclose(none["total"], none["ce"])
