"""Properties of ``inspector.imaging.preprocess.decode`` over arbitrary input (hypothesis).

Whatever the payload, encoding and raw geometry, decode returns a uint8 gray or BGR image whose sides are within the
limits, or raises FrameError with one of the fixed reasons; never anything else. Valid raw frames round-trip exactly.
"""

from __future__ import annotations

import struct
from unittest import mock

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.config import FrameLimits
from inspector.imaging.preprocess import ENCODINGS, MAGIC, RAW_CHANNELS, FrameError, decode, decode_frame
from inspector.imaging.reduced import Frame

REASONS = {"empty", "too_large", "unknown_encoding", "encoding_mismatch", "undecodable", "size_mismatch",
           "bad_dimensions"}
SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = st.sampled_from([FrameLimits(), FrameLimits(max_bytes=4096), FrameLimits(min_side=1, max_side=64)])
ANY_ENCODING = st.sampled_from([*ENCODINGS, "ENCODING_UNSPECIFIED", "99", "", "png", "GIF"])


def _sample(h: int, w: int, channels: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    gray = ((xx * 7 + yy * 13) % 256).astype(np.uint8)
    return gray if channels == 1 else np.dstack([gray, 255 - gray, gray[::-1]])


def _encoded(ext: str, h: int, w: int, channels: int) -> bytes:
    ok, data = cv2.imencode(ext, _sample(h, w, channels))
    assert ok
    return data.tobytes()


# small real images (some under the default minimum side) to mutate
REAL = [_encoded(ext, h, w, c) for ext in (".png", ".jpg", ".bmp") for h, w in ((40, 48), (8, 12)) for c in (1, 3)]


@st.composite
def mutated_images(draw) -> bytes:
    """A real encoded image, truncated, with bytes overwritten, or with bytes inserted."""
    data = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["cut", "overwrite", "insert"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if action == "cut":
            data = data[:at]
        elif action == "overwrite":
            data[at : at + len(chunk)] = chunk
        else:
            data[at:at] = chunk
    return bytes(data)


PAYLOADS = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(list(MAGIC.values())), st.binary(max_size=2048)),
    mutated_images(),
)
SIDES = st.one_of(st.integers(-3, 96), st.integers(0, 2**32 - 1))


def assert_contract(call, limits: FrameLimits) -> np.ndarray | None:
    """Runs ``call``; returns the image it decoded, or None for a refusal with a known reason."""
    try:
        image = call()
    except FrameError as err:
        assert err.reason in REASONS, f"unknown reason {err.reason!r}: {err}"
        assert str(err)
        return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), image.shape
    h, w = image.shape[:2]
    assert limits.min_side <= min(h, w) and max(h, w) <= limits.max_side, image.shape
    return image


@SETTINGS
@given(data=PAYLOADS, encoding=ANY_ENCODING, width=SIDES, height=SIDES, stride=SIDES, limits=LIMITS)
def test_arbitrary_bytes_decode_or_refuse(data, encoding, width, height, stride, limits):
    assert_contract(lambda: decode(data, encoding, width, height, stride, limits), limits)


@SETTINGS
@given(data=PAYLOADS, limits=LIMITS)
def test_arbitrary_bytes_in_every_encoding(data, limits):
    for encoding in ENCODINGS:
        assert_contract(lambda: decode(data, encoding, 64, 48, 0, limits), limits)
        assert_contract(lambda: decode(memoryview(data), encoding, 48, 32, 0, limits), limits)


def _outcome(call) -> tuple:
    """("refused", reason, message), or ("decoded", frame height, frame width)."""
    try:
        frame = call()
    except FrameError as err:
        return "refused", err.reason, str(err)
    return "decoded", frame.height, frame.width


@SETTINGS
@given(data=PAYLOADS, limits=LIMITS)
def test_reduced_decoding_refuses_and_accepts_as_the_whole_decoding(data, limits):
    """At reduced scale (1/8 wherever the JPEG allows it) a payload is refused for the same reason, with the same
    message, as when decoded whole, or accepted as a frame of the same size."""
    whole = _outcome(lambda: Frame.whole(decode(data, "JPEG", limits=limits)))
    reduced = _outcome(lambda: decode_frame(data, "JPEG", limits=limits, fit=lambda h, w: (1, 1)))
    assert reduced == whole


@st.composite
def raw_geometries(draw):
    """Raw width, height, stride and a payload length near (or far from) the one they need."""
    encoding = draw(st.sampled_from(sorted(RAW_CHANNELS)))
    width, height = draw(SIDES), draw(SIDES)
    stride = draw(st.one_of(st.just(0), SIDES, st.integers(-2, 8).map(lambda d: max(0, width) * 3 + d)))
    row = max(stride, max(width, 0) * RAW_CHANNELS[encoding])
    needed = row * max(height, 0)
    length = draw(st.one_of(st.integers(0, 4096), st.integers(-3, 3).map(lambda d: needed + d)))
    return encoding, width, height, stride, min(max(length, 0), 1 << 19)


@SETTINGS
@given(geometry=raw_geometries(), limits=LIMITS)
def test_raw_geometry_decodes_or_refuses(geometry, limits):
    encoding, width, height, stride, length = geometry
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    image = assert_contract(lambda: decode(data, encoding, width, height, stride, limits), limits)
    if image is not None:  # accepted: exactly the declared geometry, and the length fitted it
        channels = RAW_CHANNELS[encoding]
        assert image.shape == ((height, width) if channels == 1 else (height, width, 3))
        assert length == (stride or width * channels) * height


