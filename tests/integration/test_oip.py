"""The Open Inference Protocol (``inference.GRPCInferenceService``) through the project's own generated stubs, against
a real in-process service: probes, metadata, inference with the frame in ``contents`` or in ``raw_input_contents``,
the same answers as ``Inspect``, refusals with their ``ErrorInfo`` reasons, the stream, the metrics, readiness."""

import struct

import cv2
import grpc
import numpy as np
import pytest
from inspector.artifacts.store import promote
from inspector.oip import inference_pb2 as oip
from inspector.oip import inference_pb2_grpc as oip_grpc
from inspector.service.oip.convert import OUTPUTS
from inspector.status_details import details_of
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (MODEL_NAME, TIMEOUT, VERDICT_NAMES, decode_mask, jpeg, png, png_request, raw_request,
                             wait_until)

Tensor = oip.ModelInferRequest.InferInputTensor
DTYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "INT32": "<i4", "INT64": "<i8", "FP32": "<f4"}
DEFAULT_OUTPUTS = [n for n in OUTPUTS if n not in ("mask", "anomaly_map")]  # the tiny model has an anomaly head


@pytest.fixture(scope="module")
def oip_stub(served) -> oip_grpc.GRPCInferenceServiceStub:
    return oip_grpc.GRPCInferenceServiceStub(served[2])


@pytest.fixture(scope="module")
def inspect_stub(served) -> pb_grpc.InspectorStub:
    return pb_grpc.InspectorStub(served[2])


def image_request(data: bytes, frame_id: str = "", outputs: tuple[str, ...] = (), raw: bool = False,
                  version: str = "", request_id: str = "", model: str = MODEL_NAME) -> oip.ModelInferRequest:
    """``data`` as the ``image`` input: in ``contents.bytes_contents``, or (``raw``) as raw BYTES (4-byte
    little-endian length, then the bytes)."""
    tensor = Tensor(name="image", datatype="BYTES", shape=[1])
    request = oip.ModelInferRequest(model_name=model, model_version=version, id=request_id,
                                    outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs])
    if raw:
        request.raw_input_contents.append(struct.pack("<I", len(data)) + data)
    else:
        tensor.contents.bytes_contents.append(data)
    request.inputs.append(tensor)
    if frame_id:
        request.parameters["frame_id"].string_param = frame_id
    request.parameters["camera_id"].string_param = "cam-oip"
    return request


def pixels_request(pixels: np.ndarray, frame_id: str, order: str = "", data: bytes | None = None,
                   outputs: tuple[str, ...] = ("verdict", "defect_score", "mask")) -> oip.ModelInferRequest:
    """``pixels`` (UINT8 [H, W] or [H, W, C]) as raw contents (``data`` instead of its bytes, if given)."""
    tensor = Tensor(name="pixels", datatype="UINT8", shape=list(pixels.shape))
    if order:
        tensor.parameters["channel_order"].string_param = order
    request = oip.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor],
                                    raw_input_contents=[pixels.tobytes() if data is None else data],
                                    outputs=[oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs])
    request.parameters["frame_id"].string_param = frame_id
    return request


def outputs_of(response: oip.ModelInferResponse) -> dict:
    """The response's tensors by name, read from its raw contents: lists of strings for BYTES, arrays else."""
    assert len(response.raw_output_contents) == len(response.outputs)
    out = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        if tensor.datatype == "BYTES":
            values, at = [], 0
            while at < len(raw):
                (size,) = struct.unpack_from("<I", raw, at)
                values.append(raw[at + 4:at + 4 + size].decode())
                at += 4 + size
            assert len(values) == int(np.prod(tensor.shape)), tensor.name
            out[tensor.name] = values
        else:
            out[tensor.name] = np.frombuffer(raw, DTYPES[tensor.datatype]).reshape(tuple(tensor.shape))
    return out


