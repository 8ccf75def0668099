"""Tests for frame decoding, the refusals of bad payloads, the letterbox and the mapping of masks back."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import FrameLimits, PreprocessSpec
from inspector.errors import MissingPathError
from inspector.imaging.preprocess import (
    FrameError,
    Letterbox,
    decode,
    letterbox,
    letterbox_geometry,
    mask_to_frame,
    normalise,
    preprocess,
    read_image,
)


def _gray(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth grayscale gradient (compresses well, so JPEG errors stay small)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (20 + xx * 160 // max(w - 1, 1) + yy * 64 // max(h - 1, 1)).astype(np.uint8)  # 20..244, no wrap


def _colour(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth BGR image whose three channels differ (so channel swaps are visible)."""
    g = _gray(h, w)
    return np.dstack([g, g[::-1], 255 - g]).astype(np.uint8)


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _refused(reason: str, *args, **kwargs) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode(*args, **kwargs)
    assert info.value.reason == reason, str(info.value)
    return info.value


# --- decoding ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [_gray, _colour], ids=["gray", "colour"])
def test_jpeg_round_trip_within_tolerance(make) -> None:
    image = make()
    out = decode(_encode(image, ".jpg"), "JPEG")
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    diff = np.abs(out.astype(np.int16) - image.astype(np.int16))
    assert diff.mean() < 3.0
    assert diff.max() < 40


@pytest.mark.parametrize("make", [_gray, _colour], ids=["gray", "colour"])
@pytest.mark.parametrize("encoding,ext", [("PNG", ".png"), ("BMP", ".bmp")])
def test_lossless_round_trip_is_exact(make, encoding: str, ext: str) -> None:
    image = make()
    out = decode(_encode(image, ext), encoding)
    assert out.dtype == np.uint8
    assert out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_raw_gray8() -> None:
    image = _gray(40, 50)
    out = decode(image.tobytes(), "RAW_GRAY8", width=50, height=40)
    assert out.shape == (40, 50)
    np.testing.assert_array_equal(out, image)


def test_raw_bgr8() -> None:
    image = _colour(40, 50)
    out = decode(image.tobytes(), "RAW_BGR8", width=50, height=40)
    assert out.shape == (40, 50, 3)
    np.testing.assert_array_equal(out, image)


def test_raw_rgb8_comes_back_bgr() -> None:
    bgr = _colour(40, 50)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    out = decode(rgb.tobytes(), "RAW_RGB8", width=50, height=40)
    np.testing.assert_array_equal(out, bgr)
    # a pure red pixel sent as RGB must be (0, 0, 255) in BGR
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    out = decode(red.tobytes(), "RAW_RGB8", width=32, height=32)
    assert tuple(out[5, 5]) == (0, 0, 255)


@pytest.mark.parametrize("encoding,channels", [("RAW_GRAY8", 1), ("RAW_BGR8", 3)])
def test_raw_stride_padding_is_ignored(encoding: str, channels: int) -> None:
    h, w, pad = 36, 45, 11
    image = _colour(h, w) if channels == 3 else _gray(h, w)
    rows = image.reshape(h, w * channels)
    padded = np.full((h, w * channels + pad), 0xAB, np.uint8)
    padded[:, : w * channels] = rows
    out = decode(padded.tobytes(), encoding, width=w, height=h, stride=w * channels + pad)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_png_16_bit_keeps_top_byte() -> None:
    image16 = (_gray(40, 40).astype(np.uint16) << 8) | 0x7F  # low byte must be dropped
    image16[0, 0] = 0xFFFF
    image16[0, 1] = 0x01FF
    out = decode(_encode(image16, ".png"), "PNG")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, (image16 >> 8).astype(np.uint8))
    assert out[0, 0] == 255 and out[0, 1] == 1


