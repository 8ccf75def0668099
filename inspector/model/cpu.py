"""What the CPU offers the network: its model name, the vector instructions that decide its speed, torch's view.

One description for training's log line and bundle.json (:func:`training_hardware`) and for the benchmarks'
machine line (``bench/_harness.py``). bf16 autocast pays on CPUs with AVX512-BF16 or AMX (about 2x on this
project's AVX512-BF16 EPYC, bench/RESULTS.md); without them it would be emulated, so training runs fp32 there.
"""

from __future__ import annotations

import os
import platform
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from inspector.model.devices import training_precision

CPUINFO = Path("/proc/cpuinfo")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")  # the ones that matter for the network here


@dataclass(frozen=True)
class CpuDescription:
    model: str  # "AMD EPYC 9454", from /proc/cpuinfo's model name (else the platform's processor or machine)
    flags: tuple[str, ...]  # those of FLAGS the CPU reports, in FLAGS order
    capability: str  # the kernels torch picked: torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    threads: int  # torch's intra-op threads (torch.get_num_threads())
    cores: int | None  # logical CPUs (os.cpu_count())

    @property
    def isa(self) -> str:
        """The flags in words: ``AMX (bf16), AVX512-BF16``, ``AVX512-BF16, no AMX``, ``AVX-512 without BF16, no
        AMX``, ``AVX2 only`` or ``no AVX2``."""
        flags = set(self.flags)
        if flags & {"amx_bf16", "amx_tile"}:
            return "AMX (bf16)" + (", AVX512-BF16" if "avx512_bf16" in flags else "")
        if "avx512_bf16" in flags:
            return "AVX512-BF16, no AMX"
        if "avx512f" in flags:
            return "AVX-512 without BF16, no AMX"
        return "AVX2 only" if "avx2" in flags else "no AVX2"

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "flags": list(self.flags), "capability": self.capability,
                "threads": self.threads, "cores": self.cores}


def _cpuinfo(cpuinfo: str | None) -> str:
    if cpuinfo is None:
        return CPUINFO.read_text() if CPUINFO.exists() else ""
    return cpuinfo


def present_flags(wanted: Sequence[str], cpuinfo: str | None = None) -> tuple[str, ...]:
    """Those of ``wanted`` the CPU reports, in ``wanted``'s order (none off Linux)."""
    flag_line = re.search(r"^flags\s*:\s*(.*)$", _cpuinfo(cpuinfo), re.MULTILINE)  # the first CPU's: one model
    present = set(flag_line.group(1).split()) if flag_line else set()
    return tuple(f for f in wanted if f in present)


def describe_cpu(cpuinfo: str | None = None) -> CpuDescription:
    """This machine's CPU; ``cpuinfo`` replaces the text of /proc/cpuinfo (absent off Linux: no flags then)."""
    cpuinfo = _cpuinfo(cpuinfo)
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    return CpuDescription(
        model=model.group(1).strip() if model else (platform.processor() or platform.machine()),
        flags=present_flags(FLAGS, cpuinfo),
        capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
        cores=os.cpu_count(),
    )


def training_hardware(device: torch.device, bf16: bool = True, cpu: CpuDescription | None = None) -> dict[str, Any]:
    """What training runs on, for its log line and bundle.json's ``train_hardware``: the device, the autocast
    precision it uses (``bf16``, or ``fp32`` when ``bf16`` is off or the device lacks it), the CUDA device's name
    where there is one, and the CPU (it feeds the GPU, or is the device)."""
    cpu = cpu or describe_cpu()
    record: dict[str, Any] = {"device": str(device), "precision": training_precision(device, bf16)}
    if device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record | {"cpu": cpu.as_dict()}


def hardware_line(record: dict[str, Any]) -> str:
    """:func:`training_hardware` in one line: ``cpu, bf16 autocast; CPU AMD EPYC (avx2 avx512f avx512_bf16; torch
    AVX512), 2 torch threads``."""
    cpu = record["cpu"]
    precision = "bf16 autocast" if record["precision"] == "bf16" else "fp32"
    gpu = f" ({record['gpu']})" if "gpu" in record else ""
    flags = " ".join(cpu["flags"]) or "no AVX2/AVX-512/AMX"
    return (f"{record['device']}{gpu}, {precision}; CPU {cpu['model']} ({flags}; torch {cpu['capability']}), "
            f"{cpu['threads']} torch threads")


_thread = threading.local()
_setting = threading.Lock()  # one thread at a time changes torch's counts


def threads_here(n: int) -> None:
    """Makes torch's CPU operators use ``n`` threads when called from the calling thread, every other thread's
    count unchanged: several threads then each run a forward pass of their own on their share of the cores (the
    service's batcher lanes).

    With OpenMP, ``torch.set_num_threads`` sets the calling thread's count, and also the count threads started
    later take; a short-lived thread sets the latter back.
    """
    if getattr(_thread, "threads", None) == n:
        return
    with _setting:
        budget = torch.get_num_threads() if getattr(_thread, "threads", None) is None else _thread.budget
        torch.set_num_threads(n)
        restore = threading.Thread(target=torch.set_num_threads, args=(budget,), name="torch-threads")
        restore.start()
        restore.join()
    _thread.threads, _thread.budget = n, budget
