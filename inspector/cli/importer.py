"""``inspector import``: labelled data from LabelMe, COCO, YOLO segmentation or Pascal VOC into class folders."""

from __future__ import annotations

import argparse
import json

from inspector.cli.args import existing, regex

FORMAT_NAMES = ("labelme", "coco", "yolo-seg", "voc")  # inspector.data.formats.FORMATS (a test keeps them equal)


def run(args: argparse.Namespace) -> None:
    existing(args.src, "source")
    from inspector.data.formats import import_dataset

    summary = import_dataset(args.format, args.src, args.out, force=args.force, group_by=args.group_by)
    print(json.dumps(summary.to_dict()))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="convert LabelMe, COCO, YOLO-seg or VOC labels into class folders + masks")
    p.add_argument("--format", required=True, choices=FORMAT_NAMES, help="the labelling tool's export format")
    p.add_argument("src", help="the exported data set: a folder (COCO: also a JSON file)")
    p.add_argument("--out", required=True, help="new or empty folder for images/<class>/, masks/<class>/, import.json")
    p.add_argument("--group-by", dest="group_by", metavar="REGEX", type=regex,
                   help="regex on file names whose match (first group, else whole) names a part, camera position or "
                        "session; written to dataset.json as the data set's default train --group-by")
    p.add_argument("--force", action="store_true", help="replace --out when it holds an earlier import")
    p.set_defaults(func=run)
