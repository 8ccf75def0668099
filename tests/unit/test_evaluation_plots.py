"""Smoke and pixel checks of inspector.evaluation.plots."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest

from inspector.imaging.overlay import overlay_mask
from inspector.evaluation.plots import (
    plot_confusion,
    plot_overlay_grid,
    plot_roc_pr,
    plot_training_curves,
)


def _read_png(path: Path, min_side: int = 100) -> np.ndarray:
    """Asserts ``path`` is a readable, non-empty PNG of sensible size and no figure is left open."""
    assert path.is_file() and path.stat().st_size > 0
    image = cv2.imread(str(path))
    assert image is not None and image.ndim == 3
    assert min_side <= min(image.shape[:2]) and max(image.shape[:2]) <= 5000
    assert plt.get_fignums() == []
    return image


def test_plot_confusion(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "confusion.png"
    plot_confusion(np.array([[5, 1, 0], [2, 7, 1], [0, 0, 0]]), ["good", "crack", "scratch"], path)
    _read_png(path)


def test_plot_roc_pr(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    plot_roc_pr(y, rng.random(100) + 0.5 * y, tmp_path / "roc_pr.png")
    image = _read_png(tmp_path / "roc_pr.png")
    assert image.shape[1] > image.shape[0]  # two panels side by side


def test_plot_roc_pr_one_class(tmp_path: Path) -> None:
    plot_roc_pr(np.zeros(5, dtype=int), np.linspace(0, 1, 5), tmp_path / "one.png")
    _read_png(tmp_path / "one.png")


def test_plot_training_curves(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "phase": "frozen" if e <= 3 else "finetune", "train_loss": 1.0 / e,
         "val_loss": 1.2 / e, "val_macro_f1": 0.1 * e, "val_miou": 0.08 * e}
        for e in range(1, 9)
    ]
    history[2].pop("val_miou")  # a missing value is a gap, not an error
    history[4]["val_miou"] = None  # so is an undefined one (report.json's null)
    plot_training_curves(history, tmp_path / "curves.png")
    _read_png(tmp_path / "curves.png")


def test_plot_training_curves_empty(tmp_path: Path) -> None:
    plot_training_curves([], tmp_path / "empty.png")
    _read_png(tmp_path / "empty.png", min_side=50)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random BGR image whose red channel stays well below the red tint."""
    return np.random.default_rng(seed).integers(0, 200, (h, w, 3), dtype=np.uint8)


def test_overlay_mask_changes_only_masked_pixels() -> None:
    image = _image(40, 60)
    original = image.copy()
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:20, 5:30] = True
    out = overlay_mask(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[mask] != image[mask]).any(axis=1).all()
    assert (out[mask][:, 2] > image[mask][:, 2]).all()  # tinted towards red
    np.testing.assert_array_equal(image, original)  # input untouched


def test_overlay_mask_uint8_mask_and_grey_image() -> None:
    grey = np.full((20, 20), 100, dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:10, 5:10] = 255
    out = overlay_mask(grey, mask, alpha=0.5)
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[6, 6], [50, 50, 178])  # 0.5 * 100 + 0.5 * (0, 0, 255), rounded


def test_overlay_mask_draws_truth_contour() -> None:
    image = _image(40, 40)
    truth = np.zeros((40, 40), dtype=np.uint8)
    truth[10:30, 10:30] = 1
    out = overlay_mask(image, np.zeros((40, 40), dtype=bool), truth=truth)
    np.testing.assert_array_equal(out[10, 10:30], np.tile([0, 255, 0], (20, 1)))
    np.testing.assert_array_equal(out[:5], image[:5])  # far from the contour: unchanged
    np.testing.assert_array_equal(out[15:25, 15:25], image[15:25, 15:25])


def test_overlay_mask_size_mismatch() -> None:
    with pytest.raises(ValueError):
        overlay_mask(_image(10, 10), np.zeros((10, 11), dtype=bool))


def test_plot_overlay_grid_mixed_sizes(tmp_path: Path) -> None:
    items = []
    for k, (h, w) in enumerate([(64, 64), (48, 96), (120, 80), (32, 32), (50, 70)]):
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 4 : h // 2, w // 4 : w // 2] = True
        truth = mask.astype(np.uint8) if k % 2 else None
        title = f"crack -> good 0.9{k}"
        items.append({"image": _image(h, w, k), "mask": mask, "truth": truth, "title": title})
    plot_overlay_grid(items, tmp_path / "grid.png", cols=3)
    _read_png(tmp_path / "grid.png")


def test_plot_overlay_grid_empty(tmp_path: Path) -> None:
    plot_overlay_grid([], tmp_path / "none.png")
    _read_png(tmp_path / "none.png", min_side=50)
