"""A report.json of ``inspector evaluate`` as Markdown tables, for bench/RESULTS.md.

    .venv/bin/python bench/report_table.py reports/line1/report.json [--title "..."]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def tables(report: dict) -> str:
    image, pixel = report["image"], report["pixel"]
    lines = [
        "| images | accuracy | macro-F1 | AUROC good vs defect | AP defect | pixel IoU | pixel Dice | mIoU |",
        "|---|---|---|---|---|---|---|---|",
        f"| {report['n_images']} | {fmt(image['accuracy'])} | {fmt(image['macro_f1'])} | {fmt(image['auroc_defect'])} | "
        f"{fmt(image['ap_defect'])} | {fmt(pixel['iou_defect'])} | {fmt(pixel['dice_defect'])} | {fmt(pixel['miou'])} |",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for cls, row in image["per_class"].items():
        lines.append(f"| {cls} | {fmt(row['precision'])} | {fmt(row['recall'])} | {fmt(row['f1'])} | {row['support']} |")
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
