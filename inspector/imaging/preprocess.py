"""Frame decoding and preprocessing: pure OpenCV/numpy, shared by training, evaluation and serving.

Conventions:
- A decoded frame is ``uint8``, either ``(h, w)`` grayscale or ``(h, w, 3)`` BGR (OpenCV order).
- The model input is a letterbox: the frame is scaled with its aspect ratio kept so that it fits the
  spec's ``height x width``, centred, and the border filled with ``spec.pad_value``. The same geometry
  maps a predicted mask back to the frame's own size (:func:`mask_to_frame`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inspector.config import FrameLimits, PreprocessSpec
from inspector.errors import MissingPathError
from inspector.imaging.frame_error import FrameError
from inspector.imaging.headers import MAGIC, check_png_chunks, probe_jpeg, probe_size
from inspector.imaging.reduced import Fit, Frame, jpeg_reduction, reduced_size

ENCODINGS = ("JPEG", "PNG", "BMP", "RAW_GRAY8", "RAW_BGR8", "RAW_RGB8")
RAW_CHANNELS = {"RAW_GRAY8": 1, "RAW_BGR8": 3, "RAW_RGB8": 3}
EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}
DEFAULT_LIMITS = FrameLimits()


@dataclass(frozen=True)
class Letterbox:
    """Where a frame of ``src_h x src_w`` sits inside the model input."""

    src_h: int
    src_w: int
    new_h: int  # size of the scaled frame inside the input, px
    new_w: int
    top: int  # padding above / left of it, px
    left: int


def _check_size(width: int, height: int, limits: FrameLimits) -> None:
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        raise FrameError(
            "bad_dimensions",
            f"frame is {width}x{height} px; each side must be within {limits.min_side}..{limits.max_side} px",
        )


def _imdecode(data: bytes | memoryview, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:  # OpenCV raises for some malformed headers instead of returning None
        return None


def _decode_compressed(data: bytes | memoryview, encoding: str, limits: FrameLimits, fit: Fit | None) -> Frame:
    if bytes(data[: len(MAGIC[encoding])]) != MAGIC[encoding]:  # OpenCV would decode any format it recognises
        raise FrameError("encoding_mismatch", f"payload does not start like a {encoding} image "
                         f"(first bytes {bytes(data[:4]).hex()}); check the declared encoding")
    if encoding == "JPEG":
        jpeg = probe_jpeg(bytes(data))
        size = None if jpeg is None else (jpeg.width, jpeg.height)
    else:
        jpeg, size = None, probe_size(data, encoding)
    if size is not None:
        _check_size(*size, limits)  # refuse decompression bombs before allocating
    elif encoding == "JPEG":  # no frame header before the image data: nothing to decode, and no size to check
        raise FrameError("undecodable", f"payload of {len(data)} bytes is not a decodable JPEG image "
                         "(no frame header before the image data)")
    if encoding == "PNG":
        check_png_chunks(data)
    factor, flags = jpeg_reduction(jpeg, fit) if jpeg and fit else (1, cv2.IMREAD_UNCHANGED)
    if factor > 1:
        image = _imdecode(data, flags)  # uint8, gray or BGR as the header says
        if image is not None and image.shape[:2] == reduced_size(jpeg.height, jpeg.width, factor):
            return Frame(image, jpeg.height, jpeg.width)
        # anything unexpected: decoded whole below, so it is refused or accepted exactly as without reduction
    image = _imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FrameError("undecodable", f"payload of {len(data)} bytes is not a decodable {encoding} image")
    if encoding == "PNG" and image.dtype == np.uint16:  # 16-bit PNG: keep the top 8 bits
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:  # a 12-bit JPEG, were OpenCV to decode it to uint16: >> 8 keeps 4 of 12 bits
        raise FrameError("undecodable", f"payload of {len(data)} bytes is not a decodable {encoding} image (its "
                         f"samples decode to {image.dtype}; JPEG and BMP are read with 8-bit samples, PNG with 8 or 16)")
    if image.ndim == 3 and image.shape[2] == 4:  # alpha is dropped
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] in (1, 2):  # gray, or gray + alpha
        image = np.ascontiguousarray(image[:, :, 0])
    return Frame.whole(image)


def _decode_raw(data: bytes | memoryview, encoding: str, width: int, height: int, stride: int) -> np.ndarray:
    channels = RAW_CHANNELS[encoding]
    row = width * channels
    stride = stride or row
    if stride < row:
        raise FrameError("size_mismatch", f"stride {stride} B is shorter than a row of {width} px x {channels} B")
    if len(data) != stride * height:
        raise FrameError(
            "size_mismatch",
            f"{encoding} frame of {width}x{height} px with stride {stride} B needs {stride * height} bytes, "
            f"got {len(data)}",
        )
    rows = np.frombuffer(data, np.uint8).reshape(height, stride)[:, :row]  # zero-copy view
    if channels == 1:
        return rows
    image = rows.reshape(height, width, 3)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if encoding == "RAW_RGB8" else image


def decode(
    data: bytes | memoryview,
    encoding: str,
    width: int = 0,
    height: int = 0,
    stride: int = 0,
    limits: FrameLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Decodes a frame payload into a grayscale or BGR ``uint8`` array.

    Args:
        data: Encoded image (JPEG/PNG/BMP) or raw pixels.
        encoding: One of :data:`ENCODINGS`.
        width: Raw frames only: width in px.
        height: Raw frames only: height in px.
        stride: Raw frames only: bytes per row (0 means tightly packed).
        limits: Size limits; anything outside them is refused.

    Raises:
        FrameError: The payload is empty, too large, undecodable, of an unknown encoding, of a raw size that
            does not match ``width x height x channels`` (and ``stride``), or has a side outside the limits.
    """
    return decode_frame(data, encoding, width, height, stride, limits).image


