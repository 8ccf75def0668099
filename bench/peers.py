"""This service against NVIDIA Triton (PyTriton) on the same ONNX export, the same frames and the same clients.

    make peers  # once: PyTriton in build/peers-venv (it needs numpy<2)
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/peers.py [--model models/default] [--rounds 2] [--quick]

The bundle's ONNX export (made when it has none) is served, one server at a time, by ``inspector serve --backend
onnx`` (unary ``Inspect``, mask requested) and by Triton through PyTriton (run from build/peers-venv): a ``@batch``
callable behind Triton's dynamic batcher (the service's max batch and wait) that does the service's per-frame work
with inspector.imaging and inspector.inference.postprocess (both torch-free) and an onnxruntime session with the
service's thread count. The same client code calls both: closed loops of unary gRPC calls from 1, 4 and 8 threads;
Triton through the KServe v2 ``ModelInfer`` (the project's generated stubs, as bench/oip_bench.py). Writes the
``peers`` section of bench/RESULTS.md (not with ``--quick``). ``--inspector-backend`` and ``--triton-export`` put
each server on another export (e.g. each runtime's guarded INT8: ``openvino-int8`` against ``onnx-int8``), in a
section named after them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "build/peers-venv"
MODEL = "inspector"  # the model's name in Triton
LOADS = (1, 4, 8)  # concurrent clients
SERVING_TRITON = sys.argv[1:2] == ["--serve-triton"]  # this file run by build/peers-venv's Python: the Triton side

if not SERVING_TRITON:  # the benchmark, under .venv
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import grpc
    import torch
    from _harness import busy_cpu_seconds, invocation, machine, start_server, utc_now, write_results
    from oip_bench import closed_loops
    from serve_bench import sized_frames, summary

    from inspector.artifacts.bundle import load_bundle
    from inspector.artifacts.export import EXPORT_DIR, read_record, verified_file
    from inspector.inference.exporter import export_model
    from inspector.inference.runtimes import BACKENDS
    from inspector.oip import inference_pb2 as oip
    from inspector.oip import inference_pb2_grpc as oip_grpc
    from inspector.v1 import inspector_pb2 as pb
    from inspector.v1 import inspector_pb2_grpc as pb_grpc


def serve_triton(onnx: Path, threads: int, max_batch: int, delay_us: int, ports: list[int], workspace: Path,
                 instances: int = 1) -> None:
    """The Triton side: binds the callable (``instances`` of it, each with a session of its share of the threads),
    prints READY once Triton serves it, serves until SIGTERM."""
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from inspector.config import PreprocessSpec, Thresholds, from_dict
    from inspector.imaging.preprocess import decode_frame, inner_size, mask_to_frame, preprocess
    from inspector.inference.postprocess import ACCEPT, decide, find_regions, mask_pixels

    record = json.loads((onnx.parent / "export.json").read_text())  # the bundle's preprocessing, classes, thresholds
    spec, classes = from_dict(PreprocessSpec, record["preprocess"]), tuple(record["classes"])
    thresholds = from_dict(Thresholds, record["thresholds"])

    def prepare(data: bytes) -> tuple[np.ndarray, Any]:  # decoded at reduced scale, as the service decodes
        frame = decode_frame(data, "JPEG", fit=lambda h, w: inner_size(h, w, spec))
        return preprocess(frame.image, spec, (frame.height, frame.width))

    def instance() -> Callable:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads // instances)  # as the service's OnnxModel, no spinning
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

        @batch
        def infer(image: np.ndarray) -> dict[str, np.ndarray]:
            prepared = [prepare(bytes(b)) for b in image[:, 0]]
            out = session.run(None, {"image": np.stack([x for x, _ in prepared])})
            exp = np.exp(out[0] - out[0].max(axis=1, keepdims=True))
            probs = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
            verdicts, pngs, peaks, counts = [], [], [], []
            for k, (_, geo) in enumerate(prepared):  # as Predictor.finish for a whole frame (no tiles, no ROI)
                mask = mask_to_frame(1.0 / (1.0 + np.exp(-out[1][k, 0])), geo)
                anomaly = float(mask_to_frame(out[2][k, 0], geo).max()) if len(out) > 2 else None
                decision = decide(probs[k], classes, thresholds, float(mask.max()), anomaly)
                if decision.verdict == ACCEPT:
                    mask = np.zeros_like(mask)
                counts.append(len(find_regions(mask, decision.defect_class, thresholds)))
                verdicts.append(decision.verdict.encode())
                pngs.append(cv2.imencode(".png", mask_pixels(mask, thresholds.mask))[1].tobytes())
                peaks.append(-1.0 if anomaly is None else anomaly)
            column = lambda v, t: np.array(v, dtype=t).reshape(-1, 1)
            return {"probs": probs, "verdict": column(verdicts, object), "mask_png": column(pngs, object),
                    "anomaly": column(peaks, np.float32), "regions": column(counts, np.int32)}

        return infer

    infer = [instance() for _ in range(instances)]  # a list: Triton's instance group of that many
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leaves the `with`: PyTriton stops tritonserver
    config = TritonConfig(grpc_port=ports[0], http_port=ports[1], metrics_port=ports[2], log_verbose=0)
    outputs = {"probs": (np.float32, -1), "verdict": (np.bytes_, 1), "mask_png": (np.bytes_, 1),
               "anomaly": (np.float32, 1), "regions": (np.int32, 1)}
    with Triton(config=config, workspace=workspace) as triton:
        triton.bind(model_name=MODEL, infer_func=infer, inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
                    outputs=[Tensor(name=k, dtype=t, shape=(n,)) for k, (t, n) in outputs.items()],
                    config=ModelConfig(max_batch_size=max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us)))
        triton.run()
        print("READY", flush=True)
        while True:
            signal.pause()


def start_triton(args: argparse.Namespace, setup: dict[str, Any], workspace: Path) -> tuple[subprocess.Popen, str]:
    """The Triton side in a session of its own (PyTriton's process, tritonserver, its Python stub) once its model is
    ready, and its gRPC target; its log is ``workspace/peer.log``."""
    python = str(PEERS / "bin/python")
    libdir = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                                     text=True).strip()  # the Python stub links libpython3.X.so
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT),  # inspector's torch-free modules
                        "LD_LIBRARY_PATH": ":".join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))}
    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]  # free ports for gRPC, HTTP, metrics
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    log = workspace / "peer.log"
    cmd = [python, __file__, "--serve-triton", setup["onnx"], setup["threads"], args.max_batch, args.delay_us, *ports,
           workspace / "pytriton", args.triton_instances]
    with open(log, "w") as out:
        proc = subprocess.Popen(list(map(str, cmd)), stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    target, deadline = f"127.0.0.1:{ports[0]}", time.monotonic() + args.triton_timeout
    with grpc.insecure_channel(target) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline and proc.poll() is None:
            if "READY" in log.read_text(errors="replace").splitlines():
                try:
                    if stub.ModelReady(oip.ModelReadyRequest(name=MODEL), timeout=2).ready:
                        return proc, target
                except grpc.RpcError:
                    pass
            time.sleep(0.5)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    why = f"was not ready within {args.triton_timeout:.0f} s (--triton-timeout)" if proc.poll() is None else \
        f"exited with status {proc.returncode}"
    stop_group(proc)
    raise RuntimeError(f"Triton (PyTriton) {why}; its log ends:\n{tail}")


def stop_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM to the process group of ``proc`` (a session leader), SIGKILL after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            time.sleep(0.5)  # tritonserver and its stub leave after PyTriton's process
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of every process of its session (the Triton side's three)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[3]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def inspect_call(channel: grpc.Channel, data: bytes, i: int) -> Callable[[], Any]:
    stub = pb_grpc.InspectorStub(channel)
    request = pb.InspectRequest(data=data, encoding=pb.JPEG, frame_id=str(i), camera_id="bench", return_mask=True)
    return lambda: stub.Inspect(request, timeout=60)


def triton_call(channel: grpc.Channel, data: bytes, i: int) -> Callable[[], Any]:
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    request = oip.ModelInferRequest(  # no outputs named: all come back
        model_name=MODEL, id=str(i), raw_input_contents=[struct.pack("<I", len(data)) + data],
        inputs=[oip.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1, 1])])
    return lambda: stub.ModelInfer(request, timeout=60)


def answer(side: str, response: Any, classes: list[str]) -> tuple[list[float], str]:
    """Class probabilities and verdict of a response, to check that both sides compute the same."""
    if side == "inspector":
        return [response.class_scores[c] for c in classes], pb.Verdict.Name(response.verdict)
    raw = dict(zip([o.name for o in response.outputs], response.raw_output_contents))
    return np.frombuffer(raw["probs"], np.float32).tolist(), raw["verdict"][4:].decode()  # BYTES: length, bytes


def measure(side: str, target: str, pid: int, frames: list[bytes], seconds: float,
            classes: list[str]) -> tuple[dict[int, dict[str, Any]], list[tuple[list[float], str]]]:
    """The answers to the first frames; then each load of LOADS in turn, a warm-up and ``seconds`` of closed loops:
    its latencies, wall time and CPU seconds (the server's, this process's, other processes')."""
    build = inspect_call if side == "inspector" else triton_call
    with grpc.insecure_channel(target) as channel:
        answers = [answer(side, build(channel, f, i)(), classes) for i, f in enumerate(frames[:8])]
    figures = {}
    for clients in LOADS:
        channels = [grpc.insecure_channel(target) for _ in range(clients)]
        try:
            calls = [[build(ch, f, i) for i, f in enumerate(frames)] for ch in channels]
            closed_loops(calls, min(3.0, seconds))
            server, own, busy = cpu_seconds(pid), time.process_time(), busy_cpu_seconds()
            latencies, wall = closed_loops(calls, seconds)
            server, own = cpu_seconds(pid) - server, time.process_time() - own
            figures[clients] = {"latencies": latencies, "wall": wall, "server": server, "own": own,
                                "others": busy_cpu_seconds() - busy - server - own}
        finally:
            for ch in channels:
                ch.close()
        print(f"{side}, {clients} clients: {len(latencies) / wall:.1f} frames/s", file=sys.stderr)
    return figures, answers


def run_side(side: str, args: argparse.Namespace, setup: dict[str, Any], frames: list[bytes],
             classes: list[str]) -> tuple[dict[int, dict[str, Any]], list[tuple[list[float], str]]]:
    """Starts one server, measures it, stops it (the Triton side's processes and workspace too)."""
    if side == "inspector":
        server = start_server(["--model", args.model],
                              ["--max-batch", str(args.max_batch), "--backend", args.inspector_backend])
        try:
            return measure(side, server.target, server.pid, frames, setup["seconds"], classes)
        finally:
            server.stop()
    with tempfile.TemporaryDirectory(prefix="peers-") as workspace:
        proc, target = start_triton(args, setup, Path(workspace))
        try:
            return measure(side, target, proc.pid, frames, setup["seconds"], classes)
        finally:
            stop_group(proc)


def onnx_export(model: str, fmt: str) -> tuple[Path, str]:
    """The bundle's recorded ``onnx`` or ``onnx-int8`` export (its checksums verified); the fp32 one is exported
    first when it has none, the INT8 one must have passed ``inspector export --int8``'s accuracy guard already."""
    bundle = load_bundle(model)
    if fmt not in read_record(bundle.path / EXPORT_DIR).get("formats", {}):
        if fmt != "onnx":
            sys.exit(f"{bundle.path} has no {fmt} export: run `inspector export --model {model} --format onnx "
                     "--int8` first (it writes one only when its accuracy guard passes)")
        export_model(bundle.path, fmt)
    return verified_file(bundle, fmt).resolve(), f"{bundle.name}/{bundle.version}"


def report(args: argparse.Namespace, raw: dict[str, dict[int, dict[str, Any]]],
           answers: dict[str, list[tuple[list[float], str]]], setup: dict[str, Any]) -> str:
    figures = {side: {c: summary(r["latencies"], r["wall"]) | {
        "frames": len(r["latencies"]), "cpu_ms": 1000 * r["server"] / len(r["latencies"]),
        "client_ms": 1000 * r["own"] / len(r["latencies"]), "others": r["others"] / r["wall"]}
        for c, r in loads.items()} for side, loads in raw.items()}
    gap = max(float(np.abs(np.subtract(a[0], b[0])).max()) for a, b in zip(answers["inspector"], answers["triton"]))
    same = sum(a[1] == b[1] for a, b in zip(answers["inspector"], answers["triton"]))
    pins = (PEERS / ".installed").read_text().strip().replace("'", "")  # what `make peers` installed
    others = sum(r["others"] for loads in raw.values() for r in loads.values()) / sum(
        r["wall"] for loads in raw.values() for r in loads.values())
    rows = ["| clients | server | frames | frames/s | x inspector | p50 ms | p99 ms | server CPU ms/frame | "
            "client CPU ms/frame | other processes (cores) |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {c} | {side} | {r['frames']} | {r['fps']:.1f} | {r['fps'] / figures['inspector'][c]['fps']:.2f} | "
             f"{r['p50']:.1f} | {r['p99']:.1f} | {r['cpu_ms']:.1f} | {r['client_ms']:.2f} | {r['others']:.2f} |"
             for c in LOADS for side, r in ((s, figures[s][c]) for s in ("inspector", "triton"))]
    title, caveat = comparison(args)
    return "\n".join([
        f"## This service vs NVIDIA Triton (PyTriton): {title}", "",
        f"- command: `{invocation()}`", f"- machine: {machine()}; device: cpu", f"- date: {utc_now()}",
        f"- model: `{args.model}` ({setup['served']}), export `{os.path.relpath(setup['onnx'], ROOT)}`; frames: "
        f"{setup['frames']}",
        f"- one server at a time, {args.rounds} round(s), the order alternating; per round and load a warm-up, then "
        f"{setup['seconds']:g} s of closed loops (send a frame, wait for the answer), a thread and gRPC channel each",
        f"- inspector: `inspector serve --backend {args.inspector_backend} --max-batch {args.max_batch}` (batcher wait "
        f"2 ms; when frames queue up, 2 lanes, each on its share of the {setup['threads']} threads: the default on "
        "the CPU), unary `Inspect` with `return_mask`: decode, letterbox, the model, verdict, regions, mask PNG at "
        "frame size",
        *caveat,
        f"- triton: PyTriton ({pins}), a `@batch` callable, `max_batch_size={args.max_batch}`, `DynamicBatcher("
        f"max_queue_delay_microseconds={args.delay_us})`, "
        + (f"ONNX Runtime with the service's {setup['threads']} threads" if args.triton_instances == 1 else
           f"an instance group of {args.triton_instances} callables, each with an ONNX Runtime session of "
           f"{max(1, setup['threads'] // args.triton_instances)} thread(s) (the service's {setup['threads']} shared)")
        + "; the same work with inspector's functions (JPEGs decoded at the reduced scale the letterbox allows, as "
        "the service), but a batch's decode, preprocessing and postprocessing "
        "on one thread (the service: worker threads beside its batcher). Answers probabilities, verdict, mask PNG, "
        "anomaly peak, the number of regions (the service: also the regions, thresholds, timings); called with "
        "KServe v2 `ModelInfer`, the protocol tritonclient speaks",
        f"- same answers: on {len(answers['triton'])} frames, class probabilities within {gap:.1e}, "
        f"{same}/{len(answers['triton'])} verdicts equal",
        "- server CPU: /proc of the server's processes (Triton: PyTriton's, tritonserver, its Python stub); other "
        "processes: the machine's busy CPU less the servers' and this process's",
        *([f"- other processes used {others:.2f} cores on average while measuring: frames/s and latencies are "
           "theirs as much as the servers'; server CPU per frame is each server's own cost"] if others > 0.2 else []),
        f"- run time: {time.monotonic() - setup['started']:.0f} s", "", *rows])


def comparison(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The section's title, and the line that says what is not alike (none when both serve the same file)."""
    ours, theirs = args.inspector_backend, args.triton_export
    title = f"same `{ours}` export, frames and clients" if ours == theirs else \
        f"this service on its `{ours}` export, Triton on the `{theirs}` export; same frames and clients"
    if args.triton_instances > 1:
        title += f"; Triton with an instance group of {args.triton_instances}"
    if ours == theirs:
        return title, []
    if ours.endswith("-int8") and theirs.endswith("-int8"):
        return title, [f"- **each runtime's own INT8**: the same bundle quantized by each server's runtime, both "
                       f"behind `inspector export --int8`'s accuracy guard: the service on `{ours}`, Triton's ONNX "
                       f"Runtime on `{theirs}` (ONNX Runtime's static quantization, the INT8 its ONNX backend runs); "
                       "the same file on both sides is the `peers` section"]
    triton = "the fp32 ONNX export a plant would hand it" if theirs == "onnx" else f"the `{theirs}` export"
    return title, [f"- **not like for like**: each server as it comes with this bundle, the service on its `{ours}` "
                   f"export, Triton on {triton} (INT8 ones behind the accuracy guard); the like-for-like comparison "
                   "is the `peers` section"]


def section(args: argparse.Namespace) -> str:
    """The RESULTS.md section: ``peers`` for the defaults, else named after what differs."""
    backend = "" if args.inspector_backend == "onnx" else f"_{args.inspector_backend}"
    instances = "" if args.triton_instances == 1 else f"_triton{args.triton_instances}"
    export = "" if args.triton_export == "onnx" else f"_triton-{args.triton_export}"
    return f"peers{backend}{instances}{export}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="bundle folder, or a model store folder")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per load, server and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each server once per round (order alternating)")
    parser.add_argument("--frames", type=int, default=32, help="distinct frames the clients cycle through")
    parser.add_argument("--max-batch", type=int, default=8, help="both servers' largest batch")
    parser.add_argument("--delay-us", type=int, default=2000, help="Triton's batcher wait (the service's: 2 ms)")
    parser.add_argument("--triton-timeout", type=float, default=180.0, help="seconds Triton may take to be ready")
    parser.add_argument("--inspector-backend", default="onnx", choices=BACKENDS,
                        help="the service's backend (Triton runs --triton-export); other than onnx, results go to "
                             "the section peers_<backend>")
    parser.add_argument("--triton-export", default="onnx", choices=("onnx", "onnx-int8"),
                        help="the export Triton's ONNX Runtime serves: the fp32 one, or the guarded INT8 one of "
                             "`inspector export --format onnx --int8`; other than onnx, results go to the section "
                             "peers_<backend>_triton-onnx-int8")
    parser.add_argument("--triton-instances", type=int, default=1,
                        help="Triton's instance group: that many callables, each with an ONNX Runtime session of its "
                             "share of the threads (2 on 2 cores: Triton's counterpart of the service's lanes); other "
                             "than 1, results go to the section peers_triton<N>")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 3 s, 8 frames, nothing written")
    args = parser.parse_args()
    if not (PEERS / ".installed").exists():
        print(f"{PEERS} is missing: run `make peers` first (PyTriton in a venv of its own)", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through the `finally`s that stop the servers
    seconds, n, args.rounds = (3.0, 8, 1) if args.quick else (args.seconds, args.frames, args.rounds)
    setup: dict[str, Any] = {"started": time.monotonic(), "seconds": seconds, "threads": torch.get_num_threads()}
    frames, setup["frames"] = sized_frames(n, (512, 512))
    setup["onnx"], setup["served"] = onnx_export(args.model, args.triton_export)
    classes = json.loads((setup["onnx"].parent / "export.json").read_text())["classes"]
    sides, answers = ("inspector", "triton"), {}
    raw = {s: {c: {"latencies": [], "wall": 0.0, "server": 0.0, "own": 0.0, "others": 0.0} for c in LOADS}
           for s in sides}
    for r in range(args.rounds):
        for side in sides if r % 2 == 0 else sides[::-1]:  # the machine may be shared: neither always goes first
            got, answers[side] = run_side(side, args, setup, frames, classes)
            for clients, figures in got.items():
                for key, value in figures.items():
                    raw[side][clients][key] += value
    text = report(args, raw, answers, setup)
    print(text)
    if not args.quick:
        write_results(text, section(args))


if __name__ == "__main__":
    if SERVING_TRITON:
        a = sys.argv[2:]
        serve_triton(Path(a[0]), int(a[1]), int(a[2]), int(a[3]), [int(p) for p in a[4:7]], Path(a[7]), int(a[8]))
    else:
        main()
