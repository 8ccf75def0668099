"""Tests for the data layouts, the stratified split, the augmentations and the torch dataset."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspector.config import PreprocessSpec
from inspector.data.augment import AugmentConfig, augment
from inspector.data.dataset import DefectDataset, balanced_sampler, read_mask
from inspector.data.layouts import DataSet, Sample, data_hash, load_dataset
from inspector.data.split import compile_group_by, group_of, samples_from_record, split_record, stratified_split
from inspector.errors import DataError, MissingPathError, UsageError

H, W = 48, 64  # size of the images written by these tests


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _part(seed: int, colour: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, (H, W, 3) if colour else (H, W), dtype=np.uint8)
    return image


def _defect_mask(x0: int = 10, y0: int = 12, x1: int = 30, y1: int = 24) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


@pytest.fixture()
def class_folders(tmp_path: Path) -> Path:
    """images/{good,scratch,dent}; masks for two scratches and one dent; one scratch unlabelled."""
    root = tmp_path / "cf"
    for i in range(3):
        _write(root / "images" / "good" / f"g{i}.png", _part(i))
    for i in range(3):
        _write(root / "images" / "scratch" / f"s{i}.png", _part(10 + i))
    _write(root / "masks" / "scratch" / "s0.png", _defect_mask())
    _write(root / "masks" / "scratch" / "s1.png", _defect_mask(30, 5, 50, 20))
    _write(root / "images" / "dent" / "d0.jpg", _part(20))
    _write(root / "masks" / "dent" / "d0.png", _defect_mask(5, 5, 15, 15))
    (root / "images" / "good" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def mvtec(tmp_path: Path) -> Path:
    root = tmp_path / "bottle"
    for i in range(3):
        _write(root / "train" / "good" / f"{i:03d}.png", _part(i))
    _write(root / "test" / "good" / "000.png", _part(5))
    for i in range(2):
        _write(root / "test" / "crack" / f"{i:03d}.png", _part(30 + i))
        _write(root / "ground_truth" / "crack" / f"{i:03d}_mask.png", _defect_mask())
    _write(root / "test" / "broken_large" / "000.png", _part(40))  # no ground truth
    return root


# --- layouts ----------------------------------------------------------------------------------------------------


def test_class_folders_layout(class_folders: Path) -> None:
    ds = load_dataset(class_folders)
    assert ds.layout == "class_folders"
    assert ds.root == class_folders
    assert ds.classes == ("good", "dent", "scratch")
    by_name = {s.image.name: s for s in ds.samples}
    assert set(by_name) == {"g0.png", "g1.png", "g2.png", "s0.png", "s1.png", "s2.png", "d0.jpg"}
    assert all(by_name[f"g{i}.png"].label == "good" and by_name[f"g{i}.png"].mask is None for i in range(3))
    assert by_name["s0.png"].mask == class_folders / "masks" / "scratch" / "s0.png"
    assert by_name["s1.png"].mask == class_folders / "masks" / "scratch" / "s1.png"
    assert by_name["s2.png"].label == "scratch" and by_name["s2.png"].mask is None
    assert by_name["d0.jpg"].label == "dent" and by_name["d0.jpg"].mask == class_folders / "masks" / "dent" / "d0.png"
    index = {c: i for i, c in enumerate(ds.classes)}
    assert ds.labels() == [index[s.label] for s in ds.samples]
    assert Counter(ds.labels()) == {0: 3, 1: 1, 2: 3}


def test_read_mask_good_defect_and_unlabelled(class_folders: Path) -> None:
    ds = load_dataset(class_folders)
    by_name = {s.image.name: s for s in ds.samples}
    mask, labelled = read_mask(by_name["g0.png"], (H, W))
    assert labelled is True and mask.shape == (H, W) and mask.dtype == np.uint8 and not mask.any()
    mask, labelled = read_mask(by_name["s2.png"], (H, W))
    assert labelled is False and not mask.any()  # a defect without mask: no pixel label
    mask, labelled = read_mask(by_name["s0.png"], (H, W))
    assert labelled is True
    np.testing.assert_array_equal(mask, _defect_mask())


def test_read_mask_binarises_and_resizes(tmp_path: Path) -> None:
    grey = np.zeros((24, 32), np.uint8)
    grey[:, :16] = 100  # below the 127 threshold: background
    grey[:12, 16:] = 200  # defect
    path = _write(tmp_path / "m.png", grey)
    mask, labelled = read_mask(Sample(tmp_path / "i.png", "crack", path), (48, 64))
    assert labelled and mask.shape == (48, 64)
    assert set(np.unique(mask)) == {0, 255}
    assert np.all(mask[:24, 32:] == 255) and np.all(mask[24:, :] == 0) and np.all(mask[:, :32] == 0)


def test_read_mask_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read mask"):
        read_mask(Sample(tmp_path / "i.png", "crack", bad), (H, W))


def test_mvtec_layout(mvtec: Path) -> None:
    ds = load_dataset(mvtec)
    assert ds.layout == "mvtec"
    assert ds.classes == ("good", "broken_large", "crack")
    rel = {str(s.image.relative_to(mvtec)): s for s in ds.samples}
    assert set(rel) == {
        "train/good/000.png",
        "train/good/001.png",
        "train/good/002.png",
        "test/good/000.png",
        "test/crack/000.png",
        "test/crack/001.png",
        "test/broken_large/000.png",
    }
    assert rel["train/good/001.png"].label == "good" and rel["train/good/001.png"].mask is None
    assert rel["test/good/000.png"].label == "good" and rel["test/good/000.png"].mask is None
    assert rel["test/crack/001.png"].label == "crack"
    assert rel["test/crack/001.png"].mask == mvtec / "ground_truth" / "crack" / "001_mask.png"
    assert rel["test/broken_large/000.png"].mask is None
    _, labelled = read_mask(rel["test/broken_large/000.png"], (H, W))
    assert labelled is False


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingPathError, match="does not exist") as info:
        load_dataset(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)


def test_folder_with_neither_layout(tmp_path: Path) -> None:
    _write(tmp_path / "pics" / "a.png", _part(0))
    with pytest.raises(MissingPathError, match="neither"):
        load_dataset(tmp_path)


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "images" / "good").mkdir(parents=True)
    (tmp_path / "images" / "good" / "readme.txt").write_text("x")
    with pytest.raises(MissingPathError, match="no images"):
        load_dataset(tmp_path)


def test_no_good_class(tmp_path: Path) -> None:
    _write(tmp_path / "images" / "scratch" / "a.png", _part(0))
    _write(tmp_path / "images" / "dent" / "b.png", _part(1))
    with pytest.raises(DataError, match="'good' class") as info:
        load_dataset(tmp_path)
    assert "dent" in str(info.value) and "scratch" in str(info.value)


def test_only_good_class(tmp_path: Path) -> None:
    _write(tmp_path / "images" / "good" / "a.png", _part(0))
    with pytest.raises(DataError, match=r"at least one defect class \(or train --good-only\)"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, good_only=True).classes == ("good",)  # a new product before its first defect


def test_dataset_json_gives_the_default_group_regex(tmp_path: Path) -> None:
    _write(tmp_path / "images" / "good" / "a.png", _part(0))
    _write(tmp_path / "images" / "dent" / "b.png", _part(1))
    assert load_dataset(tmp_path).group_by is None
    (tmp_path / "dataset.json").write_text(json.dumps({"group_by": r"^(\w)"}))
    assert load_dataset(tmp_path).group_by == r"^(\w)"
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        load_dataset(tmp_path)


def test_empty_class_folder_is_not_a_class(class_folders: Path) -> None:
    (class_folders / "images" / "hole").mkdir()  # a placeholder folder, no images yet
    ds = load_dataset(class_folders)
    assert ds.classes == ("good", "dent", "scratch")


def test_empty_good_folder_is_no_good_class(tmp_path: Path) -> None:
    (tmp_path / "images" / "good").mkdir(parents=True)
    _write(tmp_path / "images" / "scratch" / "a.png", _part(0))
    with pytest.raises(DataError, match="'good' class"):
        load_dataset(tmp_path)


def test_mvtec_empty_test_folder_is_not_a_class(mvtec: Path) -> None:
    (mvtec / "test" / "contamination").mkdir()
    assert load_dataset(mvtec).classes == ("good", "broken_large", "crack")


def test_data_hash_tracks_pixels_and_masks(class_folders: Path) -> None:
    first = data_hash(load_dataset(class_folders))
    assert len(first) == 64 and first == data_hash(load_dataset(class_folders))
    image = cv2.imread(str(class_folders / "images" / "good" / "g1.png"), cv2.IMREAD_UNCHANGED)
    image[7, 9, 1] ^= 1  # one pixel, one bit
    _write(class_folders / "images" / "good" / "g1.png", image)
    second = data_hash(load_dataset(class_folders))
    assert second != first
    mask = cv2.imread(str(class_folders / "masks" / "dent" / "d0.png"), cv2.IMREAD_UNCHANGED)
    mask[40, 40] = 255
    _write(class_folders / "masks" / "dent" / "d0.png", mask)
    assert data_hash(load_dataset(class_folders)) not in (first, second)


# --- split ------------------------------------------------------------------------------------------------------


def _synthetic(tmp_path: Path, counts: dict[str, int]) -> DataSet:
    """A DataSet of ``counts`` samples per class (paths only; the split never reads pixels)."""
    samples = tuple(
        Sample(tmp_path / "images" / cls / f"{cls}{i:03d}.png", cls, None) for cls, n in counts.items() for i in range(n)
    )
    classes = ("good", *sorted(c for c in counts if c != "good"))
    return DataSet(tmp_path, "class_folders", classes, samples)


COUNTS = {"good": 40, "crack": 10, "scratch": 5, "dent": 1}


def test_split_is_seeded(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, COUNTS)
    a_train, a_val = stratified_split(ds, 0.2, seed=3)
    b_train, b_val = stratified_split(ds, 0.2, seed=3)
    c_train, c_val = stratified_split(ds, 0.2, seed=4)
    assert a_train == b_train and a_val == b_val
    assert set(a_val) != set(c_val)


def test_split_is_stratified_disjoint_and_complete(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, COUNTS)
    train, val = stratified_split(ds, 0.2, seed=0)
    assert Counter(s.label for s in val) == {"good": 8, "crack": 2, "scratch": 1}
    assert Counter(s.label for s in train) == {"good": 32, "crack": 8, "scratch": 4, "dent": 1}
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(ds.samples)
    assert len(train) + len(val) == len(ds.samples)


def test_split_small_class_gets_one_validation_sample(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, {"good": 10, "crack": 2})
    _, val = stratified_split(ds, 0.1, seed=0)
    assert Counter(s.label for s in val) == {"good": 1, "crack": 1}


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(tmp_path: Path, fraction: float) -> None:
    with pytest.raises(UsageError, match="val_fraction"):
        stratified_split(_synthetic(tmp_path, COUNTS), fraction, seed=0)


def test_split_record_round_trip(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, COUNTS)
    train, val = stratified_split(ds, 0.2, seed=1)
    record = json.loads(json.dumps(split_record(ds, train, val)))  # as stored in bundle.json
    assert set(record) == {"train", "val"}
    assert record["val"] == sorted(record["val"])
    assert all(not Path(p).is_absolute() and p.startswith("images/") for p in record["train"] + record["val"])
    assert set(samples_from_record(ds, record["train"])) == set(train)
    assert set(samples_from_record(ds, record["val"])) == set(val)
    # the record still resolves against the same tree at another root
    moved = _synthetic(tmp_path / "elsewhere", COUNTS)
    assert {s.image.name for s in samples_from_record(moved, record["val"])} == {s.image.name for s in val}


def test_samples_from_record_missing_image(tmp_path: Path) -> None:
    ds = _synthetic(tmp_path, COUNTS)
    with pytest.raises(MissingPathError) as info:
        samples_from_record(ds, ["images/good/good000.png", "images/good/vanished.png"])
    assert "1 images" in str(info.value) and "images/good/vanished.png" in str(info.value)


# --- augment ----------------------------------------------------------------------------------------------------

GEOMETRY_ONLY = AugmentConfig(
    hflip=0.5, vflip=0.5, max_rotate=25.0, max_shift=0.1, scale=(0.85, 1.15), brightness=0.0, contrast=(1.0, 1.0), blur=0.0, noise=0.0
)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def _aligned_pair(colour: bool) -> tuple[np.ndarray, np.ndarray]:
    """A mask with an asymmetric shape (so flips and rotations show) and an image bright exactly there."""
    mask = np.zeros((96, 128), np.uint8)
    mask[20:50, 30:45] = 255
    mask[20:30, 45:80] = 255
    cv2.circle(mask, (95, 70), 10, 255, -1)
    image = np.where(mask > 0, 230, 25).astype(np.uint8)
    return (np.dstack([image] * 3) if colour else image), mask


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "bgr"])
def test_augment_keeps_image_and_mask_aligned(colour: bool) -> None:
    image, mask = _aligned_pair(colour)
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(12):
        out_image, out_mask = augment(image, mask, rng, GEOMETRY_ONLY)
        bright = (out_image if not colour else out_image[..., 1]) > 127
        assert _iou(bright, out_mask > 127) > 0.8
        moved += _iou(out_mask > 127, mask > 127) < 0.8
    assert moved >= 6  # the geometry really changed most draws, so the check above is not trivial


def test_augment_flip_only_is_exact() -> None:
    image, mask = _aligned_pair(False)
    cfg = dataclasses.replace(GEOMETRY_ONLY, hflip=1.0, vflip=0.0, max_rotate=0.0, max_shift=0.0, scale=(1.0, 1.0))
    out_image, out_mask = augment(image, mask, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(out_mask, mask[:, ::-1])
    np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_augment_identity_config_changes_nothing() -> None:
    image, mask = _aligned_pair(True)
    cfg = dataclasses.replace(GEOMETRY_ONLY, hflip=0.0, vflip=0.0, max_rotate=0.0, max_shift=0.0, scale=(1.0, 1.0))
    out_image, out_mask = augment(image, mask, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_mask, mask)


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "bgr"])
def test_augment_default_keeps_shapes_dtypes_and_binary_mask(colour: bool) -> None:
    image, mask = _aligned_pair(colour)
    rng = np.random.default_rng(7)
    changed = False
    for _ in range(5):
        out_image, out_mask = augment(image, mask, rng)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_mask.shape == mask.shape and out_mask.dtype == np.uint8
        assert set(np.unique(out_mask)) <= {0, 255}  # nearest neighbour: no blended values
        changed |= not np.array_equal(out_image, image)
    assert changed


def test_augment_is_reproducible_per_seed() -> None:
    image, mask = _aligned_pair(True)
    a = augment(image, mask, np.random.default_rng(5))
    b = augment(image, mask, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# --- DefectDataset and the sampler ------------------------------------------------------------------------------


def test_defect_dataset_items(class_folders: Path) -> None:
    ds = load_dataset(class_folders)
    spec = PreprocessSpec(64, 64)
    data = DefectDataset(list(ds.samples), ds.classes, spec, train=False)
    assert len(data) == len(ds.samples)
    for i, sample in enumerate(ds.samples):
        image, mask, has_mask, label = data[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert mask.shape == (1, 64, 64) and mask.dtype == torch.float32
        assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
        assert label == ds.classes.index(sample.label)
        expected_has_mask = sample.label == "good" or sample.mask is not None
        assert has_mask.item() == float(expected_has_mask)
        assert (mask.sum().item() > 0) == (sample.mask is not None)
    # the mask lands where the defect is: s0's rectangle (x 10..30, y 12..24 of a 64x48 frame)
    s0 = next(i for i, s in enumerate(ds.samples) if s.image.name == "s0.png")
    _, mask, _, _ = data[s0]
    top = (64 - 48) // 2  # letterbox padding above a 64x48 frame in a 64x64 input
    expected = np.zeros((64, 64), np.float32)
    expected[top + 12 : top + 24, 10:30] = 1.0
    np.testing.assert_array_equal(mask[0].numpy(), expected)


def test_defect_dataset_normalises_like_preprocess(tmp_path: Path) -> None:
    _write(tmp_path / "images" / "good" / "g.png", np.full((64, 64, 3), 255, np.uint8))
    _write(tmp_path / "images" / "crack" / "c.png", np.full((64, 64, 3), 127, np.uint8))
    ds = load_dataset(tmp_path)
    data = DefectDataset(list(ds.samples), ds.classes, PreprocessSpec(64, 64), train=False)
    values = {ds.samples[i].label: data[i][0] for i in range(2)}
    torch.testing.assert_close(values["good"], torch.ones(3, 64, 64))
    torch.testing.assert_close(values["crack"], torch.zeros(3, 64, 64))


def test_defect_dataset_train_mode_shapes(class_folders: Path) -> None:
    ds = load_dataset(class_folders)
    data = DefectDataset(list(ds.samples), ds.classes, PreprocessSpec(64, 96), train=True, seed=1)
    for i in range(len(data)):
        image, mask, _, _ = data[i]
        assert image.shape == (3, 64, 96) and mask.shape == (1, 64, 96)
        assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    labelled = next(i for i, s in enumerate(ds.samples) if s.mask is not None)
    assert data[labelled][1].sum().item() > 0


def _rare(tmp_path: Path) -> list[Sample]:
    return [Sample(tmp_path / f"g{i}.png", "good", None) for i in range(90)] + [
        Sample(tmp_path / f"d{i}.png", "crack", None) for i in range(10)
    ]


def test_balanced_sampler_oversamples_rare_class(tmp_path: Path) -> None:
    samples = _rare(tmp_path)
    sampler = balanced_sampler(samples, seed=0)
    assert len(sampler) == len(samples)
    draws = [i for _ in range(20) for i in sampler]  # 2000 draws
    assert len(draws) == 2000 and all(0 <= i < 100 for i in draws)
    share = sum(samples[i].label == "crack" for i in draws) / len(draws)
    assert share > 0.2  # frequency is 0.1; square-root balancing expects sqrt(10)/(sqrt(10)+sqrt(90)) = 0.25
    assert share < 0.3


def test_balanced_sampler_is_seeded(tmp_path: Path) -> None:
    samples = _rare(tmp_path)
    assert list(balanced_sampler(samples, seed=3)) == list(balanced_sampler(samples, seed=3))
    assert list(balanced_sampler(samples, seed=3)) != list(balanced_sampler(samples, seed=4))


def _positions(tmp_path: Path) -> DataSet:
    """Camera positions p00..p19, each photographed 5 times; positions 0-5 show a defect in 2 of their images."""
    samples = []
    for p in range(20):
        for t in range(5):
            label = "pitting" if p < 6 and t >= 3 else "good"
            samples.append(Sample(tmp_path / "images" / label / f"01_t{t}_p{p:02d}_crop.jpg", label, None))
    return DataSet(tmp_path, "class_folders", ("good", "pitting"), tuple(samples))


def test_group_split_keeps_each_group_on_one_side(tmp_path: Path) -> None:
    ds = _positions(tmp_path)
    train, val = stratified_split(ds, 0.2, seed=0, group_by=r"_(p\d+)_crop")
    position = lambda s: s.image.name.split("_")[2]  # noqa: E731
    assert not {position(s) for s in train} & {position(s) for s in val}
    assert set(train) | set(val) == set(ds.samples) and not set(train) & set(val)
    counts = Counter(s.label for s in val)
    assert 0 < counts["pitting"] <= 6 and 10 <= counts["good"] <= 24  # near 20 % of each class, in whole groups
    assert stratified_split(ds, 0.2, seed=0, group_by=r"_(p\d+)_crop") == (train, val)  # seeded


def test_each_naming_scheme_can_have_its_own_group(tmp_path: Path) -> None:
    pattern = compile_group_by(r"_(p\d+)_crop|^(KGT\d-\w-\d+)")
    named = lambda name: Sample(tmp_path / name, "good", None)  # noqa: E731
    assert group_of(pattern, named("01_t3_p07_crop.jpg")) == "p07"
    assert group_of(pattern, named("KGT1-S-060-A02_crop_0.jpg")) == "KGT1-S-060"


def test_group_split_without_the_regex_mixes_positions(tmp_path: Path) -> None:
    train, val = stratified_split(_positions(tmp_path), 0.2, seed=0)
    position = lambda s: s.image.name.split("_")[2]  # noqa: E731
    assert {position(s) for s in train} & {position(s) for s in val}  # what --group-by prevents


@pytest.mark.parametrize("regex,words", [(r"nomatch(\d)", "matches nothing in the file name"),
                                         (r"^01", "one group"), (r"(", "not a valid regular expression")])
def test_group_split_errors_name_the_problem(tmp_path: Path, regex: str, words: str) -> None:
    with pytest.raises((DataError, UsageError), match=words):
        stratified_split(_positions(tmp_path), 0.2, seed=0, group_by=regex)
