"""Decoding at reduced scale: a large JPEG decoded straight to about the size the model needs.

libjpeg can scale while it decodes (DCT scaling by 1/2, 1/4 or 1/8): it skips most of the inverse transform and the
colour conversion of pixels the letterbox would average away. A 5 MP frame going into a 320 px model is decoded at
1/8, 64x fewer pixels; every coefficient is still entropy-decoded, so the decoding itself gains less (6.7 -> 4.2 ms
on 2 EPYC cores) than decoding and letterboxing together (17.8 -> 5.6 ms). The reduced image is never smaller than
what the model needs (it is shrunk by the letterbox, never enlarged), and the frame's own size travels with it
(:class:`Frame`) so masks and regions are mapped back to frame pixels. PNG, BMP and raw frames have no such decoder:
they are decoded whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from inspector.imaging.headers import JPEG_DCT, JpegHeader

# the size (h, w) a frame of (h, w) px is needed at, at least; None: all of its pixels (tiles, a region of interest)
Fit = Callable[[int, int], tuple[int, int] | None]
FACTORS = (8, 4, 2)  # libjpeg's DCT scalings, largest first
_GRAY = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_COLOUR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


@dataclass(frozen=True)
class Frame:
    """Decoded pixels and the size of the frame they come from: larger than the pixels when decoded reduced."""

    image: np.ndarray  # (h', w') gray or (h', w', 3) BGR uint8
    height: int  # the frame's own size, px
    width: int

    @classmethod
    def whole(cls, image: np.ndarray) -> Frame:
        """A frame decoded at its own size."""
        return cls(image, image.shape[0], image.shape[1])

    @property
    def reduced(self) -> bool:
        return self.image.shape[:2] != (self.height, self.width)


def reduced_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """(h, w) of a frame decoded at 1/``factor``: libjpeg rounds up (a 1001 px side at 1/4 is 251 px)."""
    return -(-height // factor), -(-width // factor)


def reduction_factor(height: int, width: int, need_h: int, need_w: int) -> int:
    """The largest of :data:`FACTORS` whose reduced size still covers ``need_h x need_w``; 1 when none does."""
    for factor in FACTORS:
        h, w = reduced_size(height, width, factor)
        if h >= need_h and w >= need_w:
            return factor
    return 1


def jpeg_reduction(header: JpegHeader, fit: Fit) -> tuple[int, int]:
    """(factor, imdecode flag) to decode the JPEG of ``header`` at; factor 1 (decode whole) when it cannot be
    reduced: 12-bit or lossless (no 8-bit DCT scaling), an unusual component count, or nothing to gain."""
    if header.process not in JPEG_DCT or header.precision != 8 or header.components not in (1, 3, 4):
        return 1, cv2.IMREAD_UNCHANGED
    need = fit(header.height, header.width)
    factor = 1 if need is None else reduction_factor(header.height, header.width, *need)
    if factor == 1:
        return 1, cv2.IMREAD_UNCHANGED
    flags = _GRAY if header.components == 1 else _COLOUR  # as IMREAD_UNCHANGED: 1 component gray, else BGR
    return factor, flags[factor] | cv2.IMREAD_IGNORE_ORIENTATION  # reduced modes would apply EXIF rotation
