"""The audit sink keeps what it should, never blocks, respects its limits, and feeds retraining."""

import json
import time

import cv2
import grpc
import numpy as np
import pytest

from inspector.cli import main
from inspector.config import ServeConfig
from inspector.service.audit import AuditConfig, AuditRecord, AuditSink
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc


def record(verdict: str, frame_id: str = "f", label: str = "crack") -> AuditRecord:
    return AuditRecord("cam-1", frame_id, verdict, label, "crack", 0.9, {"good": 0.1, "crack": 0.9}, [], "m/v1")


def png(value: int = 100, shape=(40, 40)) -> bytes:
    return cv2.imencode(".png", np.full(shape, value, np.uint8))[1].tobytes()


def wait_lines(path, n, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return [json.loads(line) for line in path.read_text().splitlines()]
        time.sleep(0.02)
    raise AssertionError(f"fewer than {n} lines in {path}")


def test_rejects_and_reviews_are_kept_accepts_are_sampled(tmp_path):
    results = []
    sink = AuditSink(AuditConfig(str(tmp_path), sample_accept=0.0), on_result=results.append)
    sink.offer(record("REJECT", "r1"), png(), "PNG")
    sink.offer(record("REVIEW", "r2"), png(), "PNG")
    sink.offer(record("ACCEPT", "a1", "good"), png(), "PNG")
    raw = np.arange(64 * 48, dtype=np.uint32).astype(np.uint8).reshape(48, 64)
    sink.offer(record("REJECT", "raw/1"), raw.tobytes(), "RAW_GRAY8", 64, 48)
    sink.close()
    lines = wait_lines(tmp_path / "index.jsonl", 3)
    assert [line["frame_id"] for line in lines] == ["r1", "r2", "raw/1"]
    assert sorted(results) == ["sampled_out", "written", "written", "written"]
    stored = cv2.imread(str(tmp_path / lines[2]["image"]), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(stored, raw)  # raw frames kept losslessly
    assert "/" not in lines[2]["image"].split("/")[-1] and lines[0]["verdict"] == "REJECT"


def test_rate_limit_and_quota_drop_without_blocking(tmp_path):
    results = []
    sink = AuditSink(AuditConfig(str(tmp_path / "rate"), max_per_second=2), on_result=results.append)
    started = time.monotonic()
    for i in range(50):
        sink.offer(record("REJECT", f"x{i}"), png(), "PNG")
    assert time.monotonic() - started < 0.5  # offering never waits on the disk
    sink.close()
    assert results.count("written") <= 3 and results.count("dropped_rate") >= 47

    results.clear()
    small = AuditSink(AuditConfig(str(tmp_path / "quota"), quota_bytes=6000), on_result=results.append)
    noise = np.random.default_rng(0).integers(0, 256, (40, 40), dtype=np.uint8)  # ~1.7 kB as PNG
    for i in range(5):
        small.offer(record("REJECT", f"q{i}"), cv2.imencode(".png", noise)[1].tobytes(), "PNG")
    small.close()
    assert "dropped_quota" in results and results.count("written") >= 1
    assert sum(p.stat().st_size for p in (tmp_path / "quota").rglob("*") if p.is_file()) <= 6000


def test_a_failing_disk_degrades_the_audit_only(tmp_path):
    results = []
    sink = AuditSink(AuditConfig(str(tmp_path)), on_result=results.append)
    (tmp_path / "frames").write_text("a file where a folder must go")  # every write now fails
    sink.offer(record("REJECT"), png(), "PNG")
    sink.close()
    assert results == ["error"]


def test_service_audits_and_export_feeds_retraining(tiny_bundle, tmp_path, capsys):
    audit = tmp_path / "audit"
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                      grace_seconds=1.0, audit_dir=str(audit), audit_sample_accept=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    try:
        assert running.loaded.wait(60)
        stub = pb_grpc.InspectorStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))
        for i in range(3):
            stub.Inspect(pb.InspectRequest(data=png(60 + 40 * i, (64, 64)), encoding=pb.PNG, frame_id=f"p{i}"),
                         timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Inspect(pb.InspectRequest(data=b"", encoding=pb.PNG, frame_id="bad"), timeout=30)
    finally:
        running.stop(grace=1)
    lines = wait_lines(audit / "index.jsonl", 3)
    assert sorted(line["frame_id"] for line in lines) == ["p0", "p1", "p2"]  # every answered frame, no bad one
    assert all(line["model_version"] == "tiny/v1" for line in lines)
    reviews = [{"image": lines[0]["image"], "label": "good"}, {"image": lines[1]["image"], "label": "crack"}]
    (audit / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
    assert main(["audit", "export", "--audit", str(audit), "--out", str(tmp_path / "data")]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == {"good": 1, "crack": 1}
    assert len(list((tmp_path / "data" / "images" / "crack").iterdir())) == 1
    assert main(["audit", "export", "--audit", str(audit), "--out", str(tmp_path / "all"), "--use-model-labels"]) == 0
    assert sum(json.loads(capsys.readouterr().out)["images"].values()) == 3


def test_the_models_mask_and_anomaly_map_are_kept_beside_the_frame(tmp_path):
    from inspector.service.audit import Maps

    sink = AuditSink(AuditConfig(str(tmp_path)))
    probs = np.zeros((40, 40), np.float32)
    probs[5:10, 20:30] = 0.9
    anomaly = np.full((40, 40), 1.0, np.float32)
    sink.offer(record("REJECT", "part.png"), png(), "PNG", maps=Maps(probs, 0.5, anomaly))
    sink.offer(record("REVIEW", "clean"), png(), "PNG", maps=Maps(np.zeros((40, 40), np.float32), 0.5, None))
    sink.close()
    kept, clean = wait_lines(tmp_path / "index.jsonl", 2)
    assert kept["image"].endswith("_cam-1_part.png") and kept["mask"] == kept["image"][:-4] + ".mask.png"
    mask = cv2.imread(str(tmp_path / kept["mask"]), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (40, 40) and set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 50
    assert np.all(cv2.imread(str(tmp_path / kept["anomaly_map"]), cv2.IMREAD_GRAYSCALE) == 128)
    assert clean["mask"] == "" and clean["anomaly_map"] == ""  # nothing marked: no file