def test_png_4_channels_becomes_bgr() -> None:
    bgr = _colour(40, 40)
    alpha = np.full((40, 40), 90, np.uint8)
    out = decode(_encode(np.dstack([bgr, alpha]), ".png"), "PNG")
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out, bgr)


# --- refusals ---------------------------------------------------------------------------------------------------


def test_empty_payload_refused() -> None:
    err = _refused("empty", b"", "PNG")
    assert "empty" in str(err)


def test_unknown_encoding_refused() -> None:
    err = _refused("unknown_encoding", _encode(_gray(), ".png"), "TIFF")
    assert "'TIFF'" in str(err)
    assert "JPEG" in str(err)  # lists what is accepted


def test_payload_over_max_bytes_refused() -> None:
    data = _encode(_colour(), ".png")
    limits = FrameLimits(max_bytes=len(data) - 1)
    err = _refused("too_large", data, "PNG", limits=limits)
    assert str(len(data)) in str(err) and str(len(data) - 1) in str(err)
    # the same limit applies to raw frames, and a payload at the limit passes
    raw = _gray(32, 32).tobytes()
    _refused("too_large", raw, "RAW_GRAY8", width=32, height=32, limits=FrameLimits(max_bytes=1023))
    assert decode(raw, "RAW_GRAY8", width=32, height=32, limits=FrameLimits(max_bytes=1024)).shape == (32, 32)


def test_random_bytes_as_jpeg_refused() -> None:
    data = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    err = _refused("encoding_mismatch", data, "JPEG")
    assert "does not start like a JPEG" in str(err)
    err = _refused("undecodable", b"\xff\xd8" + data, "JPEG")  # a JPEG start, then garbage
    assert "4002 bytes" in str(err) and "JPEG" in str(err)


@pytest.mark.parametrize("fmt,declared", [(".png", "JPEG"), (".jpg", "PNG"), (".bmp", "PNG"), (".png", "BMP")])
def test_declared_encoding_must_match_the_payload(fmt: str, declared: str) -> None:
    err = _refused("encoding_mismatch", _encode(_colour(64, 96), fmt), declared)
    assert "check the declared encoding" in str(err)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_jpeg_refused(fraction: float) -> None:
    data = _encode(_colour(64, 96), ".jpg")
    cut = data[: int(len(data) * fraction)]
    err = _refused("undecodable", cut, "JPEG")
    assert "not a decodable JPEG" in str(err)


def test_random_bytes_as_png_refused() -> None:
    data = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    _refused("encoding_mismatch", data, "PNG")
    _refused("undecodable", b"\x89PNG\r\n\x1a\n" + data, "PNG")


@pytest.mark.parametrize("n_bytes,label", [(32 * 40 - 1, "too few"), (32 * 40 + 1, "too many"), (32 * 40 * 3, "RGB-sized")])
def test_raw_size_mismatch_refused(n_bytes: int, label: str) -> None:
    err = _refused("size_mismatch", bytes(n_bytes), "RAW_GRAY8", width=40, height=32)
    assert f"needs {32 * 40} bytes" in str(err) and f"got {n_bytes}" in str(err)


def test_raw_bgr_size_mismatch_counts_channels() -> None:
    err = _refused("size_mismatch", bytes(40 * 32), "RAW_BGR8", width=40, height=32)
    assert f"needs {40 * 32 * 3} bytes" in str(err)


def test_raw_stride_shorter_than_row_refused() -> None:
    err = _refused("size_mismatch", bytes(32 * 119), "RAW_BGR8", width=40, height=32, stride=119)
    assert "stride 119" in str(err) and "shorter than a row" in str(err)


@pytest.mark.parametrize("width,height", [(0, 32), (32, 0), (-40, 32), (40, -32)])
def test_raw_non_positive_dimensions_refused(width: int, height: int) -> None:
    err = _refused("bad_dimensions", bytes(4096), "RAW_GRAY8", width=width, height=height)
    assert f"{width}x{height}" in str(err) and "positive" in str(err)


