"""What every command shares: path checks before heavy imports, argparse types for flag values, the tiling flags,
and the process-wide settings a torch command makes when it starts."""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Callable

from inspector.config import PreprocessSpec
from inspector.errors import MissingPathError, UsageError

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")


def existing(path: str | Path | None, what: str, folder: bool = False) -> None:
    """Refuses a path the user gave that does not exist (or is not a folder), before anything heavy is imported."""
    if path is None:
        return
    if not Path(path).exists():
        raise MissingPathError(f"{what} {path} does not exist")
    if folder and not Path(path).is_dir():
        raise MissingPathError(f"{what} {path} is not a folder")


def roi(args: argparse.Namespace) -> tuple[int, int, int, int] | None:
    """``--roi X Y W H`` (argparse has checked that each is >= 0), or None."""
    if args.roi and min(args.roi[2:]) == 0:
        raise UsageError(f"--roi: width and height must be > 0, got {args.roi[2]}x{args.roi[3]}")
    return tuple(args.roi) if args.roi else None


def start_torch(inference: bool = False) -> None:
    """Process-wide settings of a command that runs torch, made when it starts (never when a module is imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads must not spin
    if inference:
        import torch

        from inspector.memory import keep_freed_memory

        keep_freed_memory()  # frames' large arrays reuse the same pages instead of faulting in fresh ones
        torch.backends.cudnn.benchmark = True  # input sizes are fixed by the bundle's spec: tune the kernels once


def number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False,
            below: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a finite number of ``kind`` in [low, high] (``above``/``below``: that bound excluded)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if above else value < low)) or (
                high is not None and (value >= high if below else value > high)):
            lo = "" if low is None else f"{'>' if above else '>='} {low}"
            hi = "" if high is None else f"{'<' if below else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (lo, hi) if x)}, got {text}")
        return value

    return parse


COUNT = number(int, 0)  # 0, 1, 2...
POSITIVE = number(int, 1)
PORT = number(int, 0, 65535)  # 0 picks a free port
FRACTION = number(float, 0.0, 1.0)
RATE = number(float, 0.0, 0.5, above=True)  # a share of parts an operating point may flag: (0, 0.5]
NON_NEGATIVE = number(float, 0.0)
POSITIVE_FLOAT = number(float, 0.0, above=True)


def regex(text: str) -> str:
    """An argparse type: a valid regular expression (kept as text)."""
    try:
        re.compile(text)
    except re.error as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid regular expression: {err}") from None
    return text


def image_size(text: str) -> int:
    """An argparse type: an input side the model accepts (the rule is PreprocessSpec's)."""
    size = number(int, 1)(text)
    try:
        PreprocessSpec(height=size, width=size)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return size


def input_size(text: str) -> tuple[int, int]:
    """An argparse type: ``HxW``, a model input height and width the model accepts (PreprocessSpec's rule)."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH in px, e.g. 224x448")
    height, width = int(match[1]), int(match[2])
    try:
        PreprocessSpec(height=height, width=width)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return height, width


def demo_size(text: str) -> int:
    from inspector.data.demo import MIN_SIZE  # OpenCV (a tenth of a second), only when --size is given

    return number(int, MIN_SIZE)(text)


def device(text: str) -> str:
    if not DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: choose auto, cpu, cuda or cuda:N")
    return text


def add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=COUNT, help="inspect large frames as tiles of this side, frame px (0: the whole "
                   "frame resized; default: the bundle's, 0 unless the model was trained on tiles)")
    p.add_argument("--tile-overlap", dest="tile_overlap", type=number(float, 0.0, 1.0, below=True),
                   help="least tile overlap, a fraction of the tile side in [0, 1) (default 0.125)")
    p.add_argument("--roi", type=COUNT, nargs=4, metavar=("X", "Y", "W", "H"), help="region of interest, frame px")