def assert_same_as_inspect(got: dict, want: pb.InspectResponse) -> None:
    """The OIP outputs say what ``Inspect`` said: scores within float32 rounding, the mask pixel for pixel."""
    assert (got["verdict"], got["label"], got["defect_class"]) == ([VERDICT_NAMES[want.verdict]], [want.label],
                                                                   [want.defect_class])
    assert got["defect_score"].tolist() == [pytest.approx(want.defect_score, rel=1e-6, abs=1e-7)]
    assert dict(zip(got["class_names"], got["class_scores"].tolist())) == {
        c: pytest.approx(s, rel=1e-6, abs=1e-7) for c, s in want.class_scores.items()}
    assert got["by_anomaly"].tolist() == [want.by_anomaly]
    assert got["anomaly_score"].tolist() == [pytest.approx(want.anomaly_score, rel=1e-6, abs=1e-7)]
    assert got["region_boxes"].tolist() == [[r.x, r.y, r.width, r.height] for r in want.regions]
    assert got["region_areas"].tolist() == [r.area_px for r in want.regions]
    assert got["region_classes"] == [r.defect_class for r in want.regions]
    np.testing.assert_array_equal(got["mask"], decode_mask(want))


def refusal(call, request) -> tuple[grpc.StatusCode, str, str]:
    """The code, ``ErrorInfo`` reason and message of a refused call."""
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=TIMEOUT)
    return err.value.code(), details_of(err.value).reason, err.value.details()


# ---------------------------------------------------------------- probes and metadata

def test_server_probes(oip_stub):
    assert oip_stub.ServerLive(oip.ServerLiveRequest(), timeout=TIMEOUT).live
    assert oip_stub.ServerReady(oip.ServerReadyRequest(), timeout=TIMEOUT).ready
    meta = oip_stub.ServerMetadata(oip.ServerMetadataRequest(), timeout=TIMEOUT)
    assert meta.name == "inspector" and meta.version and list(meta.extensions) == []


@pytest.mark.parametrize(("name", "version", "ready"), [
    (MODEL_NAME, "", True), (MODEL_NAME, "v1", True),
    (MODEL_NAME, "v2", False),  # in the store, not served
    (MODEL_NAME, "v9", False), ("other", "", False), ("other", "v1", False), ("", "", False)])
def test_model_ready_only_for_the_served_name_and_version(oip_stub, name, version, ready):
    assert oip_stub.ModelReady(oip.ModelReadyRequest(name=name, version=version), timeout=TIMEOUT).ready is ready


def test_model_metadata_lists_inputs_and_outputs(oip_stub):
    for version in ("", "v1"):
        meta = oip_stub.ModelMetadata(oip.ModelMetadataRequest(name=MODEL_NAME, version=version), timeout=TIMEOUT)
        assert (meta.name, list(meta.versions), meta.platform) == (MODEL_NAME, ["v1"], "inspector")
        assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
            ("image", "BYTES", [1]), ("pixels", "UINT8", [-1, -1, -1])]
        assert [t.name for t in meta.outputs] == list(OUTPUTS)
        by_name = {t.name: (t.datatype, list(t.shape)) for t in meta.outputs}
        assert by_name["verdict"] == ("BYTES", [1]) and by_name["defect_score"] == ("FP32", [1])
        assert by_name["mask"] == ("UINT8", [-1, -1]) and by_name["region_boxes"] == ("INT32", [-1, 4])


@pytest.mark.parametrize(("name", "version", "reason"), [
    ("other", "", "unknown_model"), (MODEL_NAME, "v2", "unknown_version")])
def test_model_metadata_of_another_model_is_not_found(oip_stub, name, version, reason):
    code, got, message = refusal(oip_stub.ModelMetadata, oip.ModelMetadataRequest(name=name, version=version))
    assert (code, got) == (grpc.StatusCode.NOT_FOUND, reason), message
    assert repr(MODEL_NAME) in message


# ---------------------------------------------------------------- inference

@pytest.mark.parametrize("raw", [False, True], ids=["bytes_contents", "raw_input_contents"])
@pytest.mark.parametrize("name", ["good_0000", "crack_0001", "scratch_0000", "spot_0001"])
def test_png_image_gets_inspects_answer(oip_stub, inspect_stub, images, name, raw):
    data = png(images[name])
    response = oip_stub.ModelInfer(image_request(data, name, (*DEFAULT_OUTPUTS, "mask"), raw), timeout=TIMEOUT)
    assert (response.model_name, response.model_version) == (MODEL_NAME, "v1")
    assert response.parameters["frame_id"].string_param == name
    assert response.parameters["camera_id"].string_param == "cam-oip"
    assert response.parameters["total_ms"].double_param > 0
    got = outputs_of(response)
    assert list(got) == [*DEFAULT_OUTPUTS, "mask"]
    want = inspect_stub.Inspect(png_request(images[name], name, return_mask=True), timeout=TIMEOUT)
    assert_same_as_inspect(got, want)


