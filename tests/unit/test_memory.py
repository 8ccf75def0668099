"""glibc's allocator keeps a frame's large arrays on the heap once the service has set its thresholds."""

from __future__ import annotations

import os
import subprocess
import sys

from inspector.memory import ENVIRONMENT

PROBE = """
import ctypes, sys
import numpy as np
from inspector.memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_for(nbytes: int) -> int:
    # bytes glibc mapped from the kernel for one live block of nbytes
    before = libc.mallinfo2().hblkhd
    block = np.ones(nbytes, np.uint8)
    return libc.mallinfo2().hblkhd - before

size = 8 << 20  # a 1280x1024 float32 map is 5 MiB
print(mapped_for(size) >= size, keep_freed_memory(), mapped_for(size))
"""


def _probe(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_large_blocks_stay_on_the_heap_once_set() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    mapped_by_default, set_here, mapped_after = _probe(env)
    assert mapped_by_default == "True"  # glibc's default: a fresh mapping per block
    assert set_here == "True" and mapped_after == "0"


def test_glibc_settings_in_the_environment_win() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT} | {"MALLOC_TRIM_THRESHOLD_": "1048576"}
    assert _probe(env)[1] == "False"
