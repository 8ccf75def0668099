"""A plant's tritonclient integration against a real service: tritonclient, in the venv of its own that
``make clients`` builds (it pins protobuf<7), runs tests/integration/oip_client.py as a separate process; its
answers must be ``Inspect``'s on the same frames: verdict, label, scores (within float32 rounding) and the mask,
pixel for pixel.

The client runs once per module (starting it imports tritonclient and gRPC: about a second); the tests read its
printed JSON. Without build/clients-venv the tests fail and say to run ``make clients``: a machine without the
client must not pass them silently.
"""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import MODEL_NAME, TIMEOUT, VERDICT_NAMES, decode_mask, jpeg, png, png_request, raw_request

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PYTHON = ROOT / "build" / "clients-venv" / "bin" / "python"
CLIENT = Path(__file__).with_name("oip_client.py")
FRAMES = ("good_0000", "crack_0001", "scratch_0000", "spot_0001")
STREAMED = ("good_0001", "corrupt", "crack_0000")  # the middle one is refused, the stream goes on


def _client_python() -> Path:
    if not CLIENT_PYTHON.exists():
        pytest.fail(f"{CLIENT_PYTHON} is missing: the tritonclient tests need tritonclient in a venv of its own "
                    "(it pins protobuf<7); run `make clients` to build it (`make test` does).", pytrace=False)
    return CLIENT_PYTHON


def _corrupt_jpeg(image: np.ndarray) -> bytes:
    """A JPEG cut after its headers: it starts like a JPEG and cannot be decoded."""
    data = jpeg(image)
    return data[:200] + bytes(64)


