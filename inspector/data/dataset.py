"""Torch dataset over samples: decode, augment, the shared preprocessing, and class-balanced sampling."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from inspector.config import GOOD_CLASS, PreprocessSpec
from inspector.data.augment import augment
from inspector.data.layouts import Sample
from inspector.errors import DataError
from inspector.imaging.preprocess import letterbox, preprocess, read_image

MASK_THRESHOLD = 127  # a mask pixel is defect where value > 127


def read_mask(sample: Sample, shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """The sample's binary mask (0/255) at ``shape`` and whether it is labelled at all."""
    if sample.mask is None:
        return np.zeros(shape, np.uint8), sample.label == GOOD_CLASS
    mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataError(f"cannot read mask {sample.mask}")
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(mask > MASK_THRESHOLD, 255, 0).astype(np.uint8), True


class DefectDataset(Dataset):
    """Items are ``(image (3, H, W) float32, mask (1, H, W) float32 in {0, 1}, has_mask, label)``.

    Args:
        samples: What to load.
        classes: Class names in model order.
        spec: The preprocessing of the model (input size, colour order, normalisation).
        train: Apply augmentations (a fresh random draw on every access).
        seed: Seed of the augmentation stream.
    """

    def __init__(self, samples: list[Sample], classes: tuple[str, ...], spec: PreprocessSpec, train: bool, seed: int = 0):
        self.samples = samples
        self.index = {c: i for i, c in enumerate(classes)}
        self.spec = spec
        self.train = train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        sample = self.samples[i]
        image = read_image(sample.image)
        mask, has_mask = read_mask(sample, image.shape[:2])
        if self.train:
            image, mask = augment(image, mask, self.rng)
        tensor, _ = preprocess(image, self.spec)  # (3, H, W)
        boxed_mask, _ = letterbox(mask, self.spec, pad_value=0)  # (H, W)
        mask_t = torch.from_numpy((boxed_mask > MASK_THRESHOLD).astype(np.float32))[None]  # (1, H, W)
        return torch.from_numpy(tensor), mask_t, torch.tensor(float(has_mask)), self.index[sample.label]


def worker_init(worker_id: int) -> None:
    """Gives each DataLoader worker its own augmentation stream."""
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng([torch.initial_seed() % 2**32, worker_id])


def balanced_sampler(
    samples: list[Sample], seed: int, power: float = 0.5, num_samples: int | None = None
) -> WeightedRandomSampler:
    """Draws class ``c`` with weight proportional to ``n_c ** (1 - power)``: ``power=0.5`` is square-root balancing.

    A line is mostly good parts; this shows rare defect classes more often without repeating them so much that
    the model memorises them. ``num_samples`` (default: all) is the draws per epoch, e.g. a rank's share.
    """
    counts = Counter(s.label for s in samples)
    weights = torch.tensor([counts[s.label] ** -power for s in samples], dtype=torch.double)
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, num_samples or len(samples), replacement=True, generator=generator)
