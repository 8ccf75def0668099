"""GPU check: end-to-end latency and throughput per frame of each GPU runtime on one NVIDIA GPU, in one run.

    python3 bench/gpu_bench.py [--model models/default] [--compile-modes reduce-overhead ...] [--logs DIR]
    python3 bench/gpu_bench.py --cpu-dry-run --model BUNDLE    (the whole flow on the CPU; nothing written)

Run it through ``bash bench/gpu_check.sh`` (its header says how on a lent GPU machine). A row is one way of running
the bundle's network inside ``inspector.inference.predictor.Predictor``, timed from 512x512 grayscale JPEG bytes
(``_frames.make_frames``) to the predictions (masks and regions at the frame's size): PyTorch eager fp32, and with
the predictor's fp16 autocast (the service's default on CUDA); ``torch.compile`` of the network (``--compile-modes``,
default ``reduce-overhead``: CUDA graphs), fp16 autocast; ONNX Runtime on the bundle's ONNX export, through the
``onnx`` backend's runner (``runtimes.OnnxModel``; the predictor stays on the host, ONNX Runtime does the copies),
with the CUDA execution provider, and with the TensorRT one (fp16, engine cache, the CUDA EP for what TensorRT
does not take).

Per row: p50/p99 ms per frame at batch 1 (closed loop), the model stage alone at batch 1, frames/s at batch 1 and
at ``--batch``, peak GPU memory (torch's allocator; the device's from NVML or nvidia-smi) and setup time (load,
compile or engine build, warm-up). Each row runs in a process of its own under a time limit within ``--budget``: one
that crashes, hangs or lacks a library is a row that says so, and the others still run. The table is printed and
written to bench/RESULTS.md, section ``gpu_check``.

Exit status: 3 no GPU (one line says why; nothing measured or written), 4 a Python package missing, 2 no such
bundle, 1 no row measured. ``--cpu-dry-run`` runs the same flow on the CPU with a few frames (eager,
``torch.compile`` with the ``eager`` backend, ONNX Runtime's CPU EP; the CUDA-only rows say why they cannot run)
and writes nothing: it checks this script's code, not the GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import invocation, machine, utc_now, write_results

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

NO_GPU, MISSING_PACKAGE = 3, 4  # exit statuses the shell script and its test rely on
SECTION = "gpu_check"
SIZE = 512  # frame side, px
INPUT = "image"  # the ONNX export's input (exporter._write_onnx)
# (key, label, time limit in s) of each row, in the order they run
GRAPHS_ROW = ("graphs", "PyTorch eager, fp16 autocast, CUDA graphs (serve --cuda-graphs)", 150)
GPU_ROWS = [("fp32", "PyTorch eager, fp32", 150), ("fp16", "PyTorch eager, fp16 autocast", 150), GRAPHS_ROW]
ORT_ROWS = [("ort:cuda", "ONNX Runtime, CUDA EP (fp32 graph)", 180),
            ("ort:trt", "ONNX Runtime, TensorRT EP fp16 (+CUDA EP)", 300)]
DRY_ROWS = [("fp32", "PyTorch eager, fp32 (CPU)", 120), ("fp16", "PyTorch eager, fp16 autocast", 120),
            ("compile:eager", "torch.compile, backend eager (CPU: dynamo only)", 120),
            ("ort:cpu", "ONNX Runtime, CPU EP (fp32 graph)", 120), GRAPHS_ROW, *ORT_ROWS]
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "trt": "TensorrtExecutionProvider"}


class NotAvailable(Exception):
    """A row this machine cannot run (a runtime or library missing); its message says which."""


def _last_line(text: str, limit: int = 300) -> str:
    """The last non-blank line of ``text`` (an error's gist), at most ``limit`` characters."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")[:limit]


# ---------------------------------------------------------------------------------------------------------- machine


def no_gpu_reason() -> str | None:
    """Why no CUDA device can be used here (None when one can); never creates a CUDA context."""
    try:
        import torch
    except ImportError as e:
        return f"PyTorch is not importable by {sys.executable} ({e})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        smi = "on PATH" if shutil.which("nvidia-smi") else "not found"
        return (f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False; "
                f"nvidia-smi {smi})")
    return None


def gpu_facts() -> str:
    """The GPU's name, memory and driver, and the driver's CUDA version, from nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return "nvidia-smi not found"
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
        banner = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed ({e})"
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    gpus = "; ".join(", driver ".join(p.strip() for p in line.rsplit(",", 1)) for line in query)
    return f"{gpus}; CUDA {cuda.group(1) if cuda else '?'} (driver)"


def software() -> str:
    """torch, its CUDA and cuDNN, and ONNX Runtime's distribution and providers."""
    from importlib import metadata

    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    torch_line = f"torch {torch.__version__} (CUDA {torch.version.cuda}, cuDNN {cudnn})"
    for dist in ("onnxruntime-gpu", "onnxruntime"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        try:
            import onnxruntime as ort

            providers = ", ".join(p.removesuffix("ExecutionProvider") for p in ort.get_available_providers())
        except ImportError as e:
            providers = f"not importable: {e}"
        return f"{torch_line}; {dist} {version} (providers: {providers})"
    return f"{torch_line}; onnxruntime not installed"


class GpuMemory:
    """Device memory in use (every process's), sampled on a thread from NVML (pynvml) or else nvidia-smi, from
    construction to :meth:`stop`; :meth:`stop` returns the peak over the first reading, MiB (None without either)."""

    def __init__(self) -> None:
        self.source, self.read, interval = self._reader()
        self.baseline = self.peak = self.read() if self.read else 0.0
        self._done = threading.Event()
        if self.read:
            self._thread = threading.Thread(target=self._sample, args=(interval,), daemon=True)
            self._thread.start()

    @staticmethod
    def _reader():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        index = int(visible) if visible.isdigit() else 0
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            return "NVML", lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20, 0.01
        except Exception:  # noqa: BLE001 - no pynvml, or NVML refused: try nvidia-smi
            pass
        if shutil.which("nvidia-smi"):
            cmd = ["nvidia-smi", f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
            return "nvidia-smi", lambda: float(subprocess.run(cmd, capture_output=True, text=True,
                                                              timeout=10).stdout.split()[0]), 0.25
        return "n/a", None, 0.0

    def _sample(self, interval: float) -> None:
        while not self._done.wait(interval):
            try:
                self.peak = max(self.peak, self.read())
            except Exception:  # noqa: BLE001 - a failed reading is skipped
                pass

    def stop(self) -> float | None:
        if not self.read:
            return None
        self._done.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.read())
        return self.peak - self.baseline


# ------------------------------------------------------------------------------------------------------ one row


def ort_unavailable(provider: str) -> str | None:
    """Why ONNX Runtime cannot run on ``provider`` here, found without a session (None: it may): the provider missing
    from the installed ONNX Runtime or, for TensorRT, the TensorRT library its provider links to not loadable."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        return f"onnxruntime is not importable ({e})"
    name = PROVIDERS[provider]
    available = ort.get_available_providers()
    if name not in available:
        return (f"onnxruntime {ort.__version__} here has no {name} (it has {', '.join(available)}); carry the "
                "onnxruntime-gpu wheel (bench/gpu_check.sh)")
    if provider == "trt":
        import ctypes

        lib = next(Path(ort.__file__).parent.glob("capi/libonnxruntime_providers_tensorrt.so"), None)
        found = re.search(rb"libnvinfer\.so\.\d+", lib.read_bytes()) if lib else None
        soname = found.group().decode() if found else "libnvinfer.so"
        try:
            ctypes.CDLL(soname)
        except OSError as e:
            return (f"{soname} (TensorRT, which ONNX Runtime's TensorRT EP links to) does not load: {e}; carry "
                    "tensorrt-cu13-libs of that major version (bench/gpu_check.sh)")
    return None


def ort_network(provider: str, onnx_path: str, height: int, width: int, batch: int, trt_cache: Path):
    """The ``onnx`` backend's runner (:class:`inspector.inference.runtimes.OnnxModel`, its ``__call__``) on a session
    with ``provider`` first (checked by :func:`ort_unavailable` before); NotAvailable when it does not load."""
    import onnxruntime as ort
    import torch

    from inspector.inference.runtimes import OnnxModel

    name = PROVIDERS[provider]
    if provider != "cpu" and not torch.cuda.is_available():
        raise NotAvailable(f"{name} needs a CUDA device; none is visible")
    if provider == "trt":
        shape = f"{INPUT}:{{}}x3x{height}x{width}"
        trt = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(trt_cache),
               "trt_timing_cache_enable": True, "trt_timing_cache_path": str(trt_cache),
               "trt_profile_min_shapes": shape.format(1), "trt_profile_opt_shapes": shape.format(batch),
               "trt_profile_max_shapes": shape.format(batch)}
        providers = [(name, trt), "CUDAExecutionProvider"]
    else:
        providers = [name] if provider == "cpu" else [name, "CPUExecutionProvider"]
    if provider != "cpu" and hasattr(ort, "preload_dlls"):  # CUDA and cuDNN as torch loaded them (onnxruntime-gpu)
        ort.preload_dlls()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as runtimes.OnnxModel
    try:  # no silent fallback to the next provider: a provider that does not load is what this row reports
        session = ort.InferenceSession(onnx_path, options, providers=providers, enable_fallback=0)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises RuntimeError and its own Fail/EPFail types
        message = " ".join(str(e).split())
        if re.search(r"cannot open shared object|Failed to load|libnvinfer|libcudnn|libcublas|libcudart", message):
            raise NotAvailable(f"{name} does not load: {message[:300]}") from e
        raise
    if session.get_providers()[0] != name:
        raise NotAvailable(f"{name} did not load; the session runs on {', '.join(session.get_providers())}")
    runner = OnnxModel.__new__(OnnxModel)  # its __call__: numpy in, torch tensors out, as `--backend onnx` serves
    runner.session, runner.device = session, torch.device("cpu")
    return runner


def measure(predictor, frames: list[bytes], batch: int, warmup: int, warmup_batches: int) -> dict[str, float]:
    """Batch 1 closed loop over ``frames`` after ``warmup`` frames, then ``frames`` in batches of ``batch`` after
    ``warmup_batches``; each call from the JPEG bytes (decode) to the predictions."""
    import numpy as np

    from inspector.imaging.preprocess import decode

    def run(chunk: list[bytes]):
        return predictor.predict([decode(f, "JPEG") for f in chunk])

    t0 = time.perf_counter()
    for i in range(warmup):
        run([frames[i % len(frames)]])
    for _ in range(warmup_batches):
        run(frames[:batch])
    warm = time.perf_counter() - t0
    latencies, infer = [], []
    start = time.perf_counter()
    for frame in frames:
        t = time.perf_counter()
        prediction = run([frame])[0]
        latencies.append(time.perf_counter() - t)
        infer.append(prediction.timings["infer"])
    wall1 = time.perf_counter() - start
    n = max(batch, len(frames) // batch * batch)
    start = time.perf_counter()
    for i in range(0, n, batch):
        run([frames[(i + k) % len(frames)] for k in range(batch)])
    wall_b = time.perf_counter() - start
    ms = np.array(latencies) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "infer_p50": float(np.median(infer) * 1000.0), "fps1": len(frames) / wall1, "fps_b": n / wall_b,
            "warmup_s": warm, "frames": len(frames), "batches": n // batch}


def run_row(key: str, args: argparse.Namespace) -> dict:
    """One row's figures (``status`` ok); NotAvailable when this machine cannot run it."""
    import torch

    from _frames import make_frames
    from inspector.artifacts.bundle import load_bundle
    from inspector.inference.predictor import Predictor

    cuda = not args.cpu_dry_run
    device = "cuda" if cuda else "cpu"
    if key == "fp16" and not cuda:
        raise NotAvailable("the predictor's fp16 autocast runs on CUDA only (off on the CPU)")
    if key == "graphs" and not cuda:
        raise NotAvailable("CUDA graphs need a CUDA device")
    if key.startswith("ort:") and args.onnx is None:
        raise NotAvailable(f"no ONNX export: {args.onnx_note}")
    frames = make_frames(args.frames, SIZE)
    bundle = load_bundle(args.model)
    memory = GpuMemory() if cuda else None  # baseline before this process touches the GPU
    out: dict = {}
    cache = Path(tempfile.mkdtemp(prefix="gpu-check-trt-"))  # TensorRT's engine and timing caches
    try:
        t0 = time.perf_counter()
        if cuda:
            torch.backends.cudnn.benchmark = True  # as `inspector serve` sets it
            x = torch.randn(64, 64, device="cuda", dtype=torch.float16)
            if not torch.isfinite(x @ x).all():
                raise RuntimeError("fp16 matmul on the GPU gave non-finite values")
            out["gpu"] = f"{torch.cuda.get_device_name()}, fp16 matmul ok"
        if key in ("fp32", "fp16", "graphs"):
            predictor = Predictor(bundle, device, fp16=key != "fp32", cuda_graphs=key == "graphs")
        elif key.startswith("compile:"):
            mode = key.split(":", 1)[1]
            predictor = Predictor(bundle, device, fp16=True)  # autocast on CUDA (the service's), off on the CPU
            options = {"backend": "eager"} if mode == "eager" else {"mode": mode}
            predictor.model = torch.compile(predictor.model, dynamic=False, **options)  # a graph per batch size
        elif key.startswith("ort:"):
            network = ort_network(key.split(":", 1)[1], args.onnx, bundle.spec.height, bundle.spec.width,
                                  args.batch, cache)
            predictor = Predictor(bundle, "cpu", fp16=False, network=network)  # host tensors: ORT does the copies
        else:
            raise ValueError(f"unknown row {key!r}")
        built = time.perf_counter() - t0
        figures = measure(predictor, frames, args.batch, args.warmup, args.warmup_batches)
        if key == "graphs":
            out["parity"] = parity(predictor, Predictor(bundle, device, fp16=True), frames[:16])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    out |= figures | {"status": "ok", "setup_s": built + figures["warmup_s"]}
    if cuda:
        out["torch_mib"] = None if key.startswith("ort:") else torch.cuda.max_memory_allocated() / 2**20
        out["device_mib"], out["memory_source"] = memory.stop(), memory.source
    return out


def row_result(key: str, args: argparse.Namespace) -> dict:
    """:func:`run_row`, or why the row has no figures: status "not available", or "failed" (traceback to stderr)."""
    try:
        return run_row(key, args)
    except NotAvailable as e:
        return {"status": "not available", "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - a row that fails is reported as such
        traceback.print_exc()
        return {"status": "failed", "reason": f"{type(e).__name__}: {_last_line(str(e))}"}


# ------------------------------------------------------------------------------------------------------ all rows


def isolated(key: str, args: argparse.Namespace, limit: float, log: Path) -> dict:
    """Row ``key`` in a process of its own (``--row``), killed with its compile workers after ``limit`` s; its
    output to ``log``, its result through ``log``'s .json sibling."""
    result = log.with_suffix(".json")
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", key, "--json", str(result), "--model",
           str(args.model), "--frames", str(args.frames), "--batch", str(args.batch), "--warmup", str(args.warmup),
           "--warmup-batches", str(args.warmup_batches), *(["--onnx", args.onnx] if args.onnx else []),
           "--onnx-note", args.onnx_note, *(["--cpu-dry-run"] if args.cpu_dry_run else [])]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, process_group=0)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            return {"status": "skipped", "reason": f"did not finish in {limit:.0f} s (its time limit)"}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
    if proc.returncode == 0 and result.exists():
        figures = json.loads(result.read_text())
        result.unlink()
        return figures
    return {"status": "failed",
            "reason": f"exit status {proc.returncode}: {_last_line(log.read_text(errors='replace'))}"}


def prepare_onnx(model: str) -> tuple[str | None, str]:
    """The bundle's ONNX graph (its recorded export when the checksums hold, else one exported and checked now) and
    a line that says which; None and why when there is none. Never raises."""
    try:
        from inspector.artifacts.bundle import load_bundle
        from inspector.artifacts.export import verified_file

        return str(verified_file(load_bundle(model), "onnx")), "the bundle's recorded onnx export (checksums verified)"
    except Exception:  # noqa: BLE001 - none recorded, or modified: export it again
        pass
    t = time.perf_counter()
    try:
        from inspector.inference.exporter import export_model

        path, entry = export_model(model, "onnx")
    except Exception as e:  # noqa: BLE001 - reported on the ONNX Runtime rows
        return None, f"export_model failed: {type(e).__name__}: {_last_line(str(e))}"
    return str(path), (f"exported now by `export_model(bundle, \"onnx\")` in {time.perf_counter() - t:.0f} s, parity "
                       f"{entry['parity']['max_abs_error']:.1e} on golden frames")


def parity(predictor, reference, frames: list[bytes]) -> str:
    """How far ``predictor``'s answers are from ``reference``'s on ``frames``, at batch 1 and 3 (a padded batch)."""
    import numpy as np

    from inspector.imaging.preprocess import decode

    images = [decode(f, "JPEG") for f in frames]
    pairs = [(a, b) for batch in (images[:1], images[1:4], images[4:])
             for a, b in zip(predictor.predict(batch), reference.predict(batch))]
    scores = max(abs(a.class_scores[c] - b.class_scores[c]) for a, b in pairs for c in a.class_scores)
    masks = max(float(np.abs(a.mask - b.mask).max()) for a, b in pairs)
    same = sum(a.verdict == b.verdict for a, b in pairs)
    return (f"vs eager fp16 on {len(pairs)} frames (batches of 1, 3, {len(images) - 4}): verdicts equal {same}/"
            f"{len(pairs)}, class scores max diff {scores:.2g}, mask max diff {masks:.2g}")


def rows_to_run(args: argparse.Namespace) -> list[tuple[str, str, float]]:
    if args.cpu_dry_run:
        return DRY_ROWS
    compiles = [(f"compile:{m}", f"torch.compile {m}{' (CUDA graphs)' if m == 'reduce-overhead' else ''}, fp16 "
                 "autocast", 300) for m in args.compile_modes]
    return [*GPU_ROWS, *compiles[:1], *ORT_ROWS, *compiles[1:]]


def _cell(value: float | None, spec: str = ".1f") -> str:
    return "" if value is None else format(value, spec)


def table(results: list[tuple[str, dict]], batch: int) -> str:
    lines = [f"| runtime | p50 ms (b1) | p99 ms (b1) | model p50 ms (b1) | frames/s (b1) | frames/s (b{batch}) | "
             "torch peak MiB | device peak MiB | setup s |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in results:
        if r["status"] != "ok":
            lines.append(f"| {label} | {r['status']}: {r['reason'].replace('|', '/')} |  |  |  |  |  |  |  |")
            continue
        lines.append(f"| {label} | {r['p50']:.2f} | {r['p99']:.2f} | {r['infer_p50']:.2f} | {r['fps1']:.0f} | "
                     f"{r['fps_b']:.0f} | {_cell(r.get('torch_mib'), '.0f')} | {_cell(r.get('device_mib'), '.0f')} | "
                     f"{r['setup_s']:.0f} |")
    return "\n".join(lines)


def report(args: argparse.Namespace, results: list[tuple[str, dict]], gpu: str, bundle_line: str) -> str:
    sources = {r.get("memory_source") for _, r in results if r.get("memory_source")} or {"n/a"}
    checks = {r["gpu"] for _, r in results if r.get("gpu")}
    ok = [r for _, r in results if r["status"] == "ok"]
    frames, batches = (ok[0]["frames"], ok[0]["batches"]) if ok else (args.frames, 0)
    title = "CPU dry run (not a GPU result)" if args.cpu_dry_run else "GPU runtimes, end to end per frame"
    processes = ("the first row in a process of its own, the others in one process (dry run)" if args.cpu_dry_run
                 else "each row in a process of its own")
    return "\n".join([
        f"## {title}: {SIZE}x{SIZE} frames through `Predictor`",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}",
        f"- GPU: {gpu}" + (f" ({'; '.join(sorted(checks))})" if checks else ""),
        f"- software: {software()}",
        f"- date: {utc_now()}",
        f"- model: {bundle_line}; ONNX graph: {args.onnx_note}",
        f"- a call: {SIZE}x{SIZE} grayscale JPEGs (`_frames.make_frames`: distinct synthetic parts) decoded,",
        "  preprocessed, run and postprocessed (masks and regions at the frame's size) by `Predictor.predict`.",
        f"  b1: closed loop, {frames} frames one at a time after {args.warmup} warm-up frames; p50/p99 of each",
        "  frame's wall time; model: the predictor's infer stage alone (copy in, network, copy out).",
        f"  b{args.batch}: {batches} batches of {args.batch} after {args.warmup_batches} warm-up batches.",
        f"- {processes}. torch peak: `torch.cuda.max_memory_allocated` (tensors only); device peak: device",
        f"  memory in use ({', '.join(sorted(sources))}) at its peak during the row minus before it (CUDA context,",
        "  cuDNN/cuBLAS workspaces, ONNX Runtime's arena included). setup: building the predictor (compile, engine",
        "  build) and the warm-up. ONNX Runtime rows: the `onnx` backend's runner (`runtimes.OnnxModel.__call__`)",
        "  on a session with the providers named; the predictor stays on the host and ONNX Runtime copies in and out.",
        *[f"- {label}: {r['parity']}" for label, r in results if r.get("parity")],
        "",
        table(results, args.batch),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="a bundle, or a model folder (its active version)")
    parser.add_argument("--frames", type=int, help="timed frames per row (default 200; dry run 8)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the throughput figure")
    parser.add_argument("--warmup", type=int, help="warm-up frames at batch 1 (default 20; dry run 2)")
    parser.add_argument("--warmup-batches", type=int, help="warm-up batches (default 3; dry run 1)")
    parser.add_argument("--compile-modes", nargs="*", default=["reduce-overhead"],
                        help="torch.compile modes, a row each (reduce-overhead: CUDA graphs; max-autotune, "
                             "max-autotune-no-cudagraphs: minutes of autotuning); none: no compile row")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all rows; the rest are skipped")
    parser.add_argument("--logs", help="folder for each row's output (default: shown only for rows that fail)")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="the whole flow on the CPU with a few frames; bench/RESULTS.md is not written")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not write bench/RESULTS.md")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a child: this row only, its result as JSON in --json
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-note", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    dry = args.cpu_dry_run
    args.frames = args.frames or (8 if dry else 200)
    args.warmup = args.warmup if args.warmup is not None else (2 if dry else 20)
    args.warmup_batches = args.warmup_batches if args.warmup_batches is not None else (1 if dry else 3)
    if args.row:
        Path(args.json).write_text(json.dumps(row_result(args.row, args)))
        return
    if not dry:
        reason = no_gpu_reason()
        if reason:
            print(f"gpu_check: no GPU: {reason}; nothing measured, bench/RESULTS.md not written "
                  f"(--cpu-dry-run runs the flow on the CPU)", file=sys.stderr)
            sys.exit(NO_GPU)
    try:  # what every row imports (segmentation_models_pytorch, timm, cv2...): missing, it is said here, once
        import _frames  # noqa: F401
        import inspector.inference.predictor  # noqa: F401
        import inspector.model.defectnet  # noqa: F401
        from inspector.artifacts.bundle import load_bundle
    except ImportError as e:
        print(f"gpu_check: Python package {e.name!r} is missing for {sys.executable} ({e}); carry its wheel "
              "(bench/gpu_check.sh says how)", file=sys.stderr)
        sys.exit(MISSING_PACKAGE)
    try:
        bundle = load_bundle(args.model)
    except Exception as e:  # noqa: BLE001 - a usage error: no such bundle
        print(f"gpu_check: cannot load the bundle {args.model}: {_last_line(str(e))}", file=sys.stderr)
        sys.exit(2)
    spec = bundle.spec
    bundle_line = (f"{args.model} ({bundle.name}/{bundle.version}, {bundle.meta.backbone}, input "
                   f"{spec.width}x{spec.height}{', anomaly head' if bundle.meta.anomaly else ''})")
    gpu = "none (CPU dry run)" if dry else gpu_facts()
    print(f"gpu_check: {gpu}; model {bundle_line}", flush=True)
    logs = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="gpu-check-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget
    args.onnx, args.onnx_note = None, "not exported (no ONNX Runtime row can run here)"
    rows = rows_to_run(args)
    prechecks = {key: ort_unavailable(key.split(":", 1)[1]) for key, _, _ in rows if key.startswith("ort:")}
    need_onnx = not all(prechecks.values())  # some ONNX Runtime row may run: the bundle's ONNX graph, once
    # dry run: exported on a thread beside the first row (a process of its own), awaited before the next, which runs
    # in this process (dynamo's export and compile do not mix threads); on a GPU: before the first ONNX Runtime row,
    # so that no measurement shares the CPU with it
    exporting = ThreadPoolExecutor(1).submit(prepare_onnx, args.model) if need_onnx and dry else None
    results = []
    for i, (key, label, limit) in enumerate(rows):
        precheck = prechecks.get(key)
        if need_onnx and (i > 0 if dry else key.startswith("ort:") and not precheck):
            need_onnx = False
            if exporting or deadline - time.monotonic() > 60:
                args.onnx, args.onnx_note = exporting.result() if exporting else prepare_onnx(args.model)
            else:
                args.onnx_note = "not exported: the time budget ran out"
            print(f"gpu_check: ONNX graph: {args.onnx_note}", flush=True)
        left, t = deadline - time.monotonic(), time.monotonic()
        if precheck:
            result = {"status": "not available", "reason": precheck}
        elif left < 30:
            result = {"status": "skipped", "reason": f"the time budget (--budget {args.budget:.0f} s) ran out"}
        elif dry and i > 0:  # the dry run: the first row in a process of its own like every GPU row, the rest here
            result = row_result(key, args)
        else:
            log = logs / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', key)}.log"
            result = isolated(key, args, min(limit, left), log)
            if result["status"] not in ("ok", "not available"):
                tail = log.read_text(errors="replace").strip().splitlines()[-15:]
                print(f"gpu_check: {label}: the end of its output ({log}):\n  " + "\n  ".join(tail), file=sys.stderr)
        status = result["status"] if result["status"] != "ok" else f"p50 {result['p50']:.2f} ms"
        print(f"gpu_check: [{i + 1}/{len(rows)}] {label}: {status} ({time.monotonic() - t:.0f} s)", flush=True)
        results.append((label, result))
    if not args.logs:
        shutil.rmtree(logs, ignore_errors=True)
    text = report(args, results, gpu, bundle_line)
    print(text)
    if not any(r["status"] == "ok" for _, r in results):
        print("gpu_check: no row was measured", file=sys.stderr)
        sys.exit(1)
    if dry or args.no_write:
        print("gpu_check: bench/RESULTS.md not written (" + ("CPU dry run" if dry else "--no-write") + ")")
    else:
        write_results(text, SECTION)
        print(f"gpu_check: written to bench/RESULTS.md, section {SECTION}")


if __name__ == "__main__":
    main()
