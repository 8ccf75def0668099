"""Augmentations applied to a decoded frame and its mask together, before the shared preprocessing.

They never resize or normalise: :func:`inspector.imaging.preprocess.preprocess` does that, for training and serving alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    hflip: float = 0.5  # probability
    vflip: float = 0.5  # probability
    max_rotate: float = 10.0  # degrees
    max_shift: float = 0.05  # fraction of the side
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = 20.0  # +- grey levels
    contrast: tuple[float, float] = (0.8, 1.2)
    blur: float = 0.2  # probability of a 3x3 gaussian blur
    noise: float = 0.2  # probability of gaussian noise
    max_noise_sigma: float = 6.0  # grey levels


def _geometric(image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator):
    if rng.random() < cfg.hflip:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if rng.random() < cfg.vflip:
        image, mask = image[::-1], mask[::-1]
    h, w = mask.shape
    angle = rng.uniform(-cfg.max_rotate, cfg.max_rotate)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, rng.uniform(*cfg.scale))
    matrix[:, 2] += rng.uniform(-cfg.max_shift, cfg.max_shift, 2) * (w, h)
    image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(np.ascontiguousarray(mask), matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return image, mask


def _photometric(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32) * rng.uniform(*cfg.contrast) + rng.uniform(-cfg.brightness, cfg.brightness)
    if rng.random() < cfg.blur:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    if rng.random() < cfg.noise:
        out += rng.normal(0.0, rng.uniform(0, cfg.max_noise_sigma), out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, rotation, shift, scale, brightness/contrast, blur and noise.

    Args:
        image: ``(h, w)`` or ``(h, w, 3)`` uint8 frame.
        mask: ``(h, w)`` uint8 mask, moved with the same geometry (nearest neighbour).
        rng: Source of randomness.
        cfg: Strengths and probabilities.

    Returns:
        The augmented image and mask, same shapes and dtype.
    """
    image, mask = _geometric(image, mask, cfg, rng)
    return _photometric(image, cfg, rng), mask
