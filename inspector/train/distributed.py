"""Data-parallel training under ``torchrun``: process group, device per rank, helpers for rank 0.

Launched as ``torchrun --nproc_per_node N -m inspector train ...``: NCCL on GPUs (one per rank), gloo on CPU.
Without torchrun's environment everything here is a no-op and training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from inspector.model.devices import resolve_device


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str) -> tuple[Ranks, torch.device]:
    """Joins torchrun's process group if there is one; returns this process's ranks and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), resolve_device(device)
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
    return ranks, chosen


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """DDP around ``model`` for the parameters that train now (call again after freezing changes)."""
    if not ranks.distributed:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sync_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Copies rank 0's buffers (BatchNorm statistics) to every rank; call it on all of them after a phase.

    DDP broadcasts rank 0's buffers at the start of every forward pass, then each rank updates them with its own
    batch: after the last step the ranks' statistics differed (20 decoder BatchNorm buffers of 174 in the 2-rank
    test) while their parameters were equal. Rank 0's are the ones DDP keeps and the bundle ships.
    """
    if ranks.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def cleanup(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
