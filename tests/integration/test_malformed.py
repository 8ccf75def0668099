"""Malformed frames and requests against one in-process server with a tiny model.

The corpus is built in code (``tests/fuzz/frames.py``, shared with the decode fuzz target): truncated, empty,
mislabelled and random payloads, raw sizes that do not add up, decompression bombs, frames outside the side limits
and over the size limit. Each must be refused as a unary call (INVALID_ARGUMENT, a message naming the problem) and,
all of them in one stream interleaved with good frames, answered once each in order with its reason, without
disturbing the server. Unusual but valid frames are accepted and inspected like their plain equivalents.
"""

import importlib.util
import sys
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from inspector.config import FrameLimits, ServeConfig
from inspector.service.server import start_server
from inspector.status_details import DOMAIN, details_of
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


def _load_frames():
    path = Path(__file__).resolve().parents[1] / "fuzz" / "frames.py"
    spec = importlib.util.spec_from_file_location("malformed_frames", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


frames = _load_frames()
LIMITS = FrameLimits(max_bytes=frames.MAX_BYTES)
BAD = frames.bad_frames()
ACCEPTED = frames.accepted_frames()
GOOD = frames.good_frames()
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
TIMEOUT = 60.0  # s; a safety net, not a timing assertion
# every reason decode can give (none is kept for a pixel type other than 8 or 16 bits: no payload decodes to one, see
# test_no_payload_decodes_to_another_pixel_type)
REASONS = {"empty", "too_large", "unknown_encoding", "encoding_mismatch", "undecodable", "size_mismatch",
           "bad_dimensions"}


class Service:
    """The running server, a stub, and the answer to a reference frame taken before any bad frame was sent."""

    def __init__(self, running) -> None:
        self.running = running
        self.channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        self.stub = pb_grpc.InspectorStub(self.channel)
        self.reference = self.stub.Inspect(reference_request(), timeout=TIMEOUT)


def reference_request() -> pb.InspectRequest:
    frame, _ = GOOD[0]
    return request(frame, "reference")


def request(frame, frame_id: str, camera_id: str = "cam-malformed") -> pb.InspectRequest:
    return pb.InspectRequest(data=frame.data, encoding=frame.encoding, width=frame.width, height=frame.height,
                             stride=frame.stride, frame_id=frame_id, camera_id=camera_id)


def png_request(image: np.ndarray, frame_id: str) -> pb.InspectRequest:
    return pb.InspectRequest(data=frames.encode(image, ".png"), encoding=pb.PNG, frame_id=frame_id)


def assert_answered(response: pb.InspectResponse) -> None:
    assert not response.HasField("error"), response.error
    assert response.verdict in (pb.ACCEPT, pb.REVIEW, pb.REJECT)
    assert set(response.class_scores) == {"good", "crack", "scratch", "spot"}
    assert sum(response.class_scores.values()) == pytest.approx(1.0, abs=1e-4)
    assert response.model_version


def assert_same_scores(a: pb.InspectResponse, b: pb.InspectResponse, tol: float = 1e-6) -> None:
    assert set(a.class_scores) == set(b.class_scores)
    for name, score in a.class_scores.items():
        assert b.class_scores[name] == pytest.approx(score, abs=tol), name


@pytest.fixture(scope="module")
def service(tiny_bundle):
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                      grace_seconds=1.0)
    running = start_server(cfg, bundle=tiny_bundle, limits=LIMITS)
    owner = None
    try:
        assert running.loaded.wait(60), "the model did not load"
        owner = Service(running)
        assert_answered(owner.reference)
        yield owner
    finally:
        if owner is not None:
            owner.channel.close()
        running.stop(grace=0.5)


# ---------------------------------------------------------------- the corpus


def test_corpus_covers_the_refusals():
    assert len(BAD) >= 40
    assert len({f.name for f in BAD}) == len(BAD)
    assert {f.reason for f in BAD} == REASONS
    assert all(f.keyword for f in BAD)
    assert {f.encoding for f in BAD} >= {0, 1, 2, 3, 4, 5, 6, 99}


