"""``inspector train``: transfer learning, then fine-tuning; writes a bundle into the store and prints its path."""

from __future__ import annotations

import argparse

from inspector.cli.args import COUNT, POSITIVE, RATE, device, existing, image_size, input_size, regex, start_torch
from inspector.config import TrainConfig


def run(args: argparse.Namespace) -> None:
    existing(args.data, "data folder", folder=True)
    existing(args.init, "bundle")
    existing(args.weights_path, "weights file")
    start_torch()
    from inspector.artifacts.store import StoreError, active_version, promote
    from inspector.train.fit import fit

    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
    bundle = fit(args.data, args.out, args.name, TrainConfig(**overrides))
    if bundle is None:
        return  # a non-zero rank under torchrun: rank 0 writes and prints the bundle
    print(bundle)  # written whatever the store's pointer says
    try:
        if active_version(bundle.parent) is None:
            promote(bundle.parent, bundle.name)  # the first version of a model becomes active
    except StoreError as err:  # a broken ACTIVE: the new version is written but not made active
        raise StoreError(f"{bundle} is written, but not promoted: {err}") from err


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="transfer learning then fine-tuning; writes a bundle and prints its path")
    p.add_argument("--data", required=True, help="class folders + masks, or MVTec AD layout")
    p.add_argument("--out", required=True, help="model store folder")
    p.add_argument("--name", default="default", help="model name in the store")
    p.add_argument("--backbone", help=f"encoder (default {TrainConfig.backbone})")
    p.add_argument("--image-size", dest="image_size", type=image_size,
                   help=f"pixel budget of the input: about this side squared, px, a multiple of 32 "
                        f"(default {TrainConfig.image_size})")
    p.add_argument("--input-size", dest="input_size", type=input_size, metavar="HxW",
                   help="model input height x width, px, multiples of 32 (default: the training images' median "
                        "aspect ratio at about --image-size squared px; square when it is within 0.8..1.25)")
    p.add_argument("--tile", type=COUNT, help="train on, and inspect frames as, tiles of this side, frame px "
                   "(0: whole frames; default: tiles when the defect masks show defects small against the frame)")
    p.add_argument("--epochs-frozen", dest="epochs_frozen", type=COUNT, help=f"default {TrainConfig.epochs_frozen}")
    p.add_argument("--epochs-finetune", dest="epochs_finetune", type=COUNT,
                   help=f"default {TrainConfig.epochs_finetune}")
    p.add_argument("--keep-stride", dest="keep_stride", type=int, choices=(0, 2, 4, 8),
                   help="fine-tuning: encoder layers at this output stride or finer keep their ImageNet weights "
                        f"(0: the whole encoder trains; default {TrainConfig.keep_stride}: the stem and first stage)")
    p.add_argument("--val-every", dest="val_every", type=POSITIVE,
                   help=f"validate every this many epochs of a phase and after its last (default {TrainConfig.val_every})")
    p.add_argument("--batch-size", dest="batch_size", type=POSITIVE, help=f"default {TrainConfig.batch_size}")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=COUNT, help="data loader processes")
    p.add_argument("--weights", dest="weights_path", help="ImageNet weights file for backbones that need one")
    p.add_argument("--init", help="continue from this bundle (retraining on new images), not from ImageNet")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false", default=None,
                   help="random encoder weights instead of ImageNet (to measure what pretraining brings)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", default=None, help="train in fp32 throughout")
    p.add_argument("--no-anomaly", dest="anomaly", action="store_false", default=None,
                   help="no anomaly head (memory bank of good parts' patches) beside the classifier")
    p.add_argument("--anomaly-bank", dest="anomaly_bank", type=POSITIVE,
                   help=f"patches in the anomaly memory bank (default {TrainConfig.anomaly_bank})")
    p.add_argument("--anomaly-review-rate", dest="anomaly_review_rate", type=RATE,
                   help="share of good parts the anomaly head may send to review; its operating point is placed for "
                        f"it on good images it did not learn from (default {TrainConfig.anomaly_review_rate})")
    p.add_argument("--group-by", dest="group_by", metavar="REGEX", type=regex,
                   help="images whose file names give the same match (its first group, else the whole match) stay "
                        "on one side of the validation split: a part, a camera position, a session (default: "
                        "dataset.json's group_by, else none)")
    p.add_argument("--good-only", dest="good_only", action="store_true", default=None,
                   help="an anomaly-only model from the good images (e.g. MVTec train/good); other classes are "
                        "used only to evaluate")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", default=None,
                   help="keep the default thresholds instead of choosing them on the validation split")
    p.add_argument("--device", type=device, help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=run)
