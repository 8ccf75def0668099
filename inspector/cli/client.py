"""``inspector client``: streams frames to a service and yields one JSON line (a dict) per frame."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import grpc
import numpy as np

from inspector.client import InspectorClient, decode_mask, frames_from_paths, request_for
from inspector.errors import ServiceError
from inspector.cli.lines import STAGES, error_line, frame_line
from inspector.healthcheck import describe_rpc_error
from inspector.imaging.overlay import overlay_mask
from inspector.v1 import inspector_pb2 as pb


def run_client(target: str, paths: list[str], camera_id: str = "", overlays: str | None = None,
               timeout: float | None = None, connection: dict | None = None) -> Iterator[dict]:
    """Streams ``paths`` to ``target``; ``connection`` holds InspectorClient's TLS and token arguments."""
    frames = {}
    failed: list[Exception] = []

    def requests():
        # gRPC pulls this generator on its own thread, where an exception would only cancel the stream as
        # UNKNOWN "Exception iterating requests!": keep it, end the stream, and raise it to the caller below.
        try:
            for frame in frames_from_paths(paths):
                if overlays:
                    frames[frame.frame_id] = frame.data
                yield request_for(frame, camera_id, return_mask=bool(overlays))
        except Exception as err:  # noqa: BLE001 - re-raised after the frames already sent are answered
            failed.append(err)

    with InspectorClient(target, **(connection or {})) as client:
        for response in _answers(client.stream(requests(), timeout=timeout), target):
            line = response_line(response)
            mask = decode_mask(response)
            data = frames.pop(response.frame_id, None)
            if overlays and mask is not None and data is not None:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                out = Path(overlays) / f"{Path(response.frame_id.replace('#', '_')).stem}_overlay.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out), overlay_mask(image, mask))
                line["overlay"] = str(out)
            yield line
    if failed:
        raise failed[0]


def response_line(response: pb.InspectResponse) -> dict:
    """The JSON line of a response (:mod:`inspector.cli.lines`: the same as ``inspector predict`` prints)."""
    if response.HasField("error"):
        return error_line(response.frame_id, response.camera_id, response.error.reason, response.error.message)
    return frame_line(response.frame_id, response.camera_id, verdict=pb.Verdict.Name(response.verdict),
                      label=response.label, defect_class=response.defect_class, defect_score=response.defect_score,
                      class_scores=response.class_scores, regions=response.regions,
                      model_version=response.model_version,
                      timings_ms={s: getattr(response.timings, f"{s}_ms") for s in STAGES},
                      anomaly_score=response.anomaly_score if response.HasField("anomaly_score") else None,
                      by_anomaly=response.by_anomaly)


def _answers(responses: Iterator[pb.InspectResponse], target: str) -> Iterator[pb.InspectResponse]:
    """The stream's responses; a failed call (no service, refused, deadline) ends as a one-line ServiceError."""
    try:
        yield from responses
    except grpc.RpcError as err:
        raise ServiceError(f"{target}: {describe_rpc_error(err)}") from err
