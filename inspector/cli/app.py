"""``inspector`` command line: parses arguments and calls one library function per command.

Importing this module is cheap: no torch, OpenCV, gRPC or matplotlib (a test checks it). Each command imports
what it needs when it runs, after checking the paths it was given, so ``--help``, a bad flag value or a wrong path
answers in a few hundredths of a second instead of after torch has loaded. Flag values are checked by argparse
(``_number``, ``_image_size``, ``_device``), so a bad one gets the usage line and exit 2 before any work starts.

Errors: a :class:`~inspector.errors.UserError` (bad path, flag, data set, bundle, frame, weights file, store,
unreachable service) is printed in one line and exits 2; so is an OS path error (missing file, not a folder, no
permission) on a path given on the command line, and an ``OSError`` that one of inspector's own checks raised
with only a message. Everything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable

from inspector.config import PreprocessSpec, TrainConfig
from inspector.errors import MissingPathError, UsageError, UserError

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _existing(path: str | Path | None, what: str, folder: bool = False) -> None:
    """Refuses a path the user gave that does not exist (or is not a folder), before anything heavy is imported."""
    if path is None:
        return
    if not Path(path).exists():
        raise MissingPathError(f"{what} {path} does not exist")
    if folder and not Path(path).is_dir():
        raise MissingPathError(f"{what} {path} is not a folder")


def _roi(args: argparse.Namespace) -> tuple[int, int, int, int] | None:
    """``--roi X Y W H`` (argparse has checked that each is >= 0), or None."""
    if args.roi and min(args.roi[2:]) == 0:
        raise UsageError(f"--roi: width and height must be > 0, got {args.roi[2]}x{args.roi[3]}")
    return tuple(args.roi) if args.roi else None


def _start_torch(inference: bool = False) -> None:
    """Process-wide settings of a command that runs torch, made when it starts (never when a module is imported)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: idle OpenMP threads must not spin
    if inference:
        import torch

        torch.backends.cudnn.benchmark = True  # input sizes are fixed by the bundle's spec: tune the kernels once


def _cmd_demo_data(args: argparse.Namespace) -> None:
    from inspector.data.demo import write_demo_data

    counts = write_demo_data(Path(args.out), n_per_class=args.per_class, size=args.size, seed=args.seed)
    print(json.dumps({"out": str(args.out), "images": counts}))


def _cmd_train(args: argparse.Namespace) -> None:
    _existing(args.data, "data folder", folder=True)
    _existing(args.init, "bundle")
    _existing(args.weights_path, "weights file")
    _start_torch()
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


def _cmd_evaluate(args: argparse.Namespace) -> None:
    _existing(args.model, "model bundle")
    _existing(args.data, "data folder", folder=True)
    _start_torch(inference=True)
    from inspector.evaluation.report import run_evaluation

    report = run_evaluation(args.model, args.data, args.report, args.device, args.split, tta=args.tta)
    summary = {k: report["image"][k] for k in ("accuracy", "macro_f1", "auroc_defect", "ap_defect")}
    print(json.dumps({"report": str(Path(args.report) / "report.json"), **summary, **report["pixel"]}))


def _cmd_compare(args: argparse.Namespace) -> None:
    for model in args.models:
        _existing(model, "model bundle")
    _existing(args.data, "data folder", folder=True)
    _start_torch(inference=True)
    from inspector.evaluation.compare import compare_models

    result = compare_models(args.models[0], args.models[1], args.data, args.device, args.split)
    print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}))
    for row in result["disagreements"]:
        print(json.dumps(row))


def _cmd_calibrate(args: argparse.Namespace) -> None:
    _existing(args.model, "model bundle")
    _existing(args.data, "data folder", folder=True)
    _start_torch(inference=True)
    from inspector.evaluation.calibrate import run_calibration

    path, figures = run_calibration(args.model, args.data, args.target_escape_rate, args.target_false_reject_rate,
                                    args.device, args.split)
    print(json.dumps({"bundle": str(path), **figures}))


