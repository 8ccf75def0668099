"""Defect masks and verdicts drawn over frames for people (OpenCV only).

:func:`annotate` is the one drawing of an inspected frame, used by ``inspector predict --overlays``, ``inspector
client --overlays`` and the evaluation report's overlay grid: a banner with the verdict (ACCEPT green, REVIEW amber,
REJECT red), the label and the defect score; the predicted mask as an outline over a light tint; each predicted
region's box with its class and score; and, where known, the true mask's outline. :func:`overlay_mask` is the tint
and truth outline alone.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import cv2
import numpy as np

TRUTH_COLOR = (0, 255, 0)  # BGR green for true-mask contours
PRED_COLOR = (0, 0, 255)  # BGR red: predicted-defect tint and outline
BOX_COLOR = (255, 0, 255)  # BGR magenta: predicted region boxes and their labels
VERDICT_COLORS = {"ACCEPT": (0, 160, 0), "REVIEW": (0, 176, 255), "REJECT": (0, 0, 220)}  # BGR green, amber, red
UNKNOWN_VERDICT_COLOR = (128, 128, 128)
TINT_ALPHA = 0.25  # light: the part's surface stays visible under the tint; the outline marks the edge
FONT = cv2.FONT_HERSHEY_SIMPLEX


class RegionLike(Protocol):
    """A predicted region: the predictor's :class:`~inspector.inference.postprocess.Region` or the service's
    ``inspector.v1.Region`` message (frame px, origin top-left)."""

    defect_class: str
    x: int
    y: int
    width: int
    height: int
    max_score: float


def _as_bool_mask(mask: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray:
    """Nonzero pixels of ``mask`` as a bool array of ``shape`` (all False when ``mask`` is None)."""
    if mask is None:
        return np.zeros(shape, dtype=bool)
    out = np.asarray(mask)
    if out.ndim == 3 and out.shape[2] == 1:
        out = out[..., 0]
    if out.shape != shape:
        raise ValueError(f"{name} shape {out.shape} does not match image {shape}")
    return out != 0


def overlay_mask(
    image_bgr: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (0, 0, 255),
    alpha: float = 0.45,
    truth: np.ndarray | None = None,
) -> np.ndarray:
    """Tints predicted-defect pixels and outlines the true defect regions.

    Args:
        image_bgr: uint8 image, BGR ``(H, W, 3)`` or grey ``(H, W)``.
        mask: Predicted mask ``(H, W)``, bool or uint8; nonzero = defect.
        color: BGR tint of the predicted pixels.
        alpha: Tint opacity in [0, 1].
        truth: Optional true mask ``(H, W)``; its outer contours are drawn in green.

    Returns:
        A new uint8 BGR image; pixels outside ``mask`` are unchanged unless a truth contour crosses
        them.

    Raises:
        ValueError: If a mask does not match the image size.
    """
    image = np.asarray(image_bgr)
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    out = out.astype(np.uint8, copy=False)
    shape = out.shape[:2]
    predicted = _as_bool_mask(mask, shape, "mask")
    tint = np.asarray(color, dtype=np.float64)
    blended = (1.0 - alpha) * out[predicted].astype(np.float64) + alpha * tint
    out[predicted] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if truth is not None:
        true_mask = _as_bool_mask(truth, shape, "truth").astype(np.uint8)
        contours, _ = cv2.findContours(true_mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        thickness = max(1, round(min(shape) / 200))
        cv2.drawContours(out, contours, -1, TRUTH_COLOR, thickness)
    return out


def _thickness(shape: tuple[int, ...]) -> int:
    """Line width in px for an image of ``shape``: 1 px up to 400 px, then about 0.5 %."""
    return max(1, round(min(shape[:2]) / 200))


def _text(out: np.ndarray, text: str, origin: tuple[int, int], scale: float, colour: tuple[int, int, int],
          background: tuple[int, int, int]) -> None:
    """``text`` with its baseline-left at ``origin`` on a filled ``background`` box, kept inside the image."""
    thick = max(1, round(scale * 1.5))
    (w, h), base = cv2.getTextSize(text, FONT, scale, thick)
    x = int(np.clip(origin[0], 0, max(0, out.shape[1] - w - 2)))
    y = int(np.clip(origin[1], h + 1, max(h + 1, out.shape[0] - base - 1)))
    cv2.rectangle(out, (x, y - h - 1), (x + w + 1, y + base), background, cv2.FILLED)
    cv2.putText(out, text, (x + 1, y), FONT, scale, colour, thick, cv2.LINE_AA)


def _banner(out: np.ndarray, verdict: str, label: str, score: float | None, occupied: np.ndarray) -> None:
    """A full-width strip with ``verdict label score``, at the top unless the top rows hold a defect that the
    bottom rows do not (``occupied``: ``(h,)`` rows with a predicted or true defect)."""
    h, w = out.shape[:2]
    text = "  ".join(part for part in (verdict, label, None if score is None else f"{score:.2f}") if part)
    scale = float(np.clip(min(h, w) / 400, 0.35, 1.2))
    pad = max(2, round(6 * scale))
    tw = cv2.getTextSize(text, FONT, scale, max(1, round(scale * 1.5)))[0][0]
    if tw > w - 2 * pad:
        scale *= (w - 2 * pad) / tw
    thick = max(1, round(scale * 1.5))
    (_, th), base = cv2.getTextSize(text, FONT, scale, thick)
    height = min(h, th + base + 2 * pad)
    top = 0 if not occupied[:height].any() or occupied[h - height :].any() else h - height
    colour = VERDICT_COLORS.get(verdict, UNKNOWN_VERDICT_COLOR)
    out[top : top + height] = colour
    ink = (0, 0, 0) if verdict == "REVIEW" else (255, 255, 255)  # black on amber, white on green and red
    cv2.putText(out, text, (pad, top + pad + th), FONT, scale, ink, thick, cv2.LINE_AA)


def annotate(
    image_bgr: np.ndarray,
    mask: np.ndarray | None,
    verdict: str | None = None,
    label: str = "",
    score: float | None = None,
    regions: Iterable[RegionLike] = (),
    truth: np.ndarray | None = None,
    zoom: int = 1,
) -> np.ndarray:
    """An inspected frame drawn for people: verdict banner, predicted mask (outline and light tint), region boxes
    with class and score, true mask outline.

    Args:
        image_bgr: uint8 frame, BGR ``(H, W, 3)`` or grey ``(H, W)``.
        mask: Predicted defect mask ``(H, W)``, bool or uint8 (nonzero = defect); None: no mask.
        verdict: ACCEPT, REVIEW or REJECT: the banner's colour (green, amber, red); None: no banner.
        label: Predicted class, written after the verdict.
        score: Defect score, written after the label.
        regions: Predicted regions in frame px: a box each, labelled ``<class> <max score>``.
        truth: True defect mask ``(H, W)``: its outline in green.
        zoom: Integer enlargement (nearest neighbour) before drawing, so that the labels of a small frame can be
            read; 1 keeps the frame's size.

    Returns:
        A new uint8 BGR image of ``zoom`` times the frame's size. The banner covers the top rows (the bottom ones
        when only the top rows hold a defect).

    Raises:
        ValueError: If a mask does not match the image size, or ``zoom < 1``.
    """
    if zoom < 1:
        raise ValueError(f"zoom must be a positive integer, got {zoom}")
    image = np.asarray(image_bgr)
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
    shape = image.shape[:2]
    predicted = _as_bool_mask(mask, shape, "mask")
    true = None if truth is None else _as_bool_mask(truth, shape, "truth")
    if zoom > 1:
        image = cv2.resize(image, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        predicted = predicted.repeat(zoom, axis=0).repeat(zoom, axis=1)
        true = None if true is None else true.repeat(zoom, axis=0).repeat(zoom, axis=1)
    out = overlay_mask(image, predicted, PRED_COLOR, TINT_ALPHA, truth=true)
    contours, _ = cv2.findContours(predicted.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    line = _thickness(out.shape)
    cv2.drawContours(out, contours, -1, PRED_COLOR, line)
    occupied = predicted.any(axis=1) | (true.any(axis=1) if true is not None else False)
    scale = float(np.clip(min(out.shape[:2]) / 600, 0.3, 0.8))
    for r in regions:
        x0, y0 = int(r.x) * zoom, int(r.y) * zoom
        x1, y1 = (int(r.x) + int(r.width)) * zoom - 1, (int(r.y) + int(r.height)) * zoom - 1
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOR, line)
        occupied[y0 : y1 + 1] = True
        th = cv2.getTextSize("0", FONT, scale, 1)[0][1]
        below = y0 - th - 3 < 0  # no room above the box: write under it
        _text(out, f"{r.defect_class} {float(r.max_score):.2f}", (x0, y1 + th + 3 if below else y0 - 3), scale,
              (0, 0, 0), BOX_COLOR)
    if verdict is not None:
        _banner(out, verdict, label, score, occupied)
    return out
