"""After known requests, the scraped /metrics shows the right counts and labels, and histograms whose buckets hold the
values the answers report."""

import time
import urllib.error
import urllib.request

import cv2
import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from inspector.config import ServeConfig
from inspector.service.metrics import AREA_BUCKETS, LATENCY_BUCKETS, RATIO_BUCKETS, STAGES, Metrics
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


def parse(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape(running) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=10).read().decode()


DEFECTS = ("crack", "scratch", "spot")
# thresholds that give every frame one verdict, whatever the tiny model's scores (the anomaly head off: a part the
# classifier accepts stays accepted)
ALWAYS = {"REJECT": pb.Thresholds(reject=0.0, review=0.0, per_class={c: 0.0 for c in DEFECTS}),
          "REVIEW": pb.Thresholds(reject=1.0, review=0.0, per_class={c: 1.0 for c in DEFECTS}),
          "ACCEPT": pb.Thresholds(reject=1.0, review=1.0, per_class={c: 1.0 for c in DEFECTS}, anomaly=1e6)}


@pytest.fixture(scope="module")
def scraped(tiny_bundle, demo_data):
    """Three unary frames, each under thresholds that force another verdict, an empty one, and a stream of two good
    frames around a bad one; the scrape, the answers and the drift windows after them."""
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_host="127.0.0.1", metrics_port=0,
                      watch_seconds=0.0, grace_seconds=1.0, cameras=("cam-1",))
    running = start_server(cfg, bundle=tiny_bundle)
    assert running.loaded.wait(60)

    def png(name: str) -> bytes:
        path = next((demo_data / "images").rglob(f"{name}.png"))
        return cv2.imencode(".png", cv2.imread(str(path)))[1].tobytes()

    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    answers = []
    try:
        for i, (verdict, image) in enumerate(zip(ALWAYS, ("spot_0000", "crack_0000", "good_0000"))):
            admin.SetThresholds(pb.SetThresholdsRequest(thresholds=ALWAYS[verdict]), timeout=30)
            answer = stub.Inspect(pb.InspectRequest(data=png(image), encoding=pb.PNG, frame_id=f"u{i}",
                                                    camera_id="cam-1"), timeout=30)
            assert pb.Verdict.Name(answer.verdict) == verdict, answer
            answers.append(answer)
        with pytest.raises(grpc.RpcError):
            stub.Inspect(pb.InspectRequest(data=b"", encoding=pb.PNG, frame_id="empty"), timeout=30)
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=ALWAYS["REVIEW"]), timeout=30)
        stream = [pb.InspectRequest(data=png("scratch_0000"), encoding=pb.PNG, frame_id="s0", camera_id="cam-9"),
                  pb.InspectRequest(data=b"garbage", encoding=pb.JPEG, frame_id="s1"),
                  pb.InspectRequest(data=png("spot_0001"), encoding=pb.PNG, frame_id="s2", camera_id="cam-1")]
        answers += list(stub.InspectStream(iter(stream), timeout=30))
        assert len(answers) == 6
        text = scrape(running)
        windows = running.models.drift.frames()
    finally:
        channel.close()
        running.stop(grace=1)
    samples = parse(text)
    samples[("drift windows", ())] = windows
    samples[("answers", ())] = [a for a in answers if not a.HasField("error")]
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name, **labels):
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def nonzero(samples, name: str) -> dict[tuple, float]:
    """The samples of ``name`` above 0, by their sorted labels."""
    return {ls: v for (n, ls), v in samples.items() if n == name and v}


def label_values(samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), v in samples.items() if n == name and v}


def assert_buckets(samples, name: str, buckets, observed: list[float], rel: float = 1e-5, **labels) -> None:
    """Each cumulative bucket of histogram ``name`` counts the ``observed`` values at or under its bound (within
    ``rel``: the answers carry them as float32), and ``_sum`` adds them up."""
    for bound in buckets:
        got = value(samples, f"{name}_bucket", le=floatToGoString(bound), **labels)
        at_most = sum(v <= bound * (1 + rel) for v in observed)
        at_least = sum(v <= bound * (1 - rel) for v in observed)
        assert at_least <= got <= at_most, (name, labels, bound, got, sorted(observed))
    assert value(samples, f"{name}_bucket", le="+Inf", **labels) == len(observed)
    assert value(samples, f"{name}_count", **labels) == len(observed)
    assert value(samples, f"{name}_sum", **labels) == pytest.approx(sum(observed), rel=rel * 10, abs=1e-7)


