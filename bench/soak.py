"""Soak on loopback: streams opening and closing throughout, malformed and oversize frames among good ones, and a
promote every few seconds.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/soak.py --model models/default [--seconds 60] [--cameras 8]
        [--promote-every 3] [--bad-share 0.05] [--quick] [--no-write]

The server (``inspector serve --store S --max-frame-mb 1``, in its own process) serves a temporary store holding
the bundle and a second version of it (``bundle.derive_bundle``: the same weights, a new version). On one grpc.aio
channel:

- ``--cameras`` workers each open a stream, send 0 to 40 frames (half of the streams with up to 4 frames ahead of
  their answers), half-close it, read it to its end and open the next, until the time is up;
- ``--bad-share`` of the frames are malformed (empty, undecodable, wrong signature, raw size mismatch, unknown
  encoding) or oversize (over --max-frame-mb, within the transport limit), each to be answered in its stream with
  its own ``error.reason``;
- every ``--promote-every`` s the other version is promoted, in turn by Admin.ActivateVersion and by writing the
  store's ACTIVE (``inspector.artifacts.store.promote``, which the server's watcher picks up); a promote fails if its call
  fails or the server does not serve the version within 15 s;
- every ``--probe-every`` s a stream sends a good frame and then one beyond the transport limit (twice the frame
  limit): the good frame must be answered and the call end RESOURCE_EXHAUSTED.

Pass/fail: frames answered other than exactly once (0), unexpected answers (an error on a good frame, a bad frame
answered without its reason, another frame_id) (0), streams ending other than OK (0), failed promotes and failed
model swaps counted by the server (0), probes not ended as due (0), streams the server still counts open at the end
(0), and the server's RSS growth (< 10 %): RSS is sampled 12 times from a sixth of the run (warm-up) to its end,
and the median of the last three is compared with that of the first three (a sample taken during a swap, with two
models loaded, moves neither). Written to bench/RESULTS.md between markers; exits 1 when the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (DATA, Frame, Server, invocation, load_frames, machine, start_server, utc_now,  # noqa: E402
                      write_results)

from inspector.artifacts.bundle import derive_bundle, load_bundle  # noqa: E402
from inspector.artifacts.store import promote  # noqa: E402
from inspector.v1 import inspector_pb2 as pb  # noqa: E402
from inspector.v1 import inspector_pb2_grpc as pb_grpc  # noqa: E402

FRAME_MB = 1.0  # the server's --max-frame-mb: oversize frames stay cheap to send
ANSWER_TIMEOUT = 120.0  # s: longest wait for one answer
SERVE_TIMEOUT = 15.0  # s: a promoted version must be serving within this
MIB = 2**20
BAD = [  # (request fields, the error.reason it must be answered with)
    (dict(data=b"", encoding=pb.JPEG), "empty"),
    (dict(data=b"\xff\xd8" + bytes(300), encoding=pb.JPEG), "undecodable"),
    (dict(data=b"not a png at all", encoding=pb.PNG), "encoding_mismatch"),
    (dict(data=bytes(100), encoding=pb.RAW_GRAY8, width=64, height=64), "size_mismatch"),
    (dict(data=bytes(64), encoding=pb.ENCODING_UNSPECIFIED), "unknown_encoding"),
    (dict(data=b"\xff\xd8\xff" + bytes(int(1.5 * FRAME_MB * MIB)), encoding=pb.JPEG), "too_large"),
]


@dataclass
class Tally:
    """What the client saw over the whole run."""

    answers: Counter = field(default_factory=Counter)  # frame_id -> times answered
    sent: set[str] = field(default_factory=set)
    versions: Counter = field(default_factory=Counter)  # model_version of the answers with a verdict
    reasons: Counter = field(default_factory=Counter)  # error.reason of the answers with an error
    unexpected: list[str] = field(default_factory=list)
    streams: Counter = field(default_factory=Counter)  # status codes the streams ended with
    failed_promotes: list[str] = field(default_factory=list)
    promotes: Counter = field(default_factory=Counter)  # by how: admin, store
    probes: Counter = field(default_factory=Counter)  # "as due" or what went wrong

    def not_once(self) -> int:
        """Frames sent and answered other than once, plus answers for frames never sent."""
        unsent = sum(1 for fid in self.answers if fid not in self.sent)
        return sum(1 for fid in self.sent if self.answers[fid] != 1) + unsent


def make_store(model: str) -> tuple[Path, Path, tuple[str, str]]:
    """A temporary store with the bundle under its own name and version, and a second version derived from it (the
    same weights); the first active. Returns the store, the model folder and the two versions."""
    bundle = load_bundle(model)
    store = Path(tempfile.mkdtemp(prefix="soak-store-"))
    first = store / bundle.name / bundle.version
    shutil.copytree(bundle.path, first, ignore=shutil.ignore_patterns("export"))
    second = derive_bundle(load_bundle(first), {})
    promote(first.parent, first.name)
    return store, first.parent, (first.name, second.name)


def plan(rng: random.Random, frames: list[Frame], n: int, bad_share: float) -> list[tuple[pb.InspectRequest, str]]:
    """``n`` requests with the reason each must be answered with ('' for a verdict); frame_ids are set later."""
    out = []
    for _ in range(n):
        if rng.random() < bad_share:
            fields, reason = rng.choice(BAD)
            out.append((pb.InspectRequest(**fields), reason))
        else:
            frame = rng.choice(frames)
            out.append((pb.InspectRequest(data=frame.data, encoding=frame.encoding), ""))
    return out


async def session(stub: pb_grpc.InspectorStub, requests: list[tuple[pb.InspectRequest, str]], sid: str,
                  window: int, until: float, tally: Tally) -> None:
    """One stream: up to ``window`` frames ahead of their answers, none sent after ``until``; then it half-closes
    and is read to its end. Every answer is checked against the frame due."""
    call, slots, due = stub.InspectStream(), asyncio.Semaphore(window), deque()

    async def write() -> None:
        for i, (request, reason) in enumerate(requests):
            await slots.acquire()
            if time.monotonic() >= until:
                break
            request.frame_id = f"{sid}-{i}"
            due.append((request.frame_id, reason))
            tally.sent.add(request.frame_id)
            await call.write(request)
        await call.done_writing()

    async def read() -> None:
        while (response := await asyncio.wait_for(call.read(), ANSWER_TIMEOUT)) is not grpc.aio.EOF:
            tally.answers[response.frame_id] += 1
            frame_id, reason = due.popleft() if due else ("(none due)", "")
            got = response.error.reason if response.HasField("error") else ""
            if got:
                tally.reasons[got] += 1
            else:
                tally.versions[response.model_version] += 1
            if response.frame_id != frame_id or got != reason:
                tally.unexpected.append(f"{frame_id}: due {reason or 'a verdict'}, got {response.frame_id} "
                                        f"{got or 'a verdict'} {response.error.message[:80]}")
            slots.release()

    try:
        await asyncio.gather(write(), read())
        tally.streams[(await call.code()).name] += 1
    except (grpc.aio.AioRpcError, asyncio.TimeoutError) as err:
        tally.streams[err.code().name if isinstance(err, grpc.aio.AioRpcError) else "TIMEOUT"] += 1
        call.cancel()


async def camera(stub: pb_grpc.InspectorStub, frames: list[Frame], worker: int, until: float, bad_share: float,
                 tally: Tally) -> None:
    """Streams one after another until ``until``: 0 to 40 frames each, half of them with 4 frames ahead."""
    rng = random.Random(worker)
    for k in range(1_000_000):  # bounded by time; the count only bounds the loop
        if time.monotonic() >= until:
            return
        requests = plan(rng, frames, rng.randint(0, 40), bad_share)
        await session(stub, requests, f"c{worker}-s{k}", rng.choice((1, 4)), until, tally)


async def ticks(every: float, until: float, phase: float = 1.0) -> AsyncIterator[int]:
    """Yields k = 0, 1, ... at ``(k + phase) * every`` s from now, while that is before ``until``."""
    start = time.monotonic()
    for k in range(math.ceil((until - start) / every)):
        if (at := start + (k + phase) * every) >= until:
            return
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        yield k


async def serving(admin: pb_grpc.AdminStub, model_version: str, timeout: float) -> None:
    """Waits until the server answers with ``model_version``; raises TimeoutError."""
    start = time.monotonic()
    while (await admin.ListModels(pb.ListModelsRequest(), timeout=10)).serving != model_version:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{model_version} not serving after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def promoter(admin: pb_grpc.AdminStub, model_dir: Path, versions: tuple[str, str], every: float, until: float,
                   tally: Tally) -> None:
    """Every ``every`` s promotes the version not active, in turn over Admin.ActivateVersion and in the store."""
    loop = asyncio.get_running_loop()
    async for k in ticks(every, until):
        version, how = versions[(k + 1) % 2], ("admin", "store")[k % 2]
        tally.promotes[how] += 1
        try:
            if how == "admin":
                await admin.ActivateVersion(pb.ActivateVersionRequest(version=version), timeout=60)
            else:
                await loop.run_in_executor(None, promote, model_dir, version)
            await serving(admin, f"{model_dir.name}/{version}", SERVE_TIMEOUT)
        except (grpc.aio.AioRpcError, TimeoutError) as err:
            tally.failed_promotes.append(f"{how} {version}: {err}")


async def transport_probe(stub: pb_grpc.InspectorStub, frame: Frame, k: int) -> str:
    """A good frame, then one beyond the transport limit; 'as due' when the first is answered and the call then
    ends RESOURCE_EXHAUSTED, else what happened."""
    call = stub.InspectStream()
    try:
        await call.write(pb.InspectRequest(data=frame.data, encoding=frame.encoding, frame_id=f"probe{k}"))
        answer = await asyncio.wait_for(call.read(), ANSWER_TIMEOUT)
        if answer is grpc.aio.EOF or answer.frame_id != f"probe{k}" or answer.HasField("error"):
            return "good frame not answered"
        huge = b"\xff\xd8\xff" + bytes(int(2 * FRAME_MB * MIB) + 128 * 1024)
        await call.write(pb.InspectRequest(data=huge, encoding=pb.JPEG, frame_id=f"probe{k}-huge"))
        code = await asyncio.wait_for(call.code(), ANSWER_TIMEOUT)
    except grpc.aio.AioRpcError as err:
        code = err.code()
    except asyncio.TimeoutError:
        call.cancel()
        return "timed out"
    return "as due" if code == grpc.StatusCode.RESOURCE_EXHAUSTED else f"ended {code.name}"


async def prober(stub: pb_grpc.InspectorStub, frame: Frame, every: float, until: float, tally: Tally) -> None:
    async for k in ticks(every, until, phase=0.5):
        tally.probes[await transport_probe(stub, frame, k)] += 1


async def rss_timeline(server: Server, until: float, samples: int = 12) -> list[int]:
    """The server's RSS (KiB) at ``samples`` even steps of the run, the first after a sixth of it (warm-up)."""
    start, out = time.monotonic(), []
    for k in range(samples):
        await asyncio.sleep(max(0.0, start + (until - start) * (1 + 5 * k / (samples - 1)) / 6 - time.monotonic()))
        out.append(server.status_kib())
    return out


