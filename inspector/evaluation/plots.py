"""Evaluation figures written as PNG files, headless.

The figures are plain ``matplotlib.figure.Figure`` objects rendered by their own Agg canvas, never pyplot: importing
this module or drawing a figure selects no backend and keeps no global figure list, so a notebook or a GUI that
imports inspector keeps its own backend, and figures are freed like any other object. Every function that writes a
file creates the parent folder if needed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from inspector.evaluation.metrics import auroc, average_precision, pr_curve, roc_curve
from inspector.imaging.overlay import BOX_COLOR, PRED_COLOR, TRUTH_COLOR, annotate

PHASE_SHADES = ("#e8eef7", "#f7efe6")  # alternating background of training phases
THRESHOLD_MARKERS = {"reject": ("o", "#d62728"), "review": ("s", "#ff9f00")}  # marker, colour of each threshold
TILE_PX = 320  # a grid tile is 3.2 in at 100 dpi: smaller frames are drawn enlarged so their labels can be read


def _figure(**kwargs: Any) -> Figure:
    """A figure with its own Agg canvas (no pyplot, no backend selection)."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    """Writes ``fig`` to ``path`` as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")


def _fmt(value: float) -> str:
    """Formats a metric for a legend, ``n/a`` when undefined."""
    return "n/a" if math.isnan(value) else f"{value:.3f}"


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path) -> None:
    """Draws a confusion matrix: cells coloured by row-normalised rate, annotated with counts.

    Args:
        confusion: Square count matrix, rows = truth, in ``classes`` order.
        classes: Class names.
        path: PNG file to write.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = max(4.0, 0.7 * len(classes) + 2.0)
    fig = _figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    for (i, j), n in np.ndenumerate(counts):
        color = "white" if rates[i, j] > 0.5 else "black"
        ax.text(j, i, str(n), ha="center", va="center", color=color, fontsize=9)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    _save(fig, path)


def _rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    """An OpenCV BGR colour as matplotlib's RGB in [0, 1]."""
    return bgr[2] / 255, bgr[1] / 255, bgr[0] / 255


def _share(num: int, den: int) -> float:
    return num / den if den else math.nan


def plot_roc_pr(y: np.ndarray, score: np.ndarray, path: Path,
                thresholds: Mapping[str, float] | None = None) -> Figure:
    """Draws ROC (left) and precision-recall (right) curves with AUROC / AP in the legends, and the operating point
    of each threshold on both.

    Args:
        y: Binary labels, 1 = defect.
        score: Defect scores, higher = more likely defective.
        path: PNG file to write.
        thresholds: ``{"reject": t, "review": t}``: a labelled marker where ``score >= t`` lies on each curve (a
            review threshold equal to the reject one, no band, is not drawn twice; a point the data cannot place,
            e.g. a false positive rate without good parts, is left out). Per-class reject thresholds are not drawn:
            the curves are of any defect.

    Returns:
        The figure (already written).
    """
    y_arr = np.asarray(y).ravel().astype(bool)
    fig = _figure(figsize=(10.0, 4.5))
    ax_roc, ax_pr = fig.subplots(1, 2)
    fpr, tpr, _ = roc_curve(y_arr, score)
    ax_roc.plot(fpr, tpr, lw=2, label=f"AUROC = {_fmt(auroc(y_arr, score))}")
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    precision, recall, _ = pr_curve(y_arr, score)
    ap = average_precision(y_arr, score)
    ax_pr.step(recall, precision, where="pre", lw=2, label=f"AP = {_fmt(ap)}")
    if y_arr.size:
        ax_pr.axhline(y_arr.mean(), ls="--", color="grey", lw=1, label="prevalence")
    _mark_thresholds(ax_roc, ax_pr, y_arr, np.asarray(score, np.float64).ravel(), thresholds or {})
    _finish_axes(ax_roc, "false positive rate", "true positive rate", "ROC")
    _finish_axes(ax_pr, "recall", "precision", "precision-recall")
    _save(fig, path)
    return fig


def _mark_thresholds(ax_roc: Axes, ax_pr: Axes, y: np.ndarray, score: np.ndarray,
                     thresholds: Mapping[str, float]) -> None:
    """A labelled marker on each curve where each threshold operates: the parts with ``score >= t`` flagged."""
    drawn: list[float] = []
    for name, t in thresholds.items():
        if t is None or any(math.isclose(t, d) for d in drawn):
            continue
        drawn.append(t)
        marker, colour = THRESHOLD_MARKERS.get(name, ("D", "black"))
        flagged = score >= t
        tp, fp = int(np.sum(flagged & y)), int(np.sum(flagged & ~y))
        tpr, fpr, precision = _share(tp, int(y.sum())), _share(fp, int((~y).sum())), _share(tp, tp + fp)
        for ax, (px, py), what in ((ax_roc, (fpr, tpr), f"FPR {_fmt(fpr)}, TPR {_fmt(tpr)}"),
                                   (ax_pr, (tpr, precision), f"recall {_fmt(tpr)}, precision {_fmt(precision)}")):
            if math.isnan(px) or math.isnan(py):
                continue
            ax.plot([px], [py], marker=marker, ms=9, ls="none", color=colour, markeredgecolor="black", zorder=5,
                    label=f"{name} {t:.2f}: {what}")
            ax.annotate(name, (px, py), textcoords="offset points", xytext=(7, -12), fontsize=8, color=colour)


