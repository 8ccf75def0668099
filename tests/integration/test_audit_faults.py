"""A full disk or a crash leaves the audit folder usable: whole index lines only, no empty or partial frames, a
bounded number of warnings, and writing resumes by itself once there is room."""

import errno
import json
import logging
import os
import queue
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from inspector.artifacts.audit_export import export_reviewed
from inspector.cli import main
from inspector.service import audit as audit_module
from inspector.artifacts.audit_folder import INDEX_FILE, PARTIAL_SUFFIX, append_line, read_lines, write_file
from inspector.service.audit import AuditConfig, AuditRecord, AuditSink

FS_BYTES = 1536 * 1024  # the small filesystem the audit folder is on
BALLAST_BYTES = 512 * 1024  # taken at first, freed to make room again
SPARE_BYTES = 64 * 1024  # freed once big frames no longer fit, for small frames with long index lines
WAIT = 30.0  # s, for the writer thread to answer (a safety net, not a timing assertion)


def record(frame_id: str, verdict: str = "REJECT", n_regions: int = 0) -> AuditRecord:
    regions = [{"defect_class": "crack", "x": i, "y": i, "width": 9, "height": 9, "area_px": 81,
                "area_fraction": 0.01, "max_score": 0.9} for i in range(n_regions)]  # ~130 bytes each in the index
    return AuditRecord("cam-1", frame_id, verdict, "crack", "crack", 0.9, {"good": 0.1, "crack": 0.9}, regions,
                       "m/v1")


def noise_png(seed: int, side: int = 96) -> bytes:
    """A PNG that does not compress: about ``side**2`` bytes (27 kB at 96 px)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of FS_BYTES mounted at ``tmp_path/fs`` (needs root, or CAP_SYS_ADMIN), unmounted afterwards."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no `mount` command to make a small filesystem with")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES}", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


class Results:
    """The sink's on_result, one answer per frame offered, to wait on."""

    def __init__(self) -> None:
        self.answers: queue.Queue[str] = queue.Queue()

    def __call__(self, result: str) -> None:
        self.answers.put(result)

    def next(self) -> str:
        return self.answers.get(timeout=WAIT)


def offer(sink: AuditSink, results: Results, frame_id: str, data: bytes, n_regions: int = 0) -> str:
    sink.offer(record(frame_id, n_regions=n_regions), data, "PNG")
    return results.next()


def offer_until_full(sink: AuditSink, results: Results, prefix: str, side: int, n_regions: int = 0) -> list[str]:
    """Offers frames until ten in a row fail; returns the answers."""
    answers: list[str] = []
    for i in range(300):
        answers.append(offer(sink, results, f"{prefix}{i}", noise_png(i, side), n_regions))
        if answers[-10:] == ["error"] * 10:
            return answers
    raise AssertionError(f"the disk never filled up: {answers}")


def assert_whole(audit) -> list[dict]:
    """Every index line parses, every indexed frame is there and non-empty, no empty or partial frame is left."""
    raw = (audit / INDEX_FILE).read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.splitlines()]  # every line whole
    for line in lines:
        assert (audit / line["image"]).stat().st_size > 0, line["image"]
    frames = [p for p in (audit / "frames").rglob("*") if p.is_file()]
    assert all(p.stat().st_size > 0 for p in frames) and not [p for p in frames if p.name.endswith(PARTIAL_SUFFIX)]
    assert sorted(str(p.relative_to(audit)) for p in frames) == sorted(line["image"] for line in lines)
    return lines


