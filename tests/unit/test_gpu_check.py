"""bench/gpu_check.sh where there is no GPU: it says so in one line, exits 3 and writes nothing; its CPU dry run runs
each row's code (eager, torch.compile, the ONNX export on ONNX Runtime's CPU EP) and reports the CUDA-only rows as
not available. And the parts of bench/gpu_bench.py that only a GPU machine reaches: nvidia-smi's answers read, and
its imports where grpc (the service's stack) does not import."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"
NO_GPU = 3

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here: the script would use it")


def _load_gpu_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # where its own imports (_results, _frames) lie, as when run as a script
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = os.environ | {"PY": sys.executable, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(["bash", str(BENCH / "gpu_check.sh"), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _results() -> list[str]:
    """The sections of bench/RESULTS.md that the GPU check writes (``gpu_check``, and ``gpu_check_batch_*`` with
    --service), whole; only those, since other benchmarks may write their own sections while this test runs."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    return re.findall(r"<!-- gpu_check\w*:begin -->.*?<!-- gpu_check\w*:end -->", text, flags=re.S)


def test_without_a_gpu_it_says_so_in_one_line_and_writes_nothing():
    before, start = _results(), time.monotonic()
    run = _run(timeout=60)
    output = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode == NO_GPU, run.stdout + run.stderr
    assert len(output) == 1 and output[0].startswith("gpu_check: no GPU: "), output
    assert "RESULTS.md not written" in output[0]
    assert time.monotonic() - start < 60
    assert _results() == before


def test_cpu_dry_run_runs_every_row_and_writes_nothing(tiny_bundle, add_version, tmp_path):
    bundle = add_version(tiny_bundle, tmp_path / "gpu", "v1")  # a copy: the run exports ONNX into it
    before = _results()
    run = _run(str(bundle), "--cpu-dry-run", timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {}
    for line in run.stdout.splitlines():
        if line.startswith("| ") and not line.startswith("| runtime"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    assert list(rows) == ["PyTorch eager, fp32 (CPU)", "PyTorch eager, fp16 autocast",
                          "torch.compile, backend eager (CPU: dynamo only)", "ONNX Runtime, CPU EP (fp32 graph)",
                          "PyTorch eager, fp16 autocast, CUDA graphs (serve --cuda-graphs)",
                          "ONNX Runtime, CUDA EP (fp32 graph)", "ONNX Runtime, TensorRT EP fp16 (+CUDA EP)"]
    for measured in ("PyTorch eager, fp32 (CPU)", "torch.compile, backend eager (CPU: dynamo only)",
                     "ONNX Runtime, CPU EP (fp32 graph)"):
        p50, p99, model, fps1, fps8 = (float(v) for v in rows[measured][:5])
        assert 0 < model <= p50 <= p99 and fps1 > 0 and fps8 > 0, (measured, rows[measured])
    assert rows["PyTorch eager, fp16 autocast"][0].startswith("not available: ")
    assert rows["PyTorch eager, fp16 autocast, CUDA graphs (serve --cuda-graphs)"][0] == \
        "not available: CUDA graphs need a CUDA device"
    assert re.match(r"not available: .*CUDAExecutionProvider", rows["ONNX Runtime, CUDA EP (fp32 graph)"][0])
    assert re.match(r"not available: .*Tensorrt", rows["ONNX Runtime, TensorRT EP fp16 (+CUDA EP)"][0])
    assert "exported now by `export_model" in run.stdout and (bundle / "export" / "model.onnx").is_file()
    assert "bench/RESULTS.md not written (CPU dry run)" in run.stdout
    assert _results() == before


FAKE_SMI = """#!/bin/sh
case "$*" in
  *memory.used*) echo 1536 ;;
  *--query-gpu=name*) echo "NVIDIA H200, 143771 MiB, 580.159.04" ;;
  *) echo "| NVIDIA-SMI 580.159.04    Driver Version: 580.159.04    CUDA Version: 13.0 |" ;;
esac
"""


def test_nvidia_smi_answers_are_read(tmp_path, monkeypatch):
    (tmp_path / "nvidia-smi").write_text(FAKE_SMI)
    (tmp_path / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent: the nvidia-smi reader
    gpu_bench = _load_gpu_bench(monkeypatch)
    assert gpu_bench.gpu_facts() == "NVIDIA H200, 143771 MiB, driver 580.159.04; CUDA 13.0 (driver)"
    memory = gpu_bench.GpuMemory()
    assert memory.source == "nvidia-smi" and memory.baseline == 1536.0
    assert memory.stop() == 0.0


BLOCKED = """
import sys
for name in ("grpc", "grpc_health", "inspector.v1"):  # as where grpc or the generated protobuf code do not import
    sys.modules[name] = None
sys.path.insert(0, "bench")
import runpy
import _frames, _results
import gpu_bench
import inspector.inference.predictor, inspector.inference.runtimes, inspector.inference.exporter
frames = _frames.make_frames(2, 64)
assert len(frames) == 2 and all(f[:2] == b"\\xff\\xd8" for f in frames), frames
assert gpu_bench.write_results is _results.write_results
sys.argv = ["gpu_bench.py", "--help"]
try:
    runpy.run_path("bench/gpu_bench.py", run_name="__main__")
except SystemExit as e:
    assert e.code == 0, e.code
try:
    import _harness
except ImportError:
    print("without grpc: ok")
"""


def test_gpu_bench_and_what_it_imports_need_no_grpc():
    run = subprocess.run([sys.executable, "-c", BLOCKED], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"})
    assert run.returncode == 0 and run.stdout.rstrip().endswith("without grpc: ok"), run.stdout[-2000:] + run.stderr


def test_the_benches_share_the_same_functions(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _frames
    import _harness
    import _results
    import serve_bench

    assert serve_bench.make_frames is _frames.make_frames and serve_bench.summary is _frames.summary
    assert (_harness.write_results, _harness.invocation, _harness.utc_now, _harness.machine) == (
        _results.write_results, _results.invocation, _results.utc_now, _results.machine)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", _results.utc_now())
    monkeypatch.setattr(_results, "RESULTS", tmp_path / "RESULTS.md")
    _results.write_results("one", "gpu_check")
    _results.write_results("two", "gpu_check")
    assert (tmp_path / "RESULTS.md").read_text() == (
        "# Benchmark results\n\n<!-- gpu_check:begin -->\ntwo\n<!-- gpu_check:end -->\n")
