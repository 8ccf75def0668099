"""Bad and unusual frames, built in code (nothing on disk): the corpus of the malformed-frame tests and the seeds
of the decode fuzz target.

Each bad frame names the refusal reason the service must give and a word its message must contain. Every payload
is built for a size limit of :data:`MAX_BYTES` (the malformed-frame server runs with it), so the frame over the
limit stays cheap.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

MAX_BYTES = 1_000_000  # FrameLimits.max_bytes the corpus is built for
# inspector.v1.Encoding numbers (99 is one the proto does not define)
UNSPECIFIED, JPEG, PNG, BMP, RAW_GRAY8, RAW_BGR8, RAW_RGB8, UNDEFINED = 0, 1, 2, 3, 4, 5, 6, 99
ENCODING_NAMES = {JPEG: "JPEG", PNG: "PNG", BMP: "BMP", RAW_GRAY8: "RAW_GRAY8", RAW_BGR8: "RAW_BGR8",
                  RAW_RGB8: "RAW_RGB8", UNSPECIFIED: "ENCODING_UNSPECIFIED", UNDEFINED: "99"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Frame:
    """One request's frame fields."""

    name: str
    data: bytes
    encoding: int  # an inspector.v1.Encoding number
    width: int = 0
    height: int = 0
    stride: int = 0
    reason: str = ""  # bad frames: the refusal reason expected
    keyword: str = ""  # bad frames: a word the refusal message must contain
    before_decoding: bool = False  # bad frames: refused from the header alone (the decoder must not run)

    @property
    def encoding_name(self) -> str:
        """The name ``inspector.imaging.preprocess.decode`` is given for this frame (unknown numbers as digits)."""
        return ENCODING_NAMES.get(self.encoding, str(self.encoding))


# ---------------------------------------------------------------- images and encoders


def gray(h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth gradient, 20..244."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (20 + xx * 160 // max(w - 1, 1) + yy * 64 // max(h - 1, 1)).astype(np.uint8)


def colour(h: int = 48, w: int = 64) -> np.ndarray:
    """BGR whose three channels differ (a channel swap shows)."""
    g = gray(h, w)
    return np.dstack([g, g[::-1], 255 - g]).astype(np.uint8)


def encode(image: np.ndarray, ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok, ext
    return data.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes], extra: bytes = b"") -> bytes:
    """A PNG written by hand (OpenCV cannot write gray + alpha or palette PNGs); ``rows`` unfiltered scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(b"".join(b"\0" + row for row in rows))
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A real 40x40 PNG whose IHDR (CRC fixed) claims ``width x height``."""
    data = encode(gray(40, 40), ".png")
    assert data[12:16] == b"IHDR"
    body = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:8] + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


def jpeg_sof_offset(data: bytes) -> int:
    """Offset of the SOF0 marker of an OpenCV-written JPEG."""
    i = 2
    while data[i + 1] != 0xC0:
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return i


def jpeg_claiming(width: int, height: int, before_sof: bytes = b"") -> bytes:
    """A real 40x40 JPEG whose SOF claims ``width x height`` (16 bits each), ``before_sof`` inserted ahead of it."""
    data = encode(gray(40, 40), ".jpg")
    sof = jpeg_sof_offset(data)
    patched = data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]
    return patched[:sof] + before_sof + patched[sof:]


def jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


class _BitWriter:
    """JPEG entropy-coded data: bits most significant first, a 0x00 stuffed after each 0xFF, padded with 1 bits."""

    def __init__(self) -> None:
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, value: int, length: int) -> None:
        for i in range(length - 1, -1, -1):
            self.acc, self.n = self.acc << 1 | (value >> i & 1), self.n + 1
            if self.n == 8:
                self.out += b"\xff\0" if self.acc == 0xFF else bytes([self.acc])
                self.acc, self.n = 0, 0

    def flush(self) -> bytes:
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)
        return bytes(self.out)


def _magnitude(diff: int) -> tuple[int, int]:
    """(category, extra bits) of a difference as T.81 (F.1.2.1, H.1.2.2) codes it."""
    size = abs(diff).bit_length()
    return size, (diff if diff >= 0 else diff - 1) & ((1 << size) - 1)


