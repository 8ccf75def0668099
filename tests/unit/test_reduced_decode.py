"""Decoding at reduced scale: the factor, the channels, the frame's own size, and refusals exactly as a whole decode."""

from __future__ import annotations

import struct
from unittest import mock

import cv2
import numpy as np
import pytest

from inspector.config import FrameLimits, PreprocessSpec
from inspector.imaging.headers import JpegHeader, probe_jpeg
from inspector.imaging.preprocess import (
    FrameError,
    decode,
    decode_frame,
    letterbox_geometry,
    preprocess,
    read_frame,
)
from inspector.imaging.reduced import Frame, jpeg_reduction, reduced_size, reduction_factor

SPEC_320, SPEC_192 = PreprocessSpec(320, 320), PreprocessSpec(192, 192)


def _fit(spec: PreprocessSpec):
    """What a predictor inspecting whole frames asks for: the letterbox's inner size."""
    def need(h: int, w: int) -> tuple[int, int]:
        geo = letterbox_geometry(h, w, spec)
        return geo.new_h, geo.new_w
    return need


def _scene(h: int, w: int) -> np.ndarray:
    """Smooth grayscale shading with a dark disc (compresses well; scaled copies stay comparable)."""
    yy, xx = np.mgrid[0:h, 0:w]
    image = (60 + xx * 120 // w + yy * 60 // h).astype(np.uint8)
    cv2.circle(image, (w // 3, h // 2), max(h, w) // 10, 10, -1)
    return image


def _colour(h: int, w: int) -> np.ndarray:
    g = _scene(h, w)
    return np.dstack([g, 255 - g, np.full_like(g, 90)])  # B, G, R differ


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


# ---------------------------------------------------------------- the factor


@pytest.mark.parametrize("size,need,factor", [
    ((1024, 1280), (256, 320), 4),  # 1280 / 4 = 320 exactly: 1/4, not 1/2
    ((1024, 1280), (257, 320), 2),  # one row more than 1/4 gives: 1/2
    ((1944, 2592), (240, 320), 8),  # 5 MP into 320: 324 x 243
    ((1944, 2592), (144, 192), 8),
    ((600, 800), (240, 320), 2),
    ((300, 400), (240, 320), 1),  # nothing to gain
    ((1001, 1283), (250, 320), 4),  # 321 x 251 at 1/4 (rounded up)
])
def test_the_largest_factor_that_still_covers_the_need(size, need, factor):
    assert reduction_factor(*size, *need) == factor


def test_the_reduced_size_is_never_below_the_letterbox_and_the_next_factor_would_be():
    for h in range(40, 3000, 37):
        for w in (h // 2 + 1, h, 2 * h - 3, 3 * h + 1):
            for spec in (SPEC_192, SPEC_320, PreprocessSpec(256, 320)):
                need = _fit(spec)(h, w)
                f = reduction_factor(h, w, *need)
                rh, rw = reduced_size(h, w, f)
                assert f == 1 or (rh >= need[0] and rw >= need[1]), (h, w, spec, f)  # 1: whole, as today
                if f < 8:  # a larger factor would have gone below what the model needs
                    bh, bw = reduced_size(h, w, 2 * f)
                    assert bh < need[0] or bw < need[1], (h, w, spec, f)


@pytest.mark.parametrize("h,w", [(1024, 1280), (1001, 1283), (37, 203), (9, 17)])
@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_size_rounds_up_as_libjpeg_does(h, w, factor):
    flags = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
    out = cv2.imdecode(np.frombuffer(_jpeg(np.full((h, w), 128, np.uint8)), np.uint8), flags[factor])
    assert out.shape == reduced_size(h, w, factor)


@pytest.mark.parametrize("header", [
    JpegHeader(1280, 1024, 1, 12, 0xC1),  # 12-bit samples: decoded whole, so refused or kept as today
    JpegHeader(1280, 1024, 1, 8, 0xC3),  # lossless: no DCT to scale
    JpegHeader(1280, 1024, 2, 8, 0xC0),  # two components: neither gray nor colour
])
def test_jpegs_without_8_bit_dct_scaling_are_decoded_whole(header):
    assert jpeg_reduction(header, _fit(SPEC_320)) == (1, cv2.IMREAD_UNCHANGED)


def test_the_header_gives_the_components():
    assert probe_jpeg(_jpeg(_scene(48, 64))) == JpegHeader(64, 48, 1, 8, 0xC0)
    assert probe_jpeg(_jpeg(_colour(48, 64))) == JpegHeader(64, 48, 3, 8, 0xC0)
    progressive = cv2.imencode(".jpg", _colour(48, 64), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert probe_jpeg(progressive) == JpegHeader(64, 48, 3, 8, 0xC2)


# ---------------------------------------------------------------- what comes out


@pytest.mark.parametrize("make,shape", [(_scene, (256, 320)), (_colour, (256, 320, 3))], ids=["gray", "colour"])
def test_a_large_jpeg_is_decoded_reduced_with_its_channels_and_own_size(make, shape):
    image = make(1024, 1280)
    frame = decode_frame(_jpeg(image), "JPEG", fit=_fit(SPEC_320))
    assert (frame.height, frame.width, frame.reduced) == (1024, 1280, True)
    assert frame.image.shape == shape and frame.image.dtype == np.uint8
    expected = cv2.resize(image, (320, 256), interpolation=cv2.INTER_AREA)  # channels in the same (BGR) order
    assert np.abs(frame.image.astype(int) - expected.astype(int)).mean() < 2.0


def test_without_a_fit_or_need_the_frame_is_decoded_whole():
    data = _jpeg(_scene(1024, 1280))
    assert not decode_frame(data, "JPEG").reduced
    assert not decode_frame(data, "JPEG", fit=lambda h, w: None).reduced  # tiles or a region of interest
    whole = decode_frame(data, "JPEG", fit=_fit(PreprocessSpec(1024, 1280)))  # the model needs every pixel
    assert not whole.reduced and np.array_equal(whole.image, decode(data, "JPEG"))


@pytest.mark.parametrize("ext,encoding", [(".png", "PNG"), (".bmp", "BMP")])
def test_png_bmp_and_raw_frames_are_decoded_whole(ext, encoding):
    image = _colour(1024, 1280)
    frame = decode_frame(cv2.imencode(ext, image)[1].tobytes(), encoding, fit=_fit(SPEC_320))
    assert not frame.reduced and np.array_equal(frame.image, image)
    raw = decode_frame(image.tobytes(), "RAW_BGR8", 1280, 1024, fit=_fit(SPEC_320))
    assert not raw.reduced and np.array_equal(raw.image, image)


def _with_exif_orientation(data: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00\x2a" + struct.pack(">IH", 8, 1) + struct.pack(">HHII", 0x0112, 3, 1, orientation << 16)
    body = b"Exif\x00\x00" + tiff + struct.pack(">I", 0)
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def test_exif_orientation_is_ignored_as_by_the_whole_decode():
    data = _with_exif_orientation(_jpeg(_scene(1024, 1280)), 6)  # "rotate 90": OpenCV's reduced modes would
    assert decode(data, "JPEG").shape == (1024, 1280)
    assert decode_frame(data, "JPEG", fit=_fit(SPEC_320)).image.shape == (256, 320)


def test_read_frame_reduces_like_decode_frame(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg(_scene(1944, 2592)))
    frame = read_frame(path, fit=_fit(SPEC_192))
    assert frame.image.shape == (243, 324) and (frame.height, frame.width) == (1944, 2592)


def test_the_letterbox_of_a_reduced_image_is_the_frames():
    image = _scene(1001, 1283)
    frame = decode_frame(_jpeg(image), "JPEG", fit=_fit(SPEC_320))
    assert frame.image.shape == (251, 321)
    tensor, geo = preprocess(frame.image, SPEC_320, (frame.height, frame.width))
    full, full_geo = preprocess(image, SPEC_320)
    assert geo == full_geo == letterbox_geometry(1001, 1283, SPEC_320)
    assert tensor.shape == full.shape == (3, 320, 320)
    assert np.abs(tensor - full).mean() < 0.03  # about 2 grey levels in (x - 127) / 128


# ---------------------------------------------------------------- refusals: the same as a whole decode


def _sof_claiming(data: bytes, width: int, height: int) -> bytes:
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]


GOOD = _jpeg(_scene(1024, 1280))
BAD = {
    "bomb": _sof_claiming(GOOD, 60000, 60000),
    "over_max_side": _sof_claiming(GOOD, 9000, 1024),
    "under_min_side": _jpeg(_scene(4, 600)),
    "png_declared_jpeg": cv2.imencode(".png", _scene(1024, 1280))[1].tobytes(),
    "garbage_after_start": b"\xff\xd8" + bytes(range(256)) * 8,
    "no_frame_header": GOOD[:2] + b"\xff\xd9",
    "truncated": GOOD[: len(GOOD) // 2],
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_jpegs_are_refused_with_the_same_reason_and_message(name):
    fit, limits = _fit(SPEC_320), FrameLimits()
    with pytest.raises(FrameError) as whole:
        decode(BAD[name], "JPEG", limits=limits)
    with pytest.raises(FrameError) as reduced:
        decode_frame(BAD[name], "JPEG", limits=limits, fit=fit)
    assert (reduced.value.reason, str(reduced.value)) == (whole.value.reason, str(whole.value))


def test_a_huge_header_is_refused_before_any_decoding():
    with mock.patch.object(cv2, "imdecode", side_effect=AssertionError("decoded")), pytest.raises(FrameError) as err:
        decode_frame(BAD["bomb"], "JPEG", fit=_fit(SPEC_320))
    assert err.value.reason == "bad_dimensions" and "60000x60000" in str(err.value)


def test_limits_apply_to_the_frames_own_size_not_the_reduced_one():
    data = _jpeg(_scene(1024, 1280))
    with pytest.raises(FrameError) as err:  # 1280 px is over 1000 although 1/8 of it is not
        decode_frame(data, "JPEG", limits=FrameLimits(max_side=1000), fit=_fit(PreprocessSpec(64, 64)))
    assert err.value.reason == "bad_dimensions" and "1280x1024" in str(err.value)
    with pytest.raises(FrameError) as err:
        decode_frame(data, "JPEG", limits=FrameLimits(max_bytes=len(data) - 1), fit=_fit(SPEC_320))
    assert err.value.reason == "too_large"
    small = decode_frame(data, "JPEG", limits=FrameLimits(min_side=200), fit=_fit(PreprocessSpec(64, 64)))
    assert small.image.shape == (128, 160) and (small.height, small.width) == (1024, 1280)  # 128 px < min_side


def test_an_unexpected_reduced_decode_falls_back_to_the_whole_one():
    real = cv2.imdecode
    calls = []

    def odd(buf, flags):
        calls.append(flags)
        return np.zeros((3, 3), np.uint8) if flags != cv2.IMREAD_UNCHANGED else real(buf, flags)

    with mock.patch.object(cv2, "imdecode", side_effect=odd):
        frame = decode_frame(GOOD, "JPEG", fit=_fit(SPEC_320))
    assert not frame.reduced and frame.image.shape == (1024, 1280) and calls[-1] == cv2.IMREAD_UNCHANGED


def test_frame_whole_is_not_reduced():
    frame = Frame.whole(np.zeros((10, 20, 3), np.uint8))
    assert (frame.height, frame.width, frame.reduced) == (10, 20, False)
    assert Frame(frame.image[::2, ::2], 10, 20).reduced
