"""How latency grows with frame size: whole frame resized vs tiled at (near) native resolution.

    .venv/bin/python bench/frame_size_bench.py --model models/default [--tile 320] [--quick]

In-process (decode + preprocess + model + postprocess) on grayscale JPEG frames of 0.25, 1 and 5 MP.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _harness import invocation, machine, utc_now, write_results  # noqa: E402

from inspector.data.demo import make_part  # noqa: E402
from inspector.inference.options import InferenceOptions  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402
from inspector.imaging.preprocess import decode  # noqa: E402
from inspector.imaging.tiling import plan  # noqa: E402

SIZES = {"0.25 MP": (432, 576), "1 MP": (864, 1152), "5 MP": (1944, 2592)}


def frame(h: int, w: int) -> bytes:
    texture, _ = make_part("scratch", np.random.default_rng(5), 512)
    image = cv2.resize(texture, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def p50_ms(predictor: Predictor, data: bytes, repeats: int) -> float:
    predictor.predict([decode(data, "JPEG")])  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict([decode(data, "JPEG")])
        times.append(time.perf_counter() - t)
    return 1000.0 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--tile", type=int, default=320, help="tile side, px")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats, results not written")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    plain = Predictor.from_bundle(args.model, "cpu")
    tiled = Predictor.from_bundle(args.model, "cpu", options=InferenceOptions(tile=args.tile))
    rows = ["| frame | px | tiles | resized p50 ms | tiled p50 ms |", "|---|---|---|---|---|"]
    for name, (h, w) in SIZES.items():
        data = frame(h, w)
        n_tiles = len(plan(h, w, args.tile))
        rows.append(f"| {name} | {w}x{h} | {n_tiles} | {p50_ms(plain, data, repeats):.0f} | "
                    f"{p50_ms(tiled, data, repeats):.0f} |")
    text = "\n".join([
        f"## Latency by frame size: resized vs tiled ({args.tile} px tiles, 12.5 % overlap)",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: cpu; date: {utc_now()}",
        "",
        *rows,
    ])
    print(text)
    if not args.quick:
        write_results(text, "frame_size_bench")


if __name__ == "__main__":
    main()