def test_raw_side_under_minimum_refused() -> None:
    err = _refused("bad_dimensions", bytes(31 * 64), "RAW_GRAY8", width=64, height=31)
    assert "64x31" in str(err) and "32..8192" in str(err)


def test_raw_side_over_maximum_refused() -> None:
    err = _refused("bad_dimensions", bytes(8193 * 32), "RAW_GRAY8", width=8193, height=32)
    assert "8193x32" in str(err)


@pytest.mark.parametrize("encoding,ext", [("PNG", ".png"), ("BMP", ".bmp"), ("JPEG", ".jpg")])
def test_compressed_side_under_minimum_refused(encoding: str, ext: str) -> None:
    err = _refused("bad_dimensions", _encode(_gray(20, 64), ext), encoding)
    assert "64x20" in str(err)


def test_compressed_side_over_maximum_refused() -> None:
    err = _refused("bad_dimensions", _encode(np.zeros((32, 8200), np.uint8), ".png"), "PNG")
    assert "8200x32" in str(err)


def test_custom_limits_apply_to_compressed_frames() -> None:
    data = _encode(_gray(48, 64), ".png")
    _refused("bad_dimensions", data, "PNG", limits=FrameLimits(max_side=63))
    _refused("bad_dimensions", data, "PNG", limits=FrameLimits(min_side=49))
    assert decode(data, "PNG", limits=FrameLimits(min_side=48, max_side=64)).shape == (48, 64)


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(_encode(_gray(40, 40), ".png"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


def test_png_bomb_header_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args, **kwargs):
        raise AssertionError("cv2.imdecode must not be called for a frame whose header is out of limits")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    err = _refused("bad_dimensions", _png_claiming(100000, 100000), "PNG")
    assert "100000x100000" in str(err)


def test_bmp_header_out_of_limits_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_encode(_gray(40, 40), ".bmp"))
    data[18:26] = struct.pack("<ii", 50000, -50000)  # top-down BMP: negative height
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an out-of-limits BMP"))
    err = _refused("bad_dimensions", bytes(data), "BMP")
    assert "50000x50000" in str(err)


def test_jpeg_header_out_of_limits_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_encode(_gray(40, 40), ".jpg"))
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xC0)
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: pytest.fail("decoded an out-of-limits JPEG"))
    err = _refused("bad_dimensions", bytes(data), "JPEG")
    assert "60000x60000" in str(err)


# --- read_image -------------------------------------------------------------------------------------------------


def test_read_image_reads_like_decode(tmp_path: Path) -> None:
    image = _colour()
    path = tmp_path / "part.PNG"  # extension matched case-insensitively
    path.write_bytes(_encode(image, ".png"))
    np.testing.assert_array_equal(read_image(path), image)


def test_read_image_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.png"
    with pytest.raises(MissingPathError) as info:
        read_image(path)
    assert str(info.value) == f"cannot read image {path}: No such file or directory"


def test_read_image_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "part.tif"
    path.write_bytes(_encode(_gray(), ".tiff"))
    with pytest.raises(FrameError) as info:
        read_image(path)
    assert info.value.reason == "unknown_encoding"
    assert str(path) in str(info.value)


def test_read_image_refusal_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    path.write_bytes(_encode(_gray(10, 10), ".png"))
    with pytest.raises(FrameError) as info:
        read_image(path)
    assert info.value.reason == "bad_dimensions"
    assert str(path) in str(info.value)


