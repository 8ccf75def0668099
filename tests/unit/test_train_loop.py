"""Training's validation pass: image figures with ``good`` found by name, not assumed to be class 0."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from inspector.train.loop import _likeliest_defect, evaluate


def test_likeliest_defect_never_answers_good_wherever_it_stands():
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    assert _likeliest_defect(probs, good=1).tolist() == [0, 0, 2]
    assert _likeliest_defect(probs, good=0).tolist() == [1, 1, 2]


class _Fixed(torch.nn.Module):
    """Answers fixed class logits and an empty mask, whatever the image."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor):
        from inspector.model import DefectOutput

        return DefectOutput(self.logits[: len(x)], torch.full((len(x), 1, *x.shape[-2:]), -10.0))


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
