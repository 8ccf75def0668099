"""Tiles and regions of interest: coverage, stitching, and a small defect that only tiling finds."""

import numpy as np
import pytest
import torch

from inspector.artifacts.bundle import BundleMeta, load_bundle, write_bundle
from inspector.config import PreprocessSpec, Thresholds
from inspector.errors import UsageError
from inspector.model import DefectNet
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor
from inspector.imaging.tiling import Window, plan, stitch


def test_small_frames_are_one_window_and_large_ones_are_covered():
    assert plan(300, 400, tile=320) == [Window(0, 0, 400, 300)]
    assert plan(300, 400, tile=0) == [Window(0, 0, 400, 300)]
    windows = plan(768, 1024, tile=256, overlap=0.125)
    covered = np.zeros((768, 1024), bool)
    for w in windows:
        assert w.w == w.h == 256 and 0 <= w.x <= 1024 - 256 and 0 <= w.y <= 768 - 256
        covered[w.y : w.y + w.h, w.x : w.x + w.w] = True
    assert covered.all()
    xs = sorted({w.x for w in windows})
    assert min(b - a for a, b in zip(xs, xs[1:])) <= 256 * (1 - 0.125)  # neighbours overlap enough


def test_roi_limits_the_windows_and_must_fit_the_frame():
    roi = Window(100, 50, 600, 200)
    windows = plan(768, 1024, tile=256, roi=roi)
    assert all(roi.x <= w.x and w.x + w.w <= roi.x + roi.w and roi.y <= w.y and w.y + w.h <= roi.y + roi.h
               for w in windows)
    assert plan(768, 1024, tile=0, roi=roi) == [roi]
    with pytest.raises(UsageError) as err:
        plan(100, 100, tile=0, roi=Window(50, 50, 100, 10))
    assert str(err.value) == "region of interest at x=50 y=50 of 100x10 px is not inside the 100x100 px frame"


def test_stitch_takes_the_maximum_where_windows_overlap():
    windows = [Window(0, 0, 4, 4), Window(2, 0, 4, 4)]
    out = stitch(4, 6, windows, [np.full((4, 4), 0.2, np.float32), np.full((4, 4), 0.7, np.float32)])
    assert out[0, 0] == pytest.approx(0.2) and out[0, 3] == pytest.approx(0.7) and out[0, 5] == pytest.approx(0.7)


class DarkSpotNet(torch.nn.Module):
    """A stand-in network: defect wherever the input is nearly black, and the part is defective if any pixel is."""

    def forward(self, x: torch.Tensor):
        dark = (x[:, :1] < -0.6).float()  # (b, 1, h, w): grey below ~50 with (x - 127) / 128
        found = dark.amax(dim=(1, 2, 3))  # (b,)
        return torch.stack([8 - 16 * found, -8 + 16 * found], dim=1), dark * 20 - 10


@pytest.fixture()
def predictor_factory(tmp_path):
    meta = BundleMeta(backbone="efficientnet_lite0", classes=("good", "spot"), preprocess=PreprocessSpec(64, 64),
                      thresholds=Thresholds(min_region_area=4))
    bundle = load_bundle(write_bundle(tmp_path, "spots", DefectNet("efficientnet_lite0", 2, pretrained=False), meta))

    def make(**options) -> Predictor:
        return Predictor(bundle, "cpu", options=InferenceOptions(**options), network=DarkSpotNet())

    return make


def test_a_small_defect_found_in_a_tile_is_missed_by_plain_resizing(predictor_factory):
    frame = np.full((768, 1024), 200, np.uint8)
    frame[500:505, 700:705] = 0  # 5 x 5 px pit in a 0.8 MP frame
    [resized] = predictor_factory().predict([frame])
    [tiled] = predictor_factory(tile=64).predict([frame])
    assert resized.verdict == "ACCEPT" and resized.regions == []  # averaged away at 64 px
    assert tiled.verdict == "REJECT" and tiled.mask.shape == frame.shape
    [region] = tiled.regions
    assert (region.x, region.y) == (700, 500) and (region.width, region.height) == (5, 5)


ROI = Window(100, 50, 150, 120)


def outside(mask: np.ndarray, roi: Window = ROI) -> np.ndarray:
    """The mask with the region of interest cut out (zeroed)."""
    rest = mask.copy()
    rest[roi.y : roi.y + roi.h, roi.x : roi.x + roi.w] = 0
    return rest


def test_roi_ignores_what_lies_outside(predictor_factory):
    frame = np.full((200, 300), 200, np.uint8)
    frame[20:40, 20:40] = 0  # a dark mark outside the region of interest
    frame[100:120, 150:170] = 0  # and one inside it
    [whole] = predictor_factory().predict([frame])
    assert whole.verdict == "REJECT" and outside(whole.mask).max() > 0.5  # without the ROI both marks show
    assert len(whole.regions) == 2
    [pred] = predictor_factory(roi=ROI).predict([frame])
    assert pred.verdict == "REJECT" and pred.mask.shape == (200, 300)
    assert not outside(pred.mask).any()
    assert pred.mask[104:116, 154:166].min() > 0.5  # the mark inside, where it lies in the frame
    [region] = pred.regions  # within a model pixel (150 px of ROI seen as 64) of the mark
    assert np.allclose((region.x, region.y, region.width, region.height), (150, 100, 20, 20), atol=3)


def test_roi_mask_that_fires_everywhere_stays_inside_the_roi(predictor_factory):
    frame = np.zeros((200, 300), np.uint8)  # all dark: the stand-in network marks every pixel it sees
    [whole] = predictor_factory().predict([frame])
    assert whole.verdict == "REJECT" and whole.mask.min() > 0.5
    [pred] = predictor_factory(roi=ROI).predict([frame])
    assert pred.verdict == "REJECT"
    assert not outside(pred.mask).any()
    assert pred.mask[ROI.y : ROI.y + ROI.h, ROI.x : ROI.x + ROI.w].min() > 0.5
    [region] = pred.regions
    assert (region.x, region.y, region.width, region.height) == (ROI.x, ROI.y, ROI.w, ROI.h)


def test_tta_averages_the_flipped_view(predictor_factory):
    frame = np.full((64, 64), 200, np.uint8)
    frame[10:20, 5:15] = 0
    plain = predictor_factory().predict([frame])[0]
    flipped = predictor_factory(tta=True).predict([frame])[0]
    # the stand-in network is flip-equivariant: the average of both views is the same answer
    assert flipped.verdict == plain.verdict == "REJECT"
    assert np.abs(flipped.mask - plain.mask).max() < 1e-5
    frame[10:20, 5:15] = 200
    frame[:, :1] = 0  # a dark first column: the flipped view sees it on the last column, flipped back: same place
    both = predictor_factory(tta=True).predict([frame])[0]
    assert both.mask[:, 0].min() > 0.5 and both.mask[:, -1].max() < 0.5


class SureItIsGoodNet(DarkSpotNet):
    """Segments dark pixels but always classifies the part good."""

    def forward(self, x: torch.Tensor):
        logits, mask_logits = super().forward(x)
        return torch.stack([torch.full_like(logits[:, 0], 8.0), torch.full_like(logits[:, 0], -8.0)], 1), mask_logits


def test_an_accepted_part_reports_no_defect_area(predictor_factory):
    frame = np.full((64, 64), 200, np.uint8)
    frame[10:20, 5:15] = 0
    predictor = predictor_factory()
    predictor.model = SureItIsGoodNet()
    [pred] = predictor.predict([frame])
    assert pred.verdict == "ACCEPT" and pred.regions == [] and not pred.mask.any()
