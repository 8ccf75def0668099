"""Fuzz target for ``inspector.imaging.preprocess.decode`` (atheris, optional: ``pip install atheris``).

    python tests/fuzz/fuzz_decode.py -max_total_time=60 [CORPUS_DIR ...] [libFuzzer flags]

An input is read as: byte 0 picks the encoding (bits 0-2: the six encodings and two unknown names), asks for the
encoding's signature to be put in front of the payload (bit 3) and, for raw encodings, for a height that fits the
payload (bit 4); bytes 1-12 are width, height and stride (little-endian uint32); the rest is the payload.
``decode`` must return a uint8 gray or BGR image within the limits or raise FrameError with a known reason; any
other exception, or an image breaking that contract, is a finding. Without a corpus directory the run is seeded
with the malformed-frame corpus (``frames.py``); that corpus and any finding (unless ``-artifact_prefix`` is given)
go to a fresh temporary directory, printed at the start.

Not collected by pytest (no ``test_`` prefix); ``tests/unit/test_fuzz_target.py`` runs :func:`one_input` without
atheris.
"""

from __future__ import annotations

import struct
import sys
import tempfile
from pathlib import Path

import numpy as np

from inspector.config import FrameLimits
from inspector.imaging.preprocess import ENCODINGS, MAGIC, RAW_CHANNELS, FrameError, decode

ENCODING_CHOICES = (*ENCODINGS, "ENCODING_UNSPECIFIED", "99")  # indexed by the low 3 bits of byte 0
# none is kept for a pixel type other than 8 or 16 bits: no JPEG, PNG or BMP decodes to one
# (tests/integration/test_malformed.py); decode would call such a frame "undecodable"
REASONS = frozenset({"empty", "too_large", "unknown_encoding", "encoding_mismatch", "undecodable", "size_mismatch",
                     "bad_dimensions"})
LIMITS = FrameLimits(max_bytes=1 << 20)
WITH_MAGIC, FIT_HEIGHT = 0x08, 0x10
HEADER = struct.Struct("<III")


def to_input(encoding: str, payload: bytes, width: int = 0, height: int = 0, stride: int = 0) -> bytes:
    """The fuzz input that decodes ``payload`` as given (no signature added, no height fitted)."""
    return bytes([ENCODING_CHOICES.index(encoding)]) + HEADER.pack(width, height, stride) + payload


def parse(data: bytes) -> tuple[str, bytes, int, int, int]:
    """A fuzz input -> (encoding, payload, width, height, stride)."""
    flags = data[0] if data else 0
    encoding = ENCODING_CHOICES[flags & 0x07]
    width, height, stride = HEADER.unpack(data[1:13].ljust(HEADER.size, b"\0"))
    payload = data[13:]
    if flags & WITH_MAGIC and encoding in MAGIC:
        payload = MAGIC[encoding] + payload
    if flags & FIT_HEIGHT and encoding in RAW_CHANNELS and width > 0:
        row = max(stride, width * RAW_CHANNELS[encoding])
        height = len(payload) // row
        payload = payload[: row * height]
    return encoding, payload, width, height, stride


def check_image(image: np.ndarray, limits: FrameLimits = LIMITS) -> None:
    """The decode contract for an accepted frame."""
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8, type(image)
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), image.shape
    h, w = image.shape[:2]
    assert limits.min_side <= min(h, w) and max(h, w) <= limits.max_side, image.shape


def one_input(data: bytes) -> None:
    """Decodes one fuzz input; swallows FrameError (a refusal) and nothing else."""
    encoding, payload, width, height, stride = parse(data)
    try:
        image = decode(payload, encoding, width, height, stride, LIMITS)
    except FrameError as err:
        assert err.reason in REASONS, f"unknown refusal reason {err.reason!r}: {err}"
        assert str(err), "a refusal without a message"
        return
    check_image(image)


def _seed_dir(out: Path) -> str:
    """``out`` filled with the malformed-frame corpus and the accepted frames as fuzz inputs."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import frames  # noqa: PLC0415 - a sibling module, only needed to seed a run

    out.mkdir(parents=True, exist_ok=True)
    every = frames.bad_frames() + [f for f, _ in frames.accepted_frames() + frames.good_frames()]
    for i, f in enumerate(every):
        if len(f.data) <= LIMITS.max_bytes and max(f.width, f.height, f.stride) < 2**32:
            (out / f"{i:03d}-{f.name}").write_bytes(to_input(f.encoding_name, f.data, f.width, f.height, f.stride))
    return str(out)


def main(argv: list[str] | None = None) -> None:
    import atheris  # optional: imported here so that importing this module never needs it

    import inspector.imaging.headers as headers
    import inspector.imaging.preprocess as preprocess

    argv = list(sys.argv if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="fuzz-decode-"))
    if not any(not arg.startswith("-") for arg in argv[1:]):  # no corpus directory given
        argv.append(_seed_dir(work / "corpus"))
    if not any(arg.startswith("-artifact_prefix=") for arg in argv[1:]):  # findings out of the working tree
        argv.append(f"-artifact_prefix={work}/")
    print(f"corpus and findings under {work}", file=sys.stderr)
    for name in ("decode", "decode_frame", "_decode_compressed", "_decode_raw", "_check_size"):
        atheris.instrument_func(getattr(preprocess, name))
    for name in ("probe_size", "probe_jpeg", "check_png_chunks"):
        atheris.instrument_func(getattr(headers, name))
    atheris.instrument_func(parse)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
