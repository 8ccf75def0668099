"""Load and soak on loopback: concurrent streams with malformed frames mixed in, and model swaps during the run.

    .venv/bin/python bench/soak.py --model models/default [--seconds 60] [--streams 8] [--swaps 20] [--quick]

Pass/fail figures: unexpected errors (an error on a good frame, or no error on a bad one), frames answered other than
exactly once, failed swaps, and the server's RSS growth after warm-up. Written to bench/RESULTS.md between markers.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from serve_bench import machine, make_frames, start_service, write_results  # noqa: E402

from inspector.bundle import load_bundle  # noqa: E402
from inspector.store import promote  # noqa: E402
from inspector.v1 import inspector_pb2 as pb  # noqa: E402
from inspector.v1 import inspector_pb2_grpc as pb_grpc  # noqa: E402

BAD = [  # (payload, encoding, raw width, raw height): each must come back as a per-frame error
    (b"", pb.JPEG, 0, 0),
    (b"\xff\xd8" + bytes(300), pb.JPEG, 0, 0),
    (b"not a png at all", pb.PNG, 0, 0),
    (bytes(100), pb.RAW_GRAY8, 64, 64),
    (bytes(64), pb.ENCODING_UNSPECIFIED, 0, 0),
]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def make_store(model: str) -> Path:
    """A temporary store with the bundle as v1 and v2 of one model, v1 active."""
    bundle = load_bundle(model)
    store = Path(tempfile.mkdtemp(prefix="soak-store-"))
    for version in ("v1", "v2"):
        shutil.copytree(bundle.path, store / "soak" / version, ignore=shutil.ignore_patterns("export"))
    promote(store / "soak", "v1")
    return store


async def stream(stub, frames, bad_share: float, until: float, seen: Counter, errors: list, sid: int) -> None:
    call, rng, i = stub.InspectStream(), random.Random(sid), 0
    while time.monotonic() < until:
        bad = rng.random() < bad_share
        if bad:
            data, enc, w, h = rng.choice(BAD)
            request = pb.InspectRequest(data=data, encoding=enc, width=w, height=h, frame_id=f"{sid}-{i}")
        else:
            request = pb.InspectRequest(data=frames[i % len(frames)], encoding=pb.JPEG, frame_id=f"{sid}-{i}")
        await call.write(request)
        response = await call.read()
        seen[response.frame_id] += 1
        if response.frame_id != request.frame_id or response.HasField("error") != bad:
            errors.append((request.frame_id, response.frame_id, response.error.message))
        i += 1
    await call.done_writing()


async def swapper(admin, swaps: int, start: float, seconds: float, failed: list) -> None:
    for k in range(swaps):
        await asyncio.sleep(max(0.0, start + (k + 1) * seconds / (swaps + 1) - time.monotonic()))
        try:
            await admin.ActivateVersion(pb.ActivateVersionRequest(version="v2" if k % 2 == 0 else "v1"))
        except grpc.aio.AioRpcError as err:
            failed.append(err.details())


async def soak(target: str, pid: int, frames: list[bytes], args) -> dict:
    async with grpc.aio.insecure_channel(target) as channel:
        stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
        seen, errors, failed, warm = Counter(), [], [], args.seconds / 6
        start = time.monotonic()
        until = start + args.seconds
        tasks = [stream(stub, frames, args.bad_share, until, seen, errors, s) for s in range(args.streams)]

        async def sample_rss() -> int:
            await asyncio.sleep(warm)
            return rss_kib(pid)

        results = await asyncio.gather(sample_rss(), swapper(admin, args.swaps, start, args.seconds, failed), *tasks)
        return {"frames": sum(seen.values()), "not_once": sum(1 for n in seen.values() if n != 1),
                "unexpected_errors": len(errors), "failed_swaps": len(failed), "rss_warm_kib": results[0],
                "rss_end_kib": rss_kib(pid), "seconds": time.monotonic() - start, "examples": errors[:3] + failed[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--quick", action="store_true", help="10 s, 2 swaps, results not written")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.swaps = 10.0, 2
    store = make_store(args.model)
    proc, target = start_service(["--store", str(store), "--name", "soak"], 8)
    try:
        r = asyncio.run(soak(target, proc.pid, make_frames(32, args.size), args))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(store, ignore_errors=True)
    growth = 100.0 * (r["rss_end_kib"] - r["rss_warm_kib"]) / max(1, r["rss_warm_kib"])
    text = "\n".join([
        f"## Soak: {args.streams} streams for {args.seconds:.0f} s, {args.bad_share:.0%} malformed frames, "
        f"{args.swaps} model swaps",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; device: cpu; date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "| frames answered | frames/s | answered other than once | unexpected errors | failed swaps | "
        "RSS after warm-up | RSS at end | growth |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['frames']} | {r['frames'] / r['seconds']:.1f} | {r['not_once']} | {r['unexpected_errors']} | "
        f"{r['failed_swaps']} | {r['rss_warm_kib'] / 1024:.0f} MiB | {r['rss_end_kib'] / 1024:.0f} MiB | {growth:+.1f} % |",
    ])
    print(text)
    if r["examples"]:
        print("examples:", r["examples"])
    if not args.quick:
        write_results(text, "soak")
    ok = r["not_once"] == 0 and r["unexpected_errors"] == 0 and r["failed_swaps"] == 0 and growth < 10
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
