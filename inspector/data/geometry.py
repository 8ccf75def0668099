"""The model's input geometry, chosen from the training data: input height x width, and whole frames or tiles.

Two questions, answered before training from cheap statistics of the training set (image headers, defect masks):

1. **Which input shape?** The model sees about ``image_size``² px whatever the shape, so a training step costs about
   the same; the shape follows the frames' median aspect ratio (width / height) in multiples of 32, and stays square
   while that median lies within 0.8..1.25. A 1130 x 460 px frame (aspect 2.46) gets 224 x 448, not a 320 x 320
   letterbox that spends 59 % of its pixels on padding.
2. **Whole frames or tiles?** A defect image's defect size is the side of its mask's largest component (sqrt of its
   area, frame px); the data set's is the lower quartile of those (:data:`DEFECT_QUANTILE`: tiles are for when a
   quarter of the defects are small, the ones a model misses first). When that would measure fewer than
   :data:`SMALL_DEFECT_PX` px at model scale under the whole-frame letterbox (half a cell of the encoder's stride-32
   features), and square tiles of ``tile`` frame px (letterboxed to a square ``image_size`` input) make it at least
   :data:`MIN_GAIN` times larger, the model trains on tiles and inspects frames as tiles
   (:func:`inspector.imaging.tiling.plan`). The tile is the multiple of 32 that brings that defect to about
   :data:`TARGET_DEFECT_PX` px (a larger tile means fewer forward passes per frame), never below the input side (a
   tile is never enlarged) and with at most :data:`MAX_TILES` tiles per frame on average (inference cost). A training
   item is one tile, so an epoch costs what a whole-frame epoch costs.

Pure numpy/OpenCV, no torch: :func:`resolve_geometry` fills ``TrainConfig.input_size`` and ``TrainConfig.tile``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from inspector.config import GOOD_CLASS, TrainConfig
from inspector.data.layouts import Sample
from inspector.imaging.headers import probe_size
from inspector.imaging.preprocess import EXTENSIONS
from inspector.imaging.tiling import plan

log = logging.getLogger(__name__)

STRIDE = 32  # the input sides are multiples of the encoder's stride
SQUARE_ASPECT = (0.8, 1.25)  # median width / height within this: a square input
MAX_ASPECT = 4.0  # the input's aspect is clipped to 1/4..4 (a strip of 64 px height learns little)
DEFECT_QUANTILE = 25  # percentile of the defect images' largest-component sides that stands for "the defects"
SMALL_DEFECT_PX = 16  # that side at model scale (px) below which defects count as small
TARGET_DEFECT_PX = 20  # that side at model scale (px) the tile size aims at (tiles cost one forward pass each)
MIN_GAIN = 1.5  # tiles must make that side at least this much larger than the whole frame does
MAX_TILES = 12  # tiles per frame on average at most (inference runs the model once per tile)
MAX_PROBES = 400  # images (and defect masks) read for the statistics, evenly spread over the data set
HEADER_BYTES = 1 << 16  # bytes read to find an image's size (a JPEG's frame header sits after its EXIF block)


@dataclass(frozen=True)
class Geometry:
    """The chosen input and tile, with the figures behind the choice (for the log and the report)."""

    input_size: tuple[int, int]  # model input height x width, px
    tile: int  # tile side, frame px; 0: whole frames
    frame: tuple[int, int]  # median frame height x width, px
    defect_px: float | None  # the defect side (DEFECT_QUANTILE of the masks' largest components), frame px; None:
    #   no defect mask
    whole_px: float | None  # that side at model scale under the whole-frame letterbox
    tile_px: float | None  # that side at model scale on tiles of the best candidate (None: no candidate)
    tiles_per_frame: float  # mean tiles per frame of that candidate (1: whole frames)
    reason: str


def _even(values: Sequence, limit: int = MAX_PROBES) -> list:
    """At most ``limit`` items spread evenly over ``values`` (deterministic)."""
    if len(values) <= limit:
        return list(values)
    return [values[round(i * (len(values) - 1) / (limit - 1))] for i in range(limit)]


def image_size_hw(path: str | Path) -> tuple[int, int]:
    """(h, w) of an image file from its header (a full decode only where the header is not understood)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    size = probe_size(head, EXTENSIONS.get(Path(path).suffix.lower(), ""))
    if size is None:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"cannot read image {path}")
        return image.shape[0], image.shape[1]
    return size[1], size[0]


def input_shape(aspect: float, budget: int) -> tuple[int, int]:
    """Height x width in multiples of 32 with about ``budget``² px and aspect ``aspect`` (width / height)."""
    if SQUARE_ASPECT[0] <= aspect <= SQUARE_ASPECT[1]:
        side = max(STRIDE, round(budget / STRIDE) * STRIDE)
        return side, side
    aspect = min(max(aspect, 1 / MAX_ASPECT), MAX_ASPECT)
    area = float(budget) ** 2

    def error(hw: tuple[int, int]) -> float:  # log-distance from the aspect plus from the pixel budget
        h, w = hw
        return abs(math.log(w / h / aspect)) + abs(math.log(w * h / area))

    candidates = [(h, max(STRIDE, round(h * aspect / STRIDE) * STRIDE)) for h in range(STRIDE, 4 * budget + 1, STRIDE)]
    return min(candidates, key=error)


def choose_input_size(sizes: Sequence[tuple[int, int]], budget: int) -> tuple[int, int]:
    """The input for frames of ``sizes`` ((h, w) each): their median aspect ratio at about ``budget``² px."""
    if not sizes:
        return input_shape(1.0, budget)
    return input_shape(float(np.median([w / h for h, w in sizes])), budget)


