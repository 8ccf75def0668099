"""Lanes in process: the model as one pass at a time on all the threads, against passes side by side on one thread
each (``Predictor.open_lanes``, what the service's batcher does while frames queue up), per backend.

    .venv/bin/python bench/lanes_bench.py --model models/default [--backends eager onnx openvino-int8] [--quick]

Each row keeps the model busy for ``--seconds`` from as many threads as passes at once (one for the pass on all the
threads, one per lane), on a prepared batch of real frames (``_harness.load_frames``), and gives frames/s. Each is
measured on a quiet process and beside one thread that decodes 1280x1024 JPEGs for 4 ms in every 8 (about half a
core: the service's frame work). Rows run in turn for ``--rounds`` rounds; the table gives their medians. Writes
the ``lanes_bench`` section of bench/RESULTS.md (not with ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _harness import DATA, invocation, load_frames, machine, utc_now, write_results  # noqa: E402
from serve_bench import exported_copy  # noqa: E402
from inspector.imaging.preprocess import decode  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402
from inspector.inference.runtimes import BACKENDS  # noqa: E402

WAYS = (("all threads", 1, 4), ("all threads", 1, 8), ("2 lanes", 2, 1), ("2 lanes", 2, 2))  # (how, passes, batch)


class Beside:
    """A thread that decodes a large JPEG for about 4 ms in every 8, while the ``with`` block runs."""

    def __init__(self) -> None:
        image = np.random.default_rng(0).integers(0, 255, (1024, 1280), np.uint8)
        self.jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(image, (9, 9), 3))[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            end = time.perf_counter() + 0.004
            while time.perf_counter() < end:
                cv2.imdecode(self.jpeg, cv2.IMREAD_GRAYSCALE)
            self.stop.wait(0.004)

    def __enter__(self) -> Beside:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def frames_per_second(predictor: Predictor, batch: np.ndarray, passes: int, seconds: float) -> float:
    """Frames/s of ``passes`` threads each running ``batch`` in a loop (on lanes when more than one)."""
    done, lock, end = [0], threading.Lock(), time.perf_counter() + seconds
    lane = passes > 1

    def loop() -> None:
        predictor.infer(batch, lane=lane)  # this thread's first pass (an OpenVINO request of its own) not counted
        while time.perf_counter() < end:
            predictor.infer(batch, lane=lane)
            with lock:
                done[0] += len(batch)

    threads = [threading.Thread(target=loop) for _ in range(passes)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backends", nargs="+", default=["eager", "onnx", "openvino", "openvino-int8"],
                        choices=BACKENDS)
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per row")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 s rows, one round, nothing written")
    args = parser.parse_args()
    seconds, rounds = (1.0, 1) if args.quick else (args.seconds, args.rounds)
    loaded, where = load_frames(DATA, 8)
    images = [decode(f.data, "JPEG") for f in loaded if f.data[:2] == b"\xff\xd8"]
    images = (images * 8)[:8]
    rows: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="lanes-bench-") as tmp:
        model, guards, backends = exported_copy(args.model, list(args.backends), Path(tmp))
        predictors = {b: Predictor.from_bundle(model, "cpu", backend=b) for b in backends}
        for p in predictors.values():
            p.open_lanes(2)
        batch = next(iter(predictors.values())).prepare(images).batch
        for _ in range(rounds):
            for backend, predictor in predictors.items():
                for how, passes, size in WAYS:
                    for load in ("quiet", "beside decoding"):
                        if load == "quiet":
                            fps = frames_per_second(predictor, batch[:size], passes, seconds)
                        else:
                            with Beside():
                                fps = frames_per_second(predictor, batch[:size], passes, seconds)
                        rows.setdefault((backend, f"{how}, batch {size}", load), []).append(fps)
                        print(backend, how, size, load, f"{fps:.1f}", flush=True)
    lines = ["| backend | passes | frames/s, quiet | frames/s, beside decoding | x all threads' best, quiet | "
             "x all threads' best, beside decoding |", "|---|---|---|---|---|---|"]
    for backend in backends:
        med = {(w, load): float(np.median(v)) for (b, w, load), v in rows.items() if b == backend}
        best = {load: max(v for (w, l), v in med.items() if l == load and w.startswith("all")) for load in
                ("quiet", "beside decoding")}
        for how, passes, size in WAYS:
            w = f"{how}, batch {size}"
            q, d = med[(w, "quiet")], med[(w, "beside decoding")]
            lines.append(f"| {backend} | {w} | {q:.1f} | {d:.1f} | {q / best['quiet']:.2f} | "
                         f"{d / best['beside decoding']:.2f} |")
    p = next(iter(predictors.values()))
    text = "\n".join([
        "## Lanes in process: one pass on all the threads against passes side by side on their share of the threads",
        "",
        f"- command: `{invocation()}`", f"- machine: {machine()}; torch threads {torch.get_num_threads()}",
        f"- date: {utc_now()}",
        f"- model: `{args.model}` ({p.bundle.meta.backbone}, {p.spec.height}x{p.spec.width} px input, anomaly head: "
        f"{'yes' if p.bundle.meta.anomaly else 'no'}); a prepared batch of {where}",
        f"- each row: {seconds:g} s of `Predictor.infer` in a loop from 1 thread (all threads) or 2 (lanes), median "
        f"of {rounds} rounds; beside decoding: a thread decodes 1280x1024 JPEGs 4 ms in every 8", "", *lines, "",
        *guards])
    print(text)
    if not args.quick:
        write_results(text, "lanes_bench")


if __name__ == "__main__":
    main()