def test_the_frames_get_more_than_one_verdict(oip_stub, images):
    verdicts = {outputs_of(oip_stub.ModelInfer(image_request(png(images[n]), n, ("verdict",)), timeout=TIMEOUT))
                ["verdict"][0] for n in ("good_0000", "crack_0001", "scratch_0000", "spot_0001")}
    assert len(verdicts) >= 2, "a comparison of one verdict shows little"


def test_default_outputs_and_frame_id_from_the_request_id(oip_stub, images):
    response = oip_stub.ModelInfer(image_request(jpeg(images["good_0001"]), request_id="req-7"), timeout=TIMEOUT)
    assert response.id == "req-7" and response.parameters["frame_id"].string_param == "req-7"
    got = outputs_of(response)
    assert list(got) == DEFAULT_OUTPUTS  # mask and anomaly_map only when asked
    assert got["class_names"] == ["good", "crack", "scratch", "spot"]
    assert got["class_scores"].sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(("name", "order"), [("rgb", ""), ("rgb", "RGB"), ("bgr", "BGR"), ("bgr", "bgr")])
def test_colour_pixels_get_the_answer_of_the_same_frame_sent_raw(oip_stub, inspect_stub, images, name, order):
    bgr = images["colour_wide"]
    pixels = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if name == "rgb" else bgr
    outputs = (*DEFAULT_OUTPUTS, "mask", "anomaly_map")
    got = outputs_of(oip_stub.ModelInfer(pixels_request(pixels, "wide", order, outputs=outputs), timeout=TIMEOUT))
    want = inspect_stub.Inspect(raw_request(bgr, pb.RAW_BGR8, "wide"), timeout=TIMEOUT)
    assert got["mask"].shape == got["anomaly_map"].shape == bgr.shape[:2]
    assert_same_as_inspect(got, want)


def test_the_channel_order_is_read(oip_stub, images):
    """BGR pixels sent as RGB are another frame (its gray values differ): the comparison above can tell them apart."""
    bgr = images["colour_wide"]
    scores = [outputs_of(oip_stub.ModelInfer(pixels_request(bgr, "wide", order), timeout=TIMEOUT))["defect_score"]
              for order in ("BGR", "RGB")]
    assert scores[0] != pytest.approx(scores[1], rel=1e-6, abs=1e-7)
    request = pixels_request(bgr, "wide")  # on the request, for clients that cannot set an input's parameters
    request.parameters["channel_order"].string_param = "BGR"
    assert outputs_of(oip_stub.ModelInfer(request, timeout=TIMEOUT))["defect_score"] == pytest.approx(scores[0])


def test_gray_pixels_in_contents_get_the_answer_of_the_png(oip_stub, inspect_stub, images):
    gray = images["crack_0000"]
    tensor = Tensor(name="pixels", datatype="UINT8", shape=list(gray.shape))
    tensor.contents.uint_contents.extend(gray.ravel().tolist())
    request = oip.ModelInferRequest(model_name=MODEL_NAME, inputs=[tensor], outputs=[
        oip.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in (*DEFAULT_OUTPUTS, "mask")])
    got = outputs_of(oip_stub.ModelInfer(request, timeout=TIMEOUT))
    assert_same_as_inspect(got, inspect_stub.Inspect(png_request(gray, "g", return_mask=True), timeout=TIMEOUT))


# ---------------------------------------------------------------- refusals

def _two_inputs(images) -> oip.ModelInferRequest:
    request = image_request(png(images["good_0000"]))
    request.inputs.append(Tensor(name="pixels", datatype="UINT8", shape=[1, 1], contents={"uint_contents": [0]}))
    return request


def _ordered_image(images) -> oip.ModelInferRequest:
    request = image_request(png(images["good_0000"]))
    request.inputs[0].parameters["channel_order"].string_param = "BGR"
    return request