async def soak(server: Server, model_dir: Path, versions: tuple[str, str], frames: list[Frame],
               args: argparse.Namespace) -> dict:
    tally = Tally()
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
        start = time.monotonic()
        until = start + args.seconds
        rss, *_ = await asyncio.gather(
            rss_timeline(server, until), promoter(admin, model_dir, versions, args.promote_every, until, tally),
            prober(stub, frames[0], args.probe_every, until, tally),
            *(camera(stub, frames, w, until, args.bad_share, tally) for w in range(args.cameras)))
        seconds = time.monotonic() - start
    await asyncio.sleep(0.5)  # the server's gauges trail the last stream's end
    metrics = server.metrics()
    quarter = max(1, len(rss) // 4)  # medians of quarters: one sample taken during a swap (two models) moves neither
    return {"tally": tally, "seconds": seconds, "rss": rss, "rss_warm": statistics.median(rss[:quarter]),
            "rss_late": statistics.median(rss[-quarter:]), "rss_end": server.status_kib(),
            "hwm": server.status_kib("VmHWM"), "open_at_end": metrics.get("inspector_open_streams"),
            "swaps_ok": metrics.get('inspector_model_swaps_total{result="success"}', 0.0),
            "swaps_failed": metrics.get('inspector_model_swaps_total{result="failure"}', 0.0)}


def report(r: dict, args: argparse.Namespace, frames_what: str) -> tuple[str, bool]:
    """The RESULTS.md section, and whether the run passed."""
    t: Tally = r["tally"]
    growth = 100.0 * (r["rss_late"] - r["rss_warm"]) / max(1, r["rss_warm"])
    answered = sum(t.answers.values())
    streams_bad = sum(n for code, n in t.streams.items() if code != "OK")
    probes_bad = sum(n for what, n in t.probes.items() if what != "as due")
    promotes = sum(t.promotes.values())
    ok = (t.not_once() == 0 and not t.unexpected and streams_bad == 0 and not t.failed_promotes
          and r["swaps_failed"] == 0 and probes_bad == 0 and r["open_at_end"] == 0 and growth < 10)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(t.reasons.items()) if n)
    versions = ", ".join(f"{v} {n}" for v, n in sorted(t.versions.items()))
    text = "\n".join([
        f"## Soak: {args.cameras} cameras for {args.seconds:.0f} s, streams opening and closing, "
        f"{args.bad_share:.0%} malformed or oversize frames, a promote every {args.promote_every:g} s",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: cpu; date: {utc_now()}",
        f"- server: `inspector serve --store TMP --max-frame-mb {FRAME_MB:g}`, the bundle `{args.model}` and a version "
        f"derived from it; frames: {frames_what}",
        "",
        "| frames answered | frames/s | answered other than once | unexpected answers | streams (not OK) | "
        "promotes (failed) | server swaps ok / failed | transport-limit probes (not as due) | open at end | "
        "RSS early | RSS late | growth | RSS at end | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {answered} | {answered / r['seconds']:.1f} | {t.not_once()} | {len(t.unexpected)} | "
        f"{sum(t.streams.values())} ({streams_bad}) | {promotes} ({len(t.failed_promotes)}) | "
        f"{r['swaps_ok']:.0f} / {r['swaps_failed']:.0f} | {sum(t.probes.values())} ({probes_bad}) | "
        f"{r['open_at_end']:.0f} | {r['rss_warm'] / 1024:.0f} MiB | {r['rss_late'] / 1024:.0f} MiB | {growth:+.1f} % | "
        f"{r['rss_end'] / 1024:.0f} MiB | {r['hwm'] / 1024:.0f} MiB |",
        "",
        f"- in-stream errors by reason: {reasons or 'none'}; answers with a verdict by model: {versions}; promotes: "
        f"{t.promotes['admin']} by Admin.ActivateVersion, {t.promotes['store']} by the store's ACTIVE",
        f"- server RSS at 12 even steps from a sixth of the run to its end (MiB): "
        f"{', '.join(f'{v / 1024:.0f}' for v in r['rss'])}; early and late: the medians of the first and last "
        "three; growth: late over early",
        f"- result: {'pass' if ok else 'FAIL'}",
    ])
    return text, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default", help="bundle or model folder")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cameras", type=int, default=8, help="streams open at once (each reopened in turn)")
    parser.add_argument("--promote-every", type=float, default=3.0, help="seconds between promotes")
    parser.add_argument("--probe-every", type=float, default=10.0, help="seconds between transport-limit probes")
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--data", type=Path, default=DATA, help="class folders of JPEGs (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="10 s, results not written")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.no_write = 10.0, True
    frames, frames_what = load_frames(args.data, 32)
    store, model_dir, versions = make_store(args.model)
    server = start_server(["--store", str(store), "--name", model_dir.name], ["--max-frame-mb", str(FRAME_MB)])
    try:
        r = asyncio.run(soak(server, model_dir, versions, frames, args))
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)
    text, ok = report(r, args, frames_what)
    print(text)
    for line in (r["tally"].unexpected[:3] + r["tally"].failed_promotes[:3]):
        print("example:", line)
    if not args.no_write:
        write_results(text, "soak")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