def _cmd_export(args: argparse.Namespace) -> None:
    _existing(args.model, "model bundle")
    _start_torch(inference=True)
    from inspector.artifacts.export import export_model

    path, entry = export_model(args.model, args.format)
    print(json.dumps({"export": str(path), "format": args.format, "parity": entry["parity"]}))


def _cmd_predict(args: argparse.Namespace) -> None:
    _existing(args.model, "model bundle")
    for path in args.paths:
        _existing(path, "image or folder")
    roi = _roi(args)
    _start_torch(inference=True)
    from inspector.cli.predict import predict_paths
    from inspector.imaging.tiling import Window

    options = {k: getattr(args, k) for k in ("tile", "tile_overlap") if getattr(args, k) is not None}
    options["roi"] = Window(*roi) if roi else None
    for line in predict_paths(args.model, args.paths, args.device, args.overlays, options):
        print(json.dumps(line), flush=True)


SERVE_FIELDS = ("host", "grpc_port", "health_port", "metrics_host", "metrics_port", "device", "max_batch",
                "max_delay_ms", "max_in_flight", "max_streams", "max_frame_mb", "grace_seconds", "health_plaintext",
                "backend", "audit_dir", "audit_sample_accept", "audit_quota_mb", "audit_max_per_second", "tls_cert",
                "tls_key", "tls_client_ca", "admin_token_file", "inference_token_file", "tile", "tile_overlap")


def _cmd_serve(args: argparse.Namespace) -> None:
    from inspector.config import ServeConfig
    from inspector.artifacts.store import model_names

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together: TLS needs both the certificate and its key")
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "admin_token_file", "inference_token_file"):
        _existing(getattr(args, flag), "--" + flag.replace("_", "-") + " file")
    cfg = ServeConfig(**{k: getattr(args, k) for k in SERVE_FIELDS if getattr(args, k) is not None},
                      cameras=tuple(args.camera or ()), roi=_roi(args))
    if args.model:
        _existing(args.model, "model bundle")
    else:
        names = model_names(args.store)
        name = args.name or (names[0] if len(names) == 1 else "default")
        if name not in names:
            raise MissingPathError(f"model store {args.store} has no active model {name!r} (found: {names or 'none'})")
    _start_torch(inference=True)
    from inspector.artifacts.bundle import load_bundle
    from inspector.service.server import serve

    if args.model:
        load_bundle(args.model)  # a foreign or damaged folder fails here, not in the background
        serve(cfg, bundle=Path(args.model))
    else:
        serve(cfg, model_dir=Path(args.store) / name)


def _cmd_client(args: argparse.Namespace) -> None:
    _existing(args.token_file, "token file")
    for flag in ("tls_ca", "tls_cert", "tls_key"):
        _existing(getattr(args, flag), "--" + flag.replace("_", "-") + " file")
    from inspector.cli.client import run_client
    from inspector.service.security import read_secret

    connection = {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                  "token": read_secret(args.token_file, "INSPECTOR_TOKEN")}
    for line in run_client(args.target, args.paths, args.camera_id, args.overlays, args.timeout, connection):
        print(json.dumps(line), flush=True)


def _cmd_models(args: argparse.Namespace) -> None:
    from inspector.cli.models import list_models, promote_version, reseal_version, rollback_version

    if args.action == "list":
        for row in list_models(args.store, args.name):
            print(json.dumps(row))
    elif args.action == "promote":
        print(json.dumps({"name": args.name, "active": promote_version(args.store, args.name, args.version)}))
    elif args.action == "reseal":
        print(json.dumps({"name": args.name, "sealed": reseal_version(args.store, args.name, args.version)}))
    else:
        print(json.dumps({"name": args.name, "active": rollback_version(args.store, args.name)}))