def _wrong_datatype(images) -> oip.ModelInferRequest:
    request = image_request(png(images["good_0000"]))
    request.inputs[0].datatype = "UINT8"
    return request


@pytest.mark.parametrize(("make", "code", "reason", "words"), [
    (lambda im: image_request(png(im["good_0000"]), outputs=("verdict", "heatmap")),
     grpc.StatusCode.INVALID_ARGUMENT, "unknown_output", "['heatmap']"),
    (_two_inputs, grpc.StatusCode.INVALID_ARGUMENT, "bad_input", "send exactly one"),
    (lambda im: oip.ModelInferRequest(model_name=MODEL_NAME), grpc.StatusCode.INVALID_ARGUMENT, "bad_input",
     "send exactly one"),
    (lambda im: pixels_request(im["colour_wide"], "short", data=im["colour_wide"].tobytes()[:-1]),
     grpc.StatusCode.INVALID_ARGUMENT, "size_mismatch", "needs 20736 bytes, got 20735"),
    (lambda im: pixels_request(im["colour_wide"], "order", "YUV"), grpc.StatusCode.INVALID_ARGUMENT, "bad_tensor",
     "channel_order"),
    (_wrong_datatype, grpc.StatusCode.INVALID_ARGUMENT, "bad_tensor", "datatype must be BYTES"),
    (_ordered_image, grpc.StatusCode.INVALID_ARGUMENT, "bad_tensor", "channel_order applies to `pixels`"),
    (lambda im: image_request(jpeg(im["good_0000"])[:200] + bytes(64)), grpc.StatusCode.INVALID_ARGUMENT,
     "undecodable", "not a decodable JPEG"),
    (lambda im: image_request(b"GIF89a" + bytes(32)), grpc.StatusCode.INVALID_ARGUMENT, "unknown_encoding",
     "not a JPEG, PNG or BMP"),
    (lambda im: image_request(png(im["good_0000"]), version="v2"), grpc.StatusCode.NOT_FOUND, "unknown_version",
     "'v2' is not served"),
    (lambda im: image_request(png(im["good_0000"]), model="other"), grpc.StatusCode.NOT_FOUND, "unknown_model",
     "serves 'line'"),
], ids=["unknown_output", "two_inputs", "no_input", "size_mismatch", "channel_order", "datatype", "ordered_image",
        "corrupt_jpeg", "gif", "other_version", "other_model"])
def test_bad_requests_are_refused_with_their_reason(oip_stub, images, make, code, reason, words):
    got_code, got_reason, message = refusal(oip_stub.ModelInfer, make(images))
    assert (got_code, got_reason) == (code, reason), message
    assert words in message


# ---------------------------------------------------------------- stream

def test_stream_answers_every_frame_in_order_and_flags_the_bad_one(oip_stub, images):
    frames = [image_request(png(images["good_0000"]), "s0", request_id="r0"),
              image_request(jpeg(images["good_0000"])[:200] + bytes(64), "s1", request_id="r1"),
              image_request(png(images["crack_0001"]), "s2", ("verdict", "mask"), request_id="r2")]
    answers = list(oip_stub.ModelStreamInfer(iter(frames), timeout=TIMEOUT))
    assert [a.infer_response.id for a in answers] == ["r0", "r1", "r2"]
    assert [bool(a.error_message) for a in answers] == [False, True, False]
    assert answers[1].error_message.startswith("undecodable: frame 's1': "), answers[1].error_message
    assert list(outputs_of(answers[0].infer_response)) == DEFAULT_OUTPUTS
    assert answers[0].infer_response.parameters["frame_id"].string_param == "s0"
    last = outputs_of(answers[2].infer_response)
    assert list(last) == ["verdict", "mask"] and last["mask"].shape == images["crack_0001"].shape


def test_stream_refuses_each_bad_request_with_its_reason(oip_stub, images):
    frames = [image_request(png(images["good_0000"]), "a", ("heatmap",)), _two_inputs(images),
              image_request(png(images["good_0000"]), "c", version="v9")]
    answers = list(oip_stub.ModelStreamInfer(iter(frames), timeout=TIMEOUT))
    assert [a.error_message.split(":")[0] for a in answers] == ["unknown_output", "bad_input", "unknown_version"]


# ---------------------------------------------------------------- metrics

