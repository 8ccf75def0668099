"""A plant's Node.js integration against a real service: @grpc/grpc-js with @grpc/proto-loader (from
build/node-clients, which ``make clients`` installs), loaded with the options inspector.proto's header documents, runs
tests/integration/node_client.js as a separate process. Its answers must be Python's ``Inspect`` answers on the
same frame: enums as names, uint64 ``area_px`` as a decimal string, refusals with a ``google.rpc.Status`` trailer
that protobufjs decodes, and OIP outputs that match ``Inspect``'s.

The client runs once per module (Node starts and loads the protos in well under a second); the tests read its
printed JSON. Without node or build/node-clients the tests fail and say to run ``make clients``: a machine without
the client must not pass them silently.
"""

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from google.rpc import status_pb2

from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import INVALID, MODEL_NAME, TIMEOUT, VERDICT_NAMES, decode_mask, jpeg, png, png_request

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = ROOT / "build" / "node-clients" / "node_modules"
CLIENT = Path(__file__).with_name("node_client.js")
GOOGLE_PROTOS = Path(status_pb2.__file__).resolve().parents[2]  # holds google/rpc/status.proto (googleapis protos)
FRAME = "crack_0000"  # rejected, with regions (at MASK_THRESHOLD), so area_px is on the wire
STREAMED = ("good_0001", "corrupt", "scratch_0000")  # the middle one is refused, the stream goes on
FLOAT_TOLERANCE = 1e-6
MASK_THRESHOLD = 0.1  # per-pixel defect probability: the tiny model finds a few regions in FRAME
MIN_REGION_AREA = 20  # px


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "@grpc" / "grpc-js").is_dir() \
            or not (NODE_MODULES / "@grpc" / "proto-loader").is_dir():
        pytest.fail(f"node or {NODE_MODULES} is missing: the Node.js client test needs Node.js and the pinned "
                    "@grpc/grpc-js and @grpc/proto-loader; run `make clients` to install them (`make test` does).",
                    pytrace=False)
    return node


def _corrupt_jpeg(image: np.ndarray) -> bytes:
    """A JPEG cut after its headers: it starts like a JPEG and cannot be decoded."""
    return jpeg(image)[:200] + bytes(64)


@pytest.fixture(scope="module")
def regions_shown(served) -> None:
    """The module's service at a mask threshold low enough that the tiny model reports a few regions in
    :data:`FRAME` (at the bundle's it reports none), so uint64 ``area_px`` goes over the wire."""
    thresholds = pb.Thresholds(mask=MASK_THRESHOLD, min_region_area=MIN_REGION_AREA)
    pb_grpc.AdminStub(served[2]).SetThresholds(pb.SetThresholdsRequest(thresholds=thresholds), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def answers(served, regions_shown, images, tmp_path_factory) -> dict:
    """What the Node.js client got: Inspect of :data:`FRAME` (with and without ``longs``), a stream of
    :data:`STREAMED`, the refused calls and OIP ModelInfer of :data:`FRAME`."""
    node = _node()
    assert (GOOGLE_PROTOS / "google" / "rpc" / "error_details.proto").is_file(), \
        f"no google/rpc/*.proto under {GOOGLE_PROTOS}: the client decodes the trailer with them"
    folder = tmp_path_factory.mktemp("node-client")
    files = {}
    for name in {FRAME, *STREAMED} - {"corrupt"}:
        files[name] = folder / f"{name}.png"
        files[name].write_bytes(png(images[name]))
    files["corrupt"] = folder / "corrupt.jpg"
    files["corrupt"].write_bytes(_corrupt_jpeg(images["good_0000"]))
    job = {"target": f"127.0.0.1:{served[0].port}", "model": MODEL_NAME, "google_protos": str(GOOGLE_PROTOS),
           "frame": str(files[FRAME]), "corrupt": str(files["corrupt"]),
           "stream": [{"id": n, "image": str(files[n]), "encoding": "JPEG" if n == "corrupt" else "PNG"}
                      for n in STREAMED]}
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job))
    done = subprocess.run([node, str(CLIENT), str(job_file)], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=os.environ | {"NODE_PATH": str(NODE_MODULES)}, check=False)
    (folder / "answers.json").write_text(done.stdout)  # kept for a look after a failure
    assert done.returncode == 0, f"the Node.js client failed:\n{done.stderr[-4000:]}"
    assert not done.stderr, f"the Node.js client warned:\n{done.stderr[-4000:]}"  # e.g. a proto it could not find
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def inspected(served, regions_shown, images) -> dict[str, pb.InspectResponse]:
    """Python's ``Inspect`` answers (with masks) on the same frames."""
    stub = pb_grpc.InspectorStub(served[2])
    return {n: stub.Inspect(png_request(images[n], n, return_mask=True), timeout=TIMEOUT)
            for n in {FRAME, *STREAMED} - {"corrupt"}}


