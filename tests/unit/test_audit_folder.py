"""The audit folder's reviews: whole lines under concurrency, the last answer wins, paths stay inside."""

import json
import multiprocessing
import threading

from inspector.artifacts.audit_folder import (REVIEWS_FILE, Review, append_review, inside, latest_reviews,
                                              reviewed_mask)


def _answer_many(root: str, who: str, n: int) -> None:
    from pathlib import Path

    for i in range(n):
        append_review(Path(root), Review(f"frames/d/{who}-{i}.png", "crack", reviewer=who),
                      painted_png=b"\x89PNG" + bytes(2000) if i % 2 else None)


def test_concurrent_reviewers_leave_every_answer_once_and_whole(tmp_path):
    threads = [threading.Thread(target=_answer_many, args=(str(tmp_path), f"t{k}", 40)) for k in range(4)]
    processes = [multiprocessing.get_context("spawn").Process(target=_answer_many, args=(str(tmp_path), f"p{k}", 40))
                 for k in range(2)]
    for worker in processes + threads:  # other processes: a reviewer per server process, or two servers
        worker.start()
    for worker in threads + processes:
        worker.join(60)
    lines = [json.loads(line) for line in (tmp_path / REVIEWS_FILE).read_text().splitlines()]
    images = [line["image"] for line in lines]
    assert len(images) == len(set(images)) == 6 * 40
    painted = [line["mask"] for line in lines if line["mask"] != "model"]
    assert len(painted) == len(set(painted)) == 6 * 20 and all((tmp_path / p).stat().st_size == 2004 for p in painted)


def test_the_last_answer_wins_and_unreadable_lines_are_counted(tmp_path):
    append_review(tmp_path, Review("frames/d/a.png", "crack"))
    with open(tmp_path / REVIEWS_FILE, "a") as reviews:
        reviews.write('{"image": "frames/d/b.png"\n{"label": "good"}\n')
    append_review(tmp_path, Review("frames/d/a.png", "good", mask="none"))
    latest, skipped = latest_reviews(tmp_path)
    assert list(latest) == ["frames/d/a.png"] and latest["frames/d/a.png"]["label"] == "good" and skipped == 2


def test_the_mask_a_review_stands_for():
    record = {"label": "crack", "mask": "frames/d/a.mask.png"}
    assert reviewed_mask(record, {"label": "crack"}) == "frames/d/a.mask.png"  # older lines: confirmed
    assert reviewed_mask(record, {"label": "scratch"}) is None  # older lines: relabelled, the mask is unknown
    assert reviewed_mask(record, {"label": "scratch", "mask": "model"}) == "frames/d/a.mask.png"
    assert reviewed_mask(record, {"label": "crack", "mask": "none"}) is None
    assert reviewed_mask(record, {"label": "crack", "mask": "reviews/masks/d/a.0.png"}) == "reviews/masks/d/a.0.png"
    assert reviewed_mask(record, {"label": "good", "mask": "reviews/masks/d/a.0.png"}) is None


def test_only_files_inside_the_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.png").write_bytes(b"x")
    (tmp_path.parent / "secret.txt").write_text("no")
    (tmp_path / "frames" / "link").symlink_to(tmp_path.parent / "secret.txt")
    assert inside(tmp_path, "frames/a.png") == (tmp_path / "frames" / "a.png").resolve()
    for bad in ("../secret.txt", "frames/../../secret.txt", str(tmp_path / "frames" / "a.png"), "frames/link",
                "frames", "", "frames/missing.png"):
        assert inside(tmp_path, bad) is None, bad