def _fit_scale(h: int, w: int, input_size: tuple[int, int]) -> float:
    """Scale of the letterbox of an ``h x w`` area into the input."""
    return min(input_size[0] / h, input_size[1] / w)


def _tiled_scale(h: int, w: int, tile: int, input_size: tuple[int, int]) -> tuple[float, int]:
    """(scale, number of parts) of an ``h x w`` frame inspected with tiles of ``tile`` px."""
    windows = plan(h, w, tile)
    win = windows[0]
    return _fit_scale(win.h, win.w, input_size), len(windows)


def choose_geometry(frames: Sequence[tuple[int, int]], defects: Sequence[tuple[float, int, int]], budget: int,
                    input_size: tuple[int, int] | None = None, tile: int | None = None) -> Geometry:
    """The input size and the tile for a data set (pure: the figures in, the choice out).

    Args:
        frames: (h, w) of the training images (or an even sample of them).
        defects: (side, h, w) per defect mask: the side of its largest component (frame px) and its frame's size.
        budget: ``TrainConfig.image_size``: the input holds about ``budget``² px.
        input_size: Given by the user (None: chosen here).
        tile: Given by the user (0: whole frames; None: chosen here).
    """
    frame = (int(np.median([h for h, _ in frames])), int(np.median([w for _, w in frames]))) if frames else (0, 0)
    whole = input_size or choose_input_size(frames, budget)
    square = input_size or input_shape(1.0, budget)
    sides = np.array([d[0] for d in defects], float)
    defect_px = float(np.percentile(sides, DEFECT_QUANTILE)) if len(sides) else None
    whole_px = _quantile([s * _fit_scale(h, w, whole) for s, h, w in defects])

    def result(size: tuple[int, int], chosen: int, tile_px: float | None, n: float, reason: str) -> Geometry:
        return Geometry(size, chosen, frame, defect_px, whole_px, tile_px, n, reason)

    if tile is not None:
        return result(whole if tile == 0 else square, tile, None, 1.0, "tile given")
    if whole_px is None:
        return result(whole, 0, None, 1.0, "no defect masks: whole frames")
    if whole_px >= SMALL_DEFECT_PX:
        return result(whole, 0, None, 1.0, f"defects are {whole_px:.0f} px at model scale on whole frames "
                      f"(>= {SMALL_DEFECT_PX}): whole frames")
    side = min(square)
    aim = max(side, math.ceil(side * defect_px / TARGET_DEFECT_PX / STRIDE) * STRIDE)
    longest = max(max(h, w) for h, w in frames) if frames else 0
    for candidate in range(aim, int(longest / 1.5) + 1, STRIDE):  # larger tiles: fewer of them, smaller defects
        parts = [_tiled_scale(h, w, candidate, square) for h, w in frames]
        n = float(np.mean([p for _, p in parts]))
        if n > MAX_TILES:
            continue
        tile_px = _quantile([s * _tiled_scale(h, w, candidate, square)[0] for s, h, w in defects])
        if n <= 1.0 or tile_px < MIN_GAIN * whole_px:
            return result(whole, 0, tile_px, n, f"tiles of {candidate} px would make defects {tile_px:.0f} px "
                          f"instead of {whole_px:.0f} (< {MIN_GAIN}x): whole frames")
        return result(square, candidate, tile_px, n, f"defects are {whole_px:.0f} px at model scale on whole frames "
                      f"(< {SMALL_DEFECT_PX}), {tile_px:.0f} px on tiles of {candidate} px: tiles")
    return result(whole, 0, None, 1.0, "frames too small for tiles: whole frames")


def _quantile(values: Sequence[float]) -> float | None:
    return float(np.percentile(values, DEFECT_QUANTILE)) if len(values) else None


def defect_stats(samples: Sequence[Sample]) -> list[tuple[float, int, int]]:
    """(side of the largest component, frame h, frame w) of each non-empty defect mask (an even sample of them)."""
    out = []
    for sample in _even([s for s in samples if s.label != GOOD_CLASS and s.mask is not None]):
        mask = cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE)
        if mask is None or not (mask > 127).any():
            continue
        _, _, stats, _ = cv2.connectedComponentsWithStats((mask > 127).astype(np.uint8), connectivity=8)
        out.append((math.sqrt(float(stats[1:, cv2.CC_STAT_AREA].max())), mask.shape[0], mask.shape[1]))
    return out


def measure(samples: Sequence[Sample], cfg: TrainConfig) -> Geometry:
    """The geometry :func:`choose_geometry` picks for ``samples`` under ``cfg`` (its given input size and tile)."""
    frames = [image_size_hw(s.image) for s in _even(list(samples))]
    return choose_geometry(frames, defect_stats(samples), cfg.image_size, cfg.input_size, cfg.tile)


def resolve_geometry(cfg: TrainConfig, samples: Sequence[Sample]) -> TrainConfig:
    """``cfg`` with ``input_size`` and ``tile`` filled in from the data where they are None (logged)."""
    if cfg.input_size is not None and cfg.tile is not None:
        return cfg
    geo = measure(samples, cfg)
    log.info("input geometry: %dx%d px, %s (median frame %dx%d px; defects (lower quartile) %s px, %s px at model "
             "scale on whole frames, %s on tiles; %s)", *geo.input_size,
             f"tiles of {geo.tile} px" if geo.tile else "whole frames", *geo.frame, _px(geo.defect_px),
             _px(geo.whole_px), _px(geo.tile_px), geo.reason)
    return dataclasses.replace(cfg, input_size=geo.input_size, tile=geo.tile)


def _px(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