def test_oip_frames_are_counted_like_inspects(served, oip_stub, inspect_stub, images):
    registry = served[0].metrics.registry

    def value(name: str, **labels) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def frames() -> float:
        return sum(value("inspector_frames_total", verdict=v, camera="other") for v in VERDICT_NAMES.values())

    before = {"frames": frames(), "infer": value("inspector_requests_total", method="ModelInfer", code="OK"),
              "stream": value("inspector_requests_total", method="ModelStreamInfer", code="OK"),
              "refused": value("inspector_requests_total", method="ModelInfer", code="INVALID_ARGUMENT"),
              "unknown_output": value("inspector_invalid_frames_total", reason="unknown_output"),
              "undecodable": value("inspector_invalid_frames_total", reason="undecodable"),
              "scores": value("inspector_defect_score_ratio_count")}
    for name in ("good_0000", "crack_0001"):
        oip_stub.ModelInfer(image_request(png(images[name]), name), timeout=TIMEOUT)
    refusal(oip_stub.ModelInfer, image_request(png(images["good_0000"]), outputs=("heatmap",)))
    list(oip_stub.ModelStreamInfer(iter([image_request(png(images["spot_0001"]), "s0"),
                                         image_request(b"\xff\xd8\xff" + bytes(40), "s1")]), timeout=TIMEOUT))
    inspect_stub.Inspect(png_request(images["good_0001"], "v1-frame"), timeout=TIMEOUT)  # camera "cam-1": "other" too
    # every OIP call above counted by the interceptor once it has returned: poll (the count follows the answer)
    wait_until(lambda: value("inspector_requests_total", method="ModelStreamInfer", code="OK") == before["stream"] + 1)
    assert frames() == before["frames"] + 4  # 2 unary, 1 streamed (OIP), 1 Inspect
    assert value("inspector_defect_score_ratio_count") == before["scores"] + 4
    assert value("inspector_requests_total", method="ModelInfer", code="OK") == before["infer"] + 2
    assert value("inspector_requests_total", method="ModelInfer", code="INVALID_ARGUMENT") == before["refused"] + 1
    assert value("inspector_invalid_frames_total", reason="unknown_output") == before["unknown_output"] + 1
    assert value("inspector_invalid_frames_total", reason="undecodable") == before["undecodable"] + 1


# ---------------------------------------------------------------- readiness

def test_not_ready_until_a_model_is_loaded(make_store, servers, images):
    """A service whose active version cannot be loaded is live and not ready (ModelReady false, frames UNAVAILABLE);
    once a good version is promoted it loads, and both turn true."""
    model_dir = make_store()
    weights = model_dir / "v2" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated: v2 cannot load
    promote(model_dir, "v2")
    running = servers.start(model_dir, wait=False, watch_seconds=0.2)
    stub = oip_grpc.GRPCInferenceServiceStub(servers.channel(running))
    wait_until(lambda: (running.metrics.registry.get_sample_value("inspector_model_swaps_total",
                                                                  {"result": "failure"}) or 0) >= 1, timeout=30)
    assert stub.ServerLive(oip.ServerLiveRequest(), timeout=TIMEOUT).live
    assert not stub.ServerReady(oip.ServerReadyRequest(), timeout=TIMEOUT).ready
    assert not stub.ModelReady(oip.ModelReadyRequest(name=MODEL_NAME), timeout=TIMEOUT).ready
    code, reason, _ = refusal(stub.ModelInfer, image_request(png(images["good_0000"])))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "not_ready")
    code, reason, _ = refusal(stub.ModelMetadata, oip.ModelMetadataRequest(name=MODEL_NAME))
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "not_ready")
    promote(model_dir, "v1")
    assert running.loaded.wait(30), "the good version was not loaded"
    wait_until(lambda: stub.ServerReady(oip.ServerReadyRequest(), timeout=TIMEOUT).ready, timeout=10)
    assert stub.ModelReady(oip.ModelReadyRequest(name=MODEL_NAME, version="v1"), timeout=TIMEOUT).ready
    response = stub.ModelInfer(image_request(png(images["good_0000"]), "after"), timeout=TIMEOUT)
    assert (response.model_name, response.model_version) == (MODEL_NAME, "v1")