def lossless_jpeg(image: np.ndarray, precision: int) -> bytes:
    """A lossless JPEG (SOF3, T.81 annex H) of a gray ``image`` of ``precision`` bits (2..16), written by hand:
    predictor 1 (the left neighbour), every difference category 0..16 coded in 5 bits."""
    h, w = image.shape
    dht = jpeg_segment(0xC4, bytes([0x00, 0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17)))  # category k: code k
    sof = jpeg_segment(0xC3, struct.pack(">BHHB", precision, h, w, 1) + bytes([1, 0x11, 0]))
    sos = jpeg_segment(0xDA, bytes([1, 1, 0x00, 1, 0, 0]))  # Ss = predictor 1, no point transform
    bits, x = _BitWriter(), image.astype(np.int64)
    for r in range(h):
        for c in range(w):
            pred = (1 << (precision - 1)) if r == c == 0 else x[r - 1, c] if c == 0 else x[r, c - 1]
            diff = (int(x[r, c] - pred) + 32767) % 65536 - 32767  # modulo 2^16, in -32767..32768
            size, extra = (16, 0) if diff == 32768 else _magnitude(diff)
            bits.put(size, 5)
            bits.put(extra, size if size < 16 else 0)
    return b"\xff\xd8" + dht + sof + sos + bits.flush() + b"\xff\xd9"


def flat_jpeg(value: int, h: int, w: int, precision: int) -> bytes:
    """An extended sequential JPEG (SOF1, DCT) of ``precision`` bits (8 or 12) whose every pixel is ``value``,
    written by hand: each 8x8 block is its DC coefficient (quantised by 1) and an end of block."""
    size, extra = _magnitude(8 * (value - (1 << (precision - 1))))  # DC of a flat block, level-shifted
    dqt = jpeg_segment(0xDB, bytes([0x00] + [1] * 64))
    dht = (jpeg_segment(0xC4, bytes([0x00, 1, 1] + [0] * 14 + [0, size]))  # DC: category 0 "0", size "10"
           + jpeg_segment(0xC4, bytes([0x10, 1] + [0] * 15 + [0x00])))  # AC: end of block "0"
    sof = jpeg_segment(0xC1, struct.pack(">BHHB", precision, h, w, 1) + bytes([1, 0x11, 0]))
    sos = jpeg_segment(0xDA, bytes([1, 1, 0x00, 0, 63, 0]))
    bits = _BitWriter()
    bits.put(0b10, 2)
    bits.put(extra, size)
    bits.put(0, 1)
    for _ in range(((h + 7) // 8) * ((w + 7) // 8) - 1):
        bits.put(0b00, 2)  # DC difference 0, end of block
    return b"\xff\xd8" + dqt + dht + sof + sos + bits.flush() + b"\xff\xd9"


def bmp_claiming(width: int, height: int) -> bytes:
    data = encode(gray(40, 40), ".bmp")
    return data[:18] + struct.pack("<ii", width, height) + data[26:]


def core_bmp(image: np.ndarray, claim: tuple[int, int] | None = None) -> bytes:
    """An OS/2 BMP (12-byte BITMAPCOREHEADER, 16-bit sides), 8-bit with a gray palette, bottom-up rows."""
    h, w = image.shape
    width, height = claim or (w, h)
    palette = b"".join(bytes((i, i, i)) for i in range(256))
    row_bytes = (w + 3) // 4 * 4
    rows = b"".join(image[r].tobytes().ljust(row_bytes, b"\0") for r in range(h - 1, -1, -1))
    offset = 14 + 12 + len(palette)
    return (b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
            + struct.pack("<IHHHH", 12, width, height, 1, 8) + palette + rows)


def random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def raw(image: np.ndarray, encoding: int, stride_pad: int = 0) -> bytes:
    """Raw pixels of a gray or BGR ``image`` in ``encoding``, each row followed by ``stride_pad`` bytes."""
    if encoding == RAW_RGB8:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    rows = image.reshape(image.shape[0], -1)
    if stride_pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], stride_pad), 7, np.uint8)], axis=1)
    return np.ascontiguousarray(rows).tobytes()


# ---------------------------------------------------------------- the corpus


