"""What every benchmark writes with its figures: the command, the machine and the date, and its section of
bench/RESULTS.md. Standard library only at import (no grpc, no torch), so that a bench that does not use the
service's stack (bench/gpu_bench.py on a bare GPU machine) imports it as it is."""

from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model, the vector instructions that matter for inference here (:mod:`inspector.model.cpu`), cores,
    Python."""
    from inspector.model.cpu import describe_cpu  # here: torch stays out of the clients while they measure

    cpu = describe_cpu()
    return f"{cpu.model} ({cpu.isa}), {os.cpu_count()} cores, Python {platform.python_version()}"


def invocation() -> str:
    """The command line that ran this benchmark, as bench/RESULTS.md quotes it."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def utc_now() -> str:
    """The date and time a result is written, as bench/RESULTS.md gives it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_results(text: str, section: str) -> None:
    """Replaces (or appends) a benchmark's section of bench/RESULTS.md, between its markers."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{begin}\n{text}\n{end}"
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, old, flags=re.S) if begin in old else (
        old.rstrip() + "\n\n" + block + "\n")
    RESULTS.write_text(new)
