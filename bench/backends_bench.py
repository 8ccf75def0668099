"""Inference backends side by side, in process: eager PyTorch, ONNX Runtime and OpenVINO, fp32 and INT8.

    .venv/bin/python bench/backends_bench.py --model models/default [--repeats 3] [--quick]

The bundle is copied to a temporary folder and exported there (``inspector export``'s own functions, the INT8 ones
behind their accuracy guard on the bundle's validation split, which needs its training data), so the store is left
as it is. Each backend runs the same real frames (``_harness.load_frames``) through
``serve_bench.in_process``: decode + preprocess + model + postprocess through ``Predictor``, one frame per call
(latency) and 8 per call (throughput), plus the model alone (``Predictor.infer`` on a prepared batch). Every
runtime uses the process's thread budget (``torch.get_num_threads()``). Rows are measured ``--repeats`` times in
turn (eager, onnx, ..., eager, onnx, ...), so a neighbour's load spreads over the backends; the busy cores of other
processes during each row are printed beside it. Writes its table to bench/RESULTS.md between markers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _harness import (DATA, busy_cpu_seconds, invocation, load_frames, machine, utc_now,  # noqa: E402
                      write_results)
from serve_bench import exported_copy, in_process, load_predictor  # noqa: E402
from inspector.artifacts.bundle import load_bundle  # noqa: E402
from inspector.imaging.preprocess import decode  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402

BACKENDS = ("eager", "onnx", "openvino", "onnx-int8", "openvino-int8")
QUIET = 0.1  # cores other processes may use during a round that the summary counts


def model_only(model: str, frames: list[bytes], batch: int, backend: str, rounds: int) -> dict[str, float]:
    """Median ms of ``Predictor.infer`` on one prepared batch of ``batch`` frames, and frames/s."""
    predictor = Predictor.from_bundle(model, "cpu", backend=backend)
    prepared = predictor.prepare([decode(f, "JPEG") for f in frames[:batch]]).batch
    predictor.infer(prepared)  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        predictor.infer(prepared)
        times.append(time.perf_counter() - t)
    ms = float(np.median(times)) * 1000.0
    return {"ms": ms, "fps": batch * 1000.0 / ms}


def measure(model: str, frames: list[bytes], backend: str, rounds: int) -> dict[str, float]:
    busy0, own0, t0 = busy_cpu_seconds(), time.process_time(), time.perf_counter()
    predictor = load_predictor(model, backend, 8)
    one, eight = in_process(predictor, frames, 1), in_process(predictor, frames, 8)
    alone1, alone8 = model_only(model, frames, 1, backend, rounds), model_only(model, frames, 8, backend, rounds // 4)
    wall = time.perf_counter() - t0
    others = (busy_cpu_seconds() - busy0 - (time.process_time() - own0)) / wall
    return {"p50_1": one["p50"], "p90_1": one["p90"], "fps_8": eight["fps"], "model_1": alone1["ms"],
            "model_8": alone8["ms"], "model_fps_8": alone8["fps"], "others": others}


def quiet_median(rows: list[dict[str, float]]) -> tuple[dict[str, float], str]:
    """The median of each figure over the rounds other processes left quiet (all rounds when none was), and which."""
    quiet = [i for i, r in enumerate(rows) if r["others"] < QUIET] or list(range(len(rows)))
    return {k: float(np.median([rows[i][k] for i in quiet])) for k in rows[0]}, ", ".join(str(i + 1) for i in quiet)


INFERENCE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile")


def flags() -> str:
    """The CPU and the instructions INT8 and bf16 kernels use (:mod:`inspector.model.cpu`)."""
    from inspector.model.cpu import describe_cpu, present_flags

    have = present_flags(INFERENCE_FLAGS)
    missing = ", ".join(f for f in INFERENCE_FLAGS if f not in have) or "-"
    return f"`{describe_cpu().model}`; flags: {', '.join(have)}; no {missing}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--frames", type=int, default=64, help="frames per in-process measurement")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all backends")
    parser.add_argument("--section", default="backends_bench", help="RESULTS.md section to write")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 frames, one round, results not written")
    args = parser.parse_args()
    n, repeats, rounds = (16, 1, 8) if args.quick else (args.frames, args.repeats, 40)
    source = load_bundle(args.model)
    loaded, accuracy = load_frames(DATA, n)
    frames = [f.data for f in loaded if f.data[:2] == b"\xff\xd8"]  # JPEGs (in_process decodes JPEG)
    with tempfile.TemporaryDirectory(prefix="backends-bench-") as tmp:
        model, guard_text, backends = exported_copy(args.model, list(BACKENDS), Path(tmp))
        rows: dict[str, list[dict[str, float]]] = {b: [] for b in backends}
        for _ in range(repeats):
            for backend in backends:
                rows[backend].append(measure(model, frames, backend, rounds))
                print(backend, rows[backend][-1], flush=True)
    lines = ["| backend | round | p50 ms, 1 frame | p90 ms, 1 frame | frames/s, batch 8 | model ms, 1 | "
             "model ms, 8 | model frames/s, 8 | other processes (cores) |", "|---|---|---|---|---|---|---|---|---|"]
    for backend in rows:
        for i, r in enumerate(rows[backend]):
            lines.append(f"| {backend} | {i + 1} | {r['p50_1']:.1f} | {r['p90_1']:.1f} | {r['fps_8']:.1f} | "
                         f"{r['model_1']:.1f} | {r['model_8']:.1f} | {r['model_fps_8']:.1f} | {r['others']:.2f} |")
    lines += ["", f"Median of each backend's quiet rounds (other processes under {QUIET} core; all its rounds where "
              "none was quiet), and the ratio to eager's:", "",
              "| backend | rounds | p50 ms, 1 frame | frames/s, batch 8 | model ms, 1 | model frames/s, 8 | "
              "x eager latency, 1 frame | x eager frames/s, batch 8 |", "|---|---|---|---|---|---|---|---|"]
    median = {b: quiet_median(rows[b]) for b in rows}
    for backend in rows:
        (m, used), e = median[backend], median["eager"][0]
        lines.append(f"| {backend} | {used} | {m['p50_1']:.1f} | {m['fps_8']:.1f} | {m['model_1']:.1f} | "
                     f"{m['model_fps_8']:.1f} | {m['p50_1'] / e['p50_1']:.2f} | {m['fps_8'] / e['fps_8']:.2f} |")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    text = "\n".join([
        f"## Inference backends in process: eager, ONNX Runtime, OpenVINO, fp32 and INT8 ({len(frames)} frames)",
        "",
        f"- command: `{invocation()}` (tree at {commit} + this change)",
        f"- machine: {machine()}; CPU {flags()}; torch threads {torch.get_num_threads()}",
        f"- date: {utc_now()}",
        f"- served: `{args.model}` ({source.name}/{source.version}, {source.meta.backbone}, "
        f"{source.spec.height} px input, anomaly head: {'yes' if source.meta.anomaly else 'no'}); frames: {accuracy}",
        "- p50/p90 ms, 1 frame: decode + preprocess + model + postprocess of one frame per call (serve_bench's "
        "in_process); frames/s, batch 8: the same, 8 frames per call; model ms: `Predictor.infer` alone on a "
        "prepared batch (median of repeated calls). The machine is shared with other engineers' work: "
        f"{repeats} rounds, in turn over the backends, and the cores other processes used during each row.",
        "",
        *lines,
        "",
        *guard_text,
    ])
    print(text)
    if not args.quick:
        write_results(text, args.section)


if __name__ == "__main__":
    main()
