"""The review station over HTTP: the JSON API saves what the pages send, the token guards every path, nothing
outside the audit folder is served, ``inspector review`` binds loopback, and reviewers answering at once through a
real server leave every answer in reviews.jsonl exactly once."""

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import threading

import cv2
import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from inspector.review.app import COOKIE, create_app
from inspector.review.server import is_loopback, review_server

DAY = "frames/2024-05-01"
SIZE = (64, 48)  # frame width, height
CLASSES = {"good": 0.2, "crack": 0.5, "scratch": 0.3}
TOKEN = "s3cret-token"


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def b64(pixels: np.ndarray) -> str:
    return base64.b64encode(png(pixels)).decode()


def image(i: int) -> str:
    return f"{DAY}/f{i}.png"


@pytest.fixture
def audit(tmp_path):
    """An audit folder of 8 REJECT frames (f7 the newest), each with a model mask; f0 also with an anomaly map."""
    root = tmp_path / "audit"
    (root / DAY).mkdir(parents=True)
    lines = []
    for i in range(8):
        cv2.imwrite(str(root / image(i)), np.full(SIZE[::-1], 60 + i, np.uint8))
        mask = np.zeros(SIZE[::-1], np.uint8)
        mask[10:20, 10:30] = 255
        cv2.imwrite(str(root / f"{DAY}/f{i}.mask.png"), mask)
        lines.append({"camera_id": f"cam-{i % 2}", "frame_id": f"f{i}", "verdict": "REJECT", "label": "crack",
                      "defect_class": "crack", "defect_score": 0.9, "class_scores": CLASSES,
                      "regions": [{"defect_class": "crack", "x": 10, "y": 10, "width": 20, "height": 10,
                                   "area_px": 200, "area_fraction": 200 / 3072, "max_score": 0.95}],
                      "model_version": "m/v1", "capture_time": "", "received_at": f"2024-05-01T10:00:0{i}.000+00:00",
                      "image": image(i), "mask": f"{DAY}/f{i}.mask.png", "anomaly_map": ""})
    cv2.imwrite(str(root / f"{DAY}/f0.anomaly.png"), np.full(SIZE[::-1], 128, np.uint8))
    lines[0]["anomaly_map"] = f"{DAY}/f0.anomaly.png"
    (root / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "secret.png").write_bytes(png(np.zeros((4, 4), np.uint8)))  # beside the folder, never served
    (root / DAY / "link.png").symlink_to(tmp_path / "secret.png")
    return root


@pytest.fixture
def client(audit):
    with TestClient(create_app(audit)) as test_client:
        yield test_client


def reviews(root) -> list[dict]:
    return [json.loads(line) for line in (root / "reviews.jsonl").read_text().splitlines()]


def test_pages_static_files_and_listing(client, audit):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for name in ("filter-verdict", "filter-camera", "filter-class", "filter-version", "filter-reviewed"):
        assert f'id="{name}"' in page.text
    frame_page = client.get("/frame", params={"image": image(3)}).text
    for name in ("frame", "layer-mask", "layer-regions", "show-mask", "show-regions", "show-anomaly", "confirm",
                 "label", "save", "erase", "brush", "eraser", "brush-size", "status", "answer"):
        assert f'id="{name}"' in frame_page
    summary_page = client.get("/summary").text
    assert all(f'id="{name}"' in summary_page for name in ("reviewed-count", "agreement", "escapes"))
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "text/css" in client.get("/static/style.css").headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]

    listing = client.get("/api/frames", params={"camera": "cam-1"}).json()
    assert [f["image"] for f in listing["frames"]] == [image(7), image(5), image(3), image(1)]
    assert (listing["count"], listing["total"], listing["frames"][0]["answer"]) == (4, 8, None)
    assert listing["options"]["camera"] == ["cam-0", "cam-1"]
    assert len(client.get("/api/frames", params={"limit": "2"}).json()["frames"]) == 2
    assert client.get("/api/frames", params={"reviewed": "maybe"}).status_code == 400


def test_files_and_thumbnails(client, audit):
    big = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    cv2.imwrite(str(audit / DAY / "big.png"), big)
    frame = client.get(f"/files/{image(2)}")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/png"
    assert frame.content == (audit / image(2)).read_bytes()
    thumb = client.get(f"/thumbs/{DAY}/big.png")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    assert client.get(f"/thumbs/{DAY}/big.png").content == thumb.content  # from the cache
    assert client.get(f"/thumbs/{DAY}/missing.png").status_code == 404
    assert client.get("/files/index.jsonl").status_code == 404  # images only