# --- letterbox --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src_h,src_w,spec_h,spec_w",
    [(170, 300, 64, 64), (300, 170, 64, 64), (100, 100, 64, 64), (170, 300, 64, 128), (500, 90, 96, 64), (40, 50, 128, 128)],
    ids=["landscape", "portrait", "square", "landscape-wide-input", "tall", "upscale"],
)
def test_letterbox_geometry_and_content(src_h: int, src_w: int, spec_h: int, spec_w: int) -> None:
    spec = PreprocessSpec(spec_h, spec_w, pad_value=33)
    frame = np.full((src_h, src_w, 3), 200, np.uint8)
    out, geo = letterbox(frame, spec)
    assert out.shape == (spec_h, spec_w, 3) and out.dtype == np.uint8
    assert geo == letterbox_geometry(src_h, src_w, spec)
    assert (geo.src_h, geo.src_w) == (src_h, src_w)
    # fits, touches at least one side, keeps the aspect ratio within 1 px
    assert geo.new_h <= spec_h and geo.new_w <= spec_w
    assert geo.new_h == spec_h or geo.new_w == spec_w
    scale = min(spec_h / src_h, spec_w / src_w)
    assert abs(geo.new_h - src_h * scale) <= 1.0
    assert abs(geo.new_w - src_w * scale) <= 1.0
    # centred: the two margins of each axis differ by at most 1 px
    bottom, right = spec_h - geo.new_h - geo.top, spec_w - geo.new_w - geo.left
    assert abs(geo.top - bottom) <= 1 and abs(geo.left - right) <= 1
    assert geo.top >= 0 and geo.left >= 0 and bottom >= 0 and right >= 0
    # content inside, padding value outside
    inside = np.zeros((spec_h, spec_w), bool)
    inside[geo.top : geo.top + geo.new_h, geo.left : geo.left + geo.new_w] = True
    assert np.all(out[inside] == 200)
    assert np.all(out[~inside] == 33)


def test_letterbox_landscape_exact_numbers() -> None:
    geo = letterbox_geometry(170, 300, PreprocessSpec(64, 64))
    assert geo == Letterbox(src_h=170, src_w=300, new_h=36, new_w=64, top=14, left=0)
    geo = letterbox_geometry(300, 170, PreprocessSpec(64, 64))
    assert geo == Letterbox(src_h=300, src_w=170, new_h=64, new_w=36, top=0, left=14)


def test_letterbox_grayscale_and_pad_override() -> None:
    spec = PreprocessSpec(64, 64, pad_value=127)
    out, geo = letterbox(np.full((170, 300), 255, np.uint8), spec, pad_value=0)
    assert out.shape == (64, 64)
    assert np.all(out[: geo.top] == 0) and np.all(out[geo.top + geo.new_h :] == 0)
    assert np.all(out[geo.top : geo.top + geo.new_h] == 255)


def test_letterbox_keeps_content_position() -> None:
    """A bright dot in the top-left quarter of the frame stays in the top-left quarter of the content area."""
    frame = np.zeros((170, 300), np.uint8)
    frame[20:40, 30:60] = 255
    out, geo = letterbox(frame, PreprocessSpec(128, 128), pad_value=0)
    ys, xs = np.nonzero(out > 127)
    scale = geo.new_w / 300
    assert abs(ys.mean() - (geo.top + 29.5 * scale)) < 1.5
    assert abs(xs.mean() - (geo.left + 44.5 * scale)) < 1.5


# --- preprocess -------------------------------------------------------------------------------------------------


def test_preprocess_shape_dtype_and_grey_normalises_to_zero() -> None:
    spec = PreprocessSpec(64, 96)  # mean 127, std 128, pad 127
    tensor, geo = preprocess(np.full((170, 300, 3), 127, np.uint8), spec)
    assert tensor.shape == (3, 64, 96) and tensor.dtype == np.float32
    assert tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor, np.zeros_like(tensor))
    assert geo == letterbox_geometry(170, 300, spec)


def test_preprocess_white_is_one_and_padding_zero() -> None:
    spec = PreprocessSpec(64, 64)
    tensor, geo = preprocess(np.full((170, 300), 255, np.uint8), spec)  # grayscale input
    inner = tensor[:, geo.top : geo.top + geo.new_h, geo.left : geo.left + geo.new_w]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)
    np.testing.assert_allclose(tensor[:, : geo.top], 0.0, atol=1e-6)
    np.testing.assert_allclose(tensor[:, geo.top + geo.new_h :], 0.0, atol=1e-6)


