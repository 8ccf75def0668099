"""Anomaly head: a memory bank of good-part patch features and nearest-neighbour distances (PatchCore).

Patch features are the encoder's stride-8 and stride-16 features, each averaged over its 3x3 neighbourhood (local
context), concatenated on the stride-8 grid and pooled to the stride-16 grid (a quarter of the nearest-neighbour
queries; on magnetic-tile a 4x larger bank on this grid beat the stride-8 grid in accuracy at about the same cost). The bank keeps a greedy coreset of the good training patches, so its size
is bounded whatever the number of good images. A patch's anomaly is its distance to the nearest bank entry, divided
by the bank's ``scale`` (a high percentile of good validation parts' scores, so 1.0 means "as unusual as the most
unusual good parts"). The map is lightly smoothed and brought to the input resolution; the image score is its peak.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

STAGES = (3, 4)  # encoder feature indices: strides 8 and 16 (index 0 is the input itself)
GRID_POOL = 2  # patch grid = stride of the first stage x GRID_POOL
SMOOTH_SIGMA = 0.5  # Gaussian smoothing of the patch-grid map, in grid cells
CHUNK_BYTES = 8 * 2**20  # one query chunk's fp32 distance block in eager mode on the CPU (see query_chunk)
GPU_CHUNK_BYTES = 128 * 2**20  # on a GPU, where kernel launches count, not caches: 4096 patches x 8192 bank rows
PATCH_POOL = 100_000  # good patches drawn at random before a bank's coreset: bounds memory and coreset time
MIN_CHUNK = 64  # fewest query rows per chunk: each matmul call re-packs the whole bank, which few rows waste


def patch_features(features: list[torch.Tensor], stages: tuple[int, ...] = STAGES) -> torch.Tensor:
    """``(b, d, h, w)`` locally aggregated features of ``stages`` on the patch grid (see :data:`GRID_POOL`)."""
    size = features[stages[0]].shape[-2:]
    out = [F.avg_pool2d(features[i].float(), 3, stride=1, padding=1) for i in stages]
    out[1:] = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in out[1:]]
    return F.avg_pool2d(torch.cat(out, dim=1), GRID_POOL, ceil_mode=True)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]  # (1, 1, k, k)


def query_chunk(bank_size: int, device_type: str = "cpu") -> int:
    """Query rows per eager distance block: as many as keep the ``(rows, bank_size)`` fp32 block within
    ``CHUNK_BYTES`` on the CPU (``GPU_CHUNK_BYTES`` elsewhere), and at least ``MIN_CHUNK``.

    On the CPU a batch's whole block outgrew the caches: 8 frames of 320 px are 3200 patches, x 8192 bank rows x 4 B
    = 100 MiB, mapped afresh by the allocator on every call (77 000 page faults) and streamed through memory by each
    elementwise pass, so a frame cost 1.9x as much at batch 8 as at batch 1 (bench/RESULTS.md). Blocks of 8 MiB
    (256 rows of an 8192 bank) stay in the cache and in the allocator, and a frame costs no more at batch 8. Blocks
    the size of the L2 cache (1 MiB) measured up to 30 % slower, as each matmul call re-packs the whole bank;
    4 to 32 MiB measured the same.
    """
    budget = CHUNK_BYTES if device_type == "cpu" else GPU_CHUNK_BYTES
    return max(MIN_CHUNK, budget // (4 * bank_size))


class MemoryBank(nn.Module):
    """Good-part patch features ``(size, dim)`` and the distance scale; maps patch features to anomaly maps.

    Args:
        size: Number of stored patches.
        dim: Feature dimension.
    """

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(size, dim))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("smooth", _gaussian_kernel(SMOOTH_SIGMA), persistent=False)

    def distances(self, feats: torch.Tensor) -> torch.Tensor:
        """``(b, d, h, w)`` features -> ``(b, 1, h, w)`` Euclidean distance to the nearest bank patch.

        Squared distances are ``min_j(|b_j|^2 - 2 q.b_j) + |q|^2``: one fused matmul-add per chunk (``addmm``), the
        minimum taken on it, and ``|q|^2``, the same for every bank row, added after the minimum. Always in fp32,
        autocast or not: the expansion subtracts numbers near ``|q|^2`` (hundreds) to get distances near 1, which
        fp16's 11-bit mantissa (or bf16's 8) loses entirely.
        """
        b, d, h, w = feats.shape
        with torch.autocast(feats.device.type, enabled=False):
            q = feats.float().permute(0, 2, 3, 1).reshape(-1, d)  # (n, d), n = b*h*w
            bank_sq = (self.bank * self.bank).sum(1)[None]  # (1, size)
            if torch.jit.is_tracing() or torch.compiler.is_exporting():  # an export: one matmul, any batch size
                nearest = self._nearest(q, bank_sq)
            else:  # eager: a bounded block at a time, whatever the batch (see query_chunk)
                nearest = self._nearest_in_blocks(q, bank_sq)
            nearest = nearest + (q * q).sum(1)  # (n,) squared distances
        return nearest.clamp_min(0).sqrt().reshape(b, 1, h, w)

    def _nearest(self, q: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
        """``(n,)`` minimum over the bank rows of ``|b|^2 - 2 q.b`` (the squared distance less ``|q|^2``)."""
        return torch.addmm(bank_sq, q, self.bank.T, alpha=-2).amin(dim=1)  # (n, size) -> (n,)

    def _nearest_in_blocks(self, q: torch.Tensor, bank_sq: torch.Tensor) -> torch.Tensor:
        """:meth:`_nearest` of ``query_chunk`` rows at a time, each block written into the same buffer: one
        allocation per call, which the allocator does not hand back to the system between the chunks."""
        rows = query_chunk(self.bank.shape[0], q.device.type)
        if torch.is_grad_enabled() and q.requires_grad:  # autograd records no out= ops: a new block per chunk
            return torch.cat([self._nearest(part, bank_sq) for part in q.split(rows)])
        nearest = q.new_empty(q.shape[0])  # (n,)
        block = q.new_empty(min(rows, q.shape[0]), self.bank.shape[0])  # (rows, size)
        for part, out in zip(q.split(rows), nearest.split(rows), strict=True):
            scores = block[: part.shape[0]]
            torch.addmm(bank_sq, part, self.bank.T, alpha=-2, out=scores)  # |b|^2 - 2 q.b
            torch.amin(scores, dim=1, out=out)
        return nearest

    def forward(self, feats: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(b, d, h, w)`` features -> ``(b, 1, *size)`` anomaly map in units of ``scale``."""
        grid = self.distances(feats) / self.scale
        pad = self.smooth.shape[-1] // 2
        grid = F.conv2d(F.pad(grid, (pad, pad, pad, pad), mode="replicate"), self.smooth)
        return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)


def greedy_coreset(x: torch.Tensor, k: int, seed: int = 0, projection_dim: int = 128) -> torch.Tensor:
    """Indices of ``k`` rows of ``x`` ``(n, d)`` chosen by greedy k-center selection (PatchCore, Sec. 3.2).

    Each step takes the row farthest from those already chosen, so the chosen rows cover the feature space;
    distances are computed on a random projection to ``projection_dim`` dims (Johnson-Lindenstrauss), as PatchCore does.
    """
    n = x.shape[0]
    if k >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    if x.shape[1] > projection_dim:
        x = x @ (torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim))
    norms = (x * x).sum(dim=1)

    def squared_distances(i: int) -> torch.Tensor:  # (n,) to row i; a matrix-vector product, far faster than cdist
        return (norms - 2 * (x @ x[i]) + norms[i]).clamp_min(0)

    chosen = torch.empty(k, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=gen))
    nearest = squared_distances(int(chosen[0]))  # (n,) squared distance to the chosen set
    for i in range(1, k):
        chosen[i] = int(nearest.argmax())
        nearest = torch.minimum(nearest, squared_distances(int(chosen[i])))
    return chosen
