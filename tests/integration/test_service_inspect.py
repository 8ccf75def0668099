"""Inspecting frames through the service: every encoding, agreement with the predictor, bad frames
unary and in a stream, the anomaly head's answers, tiled frames, reflection."""

import grpc
import numpy as np
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from inspector.artifacts.bundle import load_bundle
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (INVALID, VERDICT_NAMES, TIMEOUT, png, jpeg, png_request, raw_request, decode_mask,
                             assert_valid, decode_anomaly_map)


def test_unary_round_trip_every_encoding(stub, images, bundle_thresholds):
    gray, colour = images["crack_0000"], images["colour_wide"]
    cases = {
        "jpeg": (pb.InspectRequest(data=jpeg(colour), encoding=pb.JPEG, frame_id="jpeg", camera_id="cam-7",
                                   return_mask=True), colour.shape),
        "png": (png_request(gray, "png", return_mask=True, camera_id="cam-7"), gray.shape),
        "gray8-strided": (raw_request(gray, pb.RAW_GRAY8, "gray8-strided", stride_pad=7), gray.shape),
        "bgr8": (raw_request(colour, pb.RAW_BGR8, "bgr8"), colour.shape),
        "rgb8-strided": (raw_request(colour, pb.RAW_RGB8, "rgb8-strided", stride_pad=5), colour.shape),
    }
    responses = {}
    for frame_id, (request, shape) in cases.items():
        response = stub.Inspect(request, timeout=TIMEOUT)
        responses[frame_id] = response
        assert response.frame_id == frame_id and response.camera_id == request.camera_id
        assert_valid(response, shape)
        mask = decode_mask(response)
        assert mask.shape == shape[:2]
        assert set(np.unique(mask)) <= {0, 255}
        assert np.count_nonzero(mask) >= sum(r.area_px for r in response.regions)
        ms = response.timings
        assert min(ms.decode_ms, ms.preprocess_ms, ms.queue_ms, ms.infer_ms, ms.postprocess_ms) > 0
        assert ms.total_ms >= ms.decode_ms + ms.preprocess_ms + ms.infer_ms
        t, want = response.thresholds, bundle_thresholds
        assert (t.reject, t.review, t.mask, t.min_region_area) == pytest.approx(
            (want.reject, want.review, want.mask, want.min_region_area))

    # raw pixels (padding bytes ignored, channel order honoured) give exactly what the PNG of the same pixels gives
    reference = {"gray8-strided": stub.Inspect(png_request(gray, "ref-gray"), timeout=TIMEOUT),
                 "bgr8": stub.Inspect(png_request(colour, "ref-colour"), timeout=TIMEOUT)}
    reference["rgb8-strided"] = reference["bgr8"]
    for frame_id, ref in reference.items():
        got = responses[frame_id]
        assert got.verdict == ref.verdict
        for cls, score in ref.class_scores.items():
            assert got.class_scores[cls] == pytest.approx(score, abs=1e-5)
    assert np.array_equal(decode_mask(responses["gray8-strided"]), decode_mask(responses["png"]))
    # a frame with no mask requested gets none
    assert stub.Inspect(png_request(gray, "no-mask"), timeout=TIMEOUT).mask_png == b""


def test_model_info(stub, tiny_bundle, bundle_thresholds):
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    meta = load_bundle(tiny_bundle).meta
    assert (info.name, info.version, info.backbone) == ("line", "v1", meta.backbone)
    assert tuple(info.classes) == meta.classes
    assert (info.input_height, info.input_width) == (64, 64)
    assert info.thresholds.reject == pytest.approx(bundle_thresholds.reject)
    assert info.validation["val_macro_f1"] == pytest.approx(meta.validation["val_macro_f1"], abs=1e-6)


