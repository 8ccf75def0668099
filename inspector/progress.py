"""Progress bars for long work: live on a terminal, a line every half minute in a log file."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, show: bool = True, leave: bool = False) -> tqdm:
    """A tqdm bar over ``items`` on stderr; sparse updates when stderr is not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(items, desc=desc, leave=leave, disable=not show, dynamic_ncols=True,
                mininterval=0.2 if interactive else 30.0)
