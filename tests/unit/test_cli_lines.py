"""``inspector predict`` (local) and ``inspector client`` (through the service) print the same JSON line for the same
frame: the same keys, the same value types (``area_px`` an integer in both), the same verdict."""

import json
import shutil

import cv2
import pytest

from inspector.artifacts.bundle import reseal
from inspector.cli import main
from inspector.config import ServeConfig
from inspector.cli.lines import STAGES
from inspector.service.server import start_server

FRAMES = {"crack": "crack_0000.png", "good": "good_0000.png"}


@pytest.fixture(scope="module")
def rejecting_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle with thresholds at 0: every part is rejected and every pixel is a defect pixel, so every
    line carries regions whatever the tiny model learnt."""
    target = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("lines") / "line" / "v1",
                             ignore=shutil.ignore_patterns("export"))
    meta = json.loads((target / "bundle.json").read_text())
    meta |= {"name": "line", "version": "v1"}
    meta["thresholds"] |= {"reject": 0.0, "review": 0.0, "mask": 1e-6, "min_region_area": 0}
    (target / "bundle.json").write_text(json.dumps(meta))
    return reseal(target)


@pytest.fixture(scope="module")
def frames(demo_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for kind, name in FRAMES.items():
        shutil.copy(demo_data / "images" / kind / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)  # a PNG signature, then nothing usable
    return folder


@pytest.fixture(scope="module")
def target(rejecting_bundle):
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0)
    running = start_server(cfg, bundle=rejecting_bundle)
    try:
        assert running.loaded.wait(60), "the model did not load"
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(grace=0.5)


def lines_of(argv, capsys) -> dict[str, dict]:
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {line["frame_id"].rsplit("/", 1)[1]: line for line in lines}


def shape(value):
    """The value's structure: dict keys and element types all the way down (a float is not an int)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_predict_and_client_print_the_same_line(rejecting_bundle, frames, target, tmp_path, capsys):
    local = lines_of(["predict", "--model", str(rejecting_bundle), str(frames), "--device", "cpu"], capsys)
    served = lines_of(["client", "--target", target, str(frames)], capsys)
    assert sorted(local) == sorted(served) == sorted([*FRAMES.values(), "broken.png"])
    for name in FRAMES.values():
        a, b = local[name], served[name]
        assert shape(a) == shape(b), name
        assert a["frame_id"] == b["frame_id"] == str(frames / name) and a["camera_id"] == b["camera_id"] == ""
        assert a["verdict"] == b["verdict"] == "REJECT" and (a["label"], a["defect_class"]) == (b["label"],
                                                                                             b["defect_class"])
        assert a["defect_score"] == pytest.approx(b["defect_score"], abs=1e-4)
        assert a["regions"] and all(isinstance(r["area_px"], int) and r["area_px"] > 0 for r in a["regions"] + b[
            "regions"])
        assert [r["area_px"] for r in a["regions"]] == [r["area_px"] for r in b["regions"]]
        assert set(a["timings_ms"]) == set(STAGES) and a["timings_ms"]["total"] > 0 and b["timings_ms"]["total"] > 0
        assert isinstance(a["anomaly_score"], float) and isinstance(b["by_anomaly"], bool)  # the tiny model has one
    broken_local, broken_served = local["broken.png"], served["broken.png"]
    assert shape(broken_local) == shape(broken_served) == {"frame_id": "str", "camera_id": "str",
                                                           "error": {"reason": "str", "message": "str"}}
    assert broken_local["error"]["reason"] == broken_served["error"]["reason"]


def test_a_camera_id_and_overlays_keep_the_schema(rejecting_bundle, frames, target, tmp_path, capsys):
    crack = str(frames / FRAMES["crack"])
    [local] = lines_of(["predict", "--model", str(rejecting_bundle), crack, "--overlays", str(tmp_path / "a")],
                       capsys).values()
    [served] = lines_of(["client", "--target", target, crack, "--camera-id", "cam-7", "--overlays",
                         str(tmp_path / "b")], capsys).values()
    assert shape(local) == shape(served) and served["camera_id"] == "cam-7"
    for line in (local, served):
        assert cv2.imread(line["overlay"]).shape[:2] == cv2.imread(crack, cv2.IMREAD_UNCHANGED).shape[:2]
