"""Deterministic synthetic inspection data in the "class folders + masks" layout.

``write_demo_data(out)`` writes ``out/images/<class>/<name>.png`` (8-bit grey) and
``out/masks/<class>/<name>.png`` (0 background / 255 defect; all-zero for good parts). Every
sample draws from its own generator seeded with ``[seed, class_index, i]``, so a file depends
only on those numbers and the same seed reproduces byte-identical files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from inspector.errors import UsageError

DEMO_CLASSES = ("good", "scratch", "spot", "crack")
MIN_SIZE = 64  # smallest image side the defect geometry is tuned for, px

Defect = tuple[np.ndarray, np.ndarray, float]  # (strength 0..1 float32, mask 0/255 uint8, sign)


def _grain_kernel(rng: np.random.Generator) -> np.ndarray:
    """Normalised gaussian kernel stretched along a random direction (the grinding direction)."""
    along, across, theta = rng.uniform(4.0, 10.0), rng.uniform(0.6, 1.2), rng.uniform(0, np.pi)
    half = int(np.ceil(3 * along))
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    kernel = np.exp(-0.5 * ((u / along) ** 2 + (v / across) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Ground-metal background: base grey, illumination gradient, directional grain and noise."""
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    gx, gy, curv = rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(-8, 8)
    bowl = ramp[None, :] ** 2 + ramp[:, None] ** 2 - 2.0 / 3.0
    illumination = gx * ramp[None, :] + gy * ramp[:, None] + curv * bowl
    noise = rng.standard_normal((size, size), dtype=np.float32)
    grain = cv2.filter2D(noise, -1, _grain_kernel(rng), borderType=cv2.BORDER_REFLECT)
    grain *= rng.uniform(3.0, 7.0) / (float(grain.std()) + 1e-6)
    fine = rng.standard_normal((size, size), dtype=np.float32) * rng.uniform(1.0, 2.5)
    return rng.uniform(90, 170) + illumination + grain + fine


