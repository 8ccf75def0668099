"""The client command against a served model: files, folders, overlays, a video, missing paths."""

import json
from pathlib import Path

import cv2

from inspector.cli import main



def test_client_cli(served, images, tmp_path, capsys):
    running = served[0]
    folder = tmp_path / "frames"
    folder.mkdir()
    names = ["good_0000", "crack_0000", "colour_wide"]
    for name in names:
        cv2.imwrite(str(folder / f"{name}.png"), images[name])
    overlays = tmp_path / "overlays"
    target = f"127.0.0.1:{running.port}"
    assert main(["client", "--target", target, str(folder), "--overlays", str(overlays)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(line["frame_id"]).stem for line in lines] == sorted(names)
    for line in lines:
        assert line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"}
        assert line["model_version"] == "line/v1" and "error" not in line
        assert isinstance(line["anomaly_score"], float) and line["anomaly_score"] > 0
        assert "anomaly_map_png" not in line and "mask_png" not in line
        overlay = cv2.imread(line["overlay"], cv2.IMREAD_UNCHANGED)
        source = images[Path(line["frame_id"]).stem]
        assert overlay.shape == (*source.shape[:2], 3)
    assert sorted(p.name for p in overlays.iterdir()) == sorted(f"{n}_overlay.png" for n in names)

    missing = tmp_path / "nowhere.png"
    assert main(["client", "--target", target, str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No such file" in captured.err and "nowhere.png" in captured.err
    # frames before a missing path are still answered, then the error names the path
    assert main(["client", "--target", target, str(folder / "good_0000.png"), str(missing)]) == 2
    captured = capsys.readouterr()
    [line] = [json.loads(line) for line in captured.out.splitlines()]
    assert line["frame_id"].endswith("good_0000.png") and line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"}
    assert "nowhere.png" in captured.err


def test_client_streams_a_video_file(served, images, tmp_path, capsys):
    video = tmp_path / "line.avi"
    frame = cv2.cvtColor(images["crack_0000"], cv2.COLOR_GRAY2BGR) if images["crack_0000"].ndim == 2 else images[
        "crack_0000"]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
    assert writer.isOpened()
    for _ in range(5):
        writer.write(frame)
    writer.release()
    assert main(["client", "--target", f"127.0.0.1:{served[0].port}", str(video), "--camera-id", "cam-7"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["frame_id"] for line in lines] == [f"{video}#{i}" for i in range(5)]
    assert all(line["camera_id"] == "cam-7" and line["verdict"] in {"ACCEPT", "REVIEW", "REJECT"} for line in lines)