def _assert_same_answer(node: dict, python: pb.InspectResponse) -> None:
    assert node["verdict"] == VERDICT_NAMES[python.verdict]  # enums: String
    assert node["label"] == python.label and node["defect_class"] == python.defect_class
    assert node["model_version"] == python.model_version == f"{MODEL_NAME}/v1"
    assert node["defect_score"] == pytest.approx(python.defect_score, abs=FLOAT_TOLERANCE)
    assert node["class_scores"] == pytest.approx(dict(python.class_scores), abs=FLOAT_TOLERANCE)
    assert node["error"] is None  # defaults: true gives null for an unset message


def test_inspect_answers_as_python_does(answers, inspected):
    _assert_same_answer(answers["inspect"], inspected[FRAME])


def test_area_px_arrives_as_a_decimal_string_with_longs_string(answers, inspected):
    python = inspected[FRAME]
    assert python.regions, f"{FRAME} has no regions: pick a frame with some, or area_px goes untested"
    regions = answers["inspect"]["regions"]
    assert all(isinstance(r["area_px"], str) and r["area_px"].isdigit() for r in regions), regions
    assert [int(r["area_px"]) for r in regions] == [r.area_px for r in python.regions]
    assert [[r[k] for k in ("x", "y", "width", "height")] for r in regions] == \
        [[r.x, r.y, r.width, r.height] for r in python.regions]
    # What the header comment warns of: without `longs`, a uint64 is a Long object ({low, high, unsigned}).
    raw = answers["inspect_without_longs"]["regions"]
    assert [r["type"] for r in raw] == ["object"] * len(python.regions)
    assert [r["area_px"]["low"] + 2 ** 32 * r["area_px"]["high"] for r in raw] == [r.area_px for r in python.regions]


def test_stream_answers_each_frame_in_order_and_refuses_only_the_corrupt_one(answers, inspected):
    stream = answers["stream"]
    assert [a["frame_id"] for a in stream] == list(STREAMED)
    refused = stream[1]["error"]
    assert refused["code"] == INVALID and refused["reason"] == "undecodable", refused
    assert stream[1]["verdict"] == "VERDICT_UNSPECIFIED"
    for answer, name in ((stream[0], STREAMED[0]), (stream[2], STREAMED[2])):
        _assert_same_answer(answer, inspected[name])


def test_unary_refusal_carries_error_info_that_protobufjs_decodes(answers):
    refused = answers["corrupt"]
    assert refused["code_name"] == "INVALID_ARGUMENT" and refused["status_code"] == INVALID, refused
    info = refused["error_info"]
    assert (info["reason"], info["domain"]) == ("undecodable", "inspector")
    assert info["metadata"]["frame_id"] == "node-corrupt"


@pytest.mark.parametrize("case, problem", [
    ("unknown_enum_name", "encoding is not set"),  # "WEBP": proto-loader's serializer drops it, the field goes out 0
    ("unknown_enum_number", "encoding: unknown encoding 42"),  # 42 goes out as is
])
def test_an_encoding_the_service_does_not_have_is_refused_as_unknown_encoding(answers, case, problem):
    refused = answers[case]
    assert "answered" not in refused, refused
    assert refused["code_name"] == "INVALID_ARGUMENT", refused
    assert refused["error_info"]["reason"] == "unknown_encoding"
    assert refused["error_info"]["domain"] == "inspector"
    assert problem in refused["details"]


def test_oip_model_infer_matches_inspect(answers, inspected):
    python = inspected[FRAME]
    oip = answers["oip"]
    assert oip["model"] == f"{MODEL_NAME}/v1"
    outputs = oip["outputs"]
    assert list(outputs) == ["verdict", "defect_score", "mask"]
    assert outputs["verdict"]["values"] == [VERDICT_NAMES[python.verdict]]
    assert outputs["defect_score"]["values"] == pytest.approx([python.defect_score], abs=FLOAT_TOLERANCE)
    expected = decode_mask(python)
    mask = outputs["mask"]
    assert mask["datatype"] == "UINT8" and mask["shape"] == list(expected.shape)
    pixels = np.frombuffer(base64.b64decode(mask["base64"]), np.uint8).reshape(mask["shape"])
    np.testing.assert_array_equal(pixels, expected)

