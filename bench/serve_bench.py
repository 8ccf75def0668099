"""Service vs in-process throughput and latency, on the same pre-encoded frames, in one run.

    .venv/bin/python bench/serve_bench.py --model models/default [--quick]

(a) in process: decode + preprocess + model + postprocess through ``Predictor`` at batch 1 and at the server's
batch size; (b) the service (``inspector serve`` in its own process) under 1 and 4 concurrent streams from an
asyncio gRPC client, each stream sending a frame and waiting for its answer (a camera's closed loop). (a) and (b)
alternate over ``--rounds`` rounds, so that each ratio compares figures taken within minutes of each other on a
machine whose speed drifts (one-frame model times of 18 to 25 ms were seen a few minutes apart on this project's
2-core machines). Prints a table and writes it to bench/RESULTS.md between markers, with the machine, date and
command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import grpc  # noqa: E402
import numpy as np  # noqa: E402

from _frames import make_frames, summary  # noqa: E402 - other benches import them from here too
from _harness import DATA, Server, invocation, load_frames, machine, start_server, utc_now, write_results  # noqa: E402
from inspector.memory import keep_freed_memory  # noqa: E402
from inspector.artifacts.bundle import load_bundle  # noqa: E402
from inspector.cli.export import guard_report  # noqa: E402
from inspector.inference.exporter import export_int8, export_model  # noqa: E402
from inspector.inference.quantize import AccuracyGuardError, Int8Options, side_by_side  # noqa: E402
from inspector.inference.runtimes import BACKENDS  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402
from inspector.imaging.preprocess import decode, decode_frame  # noqa: E402
from inspector.imaging.reduced import Frame  # noqa: E402
from inspector.v1 import inspector_pb2 as pb  # noqa: E402
from inspector.v1 import inspector_pb2_grpc as pb_grpc  # noqa: E402


DEVICE = "cpu"  # set from --device
GRAPHS = False  # set from --cuda-graphs
LOADS = [(1, 1), (4, 1), (8, 1), (4, 2)]  # (streams, frames each stream sends ahead of its answers)


def load_predictor(model: str, backend: str, batch: int) -> Predictor:
    """The predictor the in-process rows use, every batch shape warmed as the service warms it."""
    predictor = Predictor.from_bundle(model, DEVICE, backend=backend, cuda_graphs=GRAPHS)
    predictor.warm_up(batch)
    return predictor


def in_process(predictor: Predictor, frames: list[bytes], batch: int) -> dict[str, float]:
    def decoded(chunk: list[bytes]) -> list[Frame]:  # as the service decodes: at reduced scale where it can
        return [decode_frame(f, "JPEG", fit=predictor.decode_size) for f in chunk]

    predictor.predict(decoded(frames[:batch]))
    latencies, cpu0, start = [], time.process_time(), time.perf_counter()
    for i in range(0, len(frames), batch):
        t = time.perf_counter()
        predictor.predict(decoded(frames[i : i + batch]))
        latencies += [time.perf_counter() - t] * len(frames[i : i + batch])
    wall = time.perf_counter() - start
    return summary(latencies, wall) | {"cpu": (time.process_time() - cpu0) / wall}


async def _stream(stub, frames: list[bytes], latencies: list[float], stream_id: int, window: int = 1) -> None:
    """One camera: up to ``window`` frames sent ahead of their answers (1: send, wait, send...)."""
    call, slots, sent = stub.InspectStream(), asyncio.Semaphore(window), {}

    async def write() -> None:
        for i, data in enumerate(frames):
            await slots.acquire()
            sent[f"{stream_id}-{i}"] = time.perf_counter()
            await call.write(pb.InspectRequest(data=data, encoding=pb.JPEG, frame_id=f"{stream_id}-{i}"))
        await call.done_writing()

    async def read() -> None:
        for _ in frames:
            response = await call.read()
            latencies.append(time.perf_counter() - sent.pop(response.frame_id))
            slots.release()
            if response.HasField("error"):
                raise RuntimeError(f"frame {response.frame_id}: {response.error.message}")

    await asyncio.gather(write(), read())


async def _load(target: str, frames: list[bytes], streams: int, window: int) -> tuple[list[float], float]:
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.InspectorStub(channel)
        await _stream(stub, frames[:4], [], -1)  # warm the connection
        latencies: list[float] = []
        per_stream = frames[: max(20, len(frames) // streams)]
        start = time.perf_counter()
        await asyncio.gather(*(_stream(stub, per_stream, latencies, s, window) for s in range(streams)))
        return latencies, time.perf_counter() - start


def start_service(model: str, max_batch: int, backend: str) -> Server:
    extra = ["--cuda-graphs" if GRAPHS else "--no-cuda-graphs"]  # the same as in process, whatever the default
    return start_server(["--model", model], ["--max-batch", str(max_batch), "--backend", backend, *extra], DEVICE)


def service(server: Server, frames: list[bytes], streams: int, window: int) -> dict[str, float]:
    """One load on the running service: figures, its CPU and the client's."""
    cpu_server0, cpu_client0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF)
    latencies, wall = asyncio.run(_load(server.target, frames, streams, window))
    client = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = client.ru_utime + client.ru_stime - cpu_client0.ru_utime - cpu_client0.ru_stime
    return summary(latencies, wall) | {"cpu": (server.cpu_seconds() - cpu_server0) / wall,
                                       "client_cpu": client_cpu / wall}