def test_confirm_paint_erase_and_reload(client, audit):
    confirmed = client.post("/api/reviews", json={"image": image(7), "label": "crack", "mask": "model",
                                                  "reviewer": "ann"})
    assert confirmed.status_code == 200
    assert {k: confirmed.json()[k] for k in ("image", "label", "mask", "reviewer")} == {
        "image": image(7), "label": "crack", "mask": "model", "reviewer": "ann"}

    painted = np.zeros(SIZE[::-1], np.uint8)
    painted[5:15, 40:60] = 255
    saved = client.post("/api/reviews", json={"image": image(6), "label": "scratch", "mask": "painted",
                                              "mask_png": b64(painted)}).json()
    assert saved["mask"] == "reviews/masks/2024-05-01/f6.0.png"
    stored = cv2.imread(str(audit / saved["mask"]), cv2.IMREAD_UNCHANGED)
    assert stored.shape == SIZE[::-1] and np.array_equal(stored, painted)
    served = client.get(f"/files/{saved['mask']}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"

    erased = client.post("/api/reviews", json={"image": image(5), "label": "crack", "mask": "none"}).json()
    assert erased["mask"] == "none"
    assert [(r["image"], r["mask"]) for r in reviews(audit)] == [
        (image(7), "model"), (image(6), saved["mask"]), (image(5), "none")]

    again = client.get("/api/frame", params={"image": image(6)}).json()  # the page reloaded
    assert again["answer"]["label"] == "scratch" and again["answer_mask"] == saved["mask"]
    assert again["labels"] == ["good", "crack", "scratch"]
    assert (again["prev"], again["next"], again["next_unreviewed"]) == (image(7), image(5), image(4))
    first = client.get("/api/frame", params={"image": image(7)}).json()
    assert first["answer_mask"] == f"{DAY}/f7.mask.png" and first["record"]["regions"][0]["max_score"] == 0.95
    queue = client.get("/api/frames", params={"reviewed": "no"}).json()
    assert [f["image"] for f in queue["frames"]] == [image(i) for i in (4, 3, 2, 1, 0)]
    after = client.get("/api/frame", params={"image": image(5), "reviewed": "no"}).json()
    assert (after["position"], after["next_unreviewed"]) == (None, image(4))


@pytest.mark.parametrize("body, status, message", [
    ({"image": image(1), "label": "dent", "mask": "model"}, 400, "label must be one of good, crack, scratch"),
    ({"image": image(1), "label": "crack", "mask": "painted",
      "mask_png": b64(np.zeros((48, 32), np.uint8))}, 400, "32x48 px, the frame 64x48 px"),
    ({"image": image(1), "label": "crack", "mask": "painted",
      "mask_png": base64.b64encode(b"not an image").decode()}, 400, "not a decodable PNG"),
    ({"image": image(1), "label": "crack", "mask": "sketch"}, 400, "mask must be one of"),
    ({"image": f"{DAY}/nope.png", "label": "crack"}, 404, "no frame"),
    ({"label": "crack"}, 400, "image is required"),
])
def test_bad_answers_are_refused_with_a_message(client, audit, body, status, message):
    answer = client.post("/api/reviews", json=body)
    assert answer.status_code == status and message in answer.json()["error"]
    assert not (audit / "reviews.jsonl").exists() or reviews(audit) == []


def test_answers_must_be_json(client):
    assert client.post("/api/reviews", content=b"image=x", headers={
        "content-type": "application/x-www-form-urlencoded"}).status_code == 415
    assert client.post("/api/reviews", content=b"{", headers={"content-type": "application/json"}).status_code == 400


GUARDED = ["/", "/frame?image=x", "/summary", "/api/frames", "/api/frame?image=" + image(1), "/api/summary",
           f"/files/{image(1)}", f"/thumbs/{image(1)}", "/static/app.js", "/static/style.css", "/nowhere"]


def test_every_path_needs_the_token(audit):
    with TestClient(create_app(audit, TOKEN)) as client:
        for path in GUARDED:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN},
                            {"cookie": f"{COOKIE}=wrong"}):
                refused = client.get(path, headers=headers)
                assert refused.status_code == 401, (path, headers)
            assert refused.text == "token required" or refused.json() == {"error": "token required"}
            if path != "/nowhere":
                assert client.get(path, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200, path
        assert client.post("/api/reviews", json={"image": image(1), "label": "good"}).status_code == 401
        assert client.get("/login", params={"token": "wrong"}).status_code == 401
        assert COOKIE not in client.cookies

        login = client.get("/login", params={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
        for path in GUARDED[:-1]:
            assert client.get(path).status_code == 200, path  # the cookie alone
        assert client.post("/api/reviews", json={"image": image(1), "label": "good"}).status_code == 200


def raw_get(url_host: str, port: int, path: str, headers: dict | None = None) -> int:
    """The status of GET ``path`` sent byte for byte (an HTTP library would normalise ``..`` away)."""
    connection = http.client.HTTPConnection(url_host, port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def test_nothing_outside_the_folder_is_served_and_the_station_binds_loopback(audit):
    with review_server(audit, port=0) as server:
        host, port = server.address
        assert host == "127.0.0.1" and server.url == f"http://127.0.0.1:{port}/"
        assert raw_get(host, port, f"/files/{image(1)}") == 200
        for path in ["/files/../secret.png", "/files/%2e%2e%2fsecret.png", "/files/%2e%2e/secret.png",
                     f"/files/{DAY}/%2e%2e/%2e%2e/%2e%2e/secret.png", f"/files/{DAY}/..%2f..%2f..%2fsecret.png",
                     "/files/%2fetc%2fpasswd", "/files//etc/passwd", f"/files/{audit}/{image(1)}",
                     f"/files/{DAY}/link.png", f"/thumbs/{DAY}/link.png", "/thumbs/%2e%2e%2fsecret.png",
                     "/static/..%2f..%2fapp.py", "/static/%2e%2e/app.py", "/files/index.jsonl"]:
            assert raw_get(host, port, path) == 404, path
        # loopback without a token: only loopback names are answered (a DNS name rebound to 127.0.0.1 is not)
        assert raw_get(host, port, "/", {"Host": "evil.example"}) == 400
        assert raw_get(host, port, "/", {"Host": f"localhost:{port}"}) == 200
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_the_review_command_binds_loopback_and_prints_the_login_link(audit, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("INSPECTOR_REVIEW_TOKEN", None)
    command = subprocess.Popen([sys.executable, "-m", "inspector", "review", "--audit", str(audit), "--port", "0",
                                "--token-file", str(token_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    try:
        url = command.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith(f"/login?token={TOKEN}"), url
        base = url.split("/login")[0]
        assert httpx.get(base + "/api/frames", timeout=10).status_code == 401
        with httpx.Client(timeout=10) as browser:
            assert browser.get(url, follow_redirects=True).status_code == 200  # the cookie
            assert len(browser.get(base + "/api/frames").json()["frames"]) == 8
    finally:
        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=30)
    assert command.returncode == 0, err
    assert "Traceback" not in err


def test_two_reviewers_at_once_leave_every_answer_once(audit):
    painted = np.zeros(SIZE[::-1], np.uint8)
    painted[0:8, 0:8] = 255
    answers = {"ann": [{"image": image(i), "label": "scratch", "mask": "painted", "mask_png": b64(painted),
                        "reviewer": "ann"} for i in range(8)] * 3,
               "bob": [{"image": image(i), "label": "crack", "mask": "model", "reviewer": "bob"}
                       for i in range(8)] * 3}
    failures = []
    start = threading.Barrier(len(answers))

    def review(name: str, url: str) -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as browser:
            start.wait()
            for body in answers[name]:
                response = browser.post("/api/reviews", json=body)
                if response.status_code != 200:
                    failures.append(response.text)

    with review_server(audit, port=0, token=TOKEN) as server:
        threads = [threading.Thread(target=review, args=(name, server.url)) for name in answers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    assert failures == []
    lines = reviews(audit)
    assert len(lines) == 48
    for name, posted in answers.items():
        mine = [(line["image"], line["label"]) for line in lines if line["reviewer"] == name]
        assert sorted(mine) == sorted((body["image"], body["label"]) for body in posted)
    masks = [line["mask"] for line in lines if line["reviewer"] == "ann"]
    assert len(set(masks)) == 24 and all((audit / mask).is_file() for mask in masks)
    assert {line["mask"] for line in lines if line["reviewer"] == "bob"} == {"model"}


class FakeServer:
    url = "http://0.0.0.0:8080/"

    def __init__(self, *args) -> None:
        self.args = args

    def run(self) -> None:
        FakeServer.ran = self.args


def test_a_wide_host_without_a_token_is_warned_about_and_a_wrong_folder_is_one_line(audit, tmp_path, monkeypatch,
                                                                                   capsys):
    from inspector.cli import main
    from inspector.review import server

    monkeypatch.delenv("INSPECTOR_REVIEW_TOKEN", raising=False)
    monkeypatch.setattr(server, "review_server", FakeServer)
    assert main(["review", "--audit", str(audit), "--host", "0.0.0.0", "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert FakeServer.ran == (audit, "0.0.0.0", 0, None) and out == "http://0.0.0.0:8080/\n"
    assert "warning: serving on 0.0.0.0 without a token" in err
    assert main(["review", "--audit", str(audit)]) == 0
    assert "warning" not in capsys.readouterr().err and FakeServer.ran == (audit, "127.0.0.1", 8080, None)
    assert main(["review", "--audit", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("audit folder " + str(tmp_path / "missing") + " does not exist")
