"""Large JPEG frames decoded at reduced scale, through the service and ``inspector predict``: answers at the frame's
own size, the predictor's for the same decoding, the audit keeps the frame as received, drift sharpness only from
whole frames, overlays drawn on whole frames."""

import json

import cv2
import numpy as np
import pytest

from inspector.cli.predict import predict_paths
from inspector.imaging.preprocess import decode, decode_frame
from inspector.inference.predictor import Predictor
from inspector.service import pipeline as pipeline_module
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (TIMEOUT, VERDICT_NAMES, assert_valid, decode_anomaly_map, decode_mask, png_request,
                             wait_until)


def _large(image: np.ndarray, h: int = 1024, w: int = 1280) -> bytes:
    """A 64 px demo frame as a camera's ``w x h`` grayscale JPEG (quality 90)."""
    big = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


@pytest.fixture()
def decoded_frames(monkeypatch):
    """The frames the service's pipeline decoded, as :class:`~inspector.imaging.reduced.Frame`."""
    seen, real = [], pipeline_module.decode_frame

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(pipeline_module, "decode_frame", spy)
    return seen


def _request(data: bytes, frame_id: str) -> pb.InspectRequest:
    return pb.InspectRequest(data=data, encoding=pb.JPEG, frame_id=frame_id, camera_id="cam-1", return_mask=True,
                             return_anomaly_map=True)


def test_a_1280x1024_jpeg_is_answered_at_its_own_size(make_store, servers, images, decoded_frames):
    """The answer is the predictor's for the frame decoded at 1/8 (the tiny model's scores move by up to 0.2 under
    +-1 grey level of noise, so its answers for the whole frame are not compared here: tests/unit/
    test_predictor_reduced.py compares them with a network that is not so sensitive)."""
    running = servers.start(make_store())
    stub = pb_grpc.InspectorStub(servers.channel(running))
    local = Predictor.from_bundle(running.models.current.bundle.path, device="cpu")
    for name in ("crack_0000", "good_0000", "spot_0001", "scratch_0000"):
        data = _large(images[name])
        response = stub.Inspect(_request(data, name), timeout=TIMEOUT)
        assert decoded_frames[-1].reduced and decoded_frames[-1].image.shape == (128, 160)  # 1/8 for a 64 px model
        assert_valid(response, (1024, 1280))
        assert decode_mask(response).shape == decode_anomaly_map(response).shape == (1024, 1280)
        [direct] = local.predict([decode_frame(data, "JPEG", fit=local.decode_size)])
        assert VERDICT_NAMES[response.verdict] == direct.verdict and response.defect_class == direct.defect_class
        assert response.defect_score == pytest.approx(direct.defect_score, abs=1e-4)
        assert response.anomaly_score == pytest.approx(direct.anomaly_score, rel=1e-3, abs=1e-2)
        expected = (direct.mask >= local.thresholds.mask).astype(np.uint8) * 255
        assert np.mean(decode_mask(response) != expected) < 0.001
        assert [(r.x, r.y, r.width, r.height) for r in response.regions] == [
            (r.x, r.y, r.width, r.height) for r in direct.regions]


def test_the_audit_keeps_the_frame_as_received_and_maps_at_its_size(make_store, servers, images, tmp_path):
    audit = tmp_path / "audit"
    running = servers.start(make_store(), audit_dir=str(audit), audit_sample_accept=1.0)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    data = _large(images["crack_0000"])
    stub.Inspect(_request(data, "big"), timeout=TIMEOUT)
    index = audit / "index.jsonl"
    wait_until(lambda: index.is_file() and index.read_text().strip())
    [line] = [json.loads(text) for text in index.read_text().splitlines()]
    assert (audit / line["image"]).read_bytes() == data  # the received JPEG, not the reduced pixels
    heat = cv2.imread(str(audit / line["anomaly_map"]), cv2.IMREAD_UNCHANGED)
    assert heat.shape == (1024, 1280)
    if line["mask"]:
        assert cv2.imread(str(audit / line["mask"]), cv2.IMREAD_UNCHANGED).shape == (1024, 1280)


def test_drift_sharpness_comes_from_whole_frames_only(make_store, servers, images, decoded_frames, monkeypatch):
    monkeypatch.setattr(pipeline_module, "SHARPNESS_EVERY", 3)
    running = servers.start(make_store())
    stub = pb_grpc.InspectorStub(servers.channel(running))
    assert "sharpness" in running.models.drift.ref  # the bundle's reference tracks it
    for i in range(4):
        stub.Inspect(_request(_large(images["good_0000"]), f"big-{i}"), timeout=TIMEOUT)
        if i == 2:  # the 3rd is decoded again, whole, after its answer
            wait_until(lambda: running.models.drift.frames()["sharpness"] == 1)
    stub.Inspect(png_request(images["good_0001"], "small"), timeout=TIMEOUT)  # 64 px: whole anyway
    assert [f.reduced for f in decoded_frames] == [True, True, True, False, True, False]
    windows = running.models.drift.frames()
    assert windows["brightness"] == windows["contrast"] == windows["defect_score"] == 5
    assert windows["sharpness"] == 2  # the 3rd, decoded whole again, and the small one


def test_cli_predict_decodes_reduced_unless_it_draws_overlays(tiny_bundle, images, tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(_large(images["crack_0000"]))
    local = Predictor.from_bundle(tiny_bundle, device="cpu")
    [line] = predict_paths(tiny_bundle, [str(path)], device="cpu")
    [reduced] = local.predict([decode_frame(path.read_bytes(), "JPEG", fit=local.decode_size)])
    assert line["defect_score"] == pytest.approx(reduced.defect_score, abs=1e-5)
    assert all(r["x"] + r["width"] <= 1280 and r["y"] + r["height"] <= 1024 for r in line["regions"])
    [drawn] = predict_paths(tiny_bundle, [str(path)], device="cpu", overlays=str(tmp_path / "overlays"))
    [whole] = local.predict([decode(path.read_bytes(), "JPEG")])
    assert drawn["defect_score"] == pytest.approx(whole.defect_score, abs=1e-5)
    assert cv2.imread(drawn["overlay"]).shape == (1024, 1280, 3)
