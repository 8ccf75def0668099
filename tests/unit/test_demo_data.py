"""Tests for the synthetic demo data set generator."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.data import demo
from inspector.data.demo import DEMO_CLASSES, make_part, write_demo_data

N_PER_CLASS = 4
SIZE = 128


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small generated set shared by the read-only tests."""
    root = tmp_path_factory.mktemp("demo")
    counts = write_demo_data(root, n_per_class=N_PER_CLASS, size=SIZE, seed=0)
    assert counts == {kind: N_PER_CLASS for kind in DEMO_CLASSES}
    return root


def _read(path: Path) -> np.ndarray:
    """Reads a PNG exactly as stored (no colour conversion)."""
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert array is not None, path
    return array


def _all_files(root: Path) -> dict[str, bytes]:
    """Relative path -> file bytes for every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ring(mask: np.ndarray) -> np.ndarray:
    """Background band a few pixels around the defect, skipping its immediate edge."""
    inner = cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0
    outer = cv2.dilate(mask, np.ones((11, 11), np.uint8)) > 0
    return outer & ~inner


def test_classes_are_exact() -> None:
    assert DEMO_CLASSES == ("good", "scratch", "spot", "crack")


def test_layout_and_counts(demo_root: Path) -> None:
    assert sorted(p.name for p in demo_root.iterdir()) == ["images", "masks"]
    expected = [f"{kind}_{i:04d}.png" for kind in DEMO_CLASSES for i in range(N_PER_CLASS)]
    for part in ("images", "masks"):
        assert sorted(p.name for p in (demo_root / part).iterdir()) == sorted(DEMO_CLASSES)
        names = [p.name for kind in DEMO_CLASSES for p in sorted((demo_root / part / kind).iterdir())]
        assert names == expected


def test_images_are_grey_uint8_of_requested_size(demo_root: Path) -> None:
    for path in (demo_root / "images").rglob("*.png"):
        image = _read(path)
        assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE), path


def test_masks_are_binary_and_match_class(demo_root: Path) -> None:
    for kind in DEMO_CLASSES:
        for path in sorted((demo_root / "masks" / kind).glob("*.png")):
            mask = _read(path)
            assert mask.dtype == np.uint8 and mask.shape == (SIZE, SIZE), path
            assert set(np.unique(mask)) <= {0, 255}, path
            area = float((mask > 0).mean())
            if kind == "good":
                assert area == 0.0, path
            else:
                assert 0.0005 <= area <= 0.15, (path, area)


@pytest.mark.parametrize("size", [64, 128, 256])
@pytest.mark.parametrize("kind", DEMO_CLASSES[1:])
def test_defects_have_sensible_area_and_visible_contrast(kind: str, size: int) -> None:
    for i in range(25):
        image, mask = make_part(kind, np.random.default_rng([7, size, i]), size)
        defect = mask > 0
        assert 0.0005 <= defect.mean() <= 0.15, (kind, size, i, defect.mean())
        ring = _ring(mask)
        contrast = abs(float(image[defect].mean()) - float(image[ring].mean()))
        assert contrast >= 10.0, (kind, size, i, contrast)


def test_defect_contrast_in_written_files(demo_root: Path) -> None:
    for kind in DEMO_CLASSES[1:]:
        for path in sorted((demo_root / "masks" / kind).glob("*.png")):
            mask, image = _read(path), _read(demo_root / "images" / kind / path.name).astype(float)
            contrast = abs(image[mask > 0].mean() - image[_ring(mask)].mean())
            assert contrast >= 10.0, (path, contrast)


def test_good_parts_vary_and_have_empty_masks() -> None:
    parts = [make_part("good", np.random.default_rng([3, 0, i]), SIZE) for i in range(10)]
    assert all(not mask.any() for _, mask in parts)
    means = [float(image.mean()) for image, _ in parts]
    assert max(means) - min(means) > 10.0  # base grey level differs between parts
    assert all(image.std() > 1.0 for image, _ in parts)  # textured, not flat


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((first, 5), (second, 5), (other, 6)):
        write_demo_data(root, n_per_class=2, size=64, seed=seed)
    files_first, files_other = _all_files(first), _all_files(other)
    assert files_first == _all_files(second)
    assert files_first.keys() == files_other.keys()
    images = [k for k in files_first if k.startswith("images")]
    assert all(files_first[k] != files_other[k] for k in images)


def test_make_part_is_deterministic_per_generator_state() -> None:
    a = make_part("crack", np.random.default_rng(11), 96)
    b = make_part("crack", np.random.default_rng(11), 96)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dent"):
        make_part("dent", np.random.default_rng(0))
    with pytest.raises(ValueError):
        make_part("good", np.random.default_rng(0), size=16)
    with pytest.raises(ValueError):
        write_demo_data(tmp_path, n_per_class=-1)


def test_zero_per_class_creates_empty_folders(tmp_path: Path) -> None:
    assert write_demo_data(tmp_path, n_per_class=0, size=64) == dict.fromkeys(DEMO_CLASSES, 0)
    for part in ("images", "masks"):
        assert all((tmp_path / part / kind).is_dir() for kind in DEMO_CLASSES)


def test_failed_write_raises_oserror_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo.cv2, "imwrite", lambda *args, **kwargs: False)
    with pytest.raises(OSError, match="good_0000.png"):
        write_demo_data(tmp_path, n_per_class=1, size=64)