def decode_frame(
    data: bytes | memoryview,
    encoding: str,
    width: int = 0,
    height: int = 0,
    stride: int = 0,
    limits: FrameLimits = DEFAULT_LIMITS,
    fit: Fit | None = None,
) -> Frame:
    """:func:`decode`, at reduced scale where ``fit`` allows (:mod:`inspector.imaging.reduced`): a JPEG is decoded
    at the smallest 1/2, 1/4 or 1/8 scale that still covers the size ``fit`` asks for its frame size; other
    encodings are decoded whole. Refusals are :func:`decode`'s, by the frame's own size.

    Raises:
        FrameError: As :func:`decode`.
    """
    if encoding not in ENCODINGS:
        raise FrameError("unknown_encoding", f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    if len(data) == 0:
        raise FrameError("empty", "frame payload is empty")
    if len(data) > limits.max_bytes:
        raise FrameError("too_large", f"frame payload is {len(data)} bytes; the limit is {limits.max_bytes}")
    if encoding in RAW_CHANNELS:
        if width <= 0 or height <= 0:
            raise FrameError("bad_dimensions", f"{encoding} frame needs positive width and height, got {width}x{height}")
        _check_size(width, height, limits)
        return Frame.whole(_decode_raw(data, encoding, width, height, stride))
    frame = _decode_compressed(data, encoding, limits, fit)
    _check_size(frame.width, frame.height, limits)
    return frame


def read_image(path: str | Path, limits: FrameLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Reads an image file through the same checks as a network frame (encoding from the extension)."""
    return read_frame(path, limits).image


def read_frame(path: str | Path, limits: FrameLimits = DEFAULT_LIMITS, fit: Fit | None = None) -> Frame:
    """:func:`read_image`, at reduced scale where ``fit`` allows (:func:`decode_frame`)."""
    path = Path(path)
    encoding = EXTENSIONS.get(path.suffix.lower())
    if encoding is None:
        raise FrameError("unknown_encoding", f"{path}: unsupported file type; expected {', '.join(EXTENSIONS)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MissingPathError(f"cannot read image {path}: {err.strerror}") from err
    try:
        return decode_frame(data, encoding, limits=limits, fit=fit)
    except FrameError as err:
        raise FrameError(err.reason, f"{path}: {err}") from err


def letterbox_geometry(src_h: int, src_w: int, spec: PreprocessSpec) -> Letterbox:
    """Geometry of the aspect-preserving fit of a ``src_h x src_w`` frame into the model input."""
    scale = min(spec.height / src_h, spec.width / src_w)
    new_h = min(spec.height, max(1, round(src_h * scale)))
    new_w = min(spec.width, max(1, round(src_w * scale)))
    return Letterbox(src_h, src_w, new_h, new_w, (spec.height - new_h) // 2, (spec.width - new_w) // 2)


def inner_size(src_h: int, src_w: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(h, w) of a ``src_h x src_w`` frame scaled inside the letterbox: the least it must be decoded at, whole."""
    geo = letterbox_geometry(src_h, src_w, spec)
    return geo.new_h, geo.new_w


def letterbox(image: np.ndarray, spec: PreprocessSpec, pad_value: int | None = None,
              size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """Scales ``image`` (any channel count, uint8) into the model input size, keeping its aspect ratio.

    ``size``: the (h, w) of the frame ``image`` was decoded from at reduced scale; the geometry is that frame's.
    """
    geo = letterbox_geometry(*(size or image.shape[:2]), spec)
    shrinking = geo.new_h < image.shape[0]
    resized = cv2.resize(image, (geo.new_w, geo.new_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    bottom, right = spec.height - geo.new_h - geo.top, spec.width - geo.new_w - geo.left
    fill = spec.pad_value if pad_value is None else pad_value
    out = cv2.copyMakeBorder(resized, geo.top, bottom, geo.left, right, cv2.BORDER_CONSTANT, value=(fill,) * 4)
    return out, geo


def to_model_colour(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """BGR ``uint8`` -> the spec's colour order; grayscale stays one plane (:func:`normalise` repeats it, and its
    three channels are the same in any order)."""
    if image.ndim == 2 or spec.color_order != "RGB":
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@functools.lru_cache(maxsize=16)
def normalising_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(3, 1, 256) float32``: row ``c`` holds every uint8 value of channel ``c`` normalised, ``(v - mean) / std``
    computed in float32 (so a lookup gives exactly what the arithmetic on each pixel gives)."""
    values = np.arange(256, dtype=np.float32)[None, :]
    table = (values - np.asarray(mean, np.float32)[:, None]) * (1.0 / np.asarray(std, np.float32))[:, None]
    table = np.ascontiguousarray(table[:, None, :])
    table.setflags(write=False)  # shared by every caller
    return table


def normalise(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``(H, W, 3) uint8`` in model colour order, or ``(H, W)`` grayscale (three equal channels) -> ``(3, H, W)
    float32`` normalised by the spec: one table lookup per value (``cv2.LUT``), written in place into each plane."""
    table = normalising_table(tuple(spec.mean), tuple(spec.std))
    planes = [image] * 3 if image.ndim == 2 else cv2.split(image)
    out = np.empty((3, *image.shape[:2]), np.float32)
    for c, plane in enumerate(planes):
        cv2.LUT(plane, table[c], dst=out[c])
    return out


def preprocess(image: np.ndarray, spec: PreprocessSpec,
               size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
    """A decoded frame -> the model input ``(3, H, W) float32`` and the geometry to map masks back.

    Resizing happens before the colour conversion, so a large frame is converted only at model size; a grayscale
    frame is never expanded to three channels (:func:`normalise` reads its one plane three times).
    ``size``: the frame's own (h, w) when ``image`` was decoded at reduced scale (the geometry maps to it).
    """
    boxed, geo = letterbox(image, spec, size=size)
    return normalise(to_model_colour(boxed, spec), spec), geo


def mask_to_frame(mask: np.ndarray, geo: Letterbox) -> np.ndarray:
    """A ``(H, W)`` float map at model input size -> ``(src_h, src_w)`` at the frame's own size."""
    inner = mask[geo.top : geo.top + geo.new_h, geo.left : geo.left + geo.new_w]
    if inner.shape == (geo.src_h, geo.src_w):
        return np.ascontiguousarray(inner)
    return cv2.resize(inner, (geo.src_w, geo.src_h), interpolation=cv2.INTER_LINEAR)
