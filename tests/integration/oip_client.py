"""A plant's integration, as its own process: tritonclient (the Open Inference Protocol's usual Python client) asks
the service what a test asks it, and prints what it got back as JSON.

Runs in the venv that ``make clients`` builds (``build/clients-venv``: tritonclient pins protobuf<7, the project
needs protobuf>=7), so it imports tritonclient, numpy and the standard library only, and decodes nothing: frames
travel as the bytes of their files.

    build/clients-venv/bin/python tests/integration/oip_client.py < job.json

The job (JSON on stdin, or a file named as the first argument)::

    {"target": "127.0.0.1:50051", "model": "line", "version": "v1",
     "infer": [{"id": "good", "image": "/tmp/good.png"},            # BYTES [1]: the file's bytes
               {"id": "wide", "pixels": "/tmp/wide_rgb.npy"}],      # UINT8 [H, W, C] from a .npy file (RGB)
     "refused": [{"id": "v9", "image": "/tmp/good.png", "version": "v9"}],
     "stream": [{"id": "s0", "image": "/tmp/a.png"}, ...]}

Prints ``{"live", "ready", "model_ready", "metadata", "results": {id: outputs}, "refused": {id: {status,
message}}, "stream": [{id, outputs} or {id, error}, ...]}``; every inference asks for the default outputs and
``mask``.
"""

from __future__ import annotations

import json
import queue
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

OUTPUTS = ("verdict", "label", "defect_class", "defect_score", "class_names", "class_scores", "by_anomaly",
           "anomaly_score", "region_boxes", "region_areas", "mask")
TIMEOUT = 60.0  # s, a safety net for every call


def _input(call: dict[str, Any]) -> grpcclient.InferInput:
    """The ``image`` (the file's bytes, BYTES [1]) or ``pixels`` (a .npy array, UINT8) input of ``call``."""
    if "image" in call:
        tensor = grpcclient.InferInput("image", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([Path(call["image"]).read_bytes()], dtype=object))
        return tensor
    pixels = np.load(call["pixels"])
    tensor = grpcclient.InferInput("pixels", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    return tensor


def _plain(value: np.ndarray) -> Any:
    """An output as JSON: strings for BYTES, numbers (float32 widened exactly to float64) for the rest."""
    if value.dtype == np.object_:
        return [v.decode() for v in value.tolist()]
    return value.tolist()


def _outputs(result: grpcclient.InferResult) -> dict[str, Any]:
    response = result.get_response()
    out = {name: _plain(result.as_numpy(name)) for name in OUTPUTS}
    out["mask_shape"] = list(result.as_numpy("mask").shape)
    out["model"] = f"{response.model_name}/{response.model_version}"
    out["frame_id"] = response.parameters["frame_id"].string_param
    return out


def _infer(client: grpcclient.InferenceServerClient, job: dict[str, Any], call: dict[str, Any]):
    return client.infer(job["model"], [_input(call)], model_version=call.get("version", ""), request_id=call["id"],
                        outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS],
                        parameters={"camera_id": "cam-oip", "frame_id": call["id"]}, client_timeout=TIMEOUT)


def _stream(client: grpcclient.InferenceServerClient, job: dict[str, Any]) -> list[dict[str, Any]]:
    """``job["stream"]`` on one ModelStreamInfer call, the answers in the order they came."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), stream_timeout=TIMEOUT)
    try:
        for call in job["stream"]:
            client.async_stream_infer(job["model"], [_input(call)], request_id=call["id"],
                                      outputs=[grpcclient.InferRequestedOutput(n) for n in OUTPUTS],
                                      parameters={"camera_id": "cam-oip", "frame_id": call["id"]})
        got = [answers.get(timeout=TIMEOUT) for _ in job["stream"]]
    finally:
        client.stop_stream()
    return [{"id": result.get_response().id, "outputs": _outputs(result)} if error is None else
            {"id": "", "error": str(error)} for result, error in got]


def run(job: dict[str, Any]) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(job["target"])
    try:
        metadata = client.get_model_metadata(job["model"], as_json=True, client_timeout=TIMEOUT)
        out: dict[str, Any] = {
            "live": client.is_server_live(client_timeout=TIMEOUT),
            "ready": client.is_server_ready(client_timeout=TIMEOUT),
            "model_ready": client.is_model_ready(job["model"], client_timeout=TIMEOUT),
            "model_ready_at_version": client.is_model_ready(job["model"], job["version"], client_timeout=TIMEOUT),
            "metadata": metadata,
            "results": {c["id"]: _outputs(_infer(client, job, c)) for c in job.get("infer", [])},
            "refused": {},
        }
        for call in job.get("refused", []):
            try:
                _infer(client, job, call)
                out["refused"][call["id"]] = {"status": "answered"}
            except InferenceServerException as err:
                out["refused"][call["id"]] = {"status": err.status(), "message": err.message()}
        if job.get("stream"):
            out["stream"] = _stream(client, job)
        return out
    finally:
        client.close()


def main() -> None:
    text = Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else sys.stdin.read()
    print(json.dumps(run(json.loads(text))))


if __name__ == "__main__":
    main()
