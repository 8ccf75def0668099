"""Synthetic frames and latency figures the benchmarks share; no grpc (bench/gpu_bench.py imports it on a GPU
machine where the service's stack may not import)."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.data.demo import make_part


def make_frames(n: int, size: int | tuple[int, int]) -> list[bytes]:
    """Distinct synthetic parts (grayscale JPEG, quality 90), ``size`` px square or ``(width, height)``."""
    kinds = ("good", "scratch", "spot", "crack")
    w, h = (size, size) if isinstance(size, int) else size
    out = []
    for i in range(n):
        image, _ = make_part(kinds[i % 4], np.random.default_rng([7, i]), min(w, h, 512))
        if image.shape != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    """Frames/s over ``seconds`` and p50/p90/p99 ms of ``latencies`` (s)."""
    ms = np.array(latencies) * 1000.0
    return {"fps": len(latencies) / seconds, "p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99))}