def test_preprocess_uses_per_channel_mean_and_std() -> None:
    spec = PreprocessSpec(32, 32, color_order="BGR", mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    tensor, _ = preprocess(np.full((32, 32, 3), 50, np.uint8), spec)
    np.testing.assert_allclose(tensor[:, 5, 5], [20.0, 7.5, 4.0], rtol=1e-6)


@pytest.mark.parametrize("shape", [(37, 53, 3), (37, 53)])
def test_normalise_by_table_equals_the_arithmetic_on_every_pixel(shape: tuple[int, ...]) -> None:
    spec = PreprocessSpec(32, 64, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    image = np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)
    colour = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
    expected = (colour.astype(np.float32) - np.float32(spec.mean)) * (1.0 / np.float32(spec.std))
    out = normalise(image, spec)
    assert out.shape == (3, 37, 53) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected.transpose(2, 0, 1))


@pytest.mark.parametrize("order,blue_channel", [("RGB", 2), ("BGR", 0)])
def test_preprocess_colour_order(order: str, blue_channel: int) -> None:
    blue = np.zeros((64, 64, 3), np.uint8)
    blue[..., 0] = 255  # BGR: pure blue
    tensor, _ = preprocess(blue, PreprocessSpec(64, 64, color_order=order))
    others = [c for c in range(3) if c != blue_channel]
    np.testing.assert_allclose(tensor[blue_channel], 1.0, atol=1e-6)
    np.testing.assert_allclose(tensor[others], -127.0 / 128.0, atol=1e-6)


# --- mask_to_frame ----------------------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


@pytest.mark.parametrize("spec_h,spec_w", [(64, 64), (128, 128), (64, 128)])
def test_mask_to_frame_maps_back_onto_the_frame(spec_h: int, spec_w: int) -> None:
    h, w = 170, 300
    frame_mask = np.zeros((h, w), np.uint8)
    frame_mask[40:120, 180:270] = 255
    spec = PreprocessSpec(spec_h, spec_w)
    boxed, geo = letterbox(frame_mask, spec, pad_value=0)
    back = mask_to_frame(boxed.astype(np.float32) / 255.0, geo)
    assert back.shape == (h, w) and back.dtype == np.float32
    assert _iou(back >= 0.5, frame_mask > 0) > 0.9


def test_mask_to_frame_portrait() -> None:
    h, w = 300, 170
    frame_mask = np.zeros((h, w), np.uint8)
    frame_mask[200:280, 10:90] = 255
    boxed, geo = letterbox(frame_mask, PreprocessSpec(64, 64), pad_value=0)
    back = mask_to_frame(boxed.astype(np.float32) / 255.0, geo)
    assert back.shape == (h, w)
    assert _iou(back >= 0.5, frame_mask > 0) > 0.9


def test_mask_to_frame_ignores_the_padding() -> None:
    """Scores in the letterbox border must not leak into the frame."""
    spec = PreprocessSpec(64, 64)
    geo = letterbox_geometry(170, 300, spec)
    model_mask = np.zeros((64, 64), np.float32)
    model_mask[: geo.top] = 1.0
    model_mask[geo.top + geo.new_h :] = 1.0
    back = mask_to_frame(model_mask, geo)
    assert back.shape == (170, 300)
    assert float(back.max()) == 0.0


def test_mask_to_frame_identity_when_sizes_match() -> None:
    spec = PreprocessSpec(64, 96)
    geo = letterbox_geometry(64, 96, spec)
    assert (geo.top, geo.left, geo.new_h, geo.new_w) == (0, 0, 64, 96)
    mask = np.random.default_rng(0).random((64, 96)).astype(np.float32)
    np.testing.assert_array_equal(mask_to_frame(mask, geo), mask)
