"""Which model answers: hot swaps under load, the store watch, the Admin service (versions, thresholds)."""

import threading
import time

import grpc
import numpy as np
import pytest

from inspector.artifacts.store import active_version, promote
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import (VERDICT_NAMES, DEFECT_CLASSES, TIMEOUT, V2_THRESHOLDS, copy_version, wait_until,
                             png_request, decode_mask, decode_anomaly_map, assert_valid, inspect_version)


def test_hot_swap_during_a_stream_then_rollback(make_store, servers, images):
    model_dir = make_store()
    running = servers.start(model_dir)
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "crack_0000", "scratch_0001", "spot_0000")]
    result: dict = {}

    def activate() -> None:
        try:
            result["info"] = admin.ActivateVersion(pb.ActivateVersionRequest(version="v2"), timeout=TIMEOUT)
        except grpc.RpcError as err:  # reported by the assertions below
            result["error"] = err

    swapper = threading.Thread(target=activate)

    def requests():
        for i in range(30):
            if i == 10:
                swapper.start()
            if i == 25:
                swapper.join(TIMEOUT)  # the last frames are sent after the swap finished
            yield png_request(frames[i % len(frames)], f"f{i}")
            time.sleep(0.03)

    responses = list(stub.InspectStream(requests(), timeout=60))
    assert "error" not in result, result.get("error")
    assert (result["info"].name, result["info"].version) == ("line", "v2")
    assert [r.frame_id for r in responses] == [f"f{i}" for i in range(30)]
    for i, response in enumerate(responses):
        assert_valid(response, frames[i % len(frames)].shape, version=response.model_version)
    versions = [r.model_version for r in responses]
    assert set(versions) == {"line/v1", "line/v2"}
    assert versions[:10] == ["line/v1"] * 10 and versions[25:] == ["line/v2"] * 5
    switch = versions.index("line/v2")
    assert versions[switch:] == ["line/v2"] * (30 - switch), versions
    assert active_version(model_dir) == "v2"

    info = admin.Rollback(pb.RollbackRequest(), timeout=TIMEOUT)
    assert (info.name, info.version) == ("line", "v1")
    assert active_version(model_dir) == "v1"
    assert inspect_version(stub, images["good_0000"]) == "line/v1"

    with pytest.raises(grpc.RpcError) as err:
        admin.ActivateVersion(pb.ActivateVersionRequest(version="v9"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "v9" in err.value.details() and "line/v1" in err.value.details()
    assert inspect_version(stub, images["good_0000"]) == "line/v1"
    assert active_version(model_dir) == "v1"


def test_hot_swaps_under_concurrent_streams_and_unary_calls(make_store, servers, images, bundle_thresholds):
    """Swaps back and forth while 3 streams and 2 unary callers run: no call fails, every answer is complete, and its
    thresholds are those of the version it names (v1 and v2 answer differently)."""
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    expected = {"line/v1": bundle_thresholds.reject, "line/v2": V2_THRESHOLDS["reject"]}
    frames = [images[n] for n in ("good_0000", "crack_0000", "scratch_0001", "spot_0000")]
    done, answers, failures = threading.Event(), [], []

    def stream(k: int) -> None:
        def requests():
            i = 0
            while not done.is_set():
                yield png_request(frames[i % 4], f"s{k}-{i}")
                i += 1
        try:
            answers.extend(stub.InspectStream(requests(), timeout=120))
        except grpc.RpcError as err:
            failures.append(err)

    def unary(k: int) -> None:
        i = 0
        while not done.is_set():
            try:
                answers.append(stub.Inspect(png_request(frames[i % 4], f"u{k}-{i}"), timeout=TIMEOUT))
            except grpc.RpcError as err:
                failures.append(err)
            i += 1

    callers = [threading.Thread(target=stream, args=(k,)) for k in range(3)]
    callers += [threading.Thread(target=unary, args=(k,)) for k in range(2)]
    for caller in callers:
        caller.start()
    try:
        for version in ("v2", "v1", "v2", "v1"):
            admin.ActivateVersion(pb.ActivateVersionRequest(version=version), timeout=60)
            seen = len(answers)
            wait_until(lambda: len(answers) > seen + 5, timeout=60)  # answers from this version come through
    finally:
        done.set()
        for caller in callers:
            caller.join(120)
    assert failures == []
    assert {a.model_version for a in answers} == {"line/v1", "line/v2"}
    for answer in answers:
        assert_valid(answer, frames[0].shape, version=answer.model_version)
        assert answer.thresholds.reject == pytest.approx(expected[answer.model_version])
    assert running.metrics.registry.get_sample_value("inspector_model_swaps_total", {"result": "success"}) == 5


def test_store_watch_follows_promotions_and_refuses_a_corrupt_bundle(make_store, servers, images, caplog):
    model_dir = make_store()
    running = servers.start(model_dir, watch_seconds=0.2)
    stub = pb_grpc.InspectorStub(servers.channel(running))
    frame = images["good_0000"]
    assert inspect_version(stub, frame) == "line/v1"

    promote(model_dir, "v2")
    wait_until(lambda: inspect_version(stub, frame) == "line/v2", timeout=10, interval=0.1)

    broken = copy_version(model_dir / "v1", model_dir, "v3")
    weights = (broken / "weights.pt").read_bytes()
    (broken / "weights.pt").write_bytes(weights[: len(weights) // 2])
    caplog.set_level("ERROR", logger="inspector.service.models")
    promote(model_dir, "v3")
    wait_until(lambda: any("line/v3" in r.getMessage() for r in caplog.records), timeout=10, interval=0.1)
    assert any("truncated" in r.getMessage() for r in caplog.records)
    time.sleep(0.5)  # a few more polls: the bad version is not retried into service
    response = stub.Inspect(png_request(frame, "after-bad"), timeout=TIMEOUT)
    assert_valid(response, frame.shape, version="line/v2")
    assert running.models.current.bundle.version == "v2"


def test_list_models(served):
    admin = pb_grpc.AdminStub(served[2])
    listing = admin.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT)
    assert listing.serving == "line/v1"
    assert [(v.name, v.version, v.active) for v in listing.versions] == [("line", "v1", True), ("line", "v2", False)]
    for version in listing.versions:
        assert version.created_at and "val_macro_f1" in version.validation


def test_set_thresholds(make_store, servers, images, bundle_thresholds):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "good_0001", "crack_0001", "spot_0001")]

    with pytest.raises(grpc.RpcError) as err:
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(reject=0.4, review=0.6, mask=0.5)),
                            timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "review <= reject" in err.value.details()
    echoed = stub.Inspect(png_request(frames[0], "unchanged"), timeout=TIMEOUT).thresholds
    assert echoed.reject == pytest.approx(bundle_thresholds.reject)

    partial = pb.Thresholds(reject=0.0, review=0.0)  # unset fields keep their values
    new = pb.Thresholds(reject=0.0, review=0.0, mask=bundle_thresholds.mask, mask_weight=bundle_thresholds.mask_weight,
                        min_region_area=bundle_thresholds.min_region_area, per_class={},
                        anomaly=bundle_thresholds.anomaly,
                        anomaly_verdict=pb.Verdict.Value(bundle_thresholds.anomaly_verdict))
    assert admin.SetThresholds(pb.SetThresholdsRequest(thresholds=partial), timeout=TIMEOUT) == new
    for i, frame in enumerate(frames):
        response = stub.Inspect(png_request(frame, f"t{i}"), timeout=TIMEOUT)
        assert response.verdict == pb.REJECT and response.label == response.defect_class
        assert response.thresholds == new
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).thresholds == new


