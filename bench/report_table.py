"""A report.json of ``inspector evaluate`` as Markdown tables, for bench/RESULTS.md: each headline figure with its
95 % bootstrap interval, pixel figures as served and ungated, IoU per class, and the anomaly head's figures.

    .venv/bin/python bench/report_table.py reports/line1/report.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def with_ci(report: dict, key: str) -> str:
    """``figure [lo, hi]`` of the dotted report key (``image.auroc_defect``)."""
    section, name = key.split(".", 1)
    value = report[section][name]
    ci = report.get("ci95", {}).get(key)
    return fmt(value) if ci is None else f"{fmt(value)} [{ci[0]:.3f}, {ci[1]:.3f}]"


def tables(report: dict) -> str:
    image = report["image"]
    lines = [
        "| images | accuracy | macro-F1 | AUROC good vs defect | AP defect |",
        "|---|---|---|---|---|",
        f"| {report['n_images']} | " + " | ".join(with_ci(report, f"image.{k}") for k in
                                              ("accuracy", "macro_f1", "auroc_defect", "ap_defect")) + " |",
        "",
        "| pixels | IoU defect (pooled) | Dice defect | IoU per image | mIoU (with background) | mIoU (defects) |",
        "|---|---|---|---|---|---|",
    ]
    for section in ("pixel", "pixel_ungated"):
        if section in report:
            lines.append(f"| {'as served' if section == 'pixel' else 'ungated'} | " + " | ".join(
                with_ci(report, f"{section}.{k}") for k in
                ("iou_defect", "dice_defect", "iou_per_image", "miou", "miou_defects")) + " |")
    per_class_iou = report.get("pixel", {}).get("iou_per_class", {})
    lines += ["", "| class | precision | recall | F1 | support | IoU (served) |", "|---|---|---|---|---|---|"]
    for cls, row in image["per_class"].items():
        lines.append(f"| {cls} | {fmt(row['precision'])} | {fmt(row['recall'])} | {fmt(row['f1'])} | "
                     f"{row['support']} | {fmt(per_class_iou.get(cls))} |")
    if "anomaly" in report:
        a = report["anomaly"]
        lines += ["", "| anomaly head | image AUROC | pixel AUROC | good parts sent to review | 95 % upper bound |",
                  "|---|---|---|---|---|",
                  f"| | {fmt(a['image_auroc'])} | {fmt(a['pixel_auroc'])} | {fmt(a.get('good_review_rate'))} | "
                  f"{fmt(a.get('good_review_rate_upper'))} |"]
    lines += ["", "Confusion (rows: truth, columns: prediction, in class order " + ", ".join(report["classes"]) + "):",
              "", "```"]
    lines += [" ".join(f"{v:5d}" for v in row) for row in image["confusion"]]
    lines.append("```")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    print(tables(json.loads(args.report.read_text())))


if __name__ == "__main__":
    main()
