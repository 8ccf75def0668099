"""``inspector serve``: the gRPC inspection service, from a model store or one bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from inspector.cli.args import (FRACTION, NON_NEGATIVE, PORT, POSITIVE, POSITIVE_FLOAT, add_tiling, device, existing,
                                roi, start_torch)
from inspector.errors import MissingPathError, UsageError

BACKENDS = ("eager", "torchscript", "onnx", "openvino", "onnx-int8", "openvino-int8")  # inference.runtimes.BACKENDS


SERVE_FIELDS = ("host", "grpc_port", "health_port", "metrics_host", "metrics_port", "device", "max_batch",
                "max_delay_ms", "max_in_flight", "max_streams", "max_frame_mb", "grace_seconds", "health_plaintext",
                "backend", "audit_dir", "audit_sample_accept", "audit_quota_mb", "audit_max_per_second", "tls_cert",
                "tls_key", "tls_client_ca", "admin_token_file", "inference_token_file", "tile", "tile_overlap",
                "cuda_graphs", "lanes")


def run(args: argparse.Namespace) -> None:
    from inspector.config import ServeConfig
    from inspector.artifacts.store import model_names

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together: TLS needs both the certificate and its key")
    for flag in ("tls_cert", "tls_key", "tls_client_ca", "admin_token_file", "inference_token_file"):
        existing(getattr(args, flag), "--" + flag.replace("_", "-") + " file")
    cfg = ServeConfig(**{k: getattr(args, k) for k in SERVE_FIELDS if getattr(args, k) is not None},
                      cameras=tuple(args.camera or ()), roi=roi(args))
    if args.model:
        existing(args.model, "model bundle")
    else:
        names = model_names(args.store)
        name = args.name or (names[0] if len(names) == 1 else "default")
        if name not in names:
            raise MissingPathError(f"model store {args.store} has no active model {name!r} (found: {names or 'none'})")
    start_torch(inference=True)
    from inspector.artifacts.bundle import load_bundle
    from inspector.model.devices import resolve_device
    from inspector.service.server import serve

    if cfg.cuda_graphs and (device := resolve_device(cfg.device)).type != "cuda":
        raise UsageError(f"--cuda-graphs needs a CUDA device; --device {cfg.device} is {device} here")
    if args.model:
        load_bundle(args.model)  # a foreign or damaged folder fails here, not in the background
        serve(cfg, bundle=Path(args.model))
    else:
        serve(cfg, model_dir=Path(args.store) / name)


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--device", type=device, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--max-batch", dest="max_batch", type=POSITIVE, help="frames per forward pass (default 8)")
    p.add_argument("--max-delay-ms", dest="max_delay_ms", type=NON_NEGATIVE, help="batch fill wait while more frames are being decoded (default 2)")
    p.add_argument("--lanes", type=POSITIVE,
                   help="forward passes side by side on the CPU when frames queue up, each on its share of the "
                        "threads (default 2; 1: one pass at a time on all of them). A lone frame always runs on all "
                        "of them")
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
    p.add_argument("--backend", choices=BACKENDS,
                   help="eager (default) or an export of the bundle (inspector export): onnx and onnx-int8 run on ONNX "
                        "Runtime, openvino and openvino-int8 on OpenVINO's CPU device ($INSPECTOR_OPENVINO_DEVICE: "
                        "another, e.g. GPU)")
    p.add_argument("--cuda-graphs", dest="cuda_graphs", action=argparse.BooleanOptionalAction,
                   help="replay the network as CUDA graphs: one launch per batch, each batch shape captured at load "
                        "(default: on with a CUDA device and the eager backend)")
    add_tiling(p)
    p.set_defaults(func=run)
