"""The review station's queue over a hand-written audit folder: newest first, every filter, a frame's neighbours,
the summary's figures counted by hand, and answers checked before they are saved."""

import base64
import json

import cv2
import numpy as np
import pytest

from inspector.artifacts.audit_folder import Review, append_review
from inspector.errors import UsageError
from inspector.review.answers import AnswerError, painted_mask, parse_answer, reviewer_name
from inspector.review.queue import Filters, Folder, labels, neighbours, options, read_snapshot, select, summary

DAY = "frames/2024-05-01"
CLASSES = {"good": 0.2, "crack": 0.5, "scratch": 0.3}
# name, camera, verdict, model label, defect class, model version, received (s past 10:00)
FRAMES = [
    ("a", "cam-1", "REJECT", "crack", "crack", "m/v1", 1),
    ("b", "cam-2", "REVIEW", "good", "scratch", "m/v1", 2),
    ("c", "cam-1", "ACCEPT", "good", "crack", "m/v2", 3),
    ("d", "cam-2", "ACCEPT", "good", "scratch", "m/v2", 4),
    ("e", "cam-1", "REJECT", "scratch", "scratch", "m/v2", 5),
    ("f", "cam-3", "REVIEW", "good", "crack", "m/v2", 6),
]
# image -> reviewer's label, in the order answered (e is answered twice: the last wins)
ANSWERS = [("a", "crack"), ("b", "scratch"), ("c", "crack"), ("d", "good"), ("e", "crack"), ("e", "scratch")]


def image(name: str) -> str:
    return f"{DAY}/{name}.png"


