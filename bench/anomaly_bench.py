"""What the anomaly head adds: unseen-defect catch rate, false alarms, bank memory and latency.

    .venv/bin/python bench/anomaly_bench.py --model STORE/NAME --data FULL_DATA --held-out CLASS [--quick]
    .venv/bin/python bench/anomaly_bench.py --model STORE/NAME --latency-only [--size PX] [--repeats N]

``--model`` is a bundle trained with the anomaly head on data without ``CLASS`` (a folder with that class left out).
Every ``CLASS`` image of ``FULL_DATA`` is unseen; each is counted as caught (REVIEW or REJECT) by the classifier alone
and by the combined model. Good parts of the bundle's validation split give the false alarms. Latency: the model's
forward pass at batch 1 and 8 with and without the anomaly head (same weights), and the head alone on the same
patch features (nearest-neighbour distances, smoothing, resize). ``--latency-only`` needs no data, prints the latency
table with the machine's load average before and after, and writes nothing. Batches 1 and 8 are timed in alternating
rounds, so a change of the other load on the cores reaches both.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _harness import invocation, machine, utc_now, write_results  # noqa: E402

from inspector.config import GOOD_CLASS  # noqa: E402
from inspector.data.layouts import load_dataset  # noqa: E402
from inspector.data.split import samples_from_record  # noqa: E402
from inspector.evaluation.runner import run_over  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402
from inspector.model.anomaly import patch_features  # noqa: E402

BATCHES = (1, 8)


def caught(predictor: Predictor, samples: list) -> tuple[int, int]:
    """(caught by the classifier alone, caught by the combined model): verdicts other than ACCEPT."""
    alone = combined = 0
    for _, _, pred in run_over(predictor, samples, "score", show=False):
        combined += pred.verdict != "ACCEPT"
        alone += pred.verdict != "ACCEPT" and not pred.by_anomaly
    return alone, combined


def latency_ms(model: torch.nn.Module, size: int, repeats: int) -> dict[tuple[str, int], float]:
    """Median ms per frame of the forward pass with and without the anomaly head and of the head alone, by batch."""
    bank = model.anomaly
    times: dict[tuple[str, int], list[float]] = {}

    def timed(key: tuple[str, int], module: torch.nn.Module, *args) -> None:
        t0 = time.perf_counter()
        module(*args)
        times.setdefault(key, []).append((time.perf_counter() - t0) / key[1])

    inputs = {b: torch.randn(b, 3, size, size).contiguous(memory_format=torch.channels_last) for b in BATCHES}
    with torch.inference_mode():
        feats = {b: patch_features(model.encoder(x)) for b, x in inputs.items()}  # (b, d, size/16, size/16)
        for _ in range(repeats + 1):  # the first round warms up
            for b, x in inputs.items():
                model.anomaly = bank
                timed(("with", b), model, x)
                timed(("head", b), bank, feats[b], (size, size))
                model.anomaly = None
                timed(("without", b), model, x)
        model.anomaly = bank
    return {key: 1000 * float(np.median(t[1:])) for key, t in times.items()}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: the other work on the cores while this bench ran."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def latency_table(ms: dict[tuple[str, int], float], size: int) -> list[str]:
    """Markdown rows of :func:`latency_ms`'s figures."""
    return [
        f"| {size}x{size}, per frame (median) | batch 1 ms | batch 8 ms |",
        "|---|---|---|",
        f"| forward pass without the anomaly head | {ms['without', 1]:.1f} | {ms['without', 8]:.1f} |",
        f"| forward pass with the anomaly head | {ms['with', 1]:.1f} | {ms['with', 8]:.1f} |",
        f"| the anomaly head alone (distances, smoothing, resize) | {ms['head', 1]:.1f} | {ms['head', 8]:.1f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="the full data set, held-out class included")
    parser.add_argument("--held-out", dest="held_out")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repeats, results not written")
    parser.add_argument("--latency-only", dest="latency_only", action="store_true",
                        help="only the latency table, at the bundle's input size; no data, results not written")
    parser.add_argument("--size", type=int, help="square input size in px (default: 320, or the bundle's height "
                        "with --latency-only)")
    args = parser.parse_args()
    if not args.latency_only and (args.data is None or args.held_out is None):
        parser.error("--data and --held-out are required unless --latency-only")
    predictor = Predictor.from_bundle(args.model, "cpu")
    meta = predictor.bundle.meta
    if meta.anomaly is None:
        sys.exit(f"{args.model} has no anomaly head")
    model, repeats = predictor.model, 3 if args.quick else args.repeats
    bank = model.anomaly
    if args.latency_only:
        size = args.size or predictor.spec.height
        before = load_average()
        ms = latency_ms(model, size, repeats)
        print(f"machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"load average before {before}, after {load_average()}")
        print(f"model: {predictor.version}; bank {bank.bank.shape[0]} x {bank.bank.shape[1]}; {repeats} rounds\n")
        print("\n".join(latency_table(ms, size)))
        return
    if args.held_out in predictor.classes:
        sys.exit(f"{args.model} was trained with {args.held_out!r}: it is not held out")
    unseen = [s for s in load_dataset(args.data).samples if s.label == args.held_out]
    val = samples_from_record(load_dataset(meta.data.root), list(meta.split.val))
    good = [s for s in val if s.label == GOOD_CLASS]
    u_alone, u_combined = caught(predictor, unseen)
    g_alone, g_combined = caught(predictor, good)
    size = args.size or 320
    ms = latency_ms(model, size, repeats)
    bank_mb = bank.bank.numel() * bank.bank.element_size() / 2**20
    t = predictor.thresholds
    text = "\n".join([
        f"## Anomaly head: unseen class `{args.held_out}`, false alarms, cost",
        "",
        f"- command: `{invocation()}`",
        f"- machine: {machine()}; device: cpu; date: {utc_now()}",
        f"- model: {predictor.version} (classes {', '.join(predictor.classes)}); anomaly threshold {t.anomaly:g} "
        f"-> {t.anomaly_verdict}; bank {bank.bank.shape[0]} x {bank.bank.shape[1]} = {bank_mb:.1f} MiB",
        "",
        "| images | n | caught by the classifier alone | caught by classifier + anomaly head |",
        "|---|---|---|---|",
        f"| unseen `{args.held_out}` (all) | {len(unseen)} | {u_alone} ({u_alone / len(unseen):.1%}) | "
        f"{u_combined} ({u_combined / len(unseen):.1%}) |",
        f"| good, validation split (false alarms) | {len(good)} | {g_alone} ({g_alone / len(good):.1%}) | "
        f"{g_combined} ({g_combined / len(good):.1%}) |",
        "",
        *latency_table(ms, size),
    ])
    print(text)
    if not args.quick:
        write_results(text, "anomaly_bench")


if __name__ == "__main__":
    main()