def _finish_axes(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    """Unit-square limits, labels, grid and legend for a curve panel."""
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")


def _numeric_keys(history: list[dict[str, Any]]) -> list[str]:
    """Keys (except ``epoch``) whose values are numbers, in first-seen order."""
    keys: dict[str, None] = {}
    for row in history:
        for key, value in row.items():
            numeric = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
            if key != "epoch" and numeric:
                keys.setdefault(key)
    return list(keys)


def _shade_phases(axes: list[Axes], history: list[dict[str, Any]], epochs: np.ndarray) -> None:
    """Shades each run of equal ``phase`` values and draws a dashed line at every change."""
    phases = [str(row.get("phase", "")) for row in history]
    starts = [0] + [i for i in range(1, len(phases)) if phases[i] != phases[i - 1]]
    bounds = starts + [len(phases)]
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        left = epochs[lo] - 0.5
        right = epochs[hi - 1] + 0.5
        for ax in axes:
            ax.axvspan(left, right, color=PHASE_SHADES[k % 2], zorder=0)
            if lo > 0:
                ax.axvline(left, color="grey", ls="--", lw=1)
            if phases[lo]:
                ax.text((left + right) / 2, 1.0, phases[lo], transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color="dimgrey")


def plot_training_curves(history: list[dict[str, float]], path: Path) -> None:
    """Plots every numeric history key against the epoch: losses left, other metrics right.

    Args:
        history: One dict per epoch, e.g. ``{"epoch": 1, "phase": "frozen", "train_loss": ..,
            "val_loss": .., "val_macro_f1": .., "val_miou": ..}``. The
            epoch defaults to the row number (1-based). Missing and None (undefined) values are left out and
            the points around them joined. Phases
            are shaded and their changes marked.
        path: PNG file to write.
    """
    if not history:
        _save(_message_figure("no training history"), path)
        return
    epochs = np.array([float(row.get("epoch", i + 1)) for i, row in enumerate(history)])
    keys = _numeric_keys(history)
    fig = _figure(figsize=(11.0, 4.5))
    ax_loss, ax_metric = fig.subplots(1, 2)
    for key in keys:
        values = np.array([np.nan if row.get(key) is None else float(row[key]) for row in history])
        ax = ax_loss if "loss" in key else ax_metric
        shown = ~np.isnan(values)  # validation runs every few epochs: its points are joined across the others
        ax.plot(epochs[shown], values[shown], marker="o", ms=3, lw=1.5, label=key)
    _shade_phases([ax_loss, ax_metric], history, epochs)
    for ax, name in ((ax_loss, "loss"), (ax_metric, "metric")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def _message_figure(text: str) -> Figure:
    """A small figure that only shows ``text``."""
    fig = _figure(figsize=(4.0, 2.0))
    ax = fig.subplots()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=14)
    ax.set_axis_off()
    return fig


def plot_overlay_grid(items: list[dict[str, Any]], path: Path, cols: int = 4) -> Figure:
    """Draws one tile per item in a grid, each as :func:`inspector.imaging.overlay.annotate` draws it for people,
    with a legend of what the marks mean.

    Args:
        items: Dicts with ``image`` (BGR uint8), ``mask`` (predicted, bool/uint8 or None), optional
            ``truth`` (bool/uint8 or None), ``title`` (e.g. ``"crack -> good 0.91"``), ``verdict``, ``label``,
            ``score`` (the banner; none without a verdict) and ``regions`` (predicted regions: boxes with class
            and score). Images may differ in size; one smaller than a tile is enlarged (nearest neighbour).
            No items gives a figure saying "no images".
        path: PNG file to write.
        cols: Maximum tiles per row.

    Returns:
        The figure (already written).
    """
    if not items:
        fig = _message_figure("no images")
        _save(fig, path)
        return fig
    ncols = max(1, min(cols, len(items)))
    nrows = math.ceil(len(items) / ncols)
    fig = _figure(figsize=(3.2 * ncols, 3.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, item in zip(axes.ravel(), items):
        zoom = max(1, TILE_PX // max(item["image"].shape[:2]))
        tile = annotate(item["image"], item.get("mask"), item.get("verdict"), item.get("label", ""),
                        item.get("score"), item.get("regions", ()), truth=item.get("truth"), zoom=zoom)
        ax.imshow(cv2.cvtColor(tile, cv2.COLOR_BGR2RGB))
        ax.set_title(str(item.get("title", "")), fontsize=9)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / fig.get_figheight()))  # room for the legend above
    handles = [Patch(facecolor="none", edgecolor=_rgb(TRUTH_COLOR), lw=2, label="truth (outline)"),
               Patch(facecolor=(*_rgb(PRED_COLOR), 0.3), edgecolor=_rgb(PRED_COLOR), lw=2,
                     label="prediction (tint, outline)"),
               Patch(facecolor="none", edgecolor=_rgb(BOX_COLOR), lw=2, label="predicted region (class, score)")]
    fig.legend(handles=handles, loc="upper center", ncols=len(handles), fontsize=9, frameon=False)
    _save(fig, path)
    return fig
