"""Defect masks drawn over frames (OpenCV only): predicted pixels tinted, true regions outlined."""

from __future__ import annotations

import cv2
import numpy as np

TRUTH_COLOR = (0, 255, 0)  # BGR green for true-mask contours


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
