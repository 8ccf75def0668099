"""Python's full collections in a serving process, with and without the first load's heap frozen, per backend.

    .venv/bin/python bench/heap_bench.py --model models/default [--backends eager onnx openvino-int8] [--quick]

Each backend runs in a process of its own, as ``inspector serve`` loads a model: the predictor, its lanes and its
warm-up. It times a full collection (``gc.collect()``, which holds the GIL: every thread that runs Python waits) on
that heap, then after :func:`inspector.memory.settle_heap` (what ``inspector serve`` does after its first load).
Then it replaces the model ``--swaps`` times as a hot swap does, the collector off while the old one is dropped: a
model freed then was freed by reference counting alone (frozen or not, it cannot leak), and the process's RSS after
each swap shows whether memory stays flat. Writes the ``heap`` section of bench/RESULTS.md (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _harness import invocation, machine, utc_now, write_results  # noqa: E402
from serve_bench import exported_copy  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402
from inspector.inference.runtimes import BACKENDS  # noqa: E402
from inspector.memory import settle_heap  # noqa: E402


def loaded(model: str, backend: str) -> Predictor:
    predictor = Predictor.from_bundle(model, "cpu", backend=backend)
    predictor.open_lanes(2)
    predictor.warm_up(8)
    return predictor


def full_collection_ms(repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gc.collect()
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def rss_mib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def row(model: str, backend: str, swaps: int) -> dict:
    """One backend's figures, in this process."""
    predictor = loaded(model, backend)
    objects, before = len(gc.get_objects()), full_collection_ms()
    frozen = settle_heap()
    after, freed, rss = full_collection_ms(), 0, []
    for _ in range(swaps):
        new, old = loaded(model, backend), weakref.ref(predictor)
        gc.disable()
        predictor = new
        freed += old() is None
        gc.enable()
        rss.append(rss_mib())
    return {"objects": objects, "frozen": frozen, "before": before, "after": after, "freed": freed, "rss": rss}


def report(args: argparse.Namespace, rows: dict[str, dict], started: float) -> str:
    lines = ["| backend | objects after the load | full collection, ms | after `settle_heap`, ms | replaced models "
             "freed by reference counting | RSS after each swap, MiB |", "|---|---|---|---|---|---|"]
    lines += [f"| {b} | {r['objects']} | {r['before']:.1f} | {r['after']:.1f} | {r['freed']} of {args.swaps} | "
              f"{', '.join(map(str, r['rss']))} |" for b, r in rows.items()]
    return "\n".join([
        "## Full collections in a serving process: the first load's heap frozen (`settle_heap`)", "",
        f"- command: `{invocation()}`", f"- machine: {machine()}", f"- date: {utc_now()}",
        f"- model: `{args.model}`; each backend in a process of its own: the predictor with 2 lanes, warmed at batch "
        "8; a full collection is the median of 3 `gc.collect()`; a swap loads the model again and drops the old one "
        "with the collector off", f"- run time: {time.monotonic() - started:.0f} s", "", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backends", nargs="+", default=["eager", "onnx", "openvino-int8"], choices=BACKENDS)
    parser.add_argument("--swaps", type=int, default=6, help="hot swaps per backend")
    parser.add_argument("--quick", action="store_true", help="smoke run: eager only, 2 swaps, nothing written")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a backend's measurement, in a child process
    args = parser.parse_args()
    if args.row:
        print(json.dumps(row(args.model, args.row, args.swaps)))
        return
    started = time.monotonic()
    backends, args.swaps = (["eager"], 2) if args.quick else (args.backends, args.swaps)
    with tempfile.TemporaryDirectory(prefix="heap-bench-") as tmp:
        copy, _, runnable = exported_copy(args.model, backends, Path(tmp))
        rows = {}
        for backend in runnable:
            child = subprocess.run([sys.executable, __file__, "--model", copy, "--row", backend, "--swaps",
                                    str(args.swaps)], capture_output=True, text=True, check=True)
            rows[backend] = json.loads(child.stdout.strip().splitlines()[-1])
    text = report(args, rows, started)
    print(text)
    if not args.quick:
        write_results(text, "heap")


if __name__ == "__main__":
    main()