def _cmd_audit(args: argparse.Namespace) -> None:
    _existing(args.audit, "audit folder", folder=True)
    from inspector.cli.audit import export_reviewed

    counts = export_reviewed(args.audit, args.out, args.use_model_labels)
    print(json.dumps({"out": args.out, "images": counts}))


def _number(kind: type, low: float | None = None, high: float | None = None, *, above: bool = False,
            below: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a finite number of ``kind`` in [low, high] (``above``/``below``: that bound excluded)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if above else value < low)) or (
                high is not None and (value >= high if below else value > high)):
            lo = "" if low is None else f"{'>' if above else '>='} {low}"
            hi = "" if high is None else f"{'<' if below else '<='} {high}"
            raise argparse.ArgumentTypeError(f"must be {' and '.join(x for x in (lo, hi) if x)}, got {text}")
        return value

    return parse


COUNT = _number(int, 0)  # 0, 1, 2...
POSITIVE = _number(int, 1)
PORT = _number(int, 0, 65535)  # 0 picks a free port
FRACTION = _number(float, 0.0, 1.0)
NON_NEGATIVE = _number(float, 0.0)
POSITIVE_FLOAT = _number(float, 0.0, above=True)


def _image_size(text: str) -> int:
    """An argparse type: an input side the model accepts (the rule is PreprocessSpec's)."""
    size = _number(int, 1)(text)
    try:
        PreprocessSpec(height=size, width=size)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return size


def _demo_size(text: str) -> int:
    from inspector.data.demo import MIN_SIZE  # OpenCV (a tenth of a second), only when --size is given

    return _number(int, MIN_SIZE)(text)


def _device(text: str) -> str:
    if not DEVICE_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: choose auto, cpu, cuda or cuda:N")
    return text


