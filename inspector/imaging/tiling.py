"""Regions of interest and tiles: large frames inspected at (near) native resolution.

A defect of a few pixels disappears when a 5 MP frame is shrunk to the model input. Cut into overlapping tiles of
about the size of the training images, each tile is seen at the scale the model learnt; the tiles' masks are
stitched back at full resolution (maximum where they overlap) and the frame takes the answer of its most defective
tile. A region of interest crops the frame first; outside it the mask is empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inspector.errors import UsageError


@dataclass(frozen=True)
class Window:
    """A rectangle of the frame, px: top-left corner and size."""

    x: int
    y: int
    w: int
    h: int


def _starts(length: int, size: int, overlap: float) -> list[int]:
    if length <= size:
        return [0]
    n = math.ceil((length - size) / (size * (1.0 - overlap))) + 1
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def plan(h: int, w: int, tile: int, overlap: float = 0.125, roi: Window | None = None) -> list[Window]:
    """Windows covering the frame (or its ``roi``): one for the whole area unless tiling applies.

    Tiling applies when ``tile`` > 0 and the area's longer side exceeds 1.5 tiles; tiles are ``tile`` px squares
    (clipped to the area) overlapping by at least ``overlap`` of their side, spread evenly to the far edges.

    Raises:
        UsageError: ``roi`` is not inside the frame (a ``--roi`` for another camera's frame size).
    """
    area = roi or Window(0, 0, w, h)
    if area.x < 0 or area.y < 0 or area.w <= 0 or area.h <= 0 or area.x + area.w > w or area.y + area.h > h:
        raise UsageError(f"region of interest at x={area.x} y={area.y} of {area.w}x{area.h} px is not inside the "
                         f"{w}x{h} px frame")
    if not tiles_apply(area.h, area.w, tile):
        return [area]
    return [Window(area.x + x, area.y + y, min(tile, area.w), min(tile, area.h))
            for y in _starts(area.h, tile, overlap) for x in _starts(area.w, tile, overlap)]


def tiles_apply(h: int, w: int, tile: int) -> bool:
    """Whether :func:`plan` cuts an ``h x w`` area into tiles of ``tile`` px."""
    return tile > 0 and max(h, w) > 1.5 * tile


def window_at(h: int, w: int, tile: int, y: float, x: float) -> Window:
    """The tile of an ``h x w`` frame centred on (``y``, ``x``) as nearly as its edges allow (the whole frame where
    :func:`plan` would not tile it): what a model trained on tiles is shown, at the scale it inspects.

    The point is always inside the window.
    """
    if not tiles_apply(h, w, tile):
        return Window(0, 0, w, h)
    th, tw = min(tile, h), min(tile, w)
    top = min(max(0, int(round(y - th / 2))), h - th)
    left = min(max(0, int(round(x - tw / 2))), w - tw)
    return Window(left, top, tw, th)


def stitch(h: int, w: int, windows: list[Window], masks: list[np.ndarray]) -> np.ndarray:
    """Window masks (each at its window's size) into one ``(h, w)`` float32 frame mask, maximum on overlaps."""
    out = np.zeros((h, w), np.float32)
    for win, mask in zip(windows, masks):
        view = out[win.y : win.y + win.h, win.x : win.x + win.w]
        np.maximum(view, mask, out=view)
    return out