def good_frames() -> list[tuple[Frame, np.ndarray]]:
    """Ordinary frames of every encoding, with the image each decodes to (JPEG: approximately)."""
    g, c = gray(), colour()
    h, w = g.shape
    return [
        (Frame("good-png-gray", encode(g, ".png"), PNG), g),
        (Frame("good-png-colour", encode(c, ".png"), PNG), c),
        (Frame("good-jpeg-colour", encode(c, ".jpg"), JPEG), c),
        (Frame("good-bmp-colour", encode(c, ".bmp"), BMP), c),
        (Frame("good-raw-gray", raw(g, RAW_GRAY8), RAW_GRAY8, w, h), g),
        (Frame("good-raw-bgr-stride", raw(c, RAW_BGR8, 5), RAW_BGR8, w, h, w * 3 + 5), c),
        (Frame("good-raw-rgb", raw(c, RAW_RGB8), RAW_RGB8, w, h), c),
    ]


def accepted_frames() -> list[tuple[Frame, np.ndarray]]:
    """Unusual frames that are accepted, with the 8-bit gray or BGR image each must decode to exactly."""
    g, c = gray(), colour()
    h, w = g.shape
    g16, c16 = g.astype(np.uint16) * 257, c.astype(np.uint16) * 257  # top 8 bits == the 8-bit image
    alpha = np.full((h, w), 200, np.uint8)
    palette = np.array([(i, 255 - i, i // 2) for i in range(256)], np.uint8)  # RGB entries
    plte = png_chunk(b"PLTE", palette.tobytes())
    paletted = palette[g][:, :, ::-1]  # what index image g looks like, BGR
    bits = np.where(g > 100, 255, 0).astype(np.uint8)
    fill_jpeg = encode(g, ".jpg")
    sof = jpeg_sof_offset(fill_jpeg)
    plain_jpeg = cv2.imdecode(np.frombuffer(fill_jpeg, np.uint8), cv2.IMREAD_UNCHANGED)  # libjpeg skips both
    top_down = encode(g, ".bmp")
    rows_at = struct.unpack("<I", top_down[10:14])[0]
    top_down = (top_down[:22] + struct.pack("<i", -h) + top_down[26:rows_at]
                + b"".join(g[r].tobytes() for r in range(h)))  # 64 px rows need no padding
    return [
        (Frame("png-16bit-gray", encode(g16, ".png"), PNG), g),
        (Frame("png-16bit-colour", encode(c16, ".png"), PNG), c),
        (Frame("png-rgba", encode(np.dstack([c, alpha]), ".png"), PNG), c),
        (Frame("png-16bit-rgba", encode(np.dstack([c16, alpha.astype(np.uint16) * 257]), ".png"), PNG), c),
        (Frame("png-gray-alpha", make_png(w, h, 8, 4, [np.dstack([g[r], alpha[r]]).tobytes() for r in range(h)]),
               PNG), np.dstack([g, g, g])),
        (Frame("png-palette", make_png(w, h, 8, 3, [g[r].tobytes() for r in range(h)], plte), PNG), paletted),
        (Frame("png-palette-transparency",
               make_png(w, h, 8, 3, [g[r].tobytes() for r in range(h)], plte + png_chunk(b"tRNS", bytes(range(256)))),
               PNG), paletted),
        (Frame("png-1bit", make_png(w, h, 1, 0, [np.packbits(g[r] > 100).tobytes() for r in range(h)]), PNG), bits),
        (Frame("bmp-os2-core-header", core_bmp(g), BMP), g),
        (Frame("bmp-top-down", top_down, BMP), g),
        (Frame("jpeg-fill-bytes", fill_jpeg[:sof] + b"\xff\xff" + fill_jpeg[sof:], JPEG), plain_jpeg),
        (Frame("jpeg-stray-bytes-before-marker", fill_jpeg[:sof] + b"\0\x17\x2a" + fill_jpeg[sof:], JPEG), plain_jpeg),
        (Frame("jpeg-lossless", lossless_jpeg(g, 8), JPEG), g),
    ]


def bad_frames() -> list[Frame]:
    """Frames the service must refuse, each with its reason and a word of its message."""
    g, c = gray(), colour()
    h, w = g.shape
    png_g, jpeg_c, bmp_c = encode(g, ".png"), encode(c, ".jpg"), encode(c, ".bmp")
    ok, tiff = cv2.imencode(".tiff", g)
    gif = b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF0, 0, 0) + b"\0\0\0\xff\xff\xff" + b"!\xf9\x04\0\0\0\0\0" \
        + b",\0\0\0\0" + struct.pack("<HH", w, h) + b"\0\x02\x02D\x01\0;"
    frames: list[Frame] = []

    def bad(name, data, encoding, reason, keyword, width=0, height=0, stride=0):
        frames.append(Frame(name, data, encoding, width, height, stride, reason, keyword,
                            before_decoding=name.startswith(("bomb-", "memory-bomb-"))))

    # truncated: within the header, half way, one or two bytes short
    for label, data, encoding in (("jpeg", jpeg_c, JPEG), ("png", png_g, PNG), ("bmp", bmp_c, BMP)):
        for cut_label, cut in (("header", 20), ("half", len(data) // 2), ("minus1", len(data) - 1)):
            bad(f"truncated-{label}-{cut_label}", data[:cut], encoding, "undecodable", "not a decodable")
    bad("truncated-jpeg-no-eoi", jpeg_c[:-2], JPEG, "undecodable", "not a decodable")
    bad("truncated-png-no-iend", png_g[:-12], PNG, "undecodable", "not a decodable")
    # empty payloads of each encoding (raw with sensible dimensions)
    for encoding in (JPEG, PNG, BMP, RAW_GRAY8, RAW_BGR8, RAW_RGB8):
        raw_dims = (w, h) if encoding >= RAW_GRAY8 else (0, 0)
        bad(f"empty-{ENCODING_NAMES[encoding]}", b"", encoding, "empty", "empty", *raw_dims)
    # random bytes behind a valid signature
    bad("random-after-png-signature", PNG_SIGNATURE + random_bytes(2000, 1), PNG, "undecodable", "not a decodable")
    bad("random-after-png-ihdr", png_g[:33] + random_bytes(2000, 2), PNG, "undecodable", "not a decodable")
    bad("random-after-jpeg-soi", b"\xff\xd8" + random_bytes(2000, 3), JPEG, "undecodable", "not a decodable")
    bad("random-after-bm", b"BM" + random_bytes(2000, 4), BMP, "bad_dimensions", "px")  # header claims nonsense
    bad("random-after-bmp-header", bmp_c[:54] + random_bytes(500, 5), BMP, "undecodable", "not a decodable")
    # one format declared as another
    bad("png-declared-jpeg", png_g, JPEG, "encoding_mismatch", "does not start like a JPEG")
    bad("jpeg-declared-png", jpeg_c, PNG, "encoding_mismatch", "does not start like a PNG")
    bad("jpeg-declared-bmp", jpeg_c, BMP, "encoding_mismatch", "does not start like a BMP")
    bad("bmp-declared-png", bmp_c, PNG, "encoding_mismatch", "does not start like a PNG")
    bad("gif-declared-png", gif, PNG, "encoding_mismatch", "check the declared encoding")
    bad("tiff-declared-png", tiff.tobytes(), PNG, "encoding_mismatch", "check the declared encoding")
    bad("png-declared-raw-gray", png_g, RAW_GRAY8, "size_mismatch", f"needs {w * h} bytes", w, h)
    # unknown encoding numbers
    bad("encoding-unspecified", png_g, UNSPECIFIED, "unknown_encoding", "unknown encoding")
    bad("encoding-99", png_g, UNDEFINED, "unknown_encoding", "unknown encoding")
    # raw sizes that do not match width x height x channels (and stride)
    gray_raw, bgr_raw = raw(g, RAW_GRAY8), raw(c, RAW_BGR8)
    bad("raw-gray-too-few", gray_raw[: w * (h - 4)], RAW_GRAY8, "size_mismatch", f"got {w * (h - 4)}", w, h)
    bad("raw-gray-too-many", gray_raw + gray_raw[: w * 4], RAW_GRAY8, "size_mismatch", f"got {w * (h + 4)}", w, h)
    bad("raw-bgr-sized-for-gray", bgr_raw, RAW_GRAY8, "size_mismatch", f"needs {w * h} bytes", w, h)
    bad("raw-gray-sized-for-bgr", gray_raw, RAW_BGR8, "size_mismatch", f"needs {w * h * 3} bytes", w, h)
    bad("raw-gray-one-short", gray_raw[:-1], RAW_GRAY8, "size_mismatch", f"got {w * h - 1}", w, h)
    bad("raw-rgb-one-over", raw(c, RAW_RGB8) + b"\0", RAW_RGB8, "size_mismatch", f"got {w * h * 3 + 1}", w, h)
    bad("raw-gray-stride-short", gray_raw, RAW_GRAY8, "size_mismatch", "shorter than a row", w, h, w - 1)
    bad("raw-bgr-stride-short", bgr_raw, RAW_BGR8, "size_mismatch", "shorter than a row", w, h, w * 3 - 1)
    bad("raw-gray-stride-vs-length", gray_raw, RAW_GRAY8, "size_mismatch", f"stride {w + 16}", w, h, w + 16)
    bad("raw-bgr-stride-vs-length", raw(c, RAW_BGR8, 4)[:-4], RAW_BGR8, "size_mismatch", "needs", w, h, w * 3 + 4)
    # zero and huge dimensions on raw
    bad("raw-zero-width", gray_raw, RAW_GRAY8, "bad_dimensions", "positive", 0, h)
    bad("raw-zero-height", gray_raw, RAW_GRAY8, "bad_dimensions", "positive", w, 0)
    bad("raw-width-100000", gray_raw, RAW_GRAY8, "bad_dimensions", "100000x48", 100000, h)
    bad("raw-100000-square", gray_raw, RAW_BGR8, "bad_dimensions", "100000x100000", 100000, 100000)
    # decompression bombs: headers claiming huge images (refused before decoding)
    bad("bomb-png-ihdr", png_claiming(100000, 100000), PNG, "bad_dimensions", "100000x100000")
    bad("bomb-jpeg-sof", jpeg_claiming(65535, 65535), JPEG, "bad_dimensions", "65535x65535")  # SOF sides: 16 bits
    bad("bomb-jpeg-sof-after-128k-app", jpeg_claiming(65535, 65535, 2 * (b"\xff\xe1\xff\xff" + bytes(65533))), JPEG,
        "bad_dimensions", "65535x65535")
    bad("bomb-jpeg-sof-after-fill-byte", jpeg_claiming(65535, 65535, b"\xff"), JPEG, "bad_dimensions", "65535x65535")
    bad("bomb-jpeg-sof-after-stray-bytes", jpeg_claiming(65535, 65535, b"\0\x17\x2a"), JPEG, "bad_dimensions",
        "65535x65535")
    bad("bomb-bmp-header", bmp_claiming(100000, 100000), BMP, "bad_dimensions", "100000x100000")
    bad("bomb-bmp-top-down", bmp_claiming(100000, -100000), BMP, "bad_dimensions", "100000x100000")
    bad("bomb-bmp-os2-header", core_bmp(g, (65535, 65535)), BMP, "bad_dimensions", "65535x65535")
    # JPEGs of more than 8 bits: OpenCV's JPEG decoder gives 8-bit images only and refuses them
    bad("jpeg-12bit-lossless", lossless_jpeg(g.astype(np.uint16) * 16, 12), JPEG, "undecodable", "not a decodable")
    bad("jpeg-16bit-lossless", lossless_jpeg(g.astype(np.uint16) * 257, 16), JPEG, "undecodable", "not a decodable")
    bad("jpeg-12bit-dct", flat_jpeg(1000, h, w, 12), JPEG, "undecodable", "not a decodable")
    # a chunk length that lies: OpenCV would allocate the 4 GB it declares before reading it
    bad("memory-bomb-png-chunk-length", png_g[:33] + struct.pack(">I", 0xEE000000) + png_g[37:], PNG, "undecodable",
        "declares 3992977408 bytes")
    # real images outside the side limits
    bad("png-9000x40", encode(np.zeros((40, 9000), np.uint8), ".png"), PNG, "bad_dimensions", "9000x40")
    bad("png-1x1", encode(np.full((1, 1), 128, np.uint8), ".png"), PNG, "bad_dimensions", "1x1")
    bad("jpeg-16x16", encode(colour(16, 16), ".jpg"), JPEG, "bad_dimensions", "16x16")
    bad("bmp-16x16", encode(gray(16, 16), ".bmp"), BMP, "bad_dimensions", "16x16")
    bad("raw-1x1", b"\x80", RAW_GRAY8, "bad_dimensions", "1x1", 1, 1)
    bad("raw-16x16-rgb", raw(colour(16, 16), RAW_RGB8), RAW_RGB8, "bad_dimensions", "16x16", 16, 16)
    # over the size limit
    bad("over-size-limit", b"\xff\xd8\xff\xe0" + random_bytes(1_200_000, 6), JPEG, "too_large", f"limit is {MAX_BYTES}")
    return frames
