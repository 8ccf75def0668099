"""Line scale: 1,000 open streams that idle (cameras between parts) beside 8 active ones, against the 8 alone.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/many_streams.py --model models/default
        [--seconds 60] [--idle 1000] [--active 8] [--data ../shared/data/magnetic-tile] [--no-write]

One ``inspector serve`` process (``--max-streams`` = idle + active) and, in this process, one grpc.aio client on one
channel: one TCP connection, so one file descriptor however many streams, and one event loop holds them all. On
the same server process, in turn:

1. warm-up: the active streams for a few seconds, not counted;
2. baseline: ``--active`` streams, each a closed loop (send a frame, wait for its answer, send the next), for
   ``--seconds``;
3. ``--idle`` streams opened at once; each sends one frame (at most ``--open-at-once`` frames of them in flight,
   under the server's in-flight bound), reads its answer and then stays open, sending nothing;
4. loaded: the same closed loops for ``--seconds`` with the idle streams open;
5. with every stream still open (idle + active = --max-streams), one stream more: it must be refused with
   RESOURCE_EXHAUSTED at once;
6. every stream half-closes and must end OK with no answer beyond those it was due.

Both phases run on one server process so that the idle streams' memory is an RSS difference within one process and
both phases meet the same warmed model; the loaded phase therefore runs second.

Figures: frames/s and p50/p99 latency of the active streams per phase and their ratios (target: loaded within 10 %
of baseline), server RSS (VmRSS before and after opening the idle streams and after closing them, peak VmHWM), time
to open the idle streams, frames sent vs answered per stream with frame_id matched (every frame answered exactly
once), the refusal and its time, and the CPU other processes used during each phase (the machine may be shared).
Frames: the magnetic-tile JPEGs where they lie (``--data``) if present, else ``inspector demo-data`` images.
Writes a section of bench/RESULTS.md (unless ``--no-write``); exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (  # noqa: E402
    DATA, READINESS, Frame, Server, busy_cpu_seconds, invocation, load_frames, machine, start_server, utc_now,
    write_results)

from inspector.v1 import inspector_pb2 as pb  # noqa: E402
from inspector.v1 import inspector_pb2_grpc as pb_grpc  # noqa: E402

ANSWER_TIMEOUT = 120.0  # s: longest wait for one answer before the stream counts as failed


@dataclass
class StreamLog:
    """What one stream sent and got back."""

    sent: int = 0
    answered: int = 0
    wrong_id: int = 0  # answers whose frame_id is not that of the frame due
    error_answers: int = 0  # answers carrying an error (every frame sent here is a good one)
    extra: int = 0  # answers read after the stream half-closed with nothing due
    code: str = ""  # the status the stream ended with, or what broke it

    @property
    def exactly_once(self) -> bool:
        return self.sent == self.answered and self.wrong_id == 0 and self.extra == 0 and self.code == "OK"


@dataclass
class Group:
    """Streams that start together, each saying when it is ready (``ready``), and half-close together (``hold``)."""

    ready: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)
    logs: list[StreamLog] = field(default_factory=list)

    def start(self, n: int, camera: Callable[[int, StreamLog], Awaitable[None]]) -> None:
        for k in range(n):
            self.logs.append(StreamLog())
            self.tasks.append(asyncio.ensure_future(camera(k, self.logs[-1])))

    async def wait_ready(self) -> None:
        for _ in self.tasks:
            await self.ready.acquire()

    async def close(self) -> None:
        self.hold.set()
        await asyncio.gather(*self.tasks)


async def exchange(call: grpc.aio.StreamStreamCall, frame: Frame, frame_id: str, log: StreamLog) -> None:
    """One step of a closed loop: sends a frame and reads its answer."""
    await call.write(pb.InspectRequest(data=frame.data, encoding=frame.encoding, frame_id=frame_id))
    log.sent += 1
    response = await asyncio.wait_for(call.read(), ANSWER_TIMEOUT)
    if response is grpc.aio.EOF:
        raise RuntimeError(f"the stream ended before answering {frame_id}")
    log.answered += 1
    log.wrong_id += response.frame_id != frame_id
    log.error_answers += response.HasField("error")


async def finish(call: grpc.aio.StreamStreamCall, log: StreamLog) -> None:
    """Half-closes the stream and reads it to its end: nothing is due, so any answer now is one too many."""
    await call.done_writing()
    while await asyncio.wait_for(call.read(), ANSWER_TIMEOUT) is not grpc.aio.EOF:
        log.extra += 1
    log.code = (await call.code()).name


async def camera(stub: pb_grpc.InspectorStub, frames: list[Frame], sid: str, log: StreamLog, group: Group,
                 until: float = 0.0, samples: list[tuple[float, float]] | None = None,
                 gate: asyncio.Semaphore | None = None) -> None:
    """One camera's stream: frames in a closed loop until ``until`` (one frame at least, inside ``gate``), then
    open and silent until the group's ``hold``; then it half-closes. ``samples`` gets (answered at, latency)."""
    call = stub.InspectStream()
    try:
        try:
            async with gate or contextlib.nullcontext():
                i = 0
                while i == 0 or time.monotonic() < until:
                    sent_at = time.monotonic()
                    await exchange(call, frames[i % len(frames)], f"{sid}-{i}", log)
                    if samples is not None:
                        answered_at = time.monotonic()
                        samples.append((answered_at, answered_at - sent_at))
                    i += 1
        finally:
            group.ready.release()
        await group.hold.wait()
        await finish(call, log)
    except (grpc.aio.AioRpcError, asyncio.TimeoutError, RuntimeError) as err:
        log.code = err.code().name if isinstance(err, grpc.aio.AioRpcError) else type(err).__name__
        call.cancel()


