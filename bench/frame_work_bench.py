"""The CPU work around the model, per frame: decode, preprocess, postprocess, at 512x512 and 1280x1024.

    .venv/bin/python bench/frame_work_bench.py [--model models/default] [--frames 40]

Runs twice, each in a process of its own: with glibc's allocator thresholds as ``serve``, ``predict`` and
``evaluate`` set them (:mod:`inspector.memory`), and as glibc leaves them. Also times the normalisation by table
(``imaging.preprocess.normalise``) against the same arithmetic on each pixel. One thread, the model's outputs
computed once beforehand; mean ms per frame. Writes the ``frame_work`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from _results import invocation, machine, utc_now, write_results

SIZES = ((512, 512), (1280, 1024))


def _mean_ms(fn, items: list) -> float:
    """Mean ms per call over three passes (the mean, not the median: a page fault now and then is CPU spent)."""
    start = time.perf_counter()
    for item in items * 3:
        fn(item)
    return (time.perf_counter() - start) / (3 * len(items)) * 1000.0


def _arithmetic(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalisation as it was computed before the table: float32 arithmetic on every value, then to planes."""
    colour = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
    return np.ascontiguousarray(((colour.astype(np.float32) - mean) * (1.0 / std)).transpose(2, 0, 1))


def measure(model: str, backend: str, n: int) -> dict[str, dict[str, float]]:
    """This process's figures per frame size (run by :func:`main` in a child process)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from serve_bench import sized_frames

    from inspector.imaging.preprocess import decode_frame, letterbox, normalise
    from inspector.inference.drift import frame_values
    from inspector.inference.predictor import Predictor

    predictor = Predictor.from_bundle(model, "cpu", backend=backend)
    spec, out = predictor.spec, {}
    mean, std = np.float32(spec.mean), np.float32(spec.std)
    for w, h in SIZES:
        frames = sized_frames(n, (w, h))[0]
        decoded = [decode_frame(f, "JPEG", fit=predictor.decode_size) for f in frames]
        prepared = [predictor.prepare([d]) for d in decoded]
        outputs = [predictor.infer(p.batch) for p in prepared]
        boxed = [letterbox(d.image, spec, size=(d.height, d.width))[0] for d in decoded]

        def finish(k: int) -> None:  # as the service's finish stage: the prediction, then the drift statistics
            frame_values(decoded[k].image, predictor.finish(outputs[k], prepared[k])[0].defect_score)

        out[f"{w}x{h}"] = {
            "decode": _mean_ms(lambda f: decode_frame(f, "JPEG", fit=predictor.decode_size), frames),
            "preprocess": _mean_ms(lambda d: predictor.prepare([d]), decoded),
            "normalise (table)": _mean_ms(lambda b: normalise(b, spec), boxed),
            "normalise (arithmetic)": _mean_ms(lambda b: _arithmetic(b, mean, std), boxed),
            "postprocess": _mean_ms(finish, list(range(len(decoded)))),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--backends", nargs="+", default=["eager"], help="predictor backends (their outputs are "
                        "postprocessed); an INT8 one needs its export in the bundle")
    parser.add_argument("--backend", help=argparse.SUPPRESS)  # the child's
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--child", choices=["kept", "glibc"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child == "kept":
            from inspector.memory import keep_freed_memory

            assert keep_freed_memory(), "glibc's mallopt was not available here"
        print(json.dumps(measure(args.model, args.backend, args.frames)))
        return
    runs = {}
    for backend in args.backends:
        for mode in ("kept", "glibc"):
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
            child = subprocess.run([sys.executable, __file__, "--model", args.model, "--frames", str(args.frames),
                                    "--backend", backend, "--child", mode], capture_output=True, text=True,
                                   check=True, env=env)
            runs[backend, mode] = json.loads(child.stdout.strip().splitlines()[-1])
    first = next(iter(runs.values()))
    stages = list(next(iter(first.values())))
    rows = ["| frame | backend | allocator | " + " | ".join(stages) + " |", "|---|---|---|" + "---|" * len(stages)]
    for size in first:
        for (backend, mode), run in runs.items():
            label = "thresholds set" if mode == "kept" else "glibc's defaults"
            rows.append(f"| {size} | {backend} | {label} | " + " | ".join(f"{run[size][s]:.2f}" for s in stages) + " |")
    text = "\n".join([
        "## The CPU work around the model, per frame (mean ms, one thread)", "",
        f"- command: `{invocation()}`", f"- machine: {machine()}", f"- date: {utc_now()}",
        f"- model: `{args.model}`; {args.frames} frames per size (`serve_bench.sized_frames`), each stage timed 3 "
        "times per frame on outputs computed beforehand; postprocess: `Predictor.finish` and the drift statistics, "
        "as the service's finish stage", "", *rows])
    print(text)
    write_results(text, "frame_work")


if __name__ == "__main__":
    main()