@pytest.fixture(scope="module")
def answers(served, images, tmp_path_factory) -> dict:
    """What tritonclient got: probes, metadata, the inferences of :data:`FRAMES` (as PNG files) and of the colour
    frame (as RGB pixels), the refused calls and a stream of three frames."""
    python = _client_python()
    running = served[0]
    folder = tmp_path_factory.mktemp("oip-client")
    files = {}
    for name in {*FRAMES, *STREAMED} - {"corrupt"}:
        files[name] = folder / f"{name}.png"
        files[name].write_bytes(png(images[name]))
    files["corrupt"] = folder / "corrupt.jpg"
    files["corrupt"].write_bytes(_corrupt_jpeg(images["good_0000"]))
    np.save(folder / "colour_wide.npy", cv2.cvtColor(images["colour_wide"], cv2.COLOR_BGR2RGB))
    job = {
        "target": f"127.0.0.1:{running.port}", "model": MODEL_NAME, "version": "v1",
        "infer": [{"id": n, "image": str(files[n])} for n in FRAMES]
        + [{"id": "colour_wide", "pixels": str(folder / "colour_wide.npy")}],
        "refused": [{"id": "version_v2", "image": str(files["good_0000"]), "version": "v2"},  # in the store, not served
                    {"id": "version_v9", "image": str(files["good_0000"]), "version": "v9"},
                    {"id": "corrupt", "image": str(files["corrupt"])}],
        "stream": [{"id": n, "image": str(files[n])} for n in STREAMED],
    }
    job_file = folder / "job.json"
    job_file.write_text(json.dumps(job))
    done = subprocess.run([str(python), str(CLIENT), str(job_file)], capture_output=True, text=True, timeout=180,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, f"the tritonclient process failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def inspected(served, images) -> dict[str, pb.InspectResponse]:
    """``Inspect``'s answers (with masks) on the same frames: PNG for :data:`FRAMES`, raw BGR for the colour one."""
    stub = pb_grpc.InspectorStub(served[2])
    out = {n: stub.Inspect(png_request(images[n], n, return_mask=True), timeout=TIMEOUT)
           for n in {*FRAMES, *STREAMED} - {"corrupt"}}
    out["colour_wide"] = stub.Inspect(raw_request(images["colour_wide"], pb.RAW_BGR8, "colour_wide"),
                                      timeout=TIMEOUT)
    return out


def assert_same(got: dict, want: pb.InspectResponse, batched: bool = False) -> None:
    """tritonclient's outputs say what ``Inspect`` said: scores within float32 rounding and the same mask, pixel for
    pixel; or, for a frame that may have shared its forward pass with others (``batched``: a stream's), the same
    verdict and scores within float noise (a batch of two sums in another order than a batch of one)."""
    assert got["model"] == want.model_version == f"{MODEL_NAME}/v1"
    assert (got["verdict"], got["label"], got["defect_class"]) == ([VERDICT_NAMES[want.verdict]], [want.label],
                                                                   [want.defect_class])
    close = {"abs": 1e-4} if batched else {"rel": 1e-6, "abs": 1e-7}
    assert got["defect_score"] == [pytest.approx(want.defect_score, **close)]
    assert dict(zip(got["class_names"], got["class_scores"])) == {
        c: pytest.approx(s, **close) for c, s in want.class_scores.items()}
    assert got["by_anomaly"] == [want.by_anomaly]
    # in units of the reference; a part seen in training scores about 0, where float noise is relatively large
    assert got["anomaly_score"] == [pytest.approx(want.anomaly_score, **({"rel": 1e-3, "abs": 1e-2} if batched
                                                                         else close))]
    mask = np.array(got["mask"], np.uint8).reshape(got["mask_shape"])
    if batched:
        assert np.mean(mask != decode_mask(want)) < 0.001
        return
    assert got["region_areas"] == [r.area_px for r in want.regions]
    assert got["region_boxes"] == [[r.x, r.y, r.width, r.height] for r in want.regions]
    np.testing.assert_array_equal(mask, decode_mask(want))


def test_probes_and_metadata(answers):
    assert (answers["live"], answers["ready"]) == (True, True)
    assert (answers["model_ready"], answers["model_ready_at_version"]) == (True, True)
    meta = answers["metadata"]
    assert (meta["name"], meta["versions"], meta["platform"]) == (MODEL_NAME, ["v1"], "inspector")
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {"image": "BYTES", "pixels": "UINT8"}
    outputs = {t["name"]: t["datatype"] for t in meta["outputs"]}
    assert outputs["verdict"] == "BYTES" and outputs["mask"] == "UINT8" and outputs["defect_score"] == "FP32"


@pytest.mark.parametrize("name", FRAMES)
def test_png_bytes_get_inspects_answer(answers, inspected, name):
    assert answers["results"][name]["frame_id"] == name
    assert_same(answers["results"][name], inspected[name])


def test_rgb_pixels_get_the_answer_of_the_same_frame_sent_raw(answers, inspected, images):
    got = answers["results"]["colour_wide"]
    assert got["mask_shape"] == list(images["colour_wide"].shape[:2])
    assert_same(got, inspected["colour_wide"])


def test_the_frames_get_more_than_one_verdict(answers):
    assert len({r["verdict"][0] for r in answers["results"].values()}) >= 2, "a comparison of one verdict shows little"


@pytest.mark.parametrize(("name", "status", "words"), [
    ("version_v2", "StatusCode.NOT_FOUND", "version 'v2' is not served"),
    ("version_v9", "StatusCode.NOT_FOUND", "version 'v9' is not served"),
    ("corrupt", "StatusCode.INVALID_ARGUMENT", "not a decodable JPEG"),
])
def test_refusals_reach_tritonclient_with_their_status(answers, name, status, words):
    refused = answers["refused"][name]
    assert refused["status"] == status, refused
    assert words in refused["message"], refused


def test_stream_answers_in_order_and_goes_on_after_a_bad_frame(answers, inspected):
    good0, bad, good1 = answers["stream"]
    assert (good0["id"], good1["id"]) == (STREAMED[0], STREAMED[2])
    assert_same(good0["outputs"], inspected[STREAMED[0]], batched=True)
    assert_same(good1["outputs"], inspected[STREAMED[2]], batched=True)
    assert bad["error"].startswith("undecodable: frame 'corrupt'"), bad


def test_the_client_venv_cannot_import_the_project():
    """The client runs apart from the project (no shared protobuf): nothing of ``inspector`` leaks into it."""
    probe = "import google.protobuf as p, importlib.util as u; print(p.__version__, u.find_spec('inspector') is None)"
    done = subprocess.run([str(_client_python()), "-c", probe], capture_output=True, text=True, timeout=60, cwd="/",
                          check=True)
    version, isolated = done.stdout.split()
    assert int(version.split(".")[0]) < 7 and isolated == "True", done.stdout