def backend_rounds(model: str, frames: list[bytes], backend: str, batch: int,
                   rounds: int) -> tuple[list[dict[str, dict[str, float]]], float]:
    """Each round: the in-process rows, then every load on the service (one process, started once), so that a
    ratio compares figures taken minutes apart at most; returns the rows of each round and the server's peak RSS."""
    predictor, server = load_predictor(model, backend, batch), start_service(model, batch, backend)
    out = []
    try:
        for _ in range(rounds):
            rows = {f"{backend}: in-process, batch 1": in_process(predictor, frames, 1),
                    f"{backend}: in-process, batch {batch}": in_process(predictor, frames, batch)}
            for streams, window in LOADS:
                ahead = f", {window} ahead" if window > 1 else ""
                name = f"{backend}: service, {streams} stream{'s' if streams > 1 else ''}{ahead}"
                rows[name] = service(server, frames, streams, window)
            out.append(rows)
        rss = server.status_kib("VmHWM") / 1024
    finally:
        server.stop()
    return out, rss


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each figure of each row: its median over the rounds."""
    return {name: {k: float(np.median([r[name][k] for r in rounds])) for k in rounds[0][name]} for name in rounds[0]}


def device_name() -> str:
    if DEVICE.startswith("cuda"):
        import torch

        return f"{DEVICE} ({torch.cuda.get_device_name()}, fp16 autocast{', CUDA graphs' if GRAPHS else ''})"
    return DEVICE


def gpu_memory_mib() -> float | None:
    """Peak GPU memory of this process (the in-process runs), MiB."""
    if not DEVICE.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**20


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = ["| pipeline | frames/s | x in-process batched | p50 ms | p90 ms | p99 ms | server CPU (cores) | client CPU |",
             "|---|---|---|---|---|---|---|---|"]
    batched = {name.split(":")[0]: r["fps"] for name, r in rows if "in-process, batch" in name and "batch 1" not in name}
    for name, r in rows:
        reference = batched[name.split(":")[0]]
        lines.append(f"| {name} | {r['fps']:.1f} | {r['fps'] / reference:.2f} | {r['p50']:.1f} | {r['p90']:.1f} | "
                     f"{r['p99']:.1f} | {r['cpu']:.2f} | {r.get('client_cpu', float('nan')):.2f} |")
    return "\n".join(lines)


def spread(values: list[float]) -> str:
    """The median of per-round values, and their range when there are several."""
    median = f"{np.median(values):.2f}"
    return median if len(values) == 1 else f"{median} ({min(values):.2f}-{max(values):.2f})"


def targets(rounds: dict[str, list[dict[str, dict[str, float]]]], batch: int) -> list[str]:
    """Per backend, each ratio taken within a round (median and range over the rounds): 4 streams against
    in-process batched throughput, one-stream p99 against the in-process median single frame; and the best INT8
    service against the eager one at 4 streams."""
    out = ["| backend | service 4 streams / in-process batch " + str(batch) + " (>= 0.95) | "
           "1-stream p99 / in-process 1-frame p50 (<= 1.2) | 1-stream p99 / in-process 1-frame p99 |",
           "|---|---|---|---|"]
    for b, runs in rounds.items():
        four = [r[f"{b}: service, 4 streams"]["fps"] / r[f"{b}: in-process, batch {batch}"]["fps"] for r in runs]
        one = [r[f"{b}: service, 1 stream"]["p99"] / r[f"{b}: in-process, batch 1"]["p50"] for r in runs]
        tail = [r[f"{b}: service, 1 stream"]["p99"] / r[f"{b}: in-process, batch 1"]["p99"] for r in runs]
        out.append(f"| {b} | {spread(four)} | {spread(one)} | {spread(tail)} |")
    int8 = [b for b in rounds if b.endswith("-int8")]
    if "eager" in rounds and int8:
        fps = {b: medians(rounds[b])[f"{b}: service, 4 streams"]["fps"] for b in ["eager", *int8]}
        best = max(int8, key=fps.get)
        out += ["", f"INT8 service ({best}) vs eager service, 4 streams: {fps[best]:.1f} / {fps['eager']:.1f} frames/s "
                f"= **{fps[best] / fps['eager']:.2f}x**"]
    return out


def sized_frames(n: int, size: tuple[int, int]) -> tuple[list[bytes], str]:
    """Real frames (``_harness.load_frames``) resized to ``size`` and re-encoded as JPEG quality 90, else synthetic."""
    if not any((DATA / "images").glob("*/*.jpg")):  # no real data here
        return make_frames(n, size), f"synthetic parts (_frames.make_frames; {DATA} not found)"
    loaded, where = load_frames(DATA, n)
    frames = []
    for f in loaded:
        image = cv2.resize(decode(f.data, "JPEG"), size, interpolation=cv2.INTER_LINEAR)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return frames, f"{where}, resized and re-encoded (JPEG quality 90)"


def exported_copy(model: str, backends: list[str], tmp: Path) -> tuple[str, list[str], list[str]]:
    """The bundle copied into ``tmp`` (the store left as it is) with the exports ``backends`` need, INT8 ones behind
    their accuracy guard; the guards' side-by-side tables; and the backends that can run (an INT8 export the guard
    refused is left out, its refusal in the tables)."""
    source = load_bundle(model)
    copy = str(shutil.copytree(source.path, tmp / source.version, ignore=shutil.ignore_patterns("export")))
    guards, runnable = [], []
    for backend in backends:
        fmt = backend.removesuffix("-int8")
        if backend != "eager" and fmt not in {b.removesuffix("-int8") for b in backends[: backends.index(backend)]}:
            export_model(copy, fmt)
        if backend.endswith("-int8"):
            try:
                acc, verdict = export_int8(copy, fmt, Int8Options(guard_report))[1]["accuracy"], "written"
            except AccuracyGuardError as err:
                acc, verdict = err.accuracy, "refused, not measured"
            guards += [f"INT8 guard, {fmt} (validation split, {acc['n_images']} images, max drop {acc['max_drop']}): "
                       f"{verdict}", "", "```", side_by_side(acc), "```", ""]
            if verdict != "written":
                continue
        runnable.append(backend)
    return copy, guards, runnable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1280x1024"], help="frame sizes, WxH px")
    parser.add_argument("--frames", type=int, default=200, help="frames per measurement")
    parser.add_argument("--batch", type=int, default=8, help="server max batch and in-process batch")
    parser.add_argument("--backends", nargs="+", default=["eager", "onnx"], choices=BACKENDS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp16 autocast)")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=False,
                        help="CUDA: the network replayed as CUDA graphs, in process and in the service")
    parser.add_argument("--section", default="serve_bench", help="RESULTS.md section to write")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per backend, each the in-process rows then the service's; medians reported")
    parser.add_argument("--quick", action="store_true", help="smoke run: 24 frames, one round, results not written")
    args = parser.parse_args()
    global DEVICE, GRAPHS
    DEVICE, GRAPHS = args.device, args.cuda_graphs
    keep_freed_memory()  # as `inspector serve` (and predict, evaluate) set it: in process compares like with like
    if DEVICE.startswith("cuda"):
        import torch

        torch.backends.cudnn.benchmark = True  # as `inspector serve` sets it: the in-process rows compare like with like
    n = 24 if args.quick else args.frames
    args.rounds = 1 if args.quick else args.rounds
    parts, source = [], load_bundle(args.model)
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        model, guards, backends = exported_copy(args.model, args.backends, Path(tmp))
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            frames, where = sized_frames(n, (w, h))
            rounds, rss = {}, {}
            for backend in backends:
                rounds[backend], rss[backend] = backend_rounds(model, frames, backend, args.batch, args.rounds)
                print(f"{size} {backend} done", flush=True)
            rows = [row for b in backends for row in medians(rounds[b]).items()]
            memory = ", ".join(f"{b} {v:.0f} MiB" for b, v in rss.items())
            parts += [f"### {w}x{h} grayscale JPEG ({where})", "", table(rows), "", *targets(rounds, args.batch), "",
                      f"Peak RSS of the server process: {memory}", ""]
    text = "\n".join([
        f"## Service vs in-process ({n} frames per row, median of {args.rounds} round{'s' * (args.rounds > 1)})",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: {device_name()}",
        f"- date: {utc_now()}",
        f"- served: `{args.model}` ({source.name}/{source.version}, {source.meta.backbone}, "
        f"{source.spec.height}x{source.spec.width} px input, anomaly head: {'yes' if source.meta.anomaly else 'no'})",
        "- in-process: decode + preprocess + model + postprocess through `Predictor`, one thread of calls; service:",
        "  `inspector serve` in its own process (its defaults: on the CPU, 2 lanes while frames queue up), an asyncio",
        "  gRPC client, each stream a camera that sends a frame and",
        "  waits for its answer (or keeps 2 frames ahead). Ratios are to the in-process batched throughput of the",
        "  same backend. Each round runs the in-process rows, then the service's, on one server process; rows give",
        "  each figure's median over the rounds, and the targets' ratios are taken within each round (median, range).",
        "",
        *parts,
        *guards,
        *([f"Peak GPU memory of the in-process runs: {gpu_memory_mib():.0f} MiB"] if gpu_memory_mib() else []),
    ])
    print(text)
    if not args.quick:
        write_results(text, args.section)


if __name__ == "__main__":
    main()
