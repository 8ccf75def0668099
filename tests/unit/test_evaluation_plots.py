"""Smoke and pixel checks of inspector.evaluation.plots."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest

from inspector.imaging.overlay import BOX_COLOR, PRED_COLOR, VERDICT_COLORS, annotate, overlay_mask
from inspector.inference.postprocess import Region
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


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_roc_pr_marks_the_operating_points(tmp_path: Path) -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.35, 0.6, 0.3, 0.55, 0.7, 0.9])
    fig = plot_roc_pr(y, score, tmp_path / "roc_pr.png", {"reject": 0.5, "review": 0.25})
    _read_png(tmp_path / "roc_pr.png")
    roc, pr = fig.axes
    # reject 0.5 flags 3 of 4 defects and 1 of 4 good parts; review 0.25 flags all 4 defects and 2 good parts
    assert "reject 0.50: FPR 0.250, TPR 0.750" in _legend(roc)
    assert "review 0.25: FPR 0.500, TPR 1.000" in _legend(roc)
    assert "reject 0.50: recall 0.750, precision 0.750" in _legend(pr)
    marker = [line for line in roc.get_lines() if line.get_label().startswith("reject")][0]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (0.25, 0.75)
    assert [t.get_text() for t in roc.texts] == ["reject", "review"]  # labelled on the curve, too


def test_plot_roc_pr_operating_points_left_out_where_undefined(tmp_path: Path) -> None:
    fig = plot_roc_pr(np.zeros(4, dtype=int), np.linspace(0, 1, 4), tmp_path / "good.png",
                      {"reject": 0.5, "review": 0.5})
    roc, pr = fig.axes
    assert not [t for t in _legend(roc) + _legend(pr) if t.startswith(("reject", "review"))]  # no defect: no TPR
    fig = plot_roc_pr(np.array([0, 1]), np.array([0.2, 0.8]), tmp_path / "no_band.png",
                      {"reject": 0.5, "review": 0.5})
    assert [t for t in _legend(fig.axes[0]) if t.startswith(("reject", "review"))] == [
        "reject 0.50: FPR 0.000, TPR 1.000"]  # no review band: one marker


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


def test_plot_overlay_grid_has_a_legend_and_draws_verdicts_and_boxes(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[30:50, 10:40] = True
    items = [{"image": _image(64, 64), "mask": mask, "truth": mask.astype(np.uint8), "title": "crack -> crack 0.90",
              "verdict": "REJECT", "label": "crack", "score": 0.9,
              "regions": [Region("crack", 10, 30, 30, 20, 600, 0.15, 0.95)]}]
    fig = plot_overlay_grid(items, tmp_path / "grid.png")
    _read_png(tmp_path / "grid.png")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "truth (outline)", "prediction (tint, outline)", "predicted region (class, score)"]
    tile = fig.axes[0].get_images()[0].get_array()  # RGB, the 64 px frame drawn at 5x
    assert tile.shape[:2] == (320, 320)
    assert tuple(tile[0, -1]) == VERDICT_COLORS["REJECT"][::-1]  # the banner
    assert tuple(tile[40 * 5, 10 * 5]) == BOX_COLOR[::-1]  # the region's left edge


def test_plot_overlay_grid_empty(tmp_path: Path) -> None:
    plot_overlay_grid([], tmp_path / "none.png")
    _read_png(tmp_path / "none.png", min_side=50)


@pytest.mark.parametrize("verdict", ["ACCEPT", "REVIEW", "REJECT"])
def test_annotate_banner_has_the_verdicts_colour(verdict: str) -> None:
    image = np.full((200, 300, 3), 128, np.uint8)
    out = annotate(image, None, verdict, "crack", 0.87)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[0, -1]) == VERDICT_COLORS[verdict]  # right end of the top strip: colour, no text
    text_row = out[: 40, : 150]
    assert (text_row != VERDICT_COLORS[verdict]).all(axis=-1).any()  # the text is written on it
    np.testing.assert_array_equal(out[100:], image[100:])  # the rest of the frame untouched
    assert not np.array_equal(annotate(image, None)[0, -1], VERDICT_COLORS["ACCEPT"])  # no verdict: no banner


def test_annotate_draws_the_box_outline_and_tint() -> None:
    image = np.full((200, 300), 128, np.uint8)  # grey frames are drawn in colour
    mask = np.zeros((200, 300), bool)
    mask[100:140, 150:210] = True
    region = Region("scratch", 150, 100, 60, 40, 2400, 0.04, 0.93)
    out = annotate(image, mask, "REJECT", "scratch", 0.9, [region])
    assert out.shape == (200, 300, 3)
    for y, x in [(120, 150), (120, 209), (100, 180), (139, 180)]:  # left, right, top, bottom edge of the box
        assert tuple(out[y, x]) == BOX_COLOR, (y, x)
    inside = out[120, 180].astype(int)  # light tint towards red: the surface stays visible
    assert inside[2] > 128 and inside[0] < 128 and tuple(inside) != PRED_COLOR
    assert tuple(out[180, 20]) == (128, 128, 128)  # far from everything: unchanged


def test_annotate_outlines_a_mask_without_regions_and_moves_the_banner_off_a_defect_at_the_top() -> None:
    image = np.full((200, 300, 3), 128, np.uint8)
    mask = np.zeros((200, 300), bool)
    mask[0:30, 100:200] = True
    out = annotate(image, mask, "REVIEW", "good", 0.42)
    assert tuple(out[-1, -1]) == VERDICT_COLORS["REVIEW"] and tuple(out[0, -1]) == (128, 128, 128)
    assert tuple(out[29, 150]) == PRED_COLOR  # the mask's lower edge, outlined


def test_annotate_takes_the_services_region_messages_and_zooms() -> None:
    from inspector.v1 import inspector_pb2 as pb

    region = pb.Region(defect_class="spot", x=10, y=20, width=8, height=6, max_score=0.8)
    out = annotate(np.full((48, 64, 3), 128, np.uint8), None, "ACCEPT", "good", 0.1, [region], zoom=4)
    assert out.shape == (192, 256, 3)
    assert tuple(out[22 * 4, 10 * 4]) == BOX_COLOR  # the box's left edge, at 4x
    with pytest.raises(ValueError, match="zoom"):
        annotate(np.zeros((4, 4, 3), np.uint8), None, zoom=0)
