"""The review station in a real headless Chromium (Debian's package, driven by Playwright; no browser is downloaded):
an audit folder kept by the real service, three frames answered by keyboard (one relabelled), a mask painted with
the mouse, the answers still there after a reload; then ``audit export`` and ``train --init`` learn the painted mask.

Screenshots of the queue and the frame view are written to ``build/screenshots/`` (the README's, in docs/, are
copies of them)."""

import json
import shutil
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from inspector.artifacts.audit_folder import REVIEWS_FILE, read_lines
from inspector.cli import main
from inspector.config import ServeConfig
from inspector.review.server import review_server
from inspector.service.server import start_server
from inspector.v1 import inspector_pb2 as pb
from inspector.v1 import inspector_pb2_grpc as pb_grpc

from service_support import wait_until

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
FRAMES = ("crack_0000", "crack_0001", "scratch_0000", "spot_0000", "good_0000", "good_0001")
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    path = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        pytest.fail("chromium is not installed; the review station's browser test needs it. `make test` installs "
                    "Debian's package where apt-get runs as root (make tools); elsewhere: sudo apt-get install "
                    "chromium", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def audit(tiny_bundle, demo_data, tmp_path_factory) -> Path:
    """An audit folder the service kept: every frame (accepts sampled at 100 %), with the model's masks."""
    audit = tmp_path_factory.mktemp("review") / "audit"
    cfg = ServeConfig(host="127.0.0.1", grpc_port=0, device="cpu", metrics_port=None, watch_seconds=0.0,
                      grace_seconds=1.0, audit_dir=str(audit), audit_sample_accept=1.0)
    running = start_server(cfg, bundle=tiny_bundle)
    try:
        assert running.loaded.wait(60)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.InspectorStub(channel)
            for name in FRAMES:
                data = next((demo_data / "images").glob(f"*/{name}.png")).read_bytes()
                stub.Inspect(pb.InspectRequest(data=data, encoding=pb.PNG, frame_id=f"{name}.png",
                                               camera_id="cam-2"), timeout=30)
    finally:
        running.stop(grace=1)
    wait_until(lambda: len(read_lines(audit / "index.jsonl")[0]) == len(FRAMES))
    return audit


def _saved_and_moved_on(page, before: str) -> None:
    page.wait_for_function("u => location.href !== u", arg=before, timeout=TIMEOUT_MS)
    page.wait_for_selector("body.ready", timeout=TIMEOUT_MS)
    assert page.inner_text("#status").strip() == "saved"


def _paint(page, label: str) -> None:
    """Chooses ``label``, paints a horizontal stroke across the middle of the frame, saves."""
    page.select_option("#label", label)
    page.keyboard.press("b")
    box = page.locator("#layer-mask").bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.06 * step), y)
    page.mouse.up()
    before = page.url
    page.click("#save")
    _saved_and_moved_on(page, before)


def test_review_by_keyboard_and_mouse_then_retrain(browser, audit, tiny_bundle, tmp_path, capsys):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with review_server(audit, port=0) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 720})
        page.goto(server.url)
        page.wait_for_selector("body.ready", timeout=TIMEOUT_MS)
        items = page.locator("#queue a.item")
        assert items.count() == len(FRAMES) and page.locator("#queue a.item.reviewed").count() == 0
        page.screenshot(path=str(SHOTS / "review-queue.png"))

        items.first.click()
        page.wait_for_selector("body.ready", timeout=TIMEOUT_MS)
        answered = {}
        for key in ("c", "Enter"):  # two confirmed
            image, label = page.evaluate("new URL(location.href).searchParams.get('image')"), \
                page.inner_text("#model-label").strip()
            before = page.url
            page.keyboard.press(key)
            _saved_and_moved_on(page, before)
            answered[image] = (label, "model")
        image = page.evaluate("new URL(location.href).searchParams.get('image')")  # relabelled to good by key
        before = page.url
        page.keyboard.press("0")
        _saved_and_moved_on(page, before)
        answered[image] = ("good", None)  # a good part stands for no mask, whatever the canvas held
        image = page.evaluate("new URL(location.href).searchParams.get('image')")  # a mask painted by mouse
        page.locator("#show-regions").check()
        page.screenshot(path=str(SHOTS / "review-frame.png"))
        _paint(page, "crack")
        answered[image] = ("crack", "painted")

        page.goto(server.url)  # reload: the answers are the server's, not the page's
        page.wait_for_selector("body.ready", timeout=TIMEOUT_MS)
        shown = {item.get_attribute("data-image"): item.locator(".answer").inner_text().strip()
                 for item in page.locator("#queue a.item.reviewed").all()}
        assert shown == {image: label for image, (label, _) in answered.items()}
        page.goto(f"{server.url}frame?image={image}")
        page.wait_for_selector("body.ready", timeout=TIMEOUT_MS)
        assert page.get_attribute("#answer", "data-label") == "crack"
        painted_back = page.evaluate("""() => { const c = document.getElementById('layer-mask');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
        assert painted_back > 0  # the painted mask comes back into the canvas
        page.close()

    lines = read_lines(audit / REVIEWS_FILE)[0]
    assert len(lines) == 4 and {line["image"] for line in lines} == set(answered)
    for line in lines:
        label, mask = answered[line["image"]]
        assert line["label"] == label
        if mask == "painted":
            assert line["mask"].startswith("reviews/masks/"), line
        elif mask is not None:
            assert line["mask"] == mask, line
    painted_line = next(line for line in lines if line["mask"].startswith("reviews/masks/"))
    painted = cv2.imread(str(audit / painted_line["mask"]), cv2.IMREAD_UNCHANGED)
    frame = cv2.imread(str(audit / painted_line["image"]), cv2.IMREAD_UNCHANGED)
    assert painted.shape == frame.shape[:2] and set(np.unique(painted)) == {0, 255}
    middle = painted[painted.shape[0] // 2]
    assert middle[int(painted.shape[1] * 0.3):int(painted.shape[1] * 0.7)].min() == 255  # the stroke

    data, store = tmp_path / "data", tmp_path / "store"
    assert main(["audit", "export", "--audit", str(audit), "--out", str(data)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["masks"].get("crack", 0) >= 1 and sum(summary["images"].values()) == 4
    assert main(["train", "--data", str(data), "--out", str(store), "--name", "line", "--init", str(tiny_bundle),
                 "--epochs-frozen", "0", "--epochs-finetune", "1", "--workers", "0", "--device", "cpu",
                 "--no-calibrate", "--no-anomaly"]) == 0
    from inspector.artifacts.bundle import load_bundle
    from inspector.data.layouts import data_hash, load_dataset

    bundle = load_bundle(capsys.readouterr().out.strip())
    dataset = load_dataset(bundle.meta.data.root)
    assert bundle.meta.data.hash == data_hash(dataset)  # what it trained on, masks included
    exported = Path(painted_line["image"]).name
    [sample] = [s for s in dataset.samples if s.image.name == exported]
    assert sample.label == "crack" and f"images/crack/{exported}" in bundle.meta.split.train + bundle.meta.split.val
    assert np.array_equal(cv2.imread(str(sample.mask), cv2.IMREAD_GRAYSCALE), painted)