def _harmless(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Adds variation that is not a defect: a faint stain (< 8 grey levels) and/or a vignette."""
    size = image.shape[0]
    if rng.random() < 0.5:
        stain = np.zeros_like(image)
        centre = tuple(int(c) for c in rng.uniform(0.2, 0.8, 2) * size)
        axes = tuple(int(a) for a in rng.uniform(0.06, 0.2, 2) * size)
        cv2.ellipse(stain, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        stain = cv2.GaussianBlur(stain, (0, 0), rng.uniform(0.02, 0.05) * size)
        image = image + rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 7.0) * stain
    if rng.random() < 0.3:
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        image = image - rng.uniform(4.0, 12.0) * (ramp[None, :] ** 2 + ramp[:, None] ** 2) / 2
    return image


def _blank(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty defect-strength layer and mask."""
    return np.zeros((size, size), np.float32), np.zeros((size, size), np.uint8)


def _scale(size: int) -> float:
    """Size factor for defect widths/radii (1 at 256 px) that keeps areas sensible at any size."""
    return (size / 256) ** 0.5


def _draw(layer: np.ndarray, mask: np.ndarray, points: np.ndarray, thickness: int) -> None:
    """Draws one open polyline with identical geometry onto the layer and the mask."""
    cv2.polylines(layer, [points], False, 1.0, thickness, cv2.LINE_8)
    cv2.polylines(mask, [points], False, 255, thickness, cv2.LINE_8)


def _scratch(rng: np.random.Generator, size: int) -> Defect:
    """1-3 long, thin, straight or gently bowed lines; one polarity per part."""
    layer, mask = _blank(size)
    t = np.linspace(-1.0, 1.0, 24)[:, None]
    for _ in range(rng.integers(1, 4)):
        centre, angle = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        bow = rng.uniform(-0.08, 0.08) * size * (1 - t**2)
        points = centre + t * rng.uniform(0.2, 0.45) * size * direction + bow * normal
        width = min(int(rng.integers(1, 4)), max(1, round(3 * _scale(size))))
        _draw(layer, mask, np.rint(points).astype(np.int32), width)
    return layer, mask, float(rng.choice([-1.0, 1.0]))


def _spot(rng: np.random.Generator, size: int) -> Defect:
    """1-3 dark filled ellipses with a soft edge."""
    (layer, mask), scale = _blank(size), _scale(size)
    for _ in range(rng.integers(1, 4)):
        centre = tuple(int(c) for c in rng.uniform(0.15, 0.85, 2) * size)
        axes = tuple(int(a) for a in rng.uniform(4, 14, 2) * scale)
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(layer, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_8)
        cv2.ellipse(mask, centre, axes, angle, 0, 360, 255, -1, cv2.LINE_8)
    return cv2.GaussianBlur(layer, (0, 0), rng.uniform(1.0, 2.0) * scale), mask, -1.0


def _walk(rng: np.random.Generator, start: np.ndarray, angle: float, steps: int) -> np.ndarray:
    """Jagged random-walk polyline: per-step jitter around a slowly drifting heading."""
    headings = angle + np.cumsum(rng.normal(0, 0.1, steps)) + rng.normal(0, 0.5, steps)
    lengths = rng.uniform(2.0, 5.0, steps)[:, None]
    moves = lengths * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    return np.rint(start + np.vstack([np.zeros(2), np.cumsum(moves, axis=0)])).astype(np.int32)


def _crack(rng: np.random.Generator, size: int) -> Defect:
    """A dark, 1-2 px jagged crack, branching with probability 0.6."""
    layer, mask = _blank(size)
    angle, steps = rng.uniform(0, 2 * np.pi), int(size * rng.uniform(0.1, 0.18))
    trunk = _walk(rng, rng.uniform(0.25, 0.75, 2) * size, angle, steps)
    _draw(layer, mask, trunk, int(rng.integers(1, 3)))
    for _ in range(rng.integers(1, 3) if rng.random() < 0.6 else 0):
        fork = trunk[rng.integers(1, len(trunk) - 1)].astype(np.float64)
        turn = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.1)
        _draw(layer, mask, _walk(rng, fork, angle + turn, max(steps // 3, 3)), 1)
    return layer, mask, -1.0


_DEFECTS: dict[str, Callable[[np.random.Generator, int], Defect]] = {
    "scratch": _scratch,
    "spot": _spot,
    "crack": _crack,
}


def make_part(kind: str, rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Renders one synthetic part.

    Args:
        kind: One of ``DEMO_CLASSES``.
        rng: Source of all randomness; the same generator state gives the same sample.
        size: Side of the square image, px (at least ``MIN_SIZE``).

    Returns:
        ``(image, mask)``: uint8 arrays of shape ``(size, size)``; the mask is 255 on defect
        pixels and 0 elsewhere (all zero for ``"good"``).

    Raises:
        UsageError: If ``kind`` is unknown or ``size`` is below ``MIN_SIZE``.
    """
    if kind not in DEMO_CLASSES:
        raise UsageError(f"unknown part kind {kind!r}; expected one of {DEMO_CLASSES}")
    if size < MIN_SIZE:
        raise UsageError(f"size must be at least {MIN_SIZE} px, got {size}")
    image = _harmless(rng, _texture(rng, size))
    if kind == "good":
        mask = np.zeros((size, size), np.uint8)
    else:
        layer, mask, sign = _DEFECTS[kind](rng, size)
        patchy = cv2.resize(rng.uniform(0.85, 1.0, (4, 4)).astype(np.float32), (size, size))
        image = image + sign * rng.uniform(28.0, 60.0) * patchy * layer
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _write_png(path: Path, array: np.ndarray) -> None:
    """Writes ``array`` as PNG, raising ``OSError`` naming ``path`` on failure."""
    try:
        ok = cv2.imwrite(str(path), array, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    except cv2.error as exc:
        raise OSError(f"could not write image file {path}") from exc
    if not ok:
        raise OSError(f"could not write image file {path}")


def write_demo_data(out: Path, n_per_class: int = 40, size: int = 256, seed: int = 0) -> dict[str, int]:
    """Writes the demo set under ``out`` (existing files with the same names are overwritten).

    Args:
        out: Root folder; ``images/<class>/`` and ``masks/<class>/`` are created inside it.
        n_per_class: Samples per class, named ``<class>_0000.png`` onwards.
        size: Side of the square images, px.
        seed: Non-negative base seed; sample ``i`` of class ``c`` uses ``[seed, c, i]``.

    Returns:
        Number of samples written per class.

    Raises:
        UsageError: If ``n_per_class`` or ``seed`` is negative or ``size`` is below ``MIN_SIZE``.
        OSError: If a folder or file cannot be written.
    """
    if n_per_class < 0:
        raise UsageError(f"n_per_class must be >= 0, got {n_per_class}")
    if size < MIN_SIZE:
        raise UsageError(f"size must be at least {MIN_SIZE} px, got {size}")
    if seed < 0:  # numpy's seed sequence takes no negative entropy
        raise UsageError(f"seed must be >= 0, got {seed}")
    counts: dict[str, int] = {}
    for class_index, kind in enumerate(DEMO_CLASSES):
        image_dir, mask_dir = Path(out) / "images" / kind, Path(out) / "masks" / kind
        for folder in (image_dir, mask_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            image, mask = make_part(kind, np.random.default_rng([seed, class_index, i]), size)
            name = f"{kind}_{i:04d}.png"
            _write_png(image_dir / name, image)
            _write_png(mask_dir / name, mask)
        counts[kind] = n_per_class
    return counts
