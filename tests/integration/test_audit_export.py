"""``inspector audit export``: reviewed frames with the masks their answers stand for, one extension per name,
everything it skipped counted with examples, written whole; and the export trains with ``train --init``."""

import json
import logging

import cv2
import numpy as np
import pytest

from inspector.artifacts.audit_export import SUMMARY_FILE, export_reviewed
from inspector.artifacts.audit_folder import INDEX_FILE, REVIEWS_FILE, Review, append_line, append_review
from inspector.cli import main
from inspector.errors import DataError, UsageError

DAY, DAY2 = "2024-05-01", "2024-05-02"
H, W = 24, 32  # every frame's size, px


def png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def box(y0: int, y1: int, x0: int, x1: int, value: int = 255, shape=(H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[y0:y1, x0:x1] = value
    return mask


MODEL = box(2, 8, 3, 12)  # the model's mask of every frame that has one
PAINTED = np.maximum(box(10, 20, 15, 30), box(0, 3, 0, 3, value=100))  # 100: below half, not a defect
PAINTED_BINARY = box(10, 20, 15, 30)


class Folder:
    """An audit folder written by hand: frames, the model's masks, index lines (the service is not needed)."""

    def __init__(self, root):
        self.root = root
        self.lines: list[bytes] = []

    def keep(self, key: str, label: str, day: str = DAY, ext: str = ".png", model_mask: bytes | None = b"",
             data: bytes | None = None, write: bool = True) -> str:
        """A frame (noise unless ``data``) and its index line; ``model_mask``: PNG bytes, b"" for MODEL, None for
        none. Returns the frame's path as in the index."""
        image = f"frames/{day}/{key}{ext}"
        mask = f"frames/{day}/{key}.mask.png" if model_mask is not None else ""
        if write:
            (self.root / image).parent.mkdir(parents=True, exist_ok=True)
            noise = np.random.default_rng(len(self.lines)).integers(0, 256, (H, W), dtype=np.uint8)
            (self.root / image).write_bytes(png(noise) if data is None else data)
            if model_mask is not None:
                (self.root / mask).write_bytes(model_mask or png(MODEL))
        self.lines.append(json.dumps({"image": image, "label": label, "mask": mask, "frame_id": key}).encode())
        return image

    def write_index(self) -> None:
        torn = b'{"image": "frames/2024-05-01/torn.png", "lab'  # a crash in the middle of a line
        (self.root / INDEX_FILE).write_bytes(b"\n".join([*self.lines[:3], torn, *self.lines[3:]]) + b"\n")


@pytest.fixture
def audit(tmp_path):
    """One frame of every case; the comments say what the export must do with it."""
    root = tmp_path / "audit"
    f = Folder(root)
    confirmed = f.keep("c1_confirmed", "crack")  # the model's mask confirmed: exported with it
    painted = f.keep("c2_painted", "crack")  # painted over: the painted mask, not the model's
    erased = f.keep("c3_erased", "crack")  # painted first, erased last: the last answer wins, no mask
    good = f.keep("c4_good", "crack")  # relabelled good: no mask
    gone = f.keep("c5_gone", "crack", write=False)  # the frame file is missing
    wrong = f.keep("c6_wrong", "crack")  # painted at another size: left out
    double = f.keep("c7_double.png", "crack", ext=".png")  # an older folder's doubled extension
    nomask = f.keep("c8_nomask", "crack")  # its painted mask is missing
    badmask = f.keep("c9_badmask", "crack")  # its painted mask is no image
    badframe = f.keep("c10_badframe", "good", model_mask=None, data=b"not an image")
    label = f.keep("c11_label", "crack")  # a label that is no class name
    f.keep("c12_unreviewed", "crack")  # exported only with the model's labels
    f.keep("c13_unreviewed", "good", model_mask=None)
    again = f.keep("c1_confirmed", "crack", day=DAY2, model_mask=None)  # the same name on another day
    f.write_index()

    append_review(root, Review(confirmed, "crack"))
    append_review(root, Review(painted, "crack"), painted_png=png(PAINTED))
    append_review(root, Review(erased, "crack"), painted_png=png(PAINTED))
    append_review(root, Review(erased, "crack", mask="none"))
    append_review(root, Review(good, "good", mask="none"))
    append_review(root, Review(gone, "crack"))
    append_review(root, Review(wrong, "crack"), painted_png=png(PAINTED[:12, :16]))
    append_line(root / REVIEWS_FILE, json.dumps({"image": double, "label": "crack"}).encode() + b"\n")  # older line
    append_review(root, Review(nomask, "crack", mask=f"reviews/masks/{DAY}/c8_nomask.0.png"))
    append_review(root, Review(badmask, "crack"), painted_png=b"\x89PNG\r\n\x1a\n but no more")
    append_review(root, Review(badframe, "good", mask="none"))
    append_review(root, Review(label, "bad label"))
    append_review(root, Review(again, "crack"))
    for i in range(4):
        append_review(root, Review(f"frames/{DAY}/nowhere{i}.png", "crack"))
    append_line(root / REVIEWS_FILE, b'{"image": "frames/2024-05-01/c1_confirmed.png", "la\n')  # torn
    return root


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read_mask(path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and mask.dtype == np.uint8
    return mask


EXPECTED_SKIPPED = {
    "unreadable_index_lines": {"count": 1, "examples": []},
    "unreadable_review_lines": {"count": 1, "examples": []},
    "review_of_unknown_frame": {"count": 4, "examples": [f"frames/{DAY}/nowhere{i}.png" for i in range(3)]},
    "frame_missing": {"count": 1, "examples": [f"frames/{DAY}/c5_gone.png"]},
    "frame_unreadable": {"count": 1, "examples": [f"frames/{DAY}/c10_badframe.png"]},
    "unusable_label": {"count": 1, "examples": [f"frames/{DAY}/c11_label.png: bad label"]},
    "mask_missing": {"count": 1, "examples": [f"reviews/masks/{DAY}/c8_nomask.0.png"]},
    "mask_unreadable": {"count": 1, "examples": [f"reviews/masks/{DAY}/c9_badmask.0.png"]},
    "mask_wrong_size": {"count": 1, "examples": [f"reviews/masks/{DAY}/c6_wrong.0.png"]},
}


def test_reviewed_frames_are_exported_with_the_mask_their_answer_stands_for(audit, tmp_path, caplog):
    out = tmp_path / "data"
    with caplog.at_level(logging.WARNING):
        summary = export_reviewed(audit, out)
    assert files(out) == [
        SUMMARY_FILE,
        "images/crack/c1_confirmed-2.png", "images/crack/c1_confirmed.png", "images/crack/c2_painted.png",
        "images/crack/c3_erased.png", "images/crack/c7_double.png", "images/good/c4_good.png",
        "masks/crack/c1_confirmed.png", "masks/crack/c2_painted.png", "masks/crack/c7_double.png",
    ]
    assert np.array_equal(read_mask(out / "masks/crack/c1_confirmed.png"), MODEL)
    assert np.array_equal(read_mask(out / "masks/crack/c2_painted.png"), PAINTED_BINARY)  # not the model's
    assert np.array_equal(read_mask(out / "masks/crack/c7_double.png"), MODEL)  # an older line: label confirmed
    assert (out / "images/crack/c2_painted.png").read_bytes() == (audit / f"frames/{DAY}/c2_painted.png").read_bytes()
    assert (out / "images/crack/c7_double.png").read_bytes() == (
        audit / f"frames/{DAY}/c7_double.png.png").read_bytes()

    expected = {"out": str(out), "images": {"crack": 5, "good": 1}, "masks": {"crack": 3},
                "skipped": EXPECTED_SKIPPED}
    assert summary.to_dict() == expected
    assert json.loads((out / SUMMARY_FILE).read_text()) == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(EXPECTED_SKIPPED)  # one per kind, with its count and examples
    assert "skipped 1 unreadable line(s) of index.jsonl" in warnings[0]
    assert any("skipped 1 frame(s) whose mask is not the frame's size" in w and "c6_wrong.0.png" in w
               for w in warnings)
    assert not list(tmp_path.glob(".data.*"))  # no staging folder left


def test_model_labels_export_the_unreviewed_frames_with_the_models_mask(audit, tmp_path):
    summary = export_reviewed(audit, tmp_path / "all", use_model_labels=True)
    assert summary.images == {"crack": 6, "good": 2} and summary.masks == {"crack": 4}
    assert np.array_equal(read_mask(tmp_path / "all/masks/crack/c12_unreviewed.png"), MODEL)
    assert (tmp_path / "all/images/good/c13_unreviewed.png").is_file()
    assert not (tmp_path / "all/masks/good").exists()
    assert summary.to_dict()["skipped"] == EXPECTED_SKIPPED  # the same, and no more


def test_the_cli_prints_the_summary_and_replaces_only_an_earlier_export(audit, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["audit", "export", "--audit", str(audit), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / SUMMARY_FILE).read_text())
    assert list(printed) == ["out", "images", "masks", "skipped"]

    assert main(["audit", "export", "--audit", str(audit), "--out", str(out)]) == 2  # no silent overwrite
    assert "not empty" in capsys.readouterr().err
    (out / "images/crack/c3_erased.png").unlink()
    assert main(["audit", "export", "--audit", str(audit), "--out", str(out), "--force"]) == 0
    assert json.loads(capsys.readouterr().out) == printed
    assert (out / "images/crack/c3_erased.png").is_file()  # written anew, not patched

    other = tmp_path / "someones_data"
    (other / "images").mkdir(parents=True)
    with pytest.raises(UsageError, match="not an earlier audit export"):
        export_reviewed(audit, other, force=True)
    with pytest.raises(UsageError, match="must not contain each other"):
        export_reviewed(audit, audit / "export")


def test_nothing_to_export_is_an_error_that_writes_nothing(tmp_path, capsys):
    root = tmp_path / "audit"
    f = Folder(root)
    f.keep("only", "crack")
    f.write_index()
    out = tmp_path / "data"
    assert main(["audit", "export", "--audit", str(root), "--out", str(out)]) == 2
    assert "no frame to export of the 1 in index.jsonl: none is reviewed" in capsys.readouterr().err
    append_review(root, Review(f"frames/{DAY}/only.png", "crack"), painted_png=b"no png")
    with pytest.raises(DataError, match="the 1 answered were skipped"):
        export_reviewed(root, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]  # no out, no staging folder


def test_an_export_trains_with_init_and_the_painted_mask_is_trained_on(tiny_bundle, demo_data, tmp_path, capsys):
    """Frames of the demo set kept as an audit folder, one repainted; the export fine-tunes the tiny bundle, and the
    data the bundle records (split and hash) holds the painted frame with the painted pixels."""
    from inspector.artifacts.bundle import load_bundle
    from inspector.data.layouts import data_hash, load_dataset

    root = tmp_path / "audit"
    f = Folder(root)
    painted = box(8, 24, 40, 60, shape=(64, 64))  # the demo's frames are 64 px; the crack is not there
    for cls in ("good", "crack"):
        for source in sorted((demo_data / "images" / cls).iterdir())[:4]:
            model_mask = demo_data / "masks" / cls / source.name
            image = f.keep(source.stem, cls, data=source.read_bytes(),
                           model_mask=model_mask.read_bytes() if model_mask.is_file() else None)
            repaint = source.name == "crack_0000.png"
            append_review(root, Review(image, cls), painted_png=png(painted) if repaint else None)
    f.write_index()
    data, store = tmp_path / "data", tmp_path / "store"
    assert main(["audit", "export", "--audit", str(root), "--out", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == {"crack": 4, "good": 4}
    assert not np.array_equal(read_mask(demo_data / "masks" / "crack" / "crack_0000.png"), painted)

    args = ["train", "--data", str(data), "--out", str(store), "--name", "line", "--init", str(tiny_bundle),
            "--epochs-frozen", "0", "--epochs-finetune", "1", "--workers", "0", "--device", "cpu",
            "--no-calibrate", "--no-anomaly"]
    assert main(args) == 0
    bundle = load_bundle(capsys.readouterr().out.strip())
    assert bundle.meta.init_from.startswith("tiny/") and bundle.classes == ("good", "crack")
    assert "images/crack/crack_0000.png" in bundle.meta.split.train + bundle.meta.split.val
    dataset = load_dataset(bundle.meta.data.root)
    assert bundle.meta.data.hash == data_hash(dataset)  # what it trained on, masks included
    [sample] = [s for s in dataset.samples if s.image.name == "crack_0000.png"]
    assert sample.mask == (data / "masks" / "crack" / "crack_0000.png").resolve()
    assert np.array_equal(read_mask(sample.mask), painted)
