"""Training targets at model scale: a frame's defect mask letterboxed like its image, without losing thin defects.

Shrinking a mask by area averaging and keeping the pixels at least half covered (what the image's INTER_AREA and a
threshold at 127 amount to) erases a crack 1-2 px wide as soon as the frame shrinks 2-4x, and breaks a thin neck
of a larger defect: the model would learn that cracks are good parts. Here a pixel of the target is defect where it
is at least half covered, as before, or where it touches any part of a defect too thin to fill a target pixel on
its own: the mask minus its morphological opening by a square of ``2 ceil(f) - 1`` frame px (``f`` the shrink
factor), the size that always holds one whole target pixel. A thick blob keeps its area to within its border; a
thin line keeps its course, one target pixel wide.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspector.config import PreprocessSpec
from inspector.imaging.preprocess import letterbox_geometry

MASK_THRESHOLD = 127  # a mask pixel is defect where value > 127


def shrink_mask(binary: np.ndarray, height: int, width: int) -> np.ndarray:
    """A ``(h, w)`` {0, 1} uint8 mask -> ``(height, width)`` bool, no smaller than ``(h, w)``: every thin part kept."""
    factor = max(binary.shape[0] / height, binary.shape[1] / width)
    coverage = cv2.resize(binary.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    target = coverage >= 0.5
    side = 2 * math.ceil(factor) - 1
    if side <= 1 or not binary.any():
        return target
    thick = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    thin = (binary > thick).astype(np.float32)  # defect pixels in parts narrower than `side`
    if thin.any():
        target |= cv2.resize(thin, (width, height), interpolation=cv2.INTER_AREA) > 0
    return target


def letterbox_mask(mask: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """A frame's ``(h, w)`` uint8 mask (defect where > 127) -> the ``(H, W)`` float32 {0, 1} target of the spec."""
    geo = letterbox_geometry(mask.shape[0], mask.shape[1], spec)
    binary = (mask > MASK_THRESHOLD).astype(np.uint8)
    if geo.new_h < geo.src_h or geo.new_w < geo.src_w:
        inner = shrink_mask(binary, geo.new_h, geo.new_w)
    else:  # enlarging: linear interpolation, half covered (as the image is enlarged)
        inner = cv2.resize(binary * 255, (geo.new_w, geo.new_h), interpolation=cv2.INTER_LINEAR) > MASK_THRESHOLD
    out = np.zeros((spec.height, spec.width), np.float32)
    out[geo.top : geo.top + geo.new_h, geo.left : geo.left + geo.new_w] = inner
    return out