def test_a_full_disk_leaves_whole_records_and_writing_resumes(small_fs, caplog, capsys, monkeypatch):
    caplog.set_level(logging.WARNING, logger=audit_module.__name__)
    (small_fs / "ballast").write_bytes(b"\0" * BALLAST_BYTES)
    (small_fs / "spare").write_bytes(b"\0" * SPARE_BYTES)
    audit, results = small_fs / "audit", Results()
    index_failures = []  # (index size before, after) of each index write the disk refused

    def watched_append(path, line):
        before = path.stat().st_size if path.exists() else 0
        try:
            append_line(path, line)
        except OSError:
            index_failures.append((before, path.stat().st_size))
            raise

    monkeypatch.setattr(audit_module, "append_line", watched_append)
    sink = AuditSink(AuditConfig(str(audit), max_per_second=1e6, queue_frames=4), on_result=results)
    try:
        answers = offer_until_full(sink, results, "big", 96)  # ~27 kB frames: the frame writes fail
        assert answers[0] == "written"
        (small_fs / "spare").unlink()
        answers += offer_until_full(sink, results, "small", 8, n_regions=90)  # ~12 kB lines: the index writes fail
        assert index_failures and all(after == before for before, after in index_failures), index_failures
        lines = assert_whole(audit)
        assert len(lines) == answers.count("written") and "error" in answers
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert 1 <= len(warnings) <= 2, [r.getMessage() for r in warnings]  # not one per dropped frame
        assert "No space left on device" in warnings[0].getMessage() and str(audit) in warnings[0].getMessage()

        reviews = [{"image": line["image"], "label": "crack"} for line in lines[:3]]
        (audit / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reviews))
        assert main(["audit", "export", "--audit", str(audit), "--out", str(small_fs.parent / "data")]) == 0
        assert json.loads(capsys.readouterr().out)["images"] == {"crack": 3}

        (small_fs / "ballast").unlink()  # the disk frees up
        assert offer(sink, results, "after", noise_png(1000)) == "written"
        lines = assert_whole(audit)
        assert lines[-1]["frame_id"] == "after"
    finally:
        sink.close()


def test_an_index_line_that_fails_part_way_is_cut_back(tmp_path, monkeypatch):
    index = tmp_path / INDEX_FILE
    append_line(index, b'{"image": "a"}\n')
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills up in the middle of the line
        if len(data) > 8:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(OSError, match=f"No space left on device: '{index}'"):
        append_line(index, b'{"image": "b", "padding": "' + b"x" * 40 + b'"}\n')
    monkeypatch.setattr(os, "write", real_write)
    assert index.read_bytes() == b'{"image": "a"}\n'
    append_line(index, b'{"image": "c"}\n')
    assert read_lines(index) == ([{"image": "a"}, {"image": "c"}], 0)


def test_a_record_is_never_glued_to_a_torn_line(tmp_path):
    index = tmp_path / INDEX_FILE
    index.write_bytes(b'{"image": "a"}\n{"image": "b", "lab')  # a crash in the middle of a line
    append_line(index, b'{"image": "c"}\n')
    assert index.read_bytes().splitlines()[-1] == b'{"image": "c"}'
    assert read_lines(index) == ([{"image": "a"}, {"image": "c"}], 1)


def test_the_reader_skips_torn_lines(tmp_path):
    index = tmp_path / INDEX_FILE
    assert read_lines(index) == ([], 0)
    index.write_bytes(b'{"image": "a"}\n\n{"image": "b", "lab{"image": "c"}\n"not an object"\n\xff\xfe\n{"image": "d')
    assert read_lines(index) == ([{"image": "a"}], 4)


def test_export_skips_torn_lines_and_says_how_many(tmp_path, caplog):
    audit = tmp_path / "audit"
    (audit / "frames").mkdir(parents=True)
    (audit / "frames" / "a.png").write_bytes(noise_png(0, 8))
    (audit / INDEX_FILE).write_bytes(b'{"image": "frames/a.png", "label": "crack"}\n{"image": "frames/b.p')
    with caplog.at_level(logging.WARNING):
        summary = export_reviewed(audit, tmp_path / "out", use_model_labels=True)
    assert summary.images == {"crack": 1} and summary.skipped["unreadable_index_lines"].count == 1
    assert any("skipped 1 unreadable line" in r.getMessage() and INDEX_FILE in r.getMessage() for r in caplog.records)
    (audit / INDEX_FILE).write_bytes(b'{"image": "frames/b.p')
    with pytest.raises(FileNotFoundError, match="holds no readable record"):
        export_reviewed(audit, tmp_path / "out2")


def test_a_failed_frame_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "frames" / "f.png"

    def full(self, data):  # the disk fills up after a few bytes of the frame
        with open(self, "wb") as f:
            f.write(data[:5])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(type(target), "write_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        write_file(target, b"0123456789")
    assert list((tmp_path / "frames").iterdir()) == []


def test_frames_a_crash_left_half_written_are_removed_on_start(tmp_path):
    partial = tmp_path / "frames" / "2024-01-01" / f"x.png{PARTIAL_SUFFIX}"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\x89PNG half")
    AuditSink(AuditConfig(str(tmp_path))).close()
    assert not partial.exists()
