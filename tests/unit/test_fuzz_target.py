"""The decode fuzz target (``tests/fuzz/fuzz_decode.py``) without atheris: it swallows refusals and nothing else."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from inspector.imaging.preprocess import FrameError

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZ_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


target = _load("fuzz_decode")
frames = _load("frames")


def test_importing_the_target_does_not_import_atheris():
    assert "atheris" not in vars(target)
    assert callable(target.one_input) and callable(target.main)


def test_random_inputs_never_raise():
    rng = np.random.default_rng(20240611)
    for i in range(500):
        n = int(rng.choice([0, 1, 5, 13, 14, 40, 200, 3000]))
        data = bytearray(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        if data and i % 2:  # half of them: small raw dimensions, so some decode
            data[1:13] = np.array([rng.integers(0, 80), rng.integers(0, 80), 0], "<u4").tobytes()[: len(data) - 1]
        target.one_input(bytes(data))


@pytest.mark.parametrize("builder", ["bad_frames", "accepted_frames", "good_frames"])
def test_corpus_inputs_never_raise(builder):
    made = getattr(frames, builder)()
    for item in made:
        frame = item[0] if isinstance(item, tuple) else item
        data = target.to_input(frame.encoding_name, frame.data, frame.width, frame.height, frame.stride)
        assert target.parse(data) == (frame.encoding_name, frame.data, frame.width, frame.height, frame.stride)
        target.one_input(data)


def test_signature_and_fitted_height_flags():
    encoding, payload, *_ = target.parse(bytes([target.ENCODING_CHOICES.index("PNG") | target.WITH_MAGIC]) + bytes(12))
    assert encoding == "PNG" and payload == b"\x89PNG\r\n\x1a\n"
    head = bytes([target.ENCODING_CHOICES.index("RAW_BGR8") | target.FIT_HEIGHT]) + target.HEADER.pack(40, 0, 0)
    encoding, payload, width, height, stride = target.parse(head + bytes(40 * 3 * 33 + 7))
    assert (encoding, width, height, stride, len(payload)) == ("RAW_BGR8", 40, 33, 0, 40 * 3 * 33)
    target.one_input(head + bytes(40 * 3 * 33 + 7))


def test_only_frame_errors_are_swallowed(monkeypatch):
    def refuse(*args, **kwargs):
        raise FrameError("undecodable", "not an image")

    monkeypatch.setattr(target, "decode", refuse)
    target.one_input(b"\x01" + bytes(20))

    def crash(*args, **kwargs):
        raise RuntimeError("decoder crashed")

    monkeypatch.setattr(target, "decode", crash)
    with pytest.raises(RuntimeError, match="decoder crashed"):
        target.one_input(b"\x01" + bytes(20))

    monkeypatch.setattr(target, "decode", lambda *a, **k: (_ for _ in ()).throw(FrameError("made_up", "x")))
    with pytest.raises(AssertionError, match="unknown refusal reason"):
        target.one_input(b"\x01" + bytes(20))

    monkeypatch.setattr(target, "decode", lambda *a, **k: np.zeros((40, 40), np.float32))
    with pytest.raises(AssertionError):
        target.one_input(b"\x01" + bytes(20))
