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
from inspector.data.masks import MASK_THRESHOLD, letterbox_mask
from inspector.errors import DataError
from inspector.imaging.preprocess import preprocess, read_image
from inspector.imaging.tiling import Window, window_at

DEFECT_TILE_SHARE = 0.5  # tiled training: share of a defect image's draws centred on one of its defect components


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


def defect_window(mask: np.ndarray, tile: int, rng: np.random.Generator | None) -> Window:
    """A tile of the frame of ``mask`` (defect where > 127) that holds a defect component.

    ``rng`` None (validation): centred on the largest component. Otherwise a component drawn uniformly (a small pit
    as often as a large stain), the tile centred on one of its pixels drawn at random and shifted by up to a quarter
    tile, so the defect is not always in the middle; the drawn pixel stays inside.
    """
    h, w = mask.shape
    n, labels, stats, centroids = cv2.connectedComponentsWithStats((mask > MASK_THRESHOLD).astype(np.uint8),
                                                                   connectivity=8)
    if n <= 1:
        return window_at(h, w, tile, h / 2, w / 2)
    if rng is None:
        x, y = centroids[1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())]
        return window_at(h, w, tile, y, x)
    ys, xs = np.nonzero(labels == rng.integers(1, n))
    k = rng.integers(len(ys))
    dy, dx = rng.uniform(-tile / 4, tile / 4, 2)
    win = window_at(h, w, tile, ys[k] + dy, xs[k] + dx)
    if not (win.y <= ys[k] < win.y + win.h and win.x <= xs[k] < win.x + win.w):  # the shift crossed an edge
        win = window_at(h, w, tile, ys[k], xs[k])
    return win


class DefectDataset(Dataset):
    """Items are ``(image (3, H, W) float32, mask (1, H, W) float32 in {0, 1}, has_mask, label)``.

    A spec with a tile (``spec.tile`` > 0, frames larger than 1.5 tiles) makes each item one tile of its frame, at
    the scale the predictor inspects tiles: in training, half of a defect image's draws are centred on a defect
    component (:func:`defect_window`) and the other draws, and a good image's, lie anywhere; in validation a
    defect image shows the tile around its largest component and a good image its central tile. A tile of a
    defect image that holds none of its (labelled) defect is labelled ``good``: the predictor answers for a frame
    as its worst tile, so a tile beside the defect must look good.

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
        label = self.index[sample.label]
        defect = has_mask and sample.label != GOOD_CLASS and bool(mask.any())
        cropped = False
        if self.spec.tile:
            win = self._window(mask, defect)
            cropped = (win.w, win.h) != (mask.shape[1], mask.shape[0])
            image = image[win.y : win.y + win.h, win.x : win.x + win.w]
            mask = mask[win.y : win.y + win.h, win.x : win.x + win.w]
        if self.train:
            image, mask = augment(image, mask, self.rng)
        tensor, _ = preprocess(image, self.spec)  # (3, H, W)
        target = letterbox_mask(mask, self.spec)  # (H, W)
        if cropped and defect and not target.any() and GOOD_CLASS in self.index:
            label = self.index[GOOD_CLASS]  # a tile beside the defect
        return torch.from_numpy(tensor), torch.from_numpy(target)[None], torch.tensor(float(has_mask)), label

    def _window(self, mask: np.ndarray, defect: bool) -> Window:
        """The tile of this item's frame (see the class docstring)."""
        h, w = mask.shape
        tile = self.spec.tile
        if not self.train:
            return defect_window(mask, tile, None) if defect else window_at(h, w, tile, h / 2, w / 2)
        if defect and self.rng.random() < DEFECT_TILE_SHARE:
            return defect_window(mask, tile, self.rng)
        return window_at(h, w, tile, self.rng.uniform(0, h), self.rng.uniform(0, w))


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
