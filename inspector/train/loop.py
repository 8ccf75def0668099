"""One epoch of training and one pass of validation, in the shape of torchvision's references."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from inspector.config import GOOD_CLASS
from inspector.model.devices import training_autocast
from inspector.evaluation.bootstrap import confidence_intervals
from inspector.evaluation.metrics import PixelConfusion, classification_report
from inspector.model import DefectNet, DefectOutput
from inspector.inference.postprocess import defect_scores
from inspector.progress import progress
from inspector.train.losses import defect_loss


def _to(device: torch.device, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in tensors]


def _fp32(out: DefectOutput) -> DefectOutput:
    """Losses and metrics in fp32 whatever precision the forward pass ran in."""
    return DefectOutput(out.logits.float(), out.mask_logits.float())


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    desc: str,
    mask_weight: float,
    label_smoothing: float,
    show: bool = True,
    bf16: bool = True,
) -> dict[str, float]:
    """Trains for one pass over ``loader``; returns the mean of each loss term."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    n = 0
    bar = progress(loader, desc, show)
    for images, masks, has_mask, labels in bar:
        images, masks, has_mask, labels = _to(device, images, masks, has_mask, labels)
        with training_autocast(device, bf16):
            out = model(images.contiguous(memory_format=torch.channels_last))
        losses = defect_loss(_fp32(out), labels, masks, has_mask, mask_weight, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        for k, v in losses.items():
            sums[k] += v.item() * len(labels)
        n += len(labels)
        bar.set_postfix(loss=f"{sums['total'] / n:.3f}")
    names = {"total": "train_loss", "ce": "train_ce_loss", "bce": "train_bce_loss", "dice": "train_dice_loss"}
    return {names[k]: v / max(n, 1) for k, v in sums.items()}


@dataclass
class Validation:
    """One validation pass as arrays: what the per-epoch figures and the final bootstrap intervals come from."""

    classes: tuple[str, ...]
    loss: float  # mean total loss per image
    labels: np.ndarray  # (n,) true class indices
    pred: np.ndarray  # (n,) predicted class indices (good when p(good) > 0.5, else the likeliest defect)
    scores: np.ndarray  # (n,) defect score 1 - p(good)
    pixels: PixelConfusion  # model-input-scale label maps of the images with a mask, pooled and per image

    def figures(self) -> dict[str, float | None]:
        """``val_loss``, ``val_accuracy``, ``val_macro_f1``, ``val_auroc``, ``val_miou``, ``val_iou_defect`` and
        ``val_iou_<class>`` per defect class, with the meanings of report.json (None where undefined: no defect
        pixel in truth or prediction for an IoU, no defective or no good part for AUROC). A defect class named
        ``defect`` would share ``val_iou_defect``: the binary figure keeps the name."""
        image = classification_report(self.labels, self.pred, self.scores, list(self.classes), GOOD_CLASS)
        pixel = self.pixels.report()
        per_class = {f"val_iou_{name}": iou for name, iou in pixel["iou_per_class"].items()}
        return {
            "val_loss": self.loss,
            "val_accuracy": image["accuracy"],
            "val_macro_f1": image["macro_f1"],
            "val_auroc": image["auroc_defect"],
            "val_miou": pixel["miou"],
            **per_class,
            "val_iou_defect": pixel["iou_defect"],
        }

    def intervals(self, seed: int = 0) -> dict[str, list[float] | None]:
        """95 % bootstrap intervals of the image and pixel figures, keyed as report.json paths (``image.macro_f1``,
        ``pixel.miou``...): :func:`inspector.evaluation.bootstrap.confidence_intervals` of these arrays."""
        return confidence_intervals(self.labels, self.pred, self.scores, self.classes, self.pixels.per_image,
                                    GOOD_CLASS, seed=seed)


@torch.inference_mode()
def validate(
    model: DefectNet, loader: DataLoader, device: torch.device, classes: tuple[str, ...], show: bool = True,
    bf16: bool = True,
) -> Validation:
    """One pass over ``loader``: loss, classifications and per-image pixel confusions at model input scale.

    The pixel label of a predicted defect pixel is the image's most likely defect class (class index = label; 0 =
    background, where ``good``, the class a defect pixel never takes, stands first), as in :mod:`inspector.inference.postprocess`.
    """
    model.eval()
    good = classes.index(GOOD_CLASS)
    pixels = PixelConfusion(len(classes), classes[1:])
    all_probs, all_labels, loss_sum, n = [], [], 0.0, 0
    for images, masks, has_mask, labels in progress(loader, "validate", show):
        images, masks, has_mask, labels = _to(device, images, masks, has_mask, labels)
        with training_autocast(device, bf16):
            out = _fp32(model(images.contiguous(memory_format=torch.channels_last)))
        loss_sum += defect_loss(out, labels, masks, has_mask)["total"].item() * len(labels)
        n += len(labels)
        probs = out.logits.softmax(dim=1).cpu().numpy()  # (b, n_classes)
        pred_px = (out.mask_logits[:, 0] > 0).long().cpu().numpy() * _likeliest_defect(probs, good)[:, None, None]
        true_px = masks[:, 0].long().cpu().numpy() * labels.cpu().numpy()[:, None, None]  # (b, h, w) class per pixel
        keep = (has_mask > 0).cpu().numpy()
        pixels.update_batch(true_px[keep], pred_px[keep])
        all_probs.append(probs)
        all_labels.append(labels.cpu().numpy())
    probs, labels = np.concatenate(all_probs), np.concatenate(all_labels)
    pred = np.where(probs[:, good] > 0.5, good, _likeliest_defect(probs, good))
    return Validation(classes, loss_sum / max(n, 1), labels, pred, defect_scores(probs, good, None, 0.0), pixels)


def evaluate(
    model: DefectNet, loader: DataLoader, device: torch.device, classes: tuple[str, ...], show: bool = True,
    bf16: bool = True,
) -> dict[str, float]:
    """Validation loss, image metrics and pixel metrics at model input scale: :meth:`Validation.figures` of
    :func:`validate` less the undefined ones. The trainer logs every value of an epoch's row as a number and keeps
    the row as the epoch's history (and the best one in bundle.json), so an undefined figure is a missing key there
    (a gap in the training curves), never None or a made-up value."""
    figures = validate(model, loader, device, classes, show, bf16).figures()
    return {k: v for k, v in figures.items() if v is not None}


def _likeliest_defect(probs: np.ndarray, good: int) -> np.ndarray:
    """``(b,)`` index of each row's most likely defect class (``good`` found by name, wherever it stands)."""
    return np.where(np.arange(probs.shape[1]) == good, -np.inf, probs).argmax(axis=1)
