"""InferenceOptions: a value no frame could be inspected with is refused when the options are made, naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from inspector.errors import UsageError
from inspector.imaging.tiling import Window
from inspector.inference.options import InferenceOptions


def test_defaults_inspect_as_the_bundle_says_once() -> None:
    options = InferenceOptions()
    assert (options.tile, options.tile_overlap, options.roi, options.tta) == (None, 0.125, None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.tile = 64  # type: ignore[misc]


def test_usable_values_are_kept() -> None:
    options = InferenceOptions(tile=256, tile_overlap=0.0, roi=Window(0, 10, 640, 480), tta=True)
    assert (options.tile, options.tile_overlap, options.roi, options.tta) == (256, 0.0, Window(0, 10, 640, 480), True)
    assert InferenceOptions(tile_overlap=0.99).tile_overlap == 0.99


@pytest.mark.parametrize("kwargs, message", [
    ({"tile": -1}, "tile must be a whole number of px >= 0 (0: no tiling; None: the bundle's), got -1"),
    ({"tile": 64.5}, "tile must be a whole number of px >= 0 (0: no tiling; None: the bundle's), got 64.5"),
    ({"tile": True}, "tile must be a whole number of px >= 0 (0: no tiling; None: the bundle's), got True"),
    ({"tile_overlap": 1.0}, "tile_overlap must be a fraction of the tile side in [0, 1), got 1.0"),
    ({"tile_overlap": -0.1}, "tile_overlap must be a fraction of the tile side in [0, 1), got -0.1"),
    ({"tile_overlap": float("nan")}, "tile_overlap must be a fraction of the tile side in [0, 1), got nan"),
    ({"roi": Window(0, 0, 0, 10)}, "roi width and height must be > 0, got 0x10"),
    ({"roi": Window(0, 0, 10, -5)}, "roi width and height must be > 0, got 10x-5"),
    ({"roi": Window(-1, 0, 10, 10)}, "roi must start inside the frame (x, y >= 0), got x=-1 y=0"),
    ({"roi": Window(0, 0, 10.5, 10)}, "roi must be whole px, got x=0 y=0 w=10.5 h=10"),
    ({"tta": "yes"}, "tta must be True or False, got 'yes'"),
])
def test_unusable_values_are_refused_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError) as err:
        InferenceOptions(**kwargs)
    assert str(err.value) == message