def write_folder(root, frames=FRAMES, size=(64, 48)):
    """An audit folder as the service leaves it: small PNG frames, a model mask for defect labels, index lines."""
    (root / DAY).mkdir(parents=True, exist_ok=True)
    lines = []
    for name, camera, verdict, label, defect_class, version, second in frames:
        cv2.imwrite(str(root / image(name)), np.full(size[::-1], 90 + second, np.uint8))
        mask = ""
        if label != "good":
            pixels = np.zeros(size[::-1], np.uint8)
            pixels[10:20, 10:30] = 255
            mask = f"{DAY}/{name}.mask.png"
            cv2.imwrite(str(root / mask), pixels)
        lines.append({"camera_id": camera, "frame_id": name, "verdict": verdict, "label": label,
                      "defect_class": defect_class, "defect_score": 0.1 * second, "class_scores": CLASSES,
                      "regions": [], "model_version": version, "anomaly_score": None, "by_anomaly": False,
                      "capture_time": "", "received_at": f"2024-05-01T10:00:0{second}.000+00:00",
                      "image": image(name), "mask": mask, "anomaly_map": ""})
    (root / "index.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


@pytest.fixture
def folder(tmp_path):
    write_folder(tmp_path)
    for name, label in ANSWERS:
        append_review(tmp_path, Review(image(name), label, reviewer="r1"))
    return tmp_path


def names(items):
    return [item["frame_id"] for item in items]


def test_frames_are_listed_newest_first_with_their_latest_answer(folder):
    items = select(read_snapshot(folder), Filters())
    assert names(items) == ["f", "e", "d", "c", "b", "a"]
    assert items[0]["answer"] is None and items[1]["answer"]["label"] == "scratch"  # e's second answer won
    assert {i["frame_id"]: i["answer"]["label"] for i in items[1:]} == {"e": "scratch", "d": "good", "c": "crack",
                                                                      "b": "scratch", "a": "crack"}


def test_same_time_frames_keep_the_index_order_and_torn_lines_are_counted(tmp_path):
    write_folder(tmp_path, [("x", "cam-1", "REJECT", "crack", "crack", "m/v1", 1),
                            ("y", "cam-1", "REJECT", "crack", "crack", "m/v1", 1)])
    with open(tmp_path / "index.jsonl", "a") as index:
        index.write('{"frame_id": "no image"}\n{"torn": \n')
    snapshot = read_snapshot(tmp_path)
    assert names(snapshot.frames) == ["y", "x"] and snapshot.unreadable == 2


@pytest.mark.parametrize("query, expected", [
    ({"verdict": "REJECT"}, ["e", "a"]),
    ({"verdict": "ACCEPT"}, ["d", "c"]),
    ({"camera": "cam-2"}, ["d", "b"]),
    ({"defect_class": "scratch"}, ["e", "d", "b"]),
    ({"model_version": "m/v1"}, ["b", "a"]),
    ({"reviewed": "no"}, ["f"]),
    ({"reviewed": "yes"}, ["e", "d", "c", "b", "a"]),
    ({"camera": "cam-1", "verdict": "REJECT", "model_version": "m/v2"}, ["e"]),
    ({"camera": "cam-9"}, []),
    ({"verdict": "", "camera": "", "unknown": "x"}, ["f", "e", "d", "c", "b", "a"]),
])
def test_each_filter(folder, query, expected):
    assert names(select(read_snapshot(folder), Filters.from_query(query))) == expected


def test_a_reviewed_filter_other_than_yes_or_no_is_refused():
    with pytest.raises(UsageError, match="reviewed must be yes or no"):
        Filters.from_query({"reviewed": "maybe"})


def test_the_filter_options_are_what_the_folder_holds(folder):
    assert options(read_snapshot(folder)) == {"verdict": ["ACCEPT", "REJECT", "REVIEW"],
                                              "camera": ["cam-1", "cam-2", "cam-3"],
                                              "defect_class": ["crack", "scratch"], "model_version": ["m/v1", "m/v2"]}


def test_neighbours_in_the_filtered_queue(folder):
    snapshot = read_snapshot(folder)
    assert neighbours(snapshot, image("c"), Filters()) == {
        "prev": image("d"), "next": image("b"), "next_unreviewed": image("f"),  # none after c: from the top
        "position": 4, "count": 6}
    assert neighbours(snapshot, image("f"), Filters()) == {
        "prev": None, "next": image("e"), "next_unreviewed": None, "position": 1, "count": 6}
    # an answered frame that reviewed=no leaves out still has its place in the queue
    assert neighbours(snapshot, image("c"), Filters(reviewed="no")) == {
        "prev": image("f"), "next": None, "next_unreviewed": image("f"), "position": None, "count": 1}
    assert neighbours(snapshot, image("c"), Filters(camera="cam-1")) == {  # e, c, a; all answered
        "prev": image("e"), "next": image("a"), "next_unreviewed": None, "position": 2, "count": 3}
    with pytest.raises(KeyError):
        neighbours(snapshot, image("zz"), Filters())


def test_summary_figures_counted_by_hand(folder):
    figures = summary(read_snapshot(folder))
    assert (figures["total"], figures["reviewed"]) == (6, 5)
    # model said crack: a (confirmed); good: b -> scratch, c -> crack, d -> good; scratch: e (confirmed at last)
    assert figures["agreement"] == [
        {"label": "good", "answers": 3, "confirmed": 1, "relabelled": 2, "agreement": pytest.approx(1 / 3)},
        {"label": "crack", "answers": 1, "confirmed": 1, "relabelled": 0, "agreement": 1.0},
        {"label": "scratch", "answers": 1, "confirmed": 1, "relabelled": 0, "agreement": 1.0},
    ]
    # c was accepted and a reviewer called it a crack; d was accepted and is good; b was a REVIEW, not an accept
    assert figures["escapes"] == {"count": 1, "frames": [
        {"image": image("c"), "camera_id": "cam-1", "frame_id": "c", "model_label": "good", "label": "crack"}]}
    by_version = summary(read_snapshot(folder), Filters(model_version="m/v1"))
    assert (by_version["total"], by_version["reviewed"], by_version["escapes"]["count"]) == (2, 2, 0)
    assert [(row["label"], row["agreement"]) for row in by_version["agreement"]] == [("good", 0.0), ("crack", 1.0)]


def test_the_folder_is_read_again_only_when_a_file_changed(folder):
    view = Folder(folder)
    first = view.snapshot()
    assert view.snapshot() is first
    append_review(folder, Review(image("f"), "good"))
    second = view.snapshot()
    assert second is not first and second.answer(image("f"))["label"] == "good"


def test_labels_are_good_then_the_models_classes():
    assert labels({"class_scores": CLASSES, "label": "crack"}) == ["good", "crack", "scratch"]
    assert labels({"class_scores": {"good": 0.9, "crack": 0.1}, "label": "anomaly"}) == ["good", "crack", "anomaly"]
    assert labels({}) == ["good"]


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def test_a_painted_mask_from_a_browser_canvas_is_reduced_to_one_channel():
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[5:10, 5:15, :3] = 255  # white: defect
    rgba[20:25, 5:15, :3] = 255
    rgba[20:25, 5:15, 3] = 0  # white but transparent: not a defect
    mask = painted_mask(png(rgba), (64, 48))
    assert mask.shape == (48, 64) and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    assert mask.sum() == 255 * 5 * 10 and mask[5:10, 5:15].all()
    grey = np.zeros((48, 64), np.uint16)
    grey[0, 0] = 65535
    assert painted_mask(png(grey), (64, 48)).sum() == 255


@pytest.mark.parametrize("data, message", [
    (b"not a png", "not a decodable PNG"),
    (b"", "not a decodable PNG"),
    (png(np.zeros((48, 63), np.uint8)), "63x48 px, the frame 64x48 px"),
])
def test_a_painted_mask_that_is_not_an_image_of_the_frames_size_is_refused(data, message):
    with pytest.raises(AnswerError, match=message):
        painted_mask(data, (64, 48))


def test_answers_are_checked_against_the_record(folder):
    record = read_snapshot(folder).frames[0]
    review, data = parse_answer({"image": record["image"], "label": "scratch", "mask": "model",
                                 "reviewer": "ann\n\x07 "}, record, folder)
    assert (review.label, review.mask, review.reviewer, data) == ("scratch", "model", "ann", None)
    empty = base64.b64encode(png(np.zeros((48, 64), np.uint8))).decode()
    review, data = parse_answer({"label": "crack", "mask": "painted", "mask_png": empty}, record, folder)
    assert (review.mask, data) == ("none", None)  # nothing painted: no file to keep
    one = np.zeros((48, 64), np.uint8)
    one[1, 1] = 200
    review, data = parse_answer({"label": "crack", "mask": "painted",
                                 "mask_png": "data:image/png;base64," + base64.b64encode(png(one)).decode()},
                                record, folder)
    assert review.mask == "painted" and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).sum() == 255
    for payload, message in [({"label": "dent"}, "label must be one of good, crack, scratch"),
                             ({"label": "good", "mask": "blue"}, "mask must be one of model, none, painted"),
                             ({"label": "good", "mask": "painted"}, "needs mask_png"),
                             ({"label": "good", "mask": "painted", "mask_png": "%%%"}, "not valid base64"),
                             ([], "JSON object"), ({"label": "good", "reviewer": 3}, "reviewer must be a string")]:
        with pytest.raises(AnswerError, match=message):
            parse_answer(payload, record, folder)
    assert reviewer_name("x" * 200) == "x" * 80