def test_frames_by_verdict_and_bounded_camera_labels(scraped):
    answers = scraped[("answers", ())]
    assert {pb.Verdict.Name(a.verdict) for a in answers} == {"ACCEPT", "REVIEW", "REJECT"}
    assert total(scraped, "inspector_frames_total") == 5
    assert total(scraped, "inspector_frames_total", camera="cam-1") == 4
    assert total(scraped, "inspector_frames_total", camera="other") == 1  # cam-9 is not configured
    assert not any(dict(ls).get("camera") == "cam-9" for _, ls in scraped)
    frames, defects = {}, {}
    for a in answers:
        verdict, camera = pb.Verdict.Name(a.verdict), a.camera_id if a.camera_id == "cam-1" else "other"
        frames[verdict, camera] = frames.get((verdict, camera), 0) + 1
        if verdict != "ACCEPT":
            key = (a.defect_class, verdict, camera)
            defects[key] = defects.get(key, 0) + 1
    assert nonzero(scraped, "inspector_frames_total") == {
        (("camera", c), ("verdict", v)): n for (v, c), n in frames.items()}
    assert nonzero(scraped, "inspector_defects_total") == {
        (("camera", c), ("defect_class", d), ("verdict", v)): n for (d, v, c), n in defects.items()}


def test_invalid_frames_and_request_status(scraped):
    assert value(scraped, "inspector_invalid_frames_total", reason="empty") == 1
    assert value(scraped, "inspector_invalid_frames_total", reason="encoding_mismatch") == 1
    assert value(scraped, "inspector_frame_errors_total", code="INVALID_ARGUMENT") == 2
    assert value(scraped, "inspector_requests_total", method="Inspect", code="OK") == 3
    assert value(scraped, "inspector_requests_total", method="Inspect", code="INVALID_ARGUMENT") == 1
    assert value(scraped, "inspector_requests_total", method="InspectStream", code="OK") == 1
    assert value(scraped, "inspector_requests_total", method="SetThresholds", code="OK") == 4
    assert value(scraped, "inspector_request_seconds_count", method="Inspect") == 4


def test_stage_histograms_hold_the_timings_the_answers_report(scraped):
    answers = scraped[("answers", ())]
    assert label_values(scraped, "inspector_stage_seconds_count", "stage") == set(STAGES)
    for stage in STAGES:  # each answer reports its stages in ms; the histograms observe them in seconds
        seconds = [getattr(a.timings, f"{stage}_ms") / 1000.0 for a in answers]
        assert_buckets(scraped, "inspector_stage_seconds", LATENCY_BUCKETS, seconds, stage=stage)


def test_score_histograms_hold_the_scores_the_answers_report(scraped):
    answers = scraped[("answers", ())]
    assert_buckets(scraped, "inspector_defect_score_ratio", RATIO_BUCKETS, [a.defect_score for a in answers])
    rejected_or_reviewed = [a for a in answers if a.verdict != pb.ACCEPT]
    areas = [sum(r.area_fraction for r in a.regions) for a in rejected_or_reviewed]
    assert_buckets(scraped, "inspector_defect_area_ratio", AREA_BUCKETS, areas, rel=1e-4)


def test_batch_sizes_and_gauges(scraped):
    assert value(scraped, "inspector_batch_size_frames_sum") == 5  # warm-up passes are not counted
    passes = value(scraped, "inspector_batch_size_frames_count")
    assert passes in (4, 5)  # the unary frames one by one, the stream's two in one pass or in two
    assert value(scraped, "inspector_batch_size_frames_bucket", le="1.0") == 2 * passes - 5  # passes of one frame
    assert value(scraped, "inspector_batch_size_frames_bucket", le="2.0") == passes
    assert value(scraped, "inspector_in_flight_frames") == 0 and value(scraped, "inspector_queue_depth_frames") == 0


def test_drift_gauges_wait_for_enough_frames(scraped):
    for statistic in ("defect_score", "brightness", "contrast", "sharpness"):
        psi = value(scraped, "inspector_drift_psi", statistic=statistic)
        assert psi != psi  # NaN: 5 frames are too few to judge drift
    assert scraped[("drift windows", ())] == {s: 5 for s in ("defect_score", "brightness", "contrast", "sharpness")}


def test_model_info_and_swaps(scraped):
    infos = [dict(ls) for (n, ls), v in scraped.items() if n == "inspector_model_info" and v == 1]
    assert infos == [{"name": "tiny", "version": "v1", "backbone": "efficientnet_lite0"}]
    assert value(scraped, "inspector_model_swaps_total", result="success") == 1


