"""The predictor on frames decoded at reduced scale: masks, maps and regions at the frame's own size, and the same
answer as from the whole frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspector.artifacts.bundle import Bundle, BundleMeta
from inspector.config import PreprocessSpec, Thresholds
from inspector.imaging.preprocess import decode, decode_frame
from inspector.imaging.reduced import Frame
from inspector.imaging.tiling import Window
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor

CLASSES = ("good", "spot")


class DarkNet(torch.nn.Module):
    """Defect probability rising steeply below grey ~50, an anomaly map of the darkness; defective if any pixel is."""

    def forward(self, x: torch.Tensor):  # (b, 3, h, w), (x - 127) / 128
        mask_logits = (-0.6 - x[:, :1]) * 30  # (b, 1, h, w)
        found = (mask_logits > 0).float().amax(dim=(1, 2, 3))  # (b,)
        return torch.stack([8 - 16 * found, -8 + 16 * found], dim=1), mask_logits, (-x[:, :1]).clamp(min=0) * 2


def _predictor(side: int, **options) -> Predictor:
    meta = BundleMeta(name="dark", version="v1", classes=CLASSES, preprocess=PreprocessSpec(side, side),
                      thresholds=Thresholds(min_region_area=16))
    return Predictor(Bundle(Path(), meta), "cpu", options=InferenceOptions(**options), network=DarkNet().eval())


def _part(h: int, w: int, colour: bool) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A textured bright part with one dark elliptic defect; the frame and the defect's box (x, y, w, h)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    image = 150 + 30 * np.sin(xx / 41.0) * np.cos(yy / 67.0) + rng.normal(0, 4, (h, w))
    cx, cy, ax, ay = int(w * 0.6), int(h * 0.4), w // 12, h // 14
    cv2.ellipse(image, (cx, cy), (ax, ay), 0, 0, 360, 15, -1)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if colour:
        image = np.dstack([image, image, np.clip(image.astype(int) + 10, 0, 255).astype(np.uint8)])
    return image, (cx - ax, cy - ay, 2 * ax + 1, 2 * ay + 1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("h,w,side,colour,factor", [
    (1024, 1280, 320, False, 4),
    (1024, 1280, 192, False, 4),
    (1944, 2592, 320, True, 8),
    (1944, 2592, 192, False, 8),
])
def test_a_reduced_frame_answers_as_the_whole_one_at_the_frames_size(h, w, side, colour, factor):
    image, (bx, by, bw, bh) = _part(h, w, colour)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    predictor = _predictor(side)
    frame = decode_frame(data, "JPEG", fit=predictor.decode_size)
    assert frame.reduced and frame.image.shape[:2] == (-(-h // factor), -(-w // factor))
    [whole, reduced] = predictor.predict([decode(data, "JPEG"), frame])
    assert reduced.mask.shape == reduced.anomaly_map.shape == whole.mask.shape == (h, w)
    assert (reduced.verdict, reduced.label, reduced.defect_class) == (whole.verdict, whole.label, "spot")
    assert reduced.verdict == "REJECT"
    threshold = predictor.thresholds.mask
    assert _iou(reduced.mask >= threshold, whole.mask >= threshold) > 0.9
    assert reduced.anomaly_score == pytest.approx(whole.anomaly_score, abs=0.05)
    [region], [whole_region] = reduced.regions, whole.regions
    tolerance = 2 * w / side  # two model pixels, in frame pixels
    for got in (region, whole_region):  # the defect's box, in frame pixels
        assert abs(got.x - bx) <= tolerance and abs(got.y - by) <= tolerance
        assert abs(got.width - bw) <= 2 * tolerance and abs(got.height - bh) <= 2 * tolerance
        assert got.area_fraction == pytest.approx(got.area_px / (h * w))
    assert abs(region.area_px - whole_region.area_px) <= 0.1 * whole_region.area_px


def test_decode_size_is_the_letterbox_unless_tiles_or_a_region_apply():
    assert _predictor(320).decode_size(1024, 1280) == (256, 320)
    assert _predictor(192).decode_size(1944, 2592) == (144, 192)
    assert _predictor(320, tile=256).decode_size(1024, 1280) is None  # cut into tiles: every pixel
    assert _predictor(320, tile=1024).decode_size(1024, 1280) == (256, 320)  # under 1.5 tiles: whole
    assert _predictor(320, roi=Window(0, 0, 640, 512)).decode_size(1024, 1280) is None


def test_plain_arrays_and_whole_frames_prepare_alike():
    image, _ = _part(300, 400, colour=False)
    predictor = _predictor(64)
    a, b = predictor.prepare([image]), predictor.prepare([Frame.whole(image)])
    np.testing.assert_array_equal(a.batch, b.batch)
    assert a.shapes == b.shapes == [(300, 400)] and a.geometry == b.geometry and a.windows == b.windows


def test_a_reduced_frame_is_refused_where_the_predictor_cuts_it():
    image, _ = _part(1024, 1280, colour=False)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    frame = decode_frame(data, "JPEG", fit=_predictor(320).decode_size)
    assert frame.reduced
    prepared = _predictor(320).prepare([frame])
    assert prepared.shapes == [(1024, 1280)] and prepared.windows == [Window(0, 0, 1280, 1024)]
    for options in ({"tile": 256}, {"roi": Window(0, 0, 640, 512)}):
        with pytest.raises(ValueError, match="decoded at reduced scale"):
            _predictor(320, **options).prepare([frame])
