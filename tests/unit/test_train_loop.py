"""Training's validation pass: image figures with ``good`` found by name, not assumed to be class 0."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inspector.train.loop import _likeliest_defect, evaluate, validate


def test_likeliest_defect_never_answers_good_wherever_it_stands():
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    assert _likeliest_defect(probs, good=1).tolist() == [0, 0, 2]
    assert _likeliest_defect(probs, good=0).tolist() == [1, 1, 2]


class _Fixed(torch.nn.Module):
    """Answers fixed class logits and mask logits (an empty mask by default), whatever the image."""

    def __init__(self, logits: torch.Tensor, mask_logits: torch.Tensor | None = None) -> None:
        super().__init__()
        self.logits, self.mask_logits = logits, mask_logits

    def forward(self, x: torch.Tensor):
        from inspector.model import DefectOutput

        empty = torch.full((len(x), 1, *x.shape[-2:]), -10.0)
        return DefectOutput(self.logits[: len(x)], empty if self.mask_logits is None else self.mask_logits[: len(x)])


def test_validation_figures_read_good_by_name():
    classes = ("crack", "good")  # good second
    logits = torch.tensor([[0.0, 5.0], [5.0, 0.0], [0.0, 5.0], [5.0, 0.0]])  # good, crack, good, crack
    labels = torch.tensor([1, 0, 1, 1])  # truth: good, crack, good, good
    data = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4, 1, 8, 8), torch.zeros(4), labels)
    got = evaluate(_Fixed(logits), DataLoader(data, batch_size=4), torch.device("cpu"), classes, show=False)
    assert got["val_accuracy"] == pytest.approx(0.75)  # the last good part is taken for a crack
    # defect score 1 - p(good): the crack outranks two good parts and ties the third (with p(crack) read as p(good)
    # instead, the order turns round: 1/6)
    assert got["val_auroc"] == pytest.approx(5 / 6)


def test_validation_pixel_figures_per_class_and_undefined():
    """good, crack, scratch; images: a crack whose 4 true px are found with 4 more (IoU 1/2), a good part, a scratch
    without a mask. Crack IoU 1/2; scratch in neither truth nor prediction: None; binary IoU 1/2; per image 1/2."""
    classes = ("good", "crack", "scratch")
    logits = torch.tensor([[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    masks = torch.zeros(3, 1, 4, 4)
    masks[0, 0, 0] = 1.0  # row 0 of the crack
    mask_logits = torch.full((3, 1, 4, 4), -10.0)
    mask_logits[0, 0, :2] = 10.0  # rows 0-1 found
    data = TensorDataset(torch.zeros(3, 3, 4, 4), masks, torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1, 0, 2]))
    loader = DataLoader(data, batch_size=3)  # _Fixed answers its rows from the first for every batch
    got = validate(_Fixed(logits, mask_logits), loader, torch.device("cpu"), classes, show=False).figures()
    assert got["val_iou_crack"] == pytest.approx(1 / 2) and got["val_iou_scratch"] is None
    assert got["val_iou_defect"] == pytest.approx(1 / 2)
    # background over the two masked images (32 px): 28 true, 24 predicted, 24 both -> IoU 24 / 28
    assert got["val_miou"] == pytest.approx((24 / 28 + 1 / 2) / 2)
    validation = validate(_Fixed(logits, mask_logits), loader, torch.device("cpu"), classes, show=False)
    assert validation.pixels.per_image.shape == (2, 3, 3)  # the scratch has no mask: not a pixel image
    assert validation.labels.tolist() == [1, 0, 2] and validation.pred.tolist() == [1, 0, 2]
    intervals = validation.intervals()
    assert intervals["image.accuracy"] == [1.0, 1.0] and "pixel.iou_per_image" in intervals


def test_nothing_to_find_gives_none_and_the_epoch_row_leaves_it_out():
    classes = ("good", "crack")
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    data = TensorDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4), torch.ones(2), torch.tensor([0, 0]))
    loader = DataLoader(data, batch_size=2)
    figures = validate(_Fixed(logits), loader, torch.device("cpu"), classes, show=False).figures()
    assert figures["val_iou_defect"] is None and figures["val_iou_crack"] is None and figures["val_auroc"] is None
    assert figures["val_miou"] == 1.0  # background alone, all right
    # the per-epoch row leaves the undefined figures out (the trainer logs every value as a number)
    got = evaluate(_Fixed(logits), loader, torch.device("cpu"), classes, show=False)
    assert got == {k: v for k, v in figures.items() if v is not None} and "val_iou_defect" not in got
