"""Image headers read without decoding: the size a JPEG, PNG or BMP claims, and PNG chunks that cannot fit.

OpenCV allocates what a header declares before it finds out the bytes are not there; these checks run first so a
decompression bomb or a lying chunk is refused cheaply.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

from inspector.imaging.frame_error import FrameError

MAGIC = {"JPEG": b"\xff\xd8", "PNG": b"\x89PNG\r\n\x1a\n", "BMP": b"BM"}
_JPEG_NO_LENGTH = {0x00, 0x01, *range(0xD0, 0xD8)}  # stuffed zero, TEM, RST0..7: markers without a segment
_JPEG_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0..15 (C4 DHT, C8 JPG, CC DAC are not frames)
_FILL = re.compile(rb"\xff+")  # a marker's 0xFF and the fill bytes before its code
_JPEG_MAX_STEPS = 4096  # markers examined before the frame header; real files have a few dozen
JPEG_DCT = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}  # baseline, extended, progressive (Huffman or arithmetic): DCT-scalable


class JpegHeader(NamedTuple):
    """What a JPEG's frame header (SOF) declares."""

    width: int
    height: int
    components: int  # 1: grayscale; 3 (YCbCr, RGB) or 4 (CMYK, YCCK): colour; 0 when the header ends before it
    precision: int  # bits per sample: 8, or 12 / 16
    process: int  # the SOF marker code: 0xC0 baseline, 0xC2 progressive, 0xC3 lossless...


def probe_jpeg(data: bytes) -> JpegHeader | None:
    """A JPEG's first SOF, found by walking the markers as libjpeg does: bytes before a marker and 0xFF fill bytes
    are skipped, segments are jumped over by their length. None when no SOF comes before the image data (SOS or EOI)
    or the end: libjpeg cannot decode such a payload either."""
    i = 2
    for _ in range(_JPEG_MAX_STEPS):
        start = data.find(b"\xff", i)
        if start < 0:
            return None
        i = _FILL.match(data, start).end()
        if i >= len(data):
            return None
        marker, i = data[i], i + 1
        if marker in _JPEG_NO_LENGTH:
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS
            return None
        if marker in _JPEG_SOF:
            if i + 7 > len(data):
                return None
            bits, h, w = struct.unpack(">BHH", data[i + 2 : i + 7])  # length (2), precision, height, width,
            components = data[i + 7] if i + 7 < len(data) else 0  # then the number of components
            return JpegHeader(w, h, components, bits, marker)
        if i + 2 > len(data):
            return None
        i += max(2, struct.unpack(">H", data[i : i + 2])[0])
    return None


_PNG_MAX_CHUNKS = 100_000  # far more than any real PNG has (libpng writes 8 KiB image data chunks)


def check_png_chunks(data: bytes | memoryview) -> None:
    """Refuses a PNG whose chunks do not fit in the payload, before decoding: OpenCV allocates (and zero-fills) the
    length a chunk declares, up to 4 GiB, before it finds that the bytes are not there."""
    n, i = len(data), 8
    for _ in range(_PNG_MAX_CHUNKS):
        if i + 8 > n:  # the end; a missing IEND is the decoder's to judge
            return
        length, kind = struct.unpack_from(">I4s", data, i)
        if length > n - i - 12:
            raise FrameError("undecodable", f"payload of {n} bytes is not a decodable PNG image: chunk "
                             f"{kind.decode('latin-1')!r} at byte {i} declares {length} bytes, more than the "
                             f"{max(0, n - i - 12)} left (truncated or corrupt)")
        if kind == b"IEND":
            return
        i += 12 + length
    raise FrameError("undecodable", f"payload of {n} bytes is not a decodable PNG image: "
                     f"more than {_PNG_MAX_CHUNKS} chunks")


def probe_size(data: bytes | memoryview, encoding: str) -> tuple[int, int] | None:
    """Reads (width, height) from an image header without decoding, the way the decoder will read it; None if the
    header is not understood (the decoder then refuses the payload too)."""
    if encoding == "JPEG":
        header = probe_jpeg(data if isinstance(data, bytes) else bytes(data))
        return None if header is None else (header.width, header.height)
    head = bytes(data[:64])
    if encoding == "PNG" and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if encoding == "BMP" and head[:2] == b"BM" and len(head) >= 26:
        header_size = struct.unpack("<I", head[14:18])[0]
        if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
            return struct.unpack("<HH", head[18:22])
        if header_size >= 36:  # BITMAPINFOHEADER and later (OpenCV reads any size from 36 on this way)
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
    return None