def test_anomaly_thresholds_decide_what_the_classifier_accepts(make_store, servers, images):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    frames = [images[n] for n in ("good_0000", "crack_0001", "colour_wide")]
    # the classifier never rejects nor reviews (a defect score reaches 1.0 only if p(good) is exactly 0), and any
    # anomaly score reaches 0: every frame is rejected by the anomaly head
    never = pb.Thresholds(reject=1.0, review=1.0, per_class={c: 1.0 for c in DEFECT_CLASSES}, anomaly=0.0,
                          anomaly_verdict=pb.REJECT, mask=0.2)  # mask: anomaly at 1/4 of the good-part reference
    echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=never), timeout=TIMEOUT)
    assert (echoed.anomaly, echoed.anomaly_verdict, echoed.reject) == (0.0, pb.REJECT, 1.0)
    flagged_px = 0
    for i, frame in enumerate(frames):
        response = stub.Inspect(png_request(frame, f"a{i}", return_mask=True), timeout=TIMEOUT)
        assert response.defect_score < 1.0
        assert response.verdict == pb.REJECT and response.by_anomaly and response.label == "anomaly"
        assert response.thresholds == echoed
        assert all(r.defect_class == "anomaly" for r in response.regions)
        # the mask is where the part differs from good ones: the anomaly map at the mask threshold, regions inside it
        mask, heat = decode_mask(response), decode_anomaly_map(
            stub.Inspect(png_request(frame, f"a{i}-map", return_anomaly_map=True), timeout=TIMEOUT))
        assert mask.shape == heat.shape == frame.shape[:2]
        expected = heat.astype(np.float64) / 255.0 >= echoed.mask
        assert np.mean((mask > 0) != expected) < 0.01
        flagged_px += np.count_nonzero(mask)
        for r in response.regions:
            assert np.count_nonzero(mask[r.y:r.y + r.height, r.x:r.x + r.width]) >= r.area_px
    assert flagged_px > 0, "some part should differ from the good ones somewhere"

    # a partial update keeps the anomaly threshold: flagged parts now go to review, labelled good
    echoed = admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(anomaly_verdict=pb.REVIEW)),
                                 timeout=TIMEOUT)
    assert (echoed.anomaly, echoed.anomaly_verdict) == (0.0, pb.REVIEW)
    response = stub.Inspect(png_request(frames[0], "review"), timeout=TIMEOUT)
    assert (response.verdict, response.by_anomaly, response.label) == (pb.REVIEW, True, "good")

    # an anomaly threshold above any score: the classifier's verdict (accept) stands
    admin.SetThresholds(pb.SetThresholdsRequest(thresholds=pb.Thresholds(anomaly=1e9)), timeout=TIMEOUT)
    response = stub.Inspect(png_request(frames[0], "accept"), timeout=TIMEOUT)
    assert (response.verdict, response.by_anomaly, response.label) == (pb.ACCEPT, False, "good")
    assert response.HasField("anomaly_score") and response.regions == []


def test_invalid_anomaly_thresholds_are_refused(make_store, servers, images, bundle_thresholds):
    running = servers.start(make_store())
    channel = servers.channel(running)
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    cases = [(pb.Thresholds(anomaly_verdict=pb.ACCEPT), "REVIEW or REJECT, got ACCEPT"),
             (pb.Thresholds(anomaly_verdict=pb.VERDICT_UNSPECIFIED, anomaly=0.0), "got VERDICT_UNSPECIFIED"),
             (pb.Thresholds(anomaly=-0.5), "anomaly threshold must be >= 0"),
             (pb.Thresholds(anomaly=float("nan"), anomaly_verdict=pb.REJECT), "anomaly threshold must be >= 0")]
    for thresholds, words in cases:
        with pytest.raises(grpc.RpcError) as err:
            admin.SetThresholds(pb.SetThresholdsRequest(thresholds=thresholds), timeout=TIMEOUT)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in err.value.details()
    kept = stub.Inspect(png_request(images["good_0000"], "kept"), timeout=TIMEOUT).thresholds  # nothing changed
    assert kept.anomaly == pytest.approx(bundle_thresholds.anomaly)
    assert VERDICT_NAMES[kept.anomaly_verdict] == bundle_thresholds.anomaly_verdict