def _add_tiling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tile", type=COUNT, help="inspect large frames as tiles of this side, px (about the training "
                   "image size; default 0: whole frame resized)")
    p.add_argument("--tile-overlap", dest="tile_overlap", type=_number(float, 0.0, 1.0, below=True),
                   help="least tile overlap, a fraction of the tile side in [0, 1) (default 0.125)")
    p.add_argument("--roi", type=COUNT, nargs=4, metavar=("X", "Y", "W", "H"), help="region of interest, frame px")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspector", description="Industrial defect detection.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action=_Version, help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="write a small synthetic data set (class folders + masks)")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=COUNT, default=40, help="images per class")
    p.add_argument("--size", type=_demo_size, default=256, help="image side, px")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo_data)

    p = sub.add_parser("train", help="transfer learning then fine-tuning; writes a bundle and prints its path")
    p.add_argument("--data", required=True, help="class folders + masks, or MVTec AD layout")
    p.add_argument("--out", required=True, help="model store folder")
    p.add_argument("--name", default="default", help="model name in the store")
    p.add_argument("--backbone", help=f"encoder (default {TrainConfig.backbone})")
    p.add_argument("--image-size", dest="image_size", type=_image_size,
                   help=f"input side, px, a multiple of 32 (default {TrainConfig.image_size})")
    p.add_argument("--epochs-frozen", dest="epochs_frozen", type=COUNT, help=f"default {TrainConfig.epochs_frozen}")
    p.add_argument("--epochs-finetune", dest="epochs_finetune", type=COUNT,
                   help=f"default {TrainConfig.epochs_finetune}")
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
    p.add_argument("--good-only", dest="good_only", action="store_true", default=None,
                   help="an anomaly-only model from the good images (e.g. MVTec train/good); other classes are "
                        "used only to evaluate")
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false", default=None,
                   help="keep the default thresholds instead of choosing them on the validation split")
    p.add_argument("--device", type=_device, help="auto (default), cpu, cuda, cuda:N")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="report.json and PNG plots for a bundle on a data set")
    p.add_argument("--model", required=True, help="bundle folder, or <store>/<name> for its active version")
    p.add_argument("--data", required=True)
    p.add_argument("--report", required=True, help="output folder")
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: the bundle's validation split when DATA is its training data, else all images")
    p.add_argument("--device", type=_device, default="auto")
    p.add_argument("--tta", action="store_true", help="test-time horizontal flip (twice the compute)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="two bundles on the same data: figures side by side, frames they disagree on")
    p.add_argument("--models", nargs=2, required=True, metavar=("A", "B"))
    p.add_argument("--data", required=True)
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto",
                   help="auto: model A's validation split when DATA is its training data, else all images")
    p.add_argument("--device", type=_device, default="auto")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("calibrate", help="choose thresholds on validation data; writes a new bundle version")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-escape-rate", dest="target_escape_rate", type=FRACTION,
                        help="share of defective parts that may be accepted, e.g. 0.01 (default: F1-optimal)")
    target.add_argument("--target-false-reject-rate", dest="target_false_reject_rate", type=FRACTION,
                        help="share of good parts that may be rejected")
    p.add_argument("--split", choices=("auto", "val", "all"), default="auto")
    p.add_argument("--device", type=_device, default="auto")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("export", help="TorchScript or ONNX export, checked against the bundle on golden frames")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="onnx")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="run a bundle on image files or folders; prints JSON lines")
    p.add_argument("--model", required=True)
    p.add_argument("paths", nargs="+")
    p.add_argument("--overlays", help="folder to write overlay PNGs to")
    p.add_argument("--device", type=_device, default="auto")
    _add_tiling(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("serve", help="the gRPC inspection service")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--store", default="models", help="model store; serves the active version of --name")
    src.add_argument("--model", help="serve one bundle folder (no swaps)")
    p.add_argument("--name", help="model name in the store (default: the only one, else 'default')")
    p.add_argument("--host", help="bind address (default 0.0.0.0)")
    p.add_argument("--grpc-port", dest="grpc_port", type=PORT, help="default 50051")
    p.add_argument("--health-port", dest="health_port", type=PORT,
                   help="also serve grpc.health.v1 on this port (same TLS as the gRPC port), for probes")
    p.add_argument("--health-plaintext", dest="health_plaintext", action="store_true", default=None,
                   help="serve --health-port without TLS even when the gRPC port has it (Kubernetes' gRPC probes "
                        "cannot speak TLS); it answers SERVING or NOT_SERVING and nothing else")
    p.add_argument("--metrics-port", dest="metrics_port", type=PORT, help="Prometheus /metrics port (default 9400)")
    p.add_argument("--metrics-host", dest="metrics_host", help="metrics bind address (default: --host)")
    p.add_argument("--camera", action="append", help="a camera id with its own metric label (repeat); others: other")
    p.add_argument("--device", type=_device, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--max-batch", dest="max_batch", type=POSITIVE, help="frames per forward pass (default 8)")
    p.add_argument("--max-delay-ms", dest="max_delay_ms", type=NON_NEGATIVE, help="batch fill wait (default 2)")
    p.add_argument("--max-in-flight", dest="max_in_flight", type=POSITIVE, help="overload bound (default 64)")
    p.add_argument("--max-streams", dest="max_streams", type=POSITIVE,
                   help="streams open at once (default 1024); one more is refused with RESOURCE_EXHAUSTED")
    p.add_argument("--max-frame-mb", dest="max_frame_mb", type=POSITIVE_FLOAT,
                   help="largest frame payload, MiB (default 64); larger frames are answered too_large, and the "
                        "gRPC message limit is twice this")
    p.add_argument("--grace-seconds", dest="grace_seconds", type=NON_NEGATIVE,
                   help="on SIGTERM, time to answer frames in flight and close streams (default 10)")
    p.add_argument("--audit-dir", dest="audit_dir", help="keep rejected/review frames and a sample of accepted ones")
    p.add_argument("--audit-sample-accept", dest="audit_sample_accept", type=FRACTION, help="default 0.01")
    p.add_argument("--audit-quota-mb", dest="audit_quota_mb", type=POSITIVE_FLOAT,
                   help="disk quota, MiB (default 1024)")
    p.add_argument("--audit-max-per-second", dest="audit_max_per_second", type=POSITIVE_FLOAT, help="default 20")
    p.add_argument("--tls-cert", dest="tls_cert", help="PEM certificate: the gRPC port speaks TLS only")
    p.add_argument("--tls-key", dest="tls_key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", dest="tls_client_ca", help="PEM CA: require client certificates (mutual TLS)")
    p.add_argument("--admin-token-file", dest="admin_token_file",
                   help="file holding the bearer token Admin calls need (else $INSPECTOR_ADMIN_TOKEN)")
    p.add_argument("--inference-token-file", dest="inference_token_file",
                   help="file holding a bearer token inference calls need (else $INSPECTOR_TOKEN; none: open)")
    p.add_argument("--backend", choices=("eager", "torchscript", "onnx"),
                   help="eager (default) or an export of the bundle (inspector export); onnx runs on ONNX Runtime")
    _add_tiling(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("models", help="the model store: list versions, promote one, roll back, re-seal an edit")
    actions = p.add_subparsers(dest="action", required=True)
    for action, text in (("list", "versions with their validation figures"), ("promote", "make a version active"),
                         ("rollback", "re-activate the previously active version"),
                         ("reseal", "accept a deliberate edit of a version's files (rewrites its SHA256SUMS)")):
        a = actions.add_parser(action, help=text)
        a.add_argument("--store", default="models")
        a.add_argument("--name", default=None if action == "list" else "default",
                       help="model name" + (" (default: all)" if action == "list" else " (default: default)"))
        if action in ("promote", "reseal"):
            a.add_argument("version", help="e.g. v3")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("audit", help="audit frames kept by the service")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export", help="reviewed frames -> class folders (for train --init)")
    a.add_argument("--audit", required=True, help="the service's --audit-dir")
    a.add_argument("--out", required=True)
    a.add_argument("--use-model-labels", action="store_true", help="export unreviewed frames under the model's label")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("client", help="stream images, folders or videos to a service; prints JSON lines")
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("paths", nargs="+")
    p.add_argument("--camera-id", dest="camera_id", default="")
    p.add_argument("--overlays", help="folder to write mask overlays to")
    p.add_argument("--timeout", type=POSITIVE_FLOAT, default=None, help="seconds for the whole stream")
    p.add_argument("--tls-ca", dest="tls_ca", help="PEM CA of the server certificate: connect with TLS")
    p.add_argument("--tls-cert", dest="tls_cert", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", dest="tls_key", help="client key (mutual TLS)")
    p.add_argument("--token-file", dest="token_file", help="file holding the bearer token (else $INSPECTOR_TOKEN)")
    p.set_defaults(func=_cmd_client)
    return parser


def user_message(err: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message of ``err`` when it is the user's to fix (see the module docstring), else None."""
    if isinstance(err, OSError) and not isinstance(err, UserError):
        if err.errno is not None and not any(_given(name, args) for name in (err.filename, err.filename2)):
            return None  # the OS refused a path the user did not give: inspector's own bug
    elif not isinstance(err, UserError):
        return None
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def _given(name: str | bytes | int | None, args: argparse.Namespace) -> bool:
    """Whether the file ``name`` is, or lies under, a path given on the command line (any string argument)."""
    if not isinstance(name, str):
        return False
    values = [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])]
    target = Path(name).absolute()
    return any(isinstance(v, str) and v and target.is_relative_to(Path(v).absolute()) for v in values)


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("inspector")
        except PackageNotFoundError:  # run from a source tree that was never installed
            text = "unknown (not installed)"
        print(f"{parser.prog} {text}")  # on stdout, as argparse's own version action does
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit status (2: a user error, printed in one line on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        args.func(args)
    except Exception as err:
        message = user_message(err, args)
        if message is None:
            raise
        print(f"inspector {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
