"""Admission: what a frame claims of the pixel budget, read from its header before any decoding."""

import struct

import cv2
import numpy as np
import pytest

from inspector.config import FrameLimits
from inspector.service.pipeline import FrameIn, Pipeline, claimed_pixels
from inspector.service.refusal import Kind, Rejected

LIMITS = FrameLimits(min_side=32, max_side=8192)


def png(h: int, w: int) -> bytes:
    return cv2.imencode(".png", np.zeros((h, w), np.uint8))[1].tobytes()


def png_claiming(w: int, h: int) -> bytes:
    """A PNG signature and an IHDR chunk claiming ``w`` x ``h``, and nothing else (a decompression bomb's header)."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", w, h, 8, 0, 0, 0, 0) + bytes(4)


@pytest.mark.parametrize("frame, pixels", [
    (FrameIn(png(48, 64), "PNG"), 48 * 64),
    (FrameIn(bytes(64 * 40 * 3), "RAW_BGR8", width=64, height=40), 64 * 40),
    (FrameIn(png_claiming(100000, 100000), "PNG"), 0),  # a decompression bomb: refused from its header
    (FrameIn(bytes(16), "RAW_GRAY8", width=100000, height=100000), 0),
    (FrameIn(png(16, 64), "PNG"), 0),  # under min_side: refused from its header too
    (FrameIn(b"not an image", "PNG"), 0),  # unreadable header: refused as undecodable
])
def test_claimed_pixels(frame, pixels):
    assert claimed_pixels(frame, LIMITS) == pixels


def test_frames_refused_from_their_header_never_count_as_overload():
    pipeline = Pipeline(models=None, batcher=None, max_in_flight=64, limits=LIMITS, max_pixels=5000)
    with pipeline.admitted(FrameIn(png(48, 64), "PNG")):  # 3072 px
        with pipeline.admitted(FrameIn(png_claiming(100000, 100000), "PNG")):
            with pipeline.admitted(FrameIn(png_claiming(100000, 100000), "PNG")):
                assert pipeline.in_flight == 3
        with pytest.raises(Rejected) as err:  # 3072 + 3072 > 5000
            with pipeline.admitted(FrameIn(png(48, 64), "PNG")):
                pass
        assert err.value.kind is Kind.OVERLOADED and "px budget" in err.value.message
    assert pipeline.in_flight == 0