@SETTINGS
@given(encoding=st.sampled_from(sorted(RAW_CHANNELS)), height=st.integers(32, 80), width=st.integers(32, 80),
       pad=st.integers(0, 7), seed=st.integers(0, 2**32 - 1))
def test_valid_raw_frames_round_trip_exactly(encoding, height, width, pad, seed):
    channels = RAW_CHANNELS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)  # in the payload's own channel order
    rows = pixels.reshape(height, width * channels)
    if pad:
        rows = np.concatenate([rows, rng.integers(0, 256, (height, pad), dtype=np.uint8)], axis=1)
    stride = width * channels + pad if pad else 0
    image = decode(np.ascontiguousarray(rows).tobytes(), encoding, width, height, stride)
    expected = pixels[:, :, ::-1] if encoding == "RAW_RGB8" else pixels  # decode gives BGR
    assert image.dtype == np.uint8
    np.testing.assert_array_equal(image, expected)


# ---------------------------------------------------------------- refused from the header, never decoded

NOT_DECODED = dict(side_effect=AssertionError("the decoder ran on a payload its header already disqualifies"))
JPEG_40 = _encoded(".jpg", 40, 40, 1)
PNG_40 = _encoded(".png", 40, 40, 3)


def _jpeg_sof(data: bytes) -> int:
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return i


FILL = st.integers(0, 300).map(lambda n: b"\xff" * n)  # fill bytes, allowed before any marker
JPEG_SEGMENTS = st.one_of(
    st.lists(st.integers(0, 0xFE), min_size=1, max_size=40).map(bytes),  # stray bytes (libjpeg skips them)
    st.builds(lambda fill, marker: fill + marker, FILL,
              st.sampled_from([b"\xff\x01", *(bytes([0xFF, 0xD0 + k]) for k in range(8)), b"\xff\x00"])),  # no length
    st.builds(lambda fill, code, body: fill + bytes([0xFF, code]) + struct.pack(">H", len(body) + 2) + body,
              FILL, st.sampled_from([*range(0xE0, 0xF0), 0xFE, 0xDB, 0xDD]), st.binary(max_size=300)),  # APPn, COM..
)


@SETTINGS
@given(before=st.lists(JPEG_SEGMENTS, max_size=8), fill=FILL, width=st.integers(8193, 65535),
       height=st.integers(1, 65535))
def test_jpeg_frame_header_anywhere_before_the_image_data_is_checked_before_decoding(before, fill, width, height):
    """Stray bytes, fill bytes and segments that libjpeg steps over do not hide an oversized frame header."""
    sof = _jpeg_sof(JPEG_40)
    claimed = JPEG_40[: sof + 5] + struct.pack(">HH", height, width) + JPEG_40[sof + 9 :]
    data = claimed[:sof] + b"".join(before) + fill + claimed[sof:]
    with mock.patch.object(cv2, "imdecode", **NOT_DECODED):
        try:
            decode(data, "JPEG")
        except FrameError as err:
            assert err.reason == "bad_dimensions" and f"{width}x{height}" in str(err), str(err)
        else:
            raise AssertionError("accepted a JPEG over the side limit")


def _png_chunk_offsets(data: bytes) -> list[int]:
    offsets, i = [], 8
    while i + 8 <= len(data):
        offsets.append(i)
        i += 12 + struct.unpack(">I", data[i : i + 4])[0]
    return offsets


@SETTINGS
@given(which=st.integers(0, 10), extra=st.integers(1, 2**32 - 1))
def test_png_chunk_longer_than_the_payload_is_refused_before_decoding(which, extra):
    offsets = _png_chunk_offsets(PNG_40)
    at = offsets[1:][which % (len(offsets) - 1)]  # any chunk after IHDR
    length = min(len(PNG_40) - at - 12 + extra, 2**32 - 1)
    data = PNG_40[:at] + struct.pack(">I", length) + PNG_40[at + 4 :]
    with mock.patch.object(cv2, "imdecode", **NOT_DECODED):
        try:
            decode(data, "PNG")
        except FrameError as err:
            assert err.reason == "undecodable" and f"declares {length} bytes" in str(err), str(err)
        else:
            raise AssertionError("accepted a PNG whose chunk runs past its end")


@pytest.mark.parametrize("encoding, payload", [("JPEG", JPEG_40), ("BMP", _encoded(".bmp", 40, 40, 1))])
def test_deeper_samples_than_8_bits_are_refused_outside_png(encoding, payload):
    """Only a 16-bit PNG keeps its top byte: a 12-bit JPEG that some OpenCV build decoded to uint16 would lose 8 of
    its 12 bits to the same shift (a nearly black frame), so it is refused, not inspected."""
    twelve_bit = (cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.uint16) << 4)
    with mock.patch.object(cv2, "imdecode", return_value=twelve_bit):
        with pytest.raises(FrameError) as err:
            decode(payload, encoding)
    assert err.value.reason == "undecodable"
    assert str(err.value) == (f"payload of {len(payload)} bytes is not a decodable {encoding} image (its samples "
                              "decode to uint16; JPEG and BMP are read with 8-bit samples, PNG with 8 or 16)")


def test_a_16_bit_png_keeps_its_top_byte_and_other_sample_types_are_refused():
    sixteen = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 40  # 0..63960: every top byte differs
    ok, png = cv2.imencode(".png", sixteen)
    assert ok
    assert np.array_equal(decode(png.tobytes(), "PNG"), (sixteen >> 8).astype(np.uint8))
    with mock.patch.object(cv2, "imdecode", return_value=sixteen.astype(np.float32)):
        with pytest.raises(FrameError, match="samples decode to float32") as err:
            decode(png.tobytes(), "PNG")
    assert err.value.reason == "undecodable"
