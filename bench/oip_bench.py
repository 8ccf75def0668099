"""The Open Inference Protocol's cost: ``ModelInfer`` against ``Inspect`` on the same frames, the same server.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/oip_bench.py [--model models/default] [--clients 4]
        [--rounds 10] [--seconds 5] [--frames 32] [--data ../shared/data/magnetic-tile] [--no-write]

One ``inspector serve --model MODEL`` process. ``--clients`` threads, each on a channel of its own (a camera or a
plant's process each), run closed loops of unary calls (send a frame, wait for its answer, send the next) through
the project's generated stubs: ``inspector.v1.Inspector/Inspect`` with the encoded frame, or
``inference.GRPCInferenceService/ModelInfer`` with the same bytes as the ``image`` input (BYTES [1] in
``raw_input_contents``, as tritonclient sends it) and the default outputs (no mask, as ``Inspect`` sends none).

After a warm-up of both, ``--rounds`` A/B rounds of ``--seconds`` per API, the order alternating (Inspect first in
even rounds, OIP first in odd ones) so that neither always meets a warmer or a busier machine. Figures: frames/s
over all rounds, p50/p99 latency of every call, the median of the per-round throughput ratios (of all rounds, and
of the quiet ones), the server's and the clients' CPU per frame (the clients share the machine's cores with the
server), and the cores other processes used during each API's phases: on a shared machine they, not the API, can
decide a round's ratio, while the server's CPU per frame is the API's own cost. Target: OIP/Inspect throughput
>= 0.95. Frames: the magnetic-tile JPEGs where they lie (``--data``) if present, else ``inspector demo-data``
images. Writes a section of bench/RESULTS.md (unless ``--no-write``).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from _harness import (DATA, Frame, Server, busy_cpu_seconds, invocation, load_frames, machine,  # noqa: E402
                      start_server, utc_now, write_results)
from serve_bench import summary  # noqa: E402

from inspector.oip import inference_pb2 as oip  # noqa: E402
from inspector.oip import inference_pb2_grpc as oip_grpc  # noqa: E402
from inspector.v1 import inspector_pb2 as pb  # noqa: E402
from inspector.v1 import inspector_pb2_grpc as pb_grpc  # noqa: E402

APIS = ("Inspect", "OIP ModelInfer")
TARGET = 0.95  # OIP frames/s / Inspect frames/s
TIMEOUT = 60.0  # s per call, a safety net
QUIET = 0.2  # cores: a round whose phases other processes used less than this in both is a quiet one


def inspect_call(channel: grpc.Channel, frame: Frame, frame_id: str) -> Callable[[], None]:
    """One ``Inspect`` of ``frame``, built once and sent on each call."""
    stub = pb_grpc.InspectorStub(channel)
    request = pb.InspectRequest(data=frame.data, encoding=frame.encoding, frame_id=frame_id, camera_id="bench")

    def call() -> None:
        stub.Inspect(request, timeout=TIMEOUT)

    return call


def oip_call(channel: grpc.Channel, frame: Frame, frame_id: str, model: str) -> Callable[[], None]:
    """One ``ModelInfer`` of ``frame`` as the ``image`` input, built once and sent on each call."""
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    request = oip.ModelInferRequest(
        model_name=model, id=frame_id,
        inputs=[oip.ModelInferRequest.InferInputTensor(name="image", datatype="BYTES", shape=[1])],
        raw_input_contents=[struct.pack("<I", len(frame.data)) + frame.data])
    request.parameters["camera_id"].string_param = "bench"

    def call() -> None:
        stub.ModelInfer(request, timeout=TIMEOUT)

    return call


def closed_loops(calls: list[list[Callable[[], None]]], seconds: float) -> tuple[list[float], float]:
    """Each client (a list of calls, one per frame, taken in turn) calls in a closed loop for ``seconds``; returns
    every call's latency and the wall time until the last answer."""
    latencies: list[float] = []
    lock, failures = threading.Lock(), []
    start = time.perf_counter()
    end = start + seconds

    def client(mine: list[Callable[[], None]], offset: int) -> None:
        own, i = [], offset
        try:
            while time.perf_counter() < end:
                t = time.perf_counter()
                mine[i % len(mine)]()
                own.append(time.perf_counter() - t)
                i += 1
        except grpc.RpcError as err:
            failures.append(f"{err.code().name}: {err.details()}")
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=client, args=(c, 7 * k)) for k, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) failed, the first: {failures[0]}")
    return latencies, time.perf_counter() - start


class Round(NamedTuple):
    ratio: float  # OIP frames/s / Inspect frames/s
    others_inspect: float  # cores other processes used during the Inspect phase
    others_oip: float


