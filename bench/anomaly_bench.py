"""What the anomaly head adds: unseen-defect catch rate, false alarms, bank memory and latency.

    .venv/bin/python bench/anomaly_bench.py --model STORE/NAME --data FULL_DATA --held-out CLASS [--quick]

``--model`` is a bundle trained with the anomaly head on data without ``CLASS`` (a folder with that class left out).
Every ``CLASS`` image of ``FULL_DATA`` is unseen; each is counted as caught (REVIEW or REJECT) by the classifier alone
and by the combined model. Good parts of the bundle's validation split give the false alarms. Latency: the model's
forward pass at batch 1 and 8 with and without the anomaly head (same weights).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from serve_bench import machine, write_results  # noqa: E402

from inspector.config import GOOD_CLASS  # noqa: E402
from inspector.data.layouts import load_dataset  # noqa: E402
from inspector.data.split import samples_from_record  # noqa: E402
from inspector.evaluation.runner import run_over  # noqa: E402
from inspector.inference.predictor import Predictor  # noqa: E402


def caught(predictor: Predictor, samples: list) -> tuple[int, int]:
    """(caught by the classifier alone, caught by the combined model): verdicts other than ACCEPT."""
    alone = combined = 0
    for _, _, pred in run_over(predictor, samples, "score", show=False):
        combined += pred.verdict != "ACCEPT"
        alone += pred.verdict != "ACCEPT" and not pred.by_anomaly
    return alone, combined


def forward_ms(model: torch.nn.Module, batch: int, repeats: int) -> float:
    x = torch.randn(batch, 3, 320, 320).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="the full data set, held-out class included")
    parser.add_argument("--held-out", dest="held_out", required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 repeats, results not written")
    args = parser.parse_args()
    predictor = Predictor.from_bundle(args.model, "cpu")
    meta = predictor.bundle.meta
    if meta.anomaly is None:
        sys.exit(f"{args.model} has no anomaly head")
    if args.held_out in predictor.classes:
        sys.exit(f"{args.model} was trained with {args.held_out!r}: it is not held out")
    unseen = [s for s in load_dataset(args.data).samples if s.label == args.held_out]
    val = samples_from_record(load_dataset(meta.data.root), list(meta.split.val))
    good = [s for s in val if s.label == GOOD_CLASS]
    u_alone, u_combined = caught(predictor, unseen)
    g_alone, g_combined = caught(predictor, good)
    model, repeats = predictor.model, 3 if args.quick else args.repeats
    with_head = {b: forward_ms(model, b, repeats) for b in (1, 8)}
    bank, model.anomaly = model.anomaly, None
    without = {b: forward_ms(model, b, repeats) for b in (1, 8)}
    model.anomaly = bank
    bank_mb = bank.bank.numel() * bank.bank.element_size() / 2**20
    t = predictor.thresholds
    text = "\n".join([
        f"## Anomaly head: unseen class `{args.held_out}`, false alarms, cost",
        "",
        f"- command: `{' '.join([Path(sys.executable).name, *sys.argv])}`",
        f"- machine: {machine()}; device: cpu; date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
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
        "| forward pass, 320x320, per frame | batch 1 ms | batch 8 ms |",
        "|---|---|---|",
        f"| without the anomaly head | {without[1]:.1f} | {without[8]:.1f} |",
        f"| with the anomaly head | {with_head[1]:.1f} | {with_head[8]:.1f} |",
    ])
    print(text)
    if not args.quick:
        write_results(text, "anomaly_bench")


if __name__ == "__main__":
    main()