def test_anomaly_scores_of_answered_frames(scraped):
    answers = scraped[("answers", ())]
    assert len(answers) == 5 and all(a.HasField("anomaly_score") for a in answers)
    assert value(scraped, "inspector_anomaly_score_ratio_count") == 5  # the invalid frames have none
    assert value(scraped, "inspector_anomaly_score_ratio_bucket", le="+Inf") == 5
    assert value(scraped, "inspector_anomaly_score_ratio_sum") == pytest.approx(
        sum(a.anomaly_score for a in answers), rel=1e-4)
    below_reference = sum(a.anomaly_score <= 1.0 for a in answers)
    assert value(scraped, "inspector_anomaly_score_ratio_bucket", le="1.0") == below_reference
    for verdict in ("REVIEW", "REJECT"):
        flagged = sum(a.by_anomaly and pb.Verdict.Name(a.verdict) == verdict for a in answers)
        assert value(scraped, "inspector_anomaly_verdicts_total", verdict=verdict) == flagged


def test_anomaly_verdicts_are_counted(tiny_bundle, demo_data):
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_host="127.0.0.1", metrics_port=0,
                      watch_seconds=0.0, grace_seconds=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    assert running.loaded.wait(60)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub, admin = pb_grpc.InspectorStub(channel), pb_grpc.AdminStub(channel)
    png = cv2.imencode(".png", cv2.imread(str(demo_data / "images" / "good" / "good_0000.png")))[1].tobytes()
    try:
        # the classifier never rejects nor reviews; every anomaly score reaches 0: the anomaly head rejects all
        never = pb.Thresholds(reject=1.0, review=1.0, per_class={c: 1.0 for c in ("crack", "scratch", "spot")},
                              anomaly=0.0, anomaly_verdict=pb.REJECT)
        admin.SetThresholds(pb.SetThresholdsRequest(thresholds=never), timeout=30)
        for i in range(2):
            answer = stub.Inspect(pb.InspectRequest(data=png, encoding=pb.PNG, frame_id=f"a{i}"), timeout=30)
            assert answer.verdict == pb.REJECT and answer.by_anomaly
        samples = parse(scrape(running))
    finally:
        channel.close()
        running.stop(grace=1)
    assert value(samples, "inspector_anomaly_verdicts_total", verdict="REJECT") == 2
    assert value(samples, "inspector_anomaly_verdicts_total", verdict="REVIEW") == 0
    assert value(samples, "inspector_frames_total", verdict="REJECT", camera="other") == 2
    assert value(samples, "inspector_anomaly_score_ratio_count") == 2


def test_frames_without_an_anomaly_head_observe_no_anomaly_score():
    metrics = Metrics(CollectorRegistry())
    metrics.observe_frame("cam", "ACCEPT", "crack", 0.1, 0.0, {}, anomaly_score=None)
    metrics.observe_frame("cam", "REVIEW", "crack", 0.1, 0.0, {}, anomaly_score=1.7, by_anomaly=True)
    registry = metrics.registry
    assert registry.get_sample_value("inspector_anomaly_score_ratio_count") == 1
    assert registry.get_sample_value("inspector_anomaly_score_ratio_bucket", {"le": "1.5"}) == 0
    assert registry.get_sample_value("inspector_anomaly_score_ratio_bucket", {"le": "2.0"}) == 1
    assert registry.get_sample_value("inspector_anomaly_verdicts_total", {"verdict": "REVIEW"}) == 1
    assert registry.get_sample_value("inspector_frames_total", {"verdict": "ACCEPT", "camera": "other"}) == 1


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_metrics_port_serves_healthz_and_nothing_else(tiny_bundle):
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_host="127.0.0.1", metrics_port=0,
                      watch_seconds=0.0, grace_seconds=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    base = f"http://127.0.0.1:{running.metrics_port}"
    try:
        assert running.loaded.wait(60)
        deadline = time.monotonic() + 30  # readiness is published by the health loop, shortly after the warm-up
        while _http_status(f"{base}/healthz") != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _http_status(f"{base}/healthz") == 200
        assert [_http_status(f"{base}{path}") for path in ("/", "/nope", "/metrics")] == [404, 404, 200]
        assert "process_resident_memory_bytes" in scrape(running)
    finally:
        running.stop(grace=1)
