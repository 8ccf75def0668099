"""How a predictor looks at each frame, beside what the bundle fixes: tiles, a region of interest, a flipped view.

The bundle decides preprocessing and thresholds; these options belong to the deployment (the camera's frame size,
where the part lies in it, how much compute a frame may take): ``inspector serve``, ``predict`` and ``evaluate``
take them as flags and hand one :class:`InferenceOptions` to :class:`~inspector.inference.predictor.Predictor`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from inspector.errors import UsageError
from inspector.imaging.tiling import Window


def _whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class InferenceOptions:
    """Tiling, region of interest and test-time augmentation of a :class:`Predictor`.

    Raises:
        UsageError: A value no frame could be inspected with, naming the field.
    """

    tile: int | None = None  # tile side in frame px (0: the whole frame, resized); None: the bundle's tile
    tile_overlap: float = 0.125  # least overlap of neighbouring tiles, as a fraction of their side, in [0, 1)
    roi: Window | None = None  # region inspected in every frame, frame px (None: all of it; outside, masks are empty)
    tta: bool = False  # also run the horizontally flipped frame and average the two (twice the compute)

    def __post_init__(self) -> None:
        if not (self.tile is None or (_whole(self.tile) and self.tile >= 0)):
            raise UsageError(f"tile must be a whole number of px >= 0 (0: no tiling; None: the bundle's), "
                             f"got {self.tile!r}")
        overlap = self.tile_overlap
        if not (isinstance(overlap, numbers.Real) and not isinstance(overlap, bool) and 0.0 <= overlap < 1.0):
            raise UsageError(f"tile_overlap must be a fraction of the tile side in [0, 1), got {overlap!r}")
        if self.roi is not None:
            x, y, w, h = self.roi.x, self.roi.y, self.roi.w, self.roi.h
            if not all(_whole(v) for v in (x, y, w, h)):
                raise UsageError(f"roi must be whole px, got x={x!r} y={y!r} w={w!r} h={h!r}")
            if w <= 0 or h <= 0:
                raise UsageError(f"roi width and height must be > 0, got {w}x{h}")
            if x < 0 or y < 0:
                raise UsageError(f"roi must start inside the frame (x, y >= 0), got x={x} y={y}")
        if not isinstance(self.tta, bool):
            raise UsageError(f"tta must be True or False, got {self.tta!r}")
