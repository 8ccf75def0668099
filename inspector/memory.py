"""Process memory of the commands that inspect frames: glibc's allocator keeps freed memory for reuse.

Every frame allocates and frees arrays of megabytes (decoded pixels, masks and anomaly maps at the frame's size).
glibc may serve such a block with a fresh ``mmap`` and unmap it when it is freed, and then each frame pays a page
fault per 4 KiB it touches: postprocessing a 1280x1024 frame from OpenVINO's outputs on the main thread
(``inspector predict``, ``evaluate``, a library caller) took 12.6 ms that way and 3.0 ms with the thresholds set
(``bench/frame_work_bench.py``). Setting them keeps blocks under 32 MiB on the heap and up to 64 MiB of free memory
there, so a steady stream of frames reuses the same pages on every thread by setting, not by the chance of glibc's
adaptive threshold (the service's worker threads measured the same either way).

Python's cyclic garbage collector is the other source of pauses: a full collection walks every object in the
process, about 400,000 once torch, the runtimes and a model are loaded, and took 180-240 ms here, holding the GIL
(every thread that runs Python waits). :func:`settle_heap` freezes what a model load leaves alive, so that later
collections walk only what is newer.
"""

from __future__ import annotations

import ctypes
import gc
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 32 << 20  # bytes; glibc's largest: smaller blocks come from the heap, and are reused there
TRIM_THRESHOLD = 64 << 20  # bytes of free memory a heap keeps before returning it to the kernel
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # glibc's own settings: they win


def keep_freed_memory() -> bool:
    """Sets glibc's thresholds for this process; False where there is no glibc ``mallopt`` (musl, macOS) or where
    the environment already sets them."""
    if any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def settle_heap() -> int:
    """Collects the garbage of what was just loaded, then freezes every object left (``gc.freeze``): the cyclic
    collector never walks them again, so a full collection pauses the process for what is newer only. Returns the
    objects now frozen.

    Frozen objects that later fall into unreachable cycles are never freed: call it where what it freezes lives for
    the process, or is freed by reference counting when it is replaced (a ``Predictor`` holds no reference cycle,
    so a swapped-out model is freed at once).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