def measure(server: Server, frames: list[Frame], clients: int, rounds: int, seconds: float,
            model: str) -> tuple[dict[str, dict[str, float]], list[Round]]:
    """The A/B rounds: figures per API (with the cores other processes used during its phases: the machine may be
    shared) and each round's throughput ratio OIP/Inspect."""
    channels = [grpc.insecure_channel(server.target) for _ in range(clients)]
    try:
        calls = {"Inspect": [[inspect_call(ch, f, f"c{k}-{i}") for i, f in enumerate(frames)]
                             for k, ch in enumerate(channels)],
                 "OIP ModelInfer": [[oip_call(ch, f, f"c{k}-{i}", model) for i, f in enumerate(frames)]
                                    for k, ch in enumerate(channels)]}
        for api in APIS:  # warm-up: connections, the model's first passes, the allocator
            closed_loops(calls[api], min(3.0, seconds))
        latencies = {api: [] for api in APIS}
        wall = {api: 0.0 for api in APIS}
        server_cpu = {api: 0.0 for api in APIS}
        client_cpu = {api: 0.0 for api in APIS}
        others = {api: 0.0 for api in APIS}  # CPU seconds of other processes during the API's phases
        rounds_seen = []
        for r in range(rounds):
            fps, busy = {}, {}
            for api in APIS if r % 2 == 0 else reversed(APIS):
                cpu, own, machine_cpu = server.cpu_seconds(), time.process_time(), busy_cpu_seconds()
                got, took = closed_loops(calls[api], seconds)
                server_cpu[api] += server.cpu_seconds() - cpu
                client_cpu[api] += time.process_time() - own
                other = busy_cpu_seconds() - machine_cpu - (server.cpu_seconds() - cpu) - (time.process_time() - own)
                others[api] += other
                latencies[api] += got
                wall[api] += took
                fps[api], busy[api] = len(got) / took, other / took
            rounds_seen.append(Round(fps["OIP ModelInfer"] / fps["Inspect"], busy["Inspect"], busy["OIP ModelInfer"]))
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{a} {fps[a]:.1f} frames/s (others {busy[a]:.2f} cores)"
                                                          for a in fps) + f", ratio {rounds_seen[-1].ratio:.3f}",
                  file=sys.stderr)
    finally:
        for channel in channels:
            channel.close()
    figures = {api: summary(latencies[api], wall[api]) | {"frames": len(latencies[api]),
                                                          "cpu_ms": 1000 * server_cpu[api] / len(latencies[api]),
                                                          "client_ms": 1000 * client_cpu[api] / len(latencies[api]),
                                                          "others": others[api] / wall[api]}
               for api in APIS}
    return figures, rounds_seen


def report(figures: dict[str, dict[str, float]], rounds: list[Round], frames_line: str, args: argparse.Namespace,
           served: str) -> str:
    inspect, infer = figures["Inspect"], figures["OIP ModelInfer"]
    overall = infer["fps"] / inspect["fps"]
    rows = [("| API | frames | frames/s | p50 ms | p90 ms | p99 ms | server CPU ms / frame | client CPU ms / frame "
             "| other processes (cores) |"), "|---|---|---|---|---|---|---|---|---|"]
    rows += [f"| {api} | {r['frames']} | {r['fps']:.1f} | {r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | "
             f"{r['cpu_ms']:.1f} | {r['client_ms']:.2f} | {r['others']:.2f} |" for api, r in figures.items()]
    rows.append(f"| OIP / Inspect | | {overall:.3f} | {infer['p50'] / inspect['p50']:.3f} | "
                f"{infer['p90'] / inspect['p90']:.3f} | {infer['p99'] / inspect['p99']:.3f} | "
                f"{infer['cpu_ms'] / inspect['cpu_ms']:.3f} | {infer['client_ms'] / inspect['client_ms']:.3f} | |")
    per_round = ", ".join(f"{r.ratio:.3f} ({r.others_inspect:.2f}/{r.others_oip:.2f})" for r in rounds)
    ratios = [r.ratio for r in rounds]
    quiet = [r.ratio for r in rounds if max(r.others_inspect, r.others_oip) < QUIET]
    quiet_line = (f"median of the {len(quiet)} quiet rounds (other processes under {QUIET} cores in both phases) "
                  f"{float(np.median(quiet)):.3f}" if quiet else f"no round was quiet (other processes under {QUIET} "
                  "cores in both phases)")
    met = "yes" if overall >= TARGET else "NO"
    return "\n".join([
        f"## Open Inference Protocol vs inspector.v1: ModelInfer against Inspect ({args.clients} clients)",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: cpu",
        f"- date: {utc_now()}",
        f"- served: {served}; frames: {frames_line}",
        (f"- {args.clients} threads, each on its own channel, in closed loops of unary calls through the generated "
         f"stubs; {args.rounds} A/B rounds of {args.seconds:g} s per API, the order alternating, after a warm-up. "
         "OIP sends the frame's bytes as the `image` input (BYTES [1], raw contents) and gets the default outputs "
         "(no mask); Inspect sends the same bytes and gets no mask."),
        ("- other processes: the machine's busy CPU time (/proc/stat) less the server's and this process's, during "
         "each API's phases"),
        "",
        *rows,
        "",
        (f"OIP / Inspect throughput: {overall:.3f} over all rounds (target >= {TARGET}: {met}), median of the rounds "
         f"{float(np.median(ratios)):.3f}, {quiet_line}. Per round (cores other processes used during its "
         f"Inspect/OIP phases): {per_round}."),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="bundle folder, or <store>/<name>")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients, each a closed loop")
    parser.add_argument("--rounds", type=int, default=10, help="A/B rounds")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per API per round")
    parser.add_argument("--frames", type=int, default=32, help="distinct frames the clients cycle through")
    parser.add_argument("--data", type=Path, default=DATA, help="data set whose images/<class>/*.jpg to send")
    parser.add_argument("--no-write", action="store_true", help="print only; bench/RESULTS.md untouched")
    args = parser.parse_args()
    frames, frames_line = load_frames(args.data, args.frames)
    server = start_server(["--model", args.model])
    try:
        with grpc.insecure_channel(server.target) as channel:
            info = pb_grpc.InspectorStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
        figures, rounds = measure(server, frames, args.clients, args.rounds, args.seconds, info.name)
        served = f"`{args.model}` ({info.name}/{info.version}, {info.backbone}, {info.input_width} px input)"
    finally:
        server.stop()
    text = report(figures, rounds, frames_line, args, served)
    print(text)
    if not args.no_write:
        write_results(text, "oip_bench")


if __name__ == "__main__":
    main()
