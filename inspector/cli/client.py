"""``inspector client``: streams frames to a service and yields one JSON line (a dict) per frame."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from inspector.cli.args import POSITIVE_FLOAT, existing
from inspector.cli.lines import STAGES, error_line, frame_line

if TYPE_CHECKING:
    from inspector.v1 import inspector_pb2 as pb

CONNECT_TIMEOUT_S = 10.0  # s, InspectorClient's default (not imported from it: --help loads no gRPC)


def run_client(target: str, paths: list[str], camera_id: str = "", overlays: str | None = None,
               timeout: float | None = None, connection: dict | None = None) -> Iterator[dict]:
    """Streams ``paths`` to ``target``; ``connection`` holds InspectorClient's TLS, token and connect-timeout
    arguments. A failure is a ServiceError of one line, raised after the lines of the frames already answered
    (``StreamBroken``: with the count and first ids of the frames left unanswered)."""
    import cv2
    import numpy as np

    from inspector.client import InspectorClient, decode_mask, frames_from_paths, request_for
    from inspector.imaging.overlay import annotate

    frames = {}

    def requests():
        for frame in frames_from_paths(paths):
            if overlays:
                frames[frame.frame_id] = frame.data
            yield request_for(frame, camera_id, return_mask=bool(overlays))

    with InspectorClient(target, **(connection or {})) as client:
        for response in client.inspect_frames(requests(), timeout=timeout):
            line = response_line(response)
            mask = decode_mask(response)
            data = frames.pop(response.frame_id, None)
            if overlays and data is not None and "error" not in line:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                out = Path(overlays) / f"{Path(response.frame_id.replace('#', '_')).stem}_overlay.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out), annotate(image, mask, line["verdict"], line["label"], line["defect_score"],
                                               response.regions))
                line["overlay"] = str(out)
            yield line


def response_line(response: pb.InspectResponse) -> dict:
    """The JSON line of a response (:mod:`inspector.cli.lines`: the same as ``inspector predict`` prints)."""
    from inspector.v1 import inspector_pb2 as pb

    if response.HasField("error"):
        return error_line(response.frame_id, response.camera_id, response.error.reason, response.error.message)
    return frame_line(response.frame_id, response.camera_id, verdict=pb.Verdict.Name(response.verdict),
                      label=response.label, defect_class=response.defect_class, defect_score=response.defect_score,
                      class_scores=response.class_scores, regions=response.regions,
                      model_version=response.model_version,
                      timings_ms={s: getattr(response.timings, f"{s}_ms") for s in STAGES},
                      anomaly_score=response.anomaly_score if response.HasField("anomaly_score") else None,
                      by_anomaly=response.by_anomaly)


def run(args: argparse.Namespace) -> None:
    # before gRPC loads: its INFO lines (one per failed TLS handshake) would add to the one line of a failure
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    existing(args.token_file, "token file")
    for flag in ("tls_ca", "tls_cert", "tls_key"):
        existing(getattr(args, flag), "--" + flag.replace("_", "-") + " file")
    from inspector.service.security import read_secret

    connection = {"tls_ca": args.tls_ca, "tls_cert": args.tls_cert, "tls_key": args.tls_key,
                  "token": read_secret(args.token_file, "INSPECTOR_TOKEN"), "connect_timeout": args.connect_timeout}
    for line in run_client(args.target, args.paths, args.camera_id, args.overlays, args.timeout, connection):
        print(json.dumps(line), flush=True)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "client", help="stream images, folders or videos to a service; prints JSON lines",
        description="Streams frames to a service and prints one JSON line per answer. A call waits for the "
                    "connection up to --connect-timeout (a refused one is tried again: the service may be starting; "
                    "TLS and DNS failures end it at once); keepalive pings find a dead peer under a long stream. "
                    "A failure is one line on stderr (exit 1), after the lines of the frames already answered; a "
                    "broken stream names the frames left unanswered, to send again.")
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("paths", nargs="+")
    p.add_argument("--camera-id", dest="camera_id", default="")
    p.add_argument("--overlays", help="folder to write annotated overlays to (verdict, regions, mask outline)")
    p.add_argument("--timeout", type=POSITIVE_FLOAT, default=None,
                   help="seconds for the whole stream, connecting included (default: no limit)")
    p.add_argument("--connect-timeout", dest="connect_timeout", type=POSITIVE_FLOAT,
                   default=CONNECT_TIMEOUT_S,
                   help=f"seconds to wait for the connection to open (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--tls-ca", dest="tls_ca", help="PEM CA of the server certificate: connect with TLS")
    p.add_argument("--tls-cert", dest="tls_cert", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", dest="tls_key", help="client key (mutual TLS)")
    p.add_argument("--token-file", dest="token_file", help="file holding the bearer token (else $INSPECTOR_TOKEN)")
    p.set_defaults(func=run)
