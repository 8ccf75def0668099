"""``inspector import``: each format's tiny data set, written here, becomes class folders whose masks match the
shapes drawn, whose classes and ``good`` images are right, and which ``load_dataset`` reads; errors name the file."""

import base64
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from inspector.cli import main
from inspector.cli.importer import FORMAT_NAMES
from inspector.data.formats import FORMATS, SUMMARY_FILE, import_dataset
from inspector.data.formats.coco import rle_counts, rle_decode
from inspector.data.formats.voc import voc_colour
from inspector.data.formats.yolo import parse_names
from inspector.data.layouts import load_dataset
from inspector.errors import DataError, MissingPathError, UsageError

W, H = 64, 48  # image size, px


def _image(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    assert cv2.imwrite(str(path), rng.integers(0, 255, (H, W, 3), dtype=np.uint8) // 4 + value)
    return path


def _mask(root, cls, stem):
    mask = cv2.imread(str(root / "masks" / cls / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.dtype == np.uint8 and mask.shape == (H, W)
    assert set(np.unique(mask)) <= {0, 255}
    return mask > 127


def _box(x0, y0, x1, y1):
    """The expected mask of a rectangle with corner pixels (x0, y0) and (x1, y1), both included."""
    mask = np.zeros((H, W), bool)
    mask[y0:y1 + 1, x0:x1 + 1] = True
    return mask


def _rect_polygon(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# ---- LabelMe ------------------------------------------------------------------------------------------------------

def _labelme(path, image_path, shapes, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.0.1", "flags": {}, "imagePath": image_path, "imageData": None, "imageHeight": H,
           "imageWidth": W, "shapes": [{"label": label, "points": pts, "shape_type": kind, "group_id": None,
                                        "flags": {}} for label, kind, pts in shapes]} | extra
    path.write_text(json.dumps(doc))


@pytest.fixture
def labelme_src(tmp_path):
    src = tmp_path / "bs"
    for name in "abc":
        _image(src / "data" / f"{name}.png")
    _labelme(src / "label" / "a.json", "../data/a.png",
             [("Pitting", "polygon", _rect_polygon(10, 10, 29, 19)), ("Pitting", "line", [[0, 0], [5, 5]])])
    _labelme(src / "label" / "b.json", "b.png",  # not beside the JSON: found by name under SRC
             [("Scratch Mark", "rectangle", [[40, 5], [60, 40]]), ("Pitting", "polygon", _rect_polygon(2, 2, 5, 5))])
    # c has no JSON: good. e exists only inside its JSON (imageData), with a circle
    embedded = cv2.imencode(".png", np.full((H, W), 90, np.uint8))[1].tobytes()
    _labelme(src / "label" / "e.json", "..\\data\\e.png", [("pitting", "circle", [[32, 24], [42, 24]])],
             imageData=base64.b64encode(embedded).decode())
    return src


def test_labelme_masks_classes_good_and_embedded_images(labelme_src, tmp_path):
    out = tmp_path / "out"
    summary = import_dataset("labelme", labelme_src, out)
    assert summary.classes == {"good": 1, "pitting": 2, "scratch_mark": 1}
    assert summary.skipped == {"line": 1} and summary.shapes == 4 and summary.empty_masks == []
    assert (_mask(out, "pitting", "a") == _box(10, 10, 29, 19)).all()
    # b: the larger rectangle decides the class; the mask holds the small pitting polygon too
    assert (_mask(out, "scratch_mark", "b") == (_box(40, 5, 60, 40) | _box(2, 2, 5, 5))).all()
    circle = _mask(out, "pitting", "e")
    # radius 10 px, rim pixels included as for polygons: about pi * 10.5^2 = 346 px
    assert circle.sum() == pytest.approx(np.pi * 10.5 ** 2, rel=0.05) and circle[24, 32] and not circle[24, 43]
    assert (out / "images" / "good" / "c.png").is_file() and not (out / "masks" / "good").exists()
    assert (out / "images" / "pitting" / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.stat(out / "images" / "pitting" / "a.png").st_ino == os.stat(labelme_src / "data" / "a.png").st_ino
    assert sorted(p.name for p in out.rglob("*.png")) == sorted(["a.png"] * 2 + ["b.png"] * 2 + ["c.png"]
                                                               + ["e.png"] * 2)
    data = load_dataset(out)
    assert data.classes == ("good", "pitting", "scratch_mark") and len(data.samples) == 4
    written = json.loads((out / SUMMARY_FILE).read_text())
    assert written["format"] == "labelme" and written["classes"] == summary.classes
    assert written["source"] == str(labelme_src) and written["skipped"] == {"line": 1}


def test_labelme_only_lines_give_the_class_without_a_mask(tmp_path):
    src = tmp_path / "src"
    _image(src / "x.png")
    _image(src / "g.png")
    _labelme(src / "x.json", "x.png", [("Crack", "linestrip", [[1, 1], [9, 9], [20, 3]])])
    summary = import_dataset("labelme", src, tmp_path / "out")
    assert summary.classes == {"crack": 1, "good": 1}
    assert summary.empty_masks == ["images/crack/x.png"] and summary.skipped == {"linestrip": 1}
    assert not (tmp_path / "out" / "masks" / "crack" / "x.png").exists()


def test_small_overshoot_is_clipped_and_a_far_point_is_an_error(tmp_path):
    src = tmp_path / "src"
    _image(src / "x.png")
    _image(src / "g.png")
    _labelme(src / "x.json", "x.png", [("dent", "polygon", [[-0.8, 0], [W - 1 + 0.9, 0], [W - 1, 9], [0, 9]])])
    import_dataset("labelme", src, tmp_path / "ok")
    assert (_mask(tmp_path / "ok", "dent", "x") == _box(0, 0, W - 1, 9)).all()
    _labelme(src / "x.json", "x.png", [("dent", "polygon", [[0, 0], [W + 3, 0], [W - 1, 9]])])
    with pytest.raises(DataError, match=r"x\.json.*outside the 64x48 image"):
        import_dataset("labelme", src, tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok", "src"]  # no "bad", no staging folder


def test_missing_image_names_the_json_and_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    _image(src / "data" / "a.png")
    _labelme(src / "label" / "gone.json", "gone.png", [("pitting", "polygon", _rect_polygon(1, 1, 5, 5))])
    with pytest.raises(MissingPathError, match=r"gone\.json.*'gone\.png' not found"):
        import_dataset("labelme", src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no out, no staging folder


def test_malformed_json_and_unknown_format(tmp_path):
    src = tmp_path / "src"
    _image(src / "a.png")
    (src / "a.json").write_text("{not json")
    with pytest.raises(DataError, match=r"a\.json: not a valid JSON file"):
        import_dataset("labelme", src, tmp_path / "out")
    with pytest.raises(UsageError, match="unknown format 'cvat'.*labelme, coco, yolo-seg, voc"):
        import_dataset("cvat", src, tmp_path / "out")


def test_out_is_refused_when_not_empty_and_replaced_only_when_an_earlier_import(labelme_src, tmp_path):
    out = tmp_path / "out"
    import_dataset("labelme", labelme_src, out)
    with pytest.raises(UsageError, match="not empty"):
        import_dataset("labelme", labelme_src, out)
    (out / "images" / "good" / "c.png").unlink()
    assert import_dataset("labelme", labelme_src, out, force=True).classes["good"] == 1
    assert (out / "images" / "good" / "c.png").is_file()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not an earlier import"):
        import_dataset("labelme", labelme_src, other, force=True)
    assert (other / "keep.txt").read_text() == "x"
    with pytest.raises(UsageError, match="contain each other"):
        import_dataset("labelme", labelme_src, labelme_src / "out")


# ---- COCO ---------------------------------------------------------------------------------------------------------

def _rle_runs(mask):
    """Column-major run lengths of a bool mask, starting with a run of 0s (COCO's uncompressed RLE)."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    return [0] + runs if flat[0] else runs


def _rle_string(runs):
    """pycocotools' rleToString."""
    out = []
    for i, x in enumerate(runs):
        if i > 2:
            x -= runs[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(c + (0x20 if more else 0) + 48))
    return "".join(out)


def test_rle_counts_of_hand_encoded_strings():
    assert rle_counts("325") == [3, 2, 5]
    assert rle_counts("X1") == [40]  # 40 = 8 + 1 * 32: two 5-bit groups
    assert rle_counts("1:2I") == [1, 10, 2, 3]  # the fourth is stored as 3 - 10 = -7 ('I')
    mask = rle_decode({"size": [2, 3], "counts": [1, 2, 3]}, "x")
    assert mask.tolist() == [[False, True, False], [True, False, False]]  # column-major: (1,0) (0,1) set
    with pytest.raises(DataError, match="add up"):
        rle_decode({"size": [2, 3], "counts": [1, 2]}, "x")


def test_coco_polygons_rle_both_kinds_and_good(tmp_path):
    src = tmp_path / "coco"
    for name in ("x", "y", "z", "w"):
        _image(src / "images" / f"{name}.png")
    dent = np.zeros((H, W), bool)
    dent[5:30, 20:23] = True
    dent[40:44, 50:60] = True
    crowd = _box(0, 40, 63, 47)
    assert rle_decode({"size": [H, W], "counts": _rle_string(_rle_runs(dent))}, "x").tolist() == dent.tolist()
    doc = {
        "images": [{"id": i, "file_name": f"{n}.png", "width": W, "height": H} for i, n in enumerate("xyzw", 1)],
        "categories": [{"id": 0, "name": "defects"}, {"id": 1, "name": "Crack"}, {"id": 2, "name": "Dent"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [sum(_rect_polygon(10, 10, 29, 19), [])],
             "bbox": [10, 10, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": _rle_string(_rle_runs(dent))}},
            {"id": 3, "image_id": 4, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": _rle_runs(crowd)}},
            {"id": 4, "image_id": 4, "category_id": 2, "bbox": [1, 1, 4, 4], "segmentation": []},
        ]}
    (src / "annotations").mkdir()
    (src / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    summary = import_dataset("coco", src, out)
    assert summary.classes == {"crack": 2, "dent": 1, "good": 1}
    assert (_mask(out, "crack", "x") == _box(10, 10, 29, 19)).all()
    assert (_mask(out, "dent", "y") == dent).all()
    assert (_mask(out, "crack", "w") == (crowd | _box(1, 1, 4, 4))).all()  # a bbox-only annotation as its box
    assert (out / "images" / "good" / "z.png").is_file()
    assert load_dataset(out).classes == ("good", "crack", "dent")


def test_coco_unknown_category_and_missing_image(tmp_path):
    src = tmp_path / "coco"
    _image(src / "x.png")
    doc = {"images": [{"id": 1, "file_name": "x.png"}], "categories": [{"id": 1, "name": "crack"}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 5, "segmentation": [[1, 1, 5, 1, 5, 5]]}]}
    (src / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"ann\.json: annotation 7 has unknown category id 5"):
        import_dataset("coco", src / "ann.json", tmp_path / "out")
    doc["images"][0]["file_name"] = "nowhere/q.png"
    (src / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(MissingPathError, match=r"ann\.json: image 'nowhere/q\.png' not found"):
        import_dataset("coco", src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coco"]


# ---- YOLO segmentation --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "train: ../train/images\nnc: 2\nnames: ['Scratch', 'dent']\n",
    "names:\n  - Scratch\n  - dent\nroboflow:\n  project: x\n",
    "names:\n  0: Scratch\n  1: dent\n",
    "names: {0: Scratch, 1: 'dent'}\n",
])
def test_yolo_names_in_each_yaml_form(text, tmp_path):
    assert parse_names(text, tmp_path / "data.yaml") == ["Scratch", "dent"]


def test_yolo_polygons_empty_and_missing_labels_and_same_stems(tmp_path):
    src = tmp_path / "yolo"
    (src).mkdir()
    (src / "data.yaml").write_text("names:\n  0: Scratch\n  1: dent\n")
    for split, name in (("train", "p"), ("train", "q"), ("valid", "r"), ("valid", "p")):
        _image(src / split / "images" / f"{name}.png")
    (src / "train" / "labels").mkdir()
    (src / "valid" / "labels").mkdir()
    rect = np.array(_rect_polygon(10, 5, 29, 14), float) / (W, H)
    (src / "train" / "labels" / "p.txt").write_text("0 " + " ".join(f"{v:.6f}" for v in rect.ravel()) + "\n")
    (src / "train" / "labels" / "q.txt").write_text("")
    (src / "valid" / "labels" / "p.txt").write_text("1 0.5 0.5 0.25 0.5\n")  # a detection box: cx cy w h
    out = tmp_path / "out"
    summary = import_dataset("yolo-seg", src, out)
    assert summary.classes == {"dent": 1, "good": 2, "scratch": 1}
    assert (_mask(out, "scratch", "p") == _box(10, 5, 29, 14)).all()
    box = _mask(out, "dent", "p-2")  # the second "p" keeps its stem with -2
    assert box.sum() == pytest.approx(16 * 24, abs=16 + 24 + 1) and box[24, 32] and not box[5, 5]
    assert summary.renamed == {str((src / "valid" / "images" / "p.png").absolute()): "p-2"}
    assert sorted(p.name for p in (out / "images" / "good").iterdir()) == ["q.png", "r.png"]
    assert load_dataset(out).classes == ("good", "dent", "scratch")


def test_yolo_unknown_class_id_names_file_and_line(tmp_path):
    src = tmp_path / "yolo"
    _image(src / "images" / "a.png")
    (src / "classes.txt").write_text("crack\n")
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text("0 0.1 0.1 0.2 0.1 0.2 0.2\n3 0.1 0.1 0.2 0.1 0.2 0.2\n")
    with pytest.raises(DataError, match=r"a\.txt:2: class id 3 is not in .*classes\.txt"):
        import_dataset("yolo-seg", src, tmp_path / "out")


# ---- Pascal VOC ---------------------------------------------------------------------------------------------------

def test_voc_palette_masks_with_boundary_and_unsegmented_images(tmp_path):
    src = tmp_path / "voc"
    for name in ("m", "n", "o"):
        _image(src / "JPEGImages" / f"{name}.jpg")
    index = np.zeros((H, W), np.uint8)
    index[10:20, 10:30] = 1  # aeroplane
    ring = np.zeros_like(index)
    ring[9:21, 9:31] = 255
    ring[10:20, 10:30] = 0
    index |= ring  # VOC's void boundary around the object
    palette = sum((list(voc_colour(i)) for i in range(256)), [])
    (src / "SegmentationClass").mkdir()
    for name, values in (("m", index), ("n", np.zeros_like(index))):
        image = Image.fromarray(values, "P")
        image.putpalette(palette)
        image.save(src / "SegmentationClass" / f"{name}.png")
    out = tmp_path / "out"
    summary = import_dataset("voc", src, out)
    assert summary.classes == {"aeroplane": 1, "good": 1} and summary.skipped == {"image_without_mask": 1}
    assert (_mask(out, "aeroplane", "m") == _box(10, 10, 29, 19)).all()  # the boundary is not defect
    assert (out / "images" / "good" / "n.jpg").is_file()
    assert load_dataset(out).classes == ("good", "aeroplane")


def test_voc_cvat_labelmap_colours_and_largest_class(tmp_path):
    src = tmp_path / "cvat"
    _image(src / "JPEGImages" / "s.png")
    _image(src / "JPEGImages" / "t.png")
    (src / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                      "Pitting Mark:255,0,0::\nDent:0,255,0::\n")
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[0:4, 0:4] = (255, 0, 0)
    rgb[20:40, 20:40] = (0, 255, 0)
    (src / "SegmentationClass").mkdir()
    cv2.imwrite(str(src / "SegmentationClass" / "s.png"), rgb[..., ::-1])  # OpenCV writes BGR
    rgb[5, 60] = (1, 2, 3)
    cv2.imwrite(str(src / "SegmentationClass" / "t.png"), rgb[..., ::-1])
    with pytest.raises(DataError, match=r"t\.png: colour \(1, 2, 3\) is no class of .*labelmap\.txt"):
        import_dataset("voc", src, tmp_path / "out")
    (src / "SegmentationClass" / "t.png").unlink()
    (src / "JPEGImages" / "t.png").unlink()
    out = tmp_path / "out"
    assert import_dataset("voc", src, out).classes == {"dent": 1}
    assert (_mask(out, "dent", "s") == (_box(0, 0, 3, 3) | _box(20, 20, 39, 39))).all()


# ---- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_formats_are_the_librarys():
    assert FORMAT_NAMES == tuple(FORMATS)


def test_cli_prints_one_json_summary_line(labelme_src, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["import", "--format", "labelme", str(labelme_src), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["classes"] == {"good": 1, "pitting": 2, "scratch_mark": 1} and line["out"] == str(out.absolute())
    assert main(["import", "--format", "labelme", str(labelme_src), "--out", str(out)]) == 2
    assert "inspector import: error: --out" in capsys.readouterr().err
    assert main(["import", "--format", "labelme", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")]) == 2
    assert "source" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_group_by_is_checked_and_kept_as_the_data_sets_default(labelme_src, tmp_path):
    out = tmp_path / "out"
    assert main(["import", "--format", "labelme", str(labelme_src), "--out", str(out), "--group-by", r"^(\w)"]) == 0
    assert load_dataset(out).group_by == r"^(\w)"  # what train --group-by defaults to
    with pytest.raises(DataError, match="matches nothing in the file name"):
        import_dataset("labelme", labelme_src, tmp_path / "o2", group_by=r"^z(\d)")
    with pytest.raises(DataError, match="one group"):
        import_dataset("labelme", labelme_src, tmp_path / "o3", group_by=r"png")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