def imdecode(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_no_payload_decodes_to_another_pixel_type():
    """Why decode has no reason of its own for another pixel type: the signature check lets only OpenCV's JPEG, PNG
    and BMP decoders run, and none decodes to a pixel type other than 8 or 16 bits. PNG gives 8 or 16 (1-, 8- and
    16-bit PNGs are in the accepted corpus), BMP 8, and JPEG 8 only: the corpus' hand-written encoders make 4- and
    8-bit JPEGs that decode exactly, and 12- and 16-bit ones (lossless, and DCT) that do not decode at all. Only a
    16-bit PNG is shifted to 8 bits; anything else that is not 8-bit would be refused as undecodable."""
    g = frames.gray()
    assert np.array_equal(imdecode(frames.lossless_jpeg(g, 8)), g)
    assert np.array_equal(imdecode(frames.lossless_jpeg(g >> 4, 4)), g >> 4)
    assert np.array_equal(imdecode(frames.flat_jpeg(100, *g.shape, 8)), np.full(g.shape, 100, np.uint8))
    deeper = [f for f in BAD if f.name in ("jpeg-12bit-lossless", "jpeg-16bit-lossless", "jpeg-12bit-dct")]
    assert len(deeper) == 3 and all(imdecode(f.data) is None for f in deeper)
    compressed = [f for f, _ in ACCEPTED + GOOD if f.encoding in (frames.JPEG, frames.PNG, frames.BMP)]
    assert {imdecode(f.data).dtype for f in compressed} == {np.dtype(np.uint8), np.dtype(np.uint16)}
    assert {f.encoding for f in compressed if imdecode(f.data).dtype == np.uint16} == {frames.PNG}


@pytest.mark.parametrize("frame", BAD, ids=[f.name for f in BAD])
def test_unary_bad_frame_is_invalid_argument(service, frame):
    with pytest.raises(grpc.RpcError) as info:
        service.stub.Inspect(request(frame, f"unary-{frame.name}"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details()
    assert frame.keyword in details, details
    assert f"unary-{frame.name}" in details
    # the error model: the same reason word as the stream's error.reason (test_one_stream_answers_the_whole_corpus...)
    details = details_of(info.value)
    assert (details.reason, details.domain) == (frame.reason, DOMAIN)
    assert details.metadata == {"frame_id": f"unary-{frame.name}"}


def test_header_bombs_are_refused_without_decoding(service, monkeypatch):
    calls = []
    imdecode = cv2.imdecode

    def spy(*args, **kwargs):
        calls.append(len(args[0]))
        return imdecode(*args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", spy)
    bombs = [f for f in BAD if f.before_decoding]
    assert len(bombs) >= 8
    for frame in bombs:
        with pytest.raises(grpc.RpcError) as info:
            service.stub.Inspect(request(frame, frame.name), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert frame.keyword in info.value.details()
    assert calls == [], "a bomb reached the decoder"
    assert_answered(service.stub.Inspect(reference_request(), timeout=TIMEOUT))
    assert len(calls) == 1  # the spy does see the server's decoding


def test_one_stream_answers_the_whole_corpus_in_order(service):
    requests, expected = [], []
    for i, frame in enumerate(BAD):
        good, _ = GOOD[i % len(GOOD)]
        requests += [request(frame, f"bad-{i}-{frame.name}"), request(good, f"good-{i}-{good.name}")]
        expected += [frame, None]
    responses = list(service.stub.InspectStream(iter(requests), timeout=TIMEOUT))
    assert len(responses) == len(requests)
    for req, resp, frame in zip(requests, responses, expected):
        assert resp.frame_id == req.frame_id and resp.camera_id == req.camera_id
        if frame is None:
            assert_answered(resp)
        else:
            assert resp.HasField("error"), frame.name
            assert resp.error.code == INVALID, (frame.name, resp.error)
            assert resp.error.reason == frame.reason, (frame.name, resp.error)
            assert frame.keyword in resp.error.message, (frame.name, resp.error.message)
            assert not resp.class_scores and resp.verdict == pb.VERDICT_UNSPECIFIED
    # the server is unharmed: the reference frame gets the answer it got before any bad frame
    after = service.stub.Inspect(reference_request(), timeout=TIMEOUT)
    assert_answered(after)
    assert after.verdict == service.reference.verdict
    assert_same_scores(service.reference, after, tol=1e-6)


# ---------------------------------------------------------------- what is accepted


@pytest.mark.parametrize("frame,image", ACCEPTED, ids=[f.name for f, _ in ACCEPTED])
def test_unusual_frame_is_accepted_like_its_plain_equivalent(service, frame, image):
    got = service.stub.Inspect(request(frame, frame.name), timeout=TIMEOUT)
    assert_answered(got)
    assert got.frame_id == frame.name
    plain = service.stub.Inspect(png_request(image, f"plain-{frame.name}"), timeout=TIMEOUT)
    assert_same_scores(plain, got)


def test_missing_frame_id_is_answered_and_echoed_empty(service):
    frame, _ = GOOD[0]
    no_id = pb.InspectRequest(data=frame.data, encoding=frame.encoding, camera_id="cam-no-id")
    unary = service.stub.Inspect(no_id, timeout=TIMEOUT)
    assert_answered(unary)
    assert unary.frame_id == "" and unary.camera_id == "cam-no-id"
    streamed = list(service.stub.InspectStream(iter([no_id, no_id]), timeout=TIMEOUT))
    assert len(streamed) == 2
    for response in streamed:
        assert_answered(response)
        assert response.frame_id == ""
        assert_same_scores(unary, response)


def test_duplicated_frame_id_in_a_stream_gets_both_answers_in_order(service):
    (first, _), (second, _) = GOOD[0], GOOD[1]
    singles = [service.stub.Inspect(request(f, "same"), timeout=TIMEOUT) for f in (first, second)]
    requests = [request(first, "same", camera_id="first"), request(second, "same", camera_id="second"),
                request(first, "same", camera_id="third")]
    responses = list(service.stub.InspectStream(iter(requests), timeout=TIMEOUT))
    assert [r.camera_id for r in responses] == ["first", "second", "third"]
    assert [r.frame_id for r in responses] == ["same"] * 3
    for response, single in zip(responses, [singles[0], singles[1], singles[0]]):
        assert_answered(response)
        assert_same_scores(single, response)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_unknown_fields_are_ignored(service):
    frame, _ = GOOD[0]
    plain = request(frame, "unknown-fields")
    unknown = (_varint(99 << 3 | 0) + _varint(1)  # field 99, varint
               + _varint(100 << 3 | 2) + _varint(5) + b"extra"  # field 100, length-delimited
               + _varint(4000 << 3 | 5) + b"\x01\x02\x03\x04")  # field 4000, fixed32
    payload = plain.SerializeToString() + unknown
    parsed = pb.InspectRequest.FromString(payload)  # protobuf keeps them aside as unknown fields
    assert parsed != plain
    parsed.DiscardUnknownFields()
    assert parsed == plain
    inspect = service.channel.unary_unary("/inspector.v1.Inspector/Inspect", request_serializer=lambda b: b,
                                          response_deserializer=pb.InspectResponse.FromString)
    response = inspect(payload, timeout=TIMEOUT)
    assert_answered(response)
    assert response.frame_id == "unknown-fields"
    assert_same_scores(service.stub.Inspect(plain, timeout=TIMEOUT), response)
