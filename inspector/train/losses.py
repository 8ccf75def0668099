"""Training loss: categorical cross-entropy for the classes + (BCE + Dice) for the defect masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.model import DefectOutput


def dice_loss(mask_logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice per image, averaged: a small defect weighs as much as a large one (what mIoU rewards).

    With ``eps`` = 1 an empty target gives ``1 - 1 / (sum p + 1)``: any predicted area on a good part costs.
    """
    prob = mask_logits.sigmoid().flatten(1)  # (b, h*w)
    target = target.flatten(1)
    inter = (prob * target).sum(dim=1)
    return (1.0 - (2.0 * inter + eps) / (prob.sum(dim=1) + target.sum(dim=1) + eps)).mean()


def defect_loss(
    out: DefectOutput,
    labels: torch.Tensor,
    masks: torch.Tensor,
    has_mask: torch.Tensor,
    mask_weight: float = 1.0,
    label_smoothing: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Loss terms; ``total`` is what to minimise.

    Args:
        out: Model output, logits ``(b, n)`` and mask logits ``(b, 1, h, w)``.
        labels: ``(b,)`` class indices.
        masks: ``(b, 1, h, w)`` targets in {0, 1}.
        has_mask: ``(b,)`` 1 where the sample has a pixel label; others do not enter the mask terms.
        mask_weight: Weight of (BCE + Dice) beside the cross-entropy.
        label_smoothing: Cross-entropy label smoothing.
    """
    ce = F.cross_entropy(out.logits, labels, label_smoothing=label_smoothing)
    keep = has_mask > 0
    if keep.any():
        logits, target = out.mask_logits[keep], masks[keep]
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = dice_loss(logits, target)
    else:
        bce = dice = out.mask_logits.sum() * 0.0
    return {"total": ce + mask_weight * (bce + dice), "ce": ce, "bce": bce, "dice": dice}
