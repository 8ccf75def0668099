"""A network's forward pass replayed as CUDA graphs: one launch per batch instead of one per kernel.

A small model at batch 1 spends most of its GPU time waiting for the host to launch kernels (on an H200,
``bench/gpu_check.sh``: the network took 7.7 ms in eager fp16 and 1.7 ms replayed as a graph). A graph is captured
per input shape; the predictor pads batches to a few shapes (``predictor.cuda_rows``) and warms each before serving.
"""

from __future__ import annotations

import threading
from typing import Callable

import torch

Forward = Callable[[torch.Tensor], list[torch.Tensor]]
EAGER_PASSES = 3  # before a capture, on a side stream: cuDNN chooses its kernels, lazy initialisations happen


class CudaGraphs:
    """Runs ``forward`` (a tensor in, tensors out, no host synchronisation inside) by replaying the CUDA graph
    captured for the input's shape, capturing it on the shape's first call.

    Calls are serialised: a graph's input and outputs are fixed buffers. The outputs returned are copies. Captures
    use thread-local capture mode, so another model (the one being replaced in a hot swap) keeps running meanwhile.
    """

    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, list[torch.Tensor]]] = {}
        self._pool = None  # one memory pool for all shapes: they never run at once
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        with self._lock:
            graph, static_in, static_out = self._graphs.get(tuple(x.shape)) or self._capture(x)
            static_in.copy_(x)
            graph.replay()
            return [t.clone() for t in static_out]

    def _capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, list[torch.Tensor]]:
        static_in = x.clone()  # same shape, dtype and memory format
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(EAGER_PASSES):
                self.forward(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            static_out = self.forward(static_in)
        self._pool = graph.pool()
        entry = self._graphs[tuple(x.shape)] = (graph, static_in, static_out)
        return entry