def test_server_agrees_with_the_predictor(stub, served, images):
    model_dir = served[1]
    names = ["good_0000", "good_0001", "crack_0001", "scratch_0000", "spot_0001", "colour_wide"]
    frames = [images[n] for n in names]
    predictor = Predictor.from_bundle(model_dir / "v1", device="cpu")
    direct = predictor.predict(frames)
    thresholds = predictor.thresholds
    verdicts = set()
    for name, frame, pred in zip(names, frames, direct):
        response = stub.Inspect(png_request(frame, name, return_mask=True), timeout=TIMEOUT)
        assert_valid(response, frame.shape)
        assert VERDICT_NAMES[response.verdict] == pred.verdict
        verdicts.add(pred.verdict)
        assert response.defect_class == pred.defect_class
        assert response.defect_score == pytest.approx(pred.defect_score, abs=1e-4)
        # in units of the reference; a part seen in training scores about 0, where float noise is relatively large
        assert response.anomaly_score == pytest.approx(pred.anomaly_score, rel=1e-3, abs=1e-2)
        assert response.by_anomaly == pred.by_anomaly
        for cls, score in pred.class_scores.items():
            assert response.class_scores[cls] == pytest.approx(score, abs=1e-4)
        expected = (pred.mask >= thresholds.mask).astype(np.uint8) * 255
        mask = decode_mask(response)
        assert mask.shape == expected.shape
        assert np.mean(mask != expected) < 0.001
        assert len(response.regions) == len(pred.regions)
        for got, want in zip(response.regions, pred.regions):
            assert abs(got.area_px - want.area_px) <= max(2, want.area_px // 100)
    assert len(verdicts) >= 2, "the frames should not all get the same verdict"


def test_stream_answers_every_frame_in_order_and_flags_bad_ones(stub, images):
    good = images["spot_0000"]
    rubbish = b"\x00" + np.random.default_rng(0).integers(0, 256, 700, dtype=np.uint8).tobytes()
    requests = [
        (png_request(good, "good-0"), None),
        (pb.InspectRequest(data=b"", encoding=pb.PNG, frame_id="empty"), "empty"),
        (pb.InspectRequest(data=rubbish, encoding=pb.JPEG, frame_id="random-jpeg"), "encoding_mismatch"),
        (pb.InspectRequest(data=b"\xff\xd8" + rubbish, encoding=pb.JPEG, frame_id="jpeg-garbage"), "undecodable"),
        (png_request(images["crack_0000"], "good-1"), None),
        (pb.InspectRequest(data=bytes(100), encoding=pb.RAW_GRAY8, width=64, height=64, frame_id="raw-short"),
         "size_mismatch"),
        (pb.InspectRequest(data=png(good), encoding=pb.ENCODING_UNSPECIFIED, frame_id="no-encoding"),
         "unknown_encoding"),
        (png_request(good[:16, :40], "too-small"), "bad_dimensions"),
        (pb.InspectRequest(data=bytes(16 * 16), encoding=pb.RAW_GRAY8, width=16, height=16, frame_id="raw-small"),
         "bad_dimensions"),
        (png_request(images["colour_wide"], "good-after"), None),
    ]
    responses = list(stub.InspectStream(iter([r for r, _ in requests]), timeout=TIMEOUT))
    assert [r.frame_id for r in responses] == [r.frame_id for r, _ in requests]
    for (request, reason), response in zip(requests, responses):
        if reason is None:
            shape = images["colour_wide"].shape if request.frame_id == "good-after" else good.shape
            assert_valid(response, shape)
            assert response.verdict != pb.VERDICT_UNSPECIFIED
        else:
            assert response.HasField("error"), request.frame_id
            assert response.error.code == INVALID
            assert response.error.reason == reason, (request.frame_id, response.error)
            assert response.error.message
            assert response.verdict == pb.VERDICT_UNSPECIFIED and response.model_version == ""


@pytest.mark.parametrize("request_fields, words", [
    (dict(data=b"", encoding=pb.PNG), "frame payload is empty"),
    (dict(data=b"\x00not a jpeg" * 20, encoding=pb.JPEG), "does not start like a JPEG"),
    (dict(data=b"\xff\xd8not a jpeg" * 20, encoding=pb.JPEG), "not a decodable JPEG"),
    (dict(data=bytes(100), encoding=pb.RAW_GRAY8, width=64, height=64), "needs 4096 bytes, got 100"),
    (dict(data=bytes(100), encoding=pb.ENCODING_UNSPECIFIED), "unknown encoding 'ENCODING_UNSPECIFIED'"),
    (dict(data=bytes(16 * 16), encoding=pb.RAW_GRAY8, width=16, height=16), "16x16 px"),
])
def test_unary_bad_frame_is_invalid_argument(stub, request_fields, words):
    with pytest.raises(grpc.RpcError) as info:
        stub.Inspect(pb.InspectRequest(frame_id="bad-1", **request_fields), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in info.value.details() and "bad-1" in info.value.details()


def test_reflection_lists_the_services(served):
    services = set(ProtoReflectionDescriptorDatabase(served[2]).get_services())
    assert {"inspector.v1.Inspector", "inspector.v1.Admin", "grpc.health.v1.Health"} <= services


def test_anomaly_score_and_map(stub, images, bundle_thresholds):
    for name in ("crack_0000", "scratch_0001", "colour_wide"):  # unlike the training parts of the anomaly bank
        frame = images[name]
        response = stub.Inspect(png_request(frame, name, return_anomaly_map=True), timeout=TIMEOUT)
        assert_valid(response, frame.shape)
        assert response.HasField("anomaly_score") and response.anomaly_score > 0.0
        assert response.mask_png == b""  # each PNG only when asked for
        assert response.thresholds.anomaly == pytest.approx(bundle_thresholds.anomaly)
        assert VERDICT_NAMES[response.thresholds.anomaly_verdict] == bundle_thresholds.anomaly_verdict
        heat = decode_anomaly_map(response)
        assert heat.shape == frame.shape[:2]
        a = response.anomaly_score  # the map's peak, encoded as 255 * a / (1 + a)
        assert abs(int(heat.max()) - round(255 * a / (1 + a))) <= 1
        plain = stub.Inspect(png_request(frame, name), timeout=TIMEOUT)
        assert plain.anomaly_map_png == b"" and plain.anomaly_score == pytest.approx(a, rel=1e-3)


def test_tiled_frames_are_answered_at_full_size(make_store, servers, images):
    running = servers.start(make_store(), tile=48, max_batch=16)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    frame = np.ascontiguousarray(np.tile(images["crack_0000"], (2, 3)))  # (128, 192): 5 x 3 tiles of 48 px
    response = stub.Inspect(png_request(frame, "tiled"), timeout=TIMEOUT)
    assert_valid(response, frame.shape[:2])
    local = Predictor.from_bundle(running.models.current.bundle.path, "cpu", options=InferenceOptions(tile=48))
    assert len(local.prepare([frame]).batch) == 15
    direct = local.predict([frame])[0]
    assert response.defect_score == pytest.approx(direct.defect_score, abs=1e-4)