@dataclass
class CpuMark:
    """CPU seconds used so far by the server, this client and the whole machine."""

    server: float
    client: float
    machine: float

    @classmethod
    def now(cls, server: Server) -> CpuMark:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(server.cpu_seconds(), usage.ru_utime + usage.ru_stime, busy_cpu_seconds())

    def cores_since(self, before: CpuMark, seconds: float) -> dict[str, float]:
        """Cores used by each since ``before``; ``other``: every other process of the machine."""
        server, client = self.server - before.server, self.client - before.client
        other = self.machine - before.machine - server - client
        return {"server_cores": server / seconds, "client_cores": client / seconds, "other_cores": other / seconds}


def latency_figures(samples: list[tuple[float, float]], start: float, until: float) -> dict[str, float]:
    """Throughput of the frames answered within the window and latency percentiles, ms."""
    ms = np.array([latency for t, latency in samples if t <= until]) * 1000.0
    return {"frames": len(ms), "fps": len(ms) / (until - start), "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99))}


async def active_phase(stub: pb_grpc.InspectorStub, frames: list[Frame], n: int, seconds: float, server: Server,
                       at_end: Callable[[], Awaitable[dict]] | None = None) -> dict:
    """``n`` closed-loop streams for ``seconds``; ``at_end`` runs while they are all still open."""
    group, samples = Group(), []
    mark, start = CpuMark.now(server), time.monotonic()
    until = start + seconds
    group.start(n, lambda k, log: camera(stub, frames[k:] + frames[:k], f"active{k}", log, group, until, samples))
    await group.wait_ready()
    figures = latency_figures(samples, start, until) | CpuMark.now(server).cores_since(mark, time.monotonic() - start)
    figures |= await at_end() if at_end else {}
    await group.close()
    return figures | {"logs": group.logs}


async def gauge_reaches(server: Server, name: str, value: float, timeout: float) -> float | None:
    """Seconds until the server's gauge ``name`` equals ``value`` (polled every 0.1 s), None if it does not."""
    start, loop = time.monotonic(), asyncio.get_running_loop()
    while time.monotonic() - start < timeout:
        if (await loop.run_in_executor(None, server.metrics)).get(name) == value:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    return None


async def open_idle(stub: pb_grpc.InspectorStub, frames: list[Frame], n: int, at_once: int,
                    server: Server) -> tuple[Group, dict]:
    """Opens ``n`` idle streams at once and, once the server counts them all, lets each send its one frame (at
    most ``at_once`` in flight); times both and takes the server's RSS in between."""
    group, gate = Group(), asyncio.Semaphore(0)  # the gate opens once the server counts every stream
    group.start(n, lambda k, log: camera(stub, [frames[k % len(frames)]], f"idle{k}", log, group, gate=gate))
    counted = await gauge_reaches(server, "inspector_open_streams", n, 120.0)
    rss_silent, start = server.status_kib(), time.monotonic()
    for _ in range(at_once):
        gate.release()
    await group.wait_ready()
    return group, {"counted_s": counted, "rss_silent": rss_silent, "answered_s": time.monotonic() - start}


async def refusal(stub: pb_grpc.InspectorStub, frame: Frame, timeout: float = 10.0) -> dict:
    """One stream more than --max-streams: its status, message and how soon it came."""
    start = time.monotonic()
    call = stub.InspectStream()
    with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
        await call.write(pb.InspectRequest(data=frame.data, encoding=frame.encoding, frame_id="one-too-many"))
    try:
        code = await asyncio.wait_for(call.code(), timeout)
    except asyncio.TimeoutError:
        call.cancel()
        return {"code": f"none within {timeout:.0f} s", "details": "", "refused_ms": float("nan")}
    return {"code": code.name, "details": await call.details(), "refused_ms": (time.monotonic() - start) * 1000}


async def readiness(channel: grpc.aio.Channel) -> str:
    request = health_pb2.HealthCheckRequest(service=READINESS)
    response = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


async def when_full(server: Server, stub: pb_grpc.InspectorStub, channel: grpc.aio.Channel, frame: Frame) -> dict:
    """Figures taken with every stream open: the server's gauges, readiness, RSS, client fds, the refusal."""
    metrics = await asyncio.get_running_loop().run_in_executor(None, server.metrics)
    figures = {"open_gauge": metrics.get("inspector_open_streams"),
               "capacity": metrics.get("inspector_capacity_used_ratio"), "ready_full": await readiness(channel),
               "rss_full": server.status_kib(), "client_fds": len(os.listdir("/proc/self/fd"))}
    return figures | await refusal(stub, frame)


async def measure(server: Server, frames: list[Frame], args: argparse.Namespace) -> dict:
    """The whole run on one channel; see the module docstring for the order."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.InspectorStub(channel)
        await active_phase(stub, frames, args.active, min(5.0, args.seconds / 4), server)  # warm-up
        baseline = await active_phase(stub, frames, args.active, args.seconds, server)
        out = {"baseline": baseline, "rss_before": server.status_kib()}
        idle, out["open"] = await open_idle(stub, frames, args.idle, args.open_at_once, server)
        out["rss_open"] = server.status_kib()
        out["loaded"] = await active_phase(stub, frames, args.active, args.seconds, server,
                                           lambda: when_full(server, stub, channel, frames[0]))
        start = time.monotonic()
        await idle.close()
        out["close_s"], out["idle_logs"] = time.monotonic() - start, idle.logs
        out["closed_s"] = await gauge_reaches(server, "inspector_open_streams", 0, 30.0)
        await asyncio.sleep(1.0)  # readiness is refreshed every 0.25 s
        out["ready_after"], out["rss_closed"] = await readiness(channel), server.status_kib()
    out["hwm"] = server.status_kib("VmHWM")
    return out


def once_line(logs: list[StreamLog]) -> str:
    """Sent vs answered over a set of streams."""
    codes = sorted({log.code for log in logs})
    return (f"{len(logs)} streams: {sum(g.sent for g in logs)} frames sent, {sum(g.answered for g in logs)} answered, "
            f"{sum(g.wrong_id for g in logs)} with another frame_id, {sum(g.extra for g in logs)} extra, "
            f"{sum(g.error_answers for g in logs)} error answers; {sum(not g.exactly_once for g in logs)} streams "
            f"off exactly-once; ended {', '.join(codes)}")


def checks(r: dict, args: argparse.Namespace) -> list[tuple[str, str, bool]]:
    """(what, figures, met) for each target of the run."""
    base, loaded = r["baseline"], r["loaded"]
    fps_ratio, p99_ratio = loaded["fps"] / base["fps"], loaded["p99"] / base["p99"]
    logs = base["logs"] + loaded["logs"] + r["idle_logs"]
    once = all(g.exactly_once and g.error_answers == 0 for g in logs)
    refused = loaded["code"] == "RESOURCE_EXHAUSTED" and "--max-streams" in loaded["details"]
    return [
        ("active frames/s, loaded / baseline (>= 0.90)", f"{fps_ratio:.3f}", fps_ratio >= 0.9),
        ("active p99, loaded / baseline (<= 1.10)", f"{p99_ratio:.3f}", p99_ratio <= 1.1),
        ("every frame answered exactly once, frame_id matched, streams ended OK",
         "<br>".join([f"active, baseline: {once_line(base['logs'])}", f"active, loaded: {once_line(loaded['logs'])}",
                      f"idle: {once_line(r['idle_logs'])}"]), once),
        (f"stream {args.idle + args.active + 1} over --max-streams {args.idle + args.active} refused at once",
         f"{loaded['code']} after {loaded['refused_ms']:.1f} ms: \"{loaded['details']}\"",
         refused and loaded["refused_ms"] < 1000),
    ]


def report(r: dict, args: argparse.Namespace, frames_what: str, model: str) -> tuple[str, bool]:
    """The RESULTS.md section, and whether every target was met."""
    base, loaded, opened = r["baseline"], r["loaded"], r["open"]
    mib = {k: r[k] / 1024 for k in ("rss_before", "rss_open", "rss_closed", "hwm")} | {
        "full": loaded["rss_full"] / 1024, "silent": opened["rss_silent"] / 1024}
    per_stream = (opened["rss_silent"] - r["rss_before"]) / max(1, args.idle)
    rows = [f"| {name} | {args.active} | {idle} | {p['frames']} | {p['fps']:.2f} | {p['p50']:.0f} | {p['p99']:.0f} | "
            f"{p['server_cores']:.2f} | {p['client_cores']:.2f} | {p['other_cores']:.2f} |"
            for name, idle, p in (("baseline", 0, base), ("loaded", args.idle, loaded))]
    targets = checks(r, args)
    counted = "not seen" if opened["counted_s"] is None else f"{opened['counted_s']:.1f} s"
    lines = [
        f"## Line scale: {args.idle} idle streams beside {args.active} active ones ({args.seconds:.0f} s per phase)",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: {args.device}; open files limit (`ulimit -n`) "
        f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; date: {utc_now()}",
        f"- model: `{model}`; frames: {frames_what}",
        f"- one `inspector serve` process for both phases (`--max-streams {args.idle + args.active}`), so the idle "
        "streams' memory is a difference within one process and both phases meet the same warm model; the loaded "
        f"phase runs second. Client: grpc.aio in another process, one channel ({loaded['client_fds']} fds open in "
        "the client with every stream open); active streams are closed loops (send a frame, wait for its answer).",
        "",
        "| phase | active streams | idle streams | frames answered | frames/s | p50 ms | p99 ms | server CPU (cores) "
        "| client CPU | other processes' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        f"| loaded / baseline | | | | {loaded['fps'] / base['fps']:.3f} | {loaded['p50'] / base['p50']:.3f} | "
        f"{loaded['p99'] / base['p99']:.3f} | | | |",
        "",
        "| check | figures | met |",
        "|---|---|---|",
        *[f"| {what} | {figures} | {'yes' if met else 'NO'} |" for what, figures, met in targets],
        "",
        f"- opening the {args.idle} idle streams, all at once: the server counted all of them open after {counted}; "
        f"then their first frames (at most {args.open_at_once} in flight) were all answered after "
        f"{opened['answered_s']:.1f} s ({args.idle / opened['answered_s']:.1f} frames/s)",
        f"- server RSS: {mib['rss_before']:.0f} MiB before opening the idle streams, {mib['silent']:.0f} MiB with "
        f"them open before their first frames ({per_stream:+.1f} KiB a stream), {mib['rss_open']:.0f} MiB once "
        f"those were answered, {mib['full']:.0f} MiB at the end of the loaded phase, {mib['rss_closed']:.0f} MiB "
        f"after closing them; peak (VmHWM) {mib['hwm']:.0f} MiB",
        f"- with every stream open: `inspector_open_streams` {loaded['open_gauge']:.0f}, "
        f"`inspector_capacity_used_ratio` {loaded['capacity']:.2f}, readiness ({READINESS}) {loaded['ready_full']}; "
        f"after closing the idle streams (in {r['close_s']:.1f} s): gauge at 0 after "
        f"{'never' if r['closed_s'] is None else format(r['closed_s'], '.1f') + ' s'}, readiness {r['ready_after']}",
    ]
    return "\n".join(lines), all(met for _, _, met in targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="bundle or model folder")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--active", type=int, default=8)
    parser.add_argument("--open-at-once", type=int, default=32, help="idle streams' first frames in flight at once")
    parser.add_argument("--data", type=Path, default=DATA, help="class folders of JPEGs (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=64, help="distinct frames to send")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    frames, frames_what = load_frames(args.data, args.frames)
    server = start_server(["--model", args.model], ["--max-streams", str(args.idle + args.active)], args.device)
    try:
        r = asyncio.run(measure(server, frames, args))
    finally:
        server.stop()
    text, ok = report(r, args, frames_what, args.model)
    print(text)
    if not args.no_write:
        write_results(text, "many_streams")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
