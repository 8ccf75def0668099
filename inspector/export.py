"""``inspector export``: the bundle's network as TorchScript, checked against the bundle on golden frames.

The export sits in ``<bundle>/export/``: ``model.torchscript.pt`` and ``export.json`` (the bundle's preprocessing,
classes and thresholds travel with it, plus the file's sha256 and the parity figures). An export that does not
reproduce the bundle's outputs within :data:`TOLERANCE` is not written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.bundle import Bundle, load_bundle
from inspector.data.demo import DEMO_CLASSES, make_part
from inspector.preprocess import preprocess

TOLERANCE = 1e-4  # max abs difference of class and mask probabilities, fp32 on the CPU
EXPORT_DIR, TORCHSCRIPT_FILE, EXPORT_META = "export", "model.torchscript.pt", "export.json"


class ExportError(RuntimeError):
    """The exported model does not reproduce the bundle."""


def golden_batch(bundle: Bundle, n: int = 8) -> torch.Tensor:
    """Deterministic frames (synthetic parts of every kind, odd sizes) preprocessed by the bundle's spec."""
    spec = bundle.spec
    frames = []
    for i in range(n):
        image, _ = make_part(DEMO_CLASSES[i % len(DEMO_CLASSES)], np.random.default_rng([11, i]), 96 + 40 * i)
        frames.append(preprocess(image, spec)[0])
    return torch.from_numpy(np.stack(frames))  # (n, 3, H, W)


def probabilities(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(class probabilities (b, n), defect probabilities (b, H, W)) from a model's (logits, mask_logits)."""
    logits, mask_logits = out[0], out[1]
    return logits.float().softmax(dim=1), mask_logits.float().sigmoid()[:, 0]


def parity(reference: torch.nn.Module, exported: torch.nn.Module, batch: torch.Tensor) -> float:
    with torch.inference_mode():
        ref, got = probabilities(reference(batch)), probabilities(exported(batch))
    return max(float((a - b).abs().max()) for a, b in zip(ref, got))


def export_torchscript(model_path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Traces the bundle's network, checks parity on golden frames, writes the export; returns its folder."""
    bundle = load_bundle(model_path)
    model = bundle.build_model("cpu")
    batch = golden_batch(bundle)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still the contract here
        traced = torch.jit.freeze(torch.jit.trace(model, batch[:1], strict=False))
    error = parity(model, traced, batch)
    if error > TOLERANCE:
        raise ExportError(f"TorchScript export differs from the bundle by {error:.2e} (> {TOLERANCE:.0e}); not written")
    out = bundle.path / EXPORT_DIR
    tmp = bundle.path / f".{EXPORT_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp / TORCHSCRIPT_FILE))
    meta = {
        "format": "torchscript",
        "file": TORCHSCRIPT_FILE,
        "sha256": hashlib.sha256((tmp / TORCHSCRIPT_FILE).read_bytes()).hexdigest(),
        "bundle": f"{bundle.name}/{bundle.version}",
        "classes": list(bundle.classes),
        "preprocess": bundle.meta["preprocess"],
        "thresholds": bundle.meta["thresholds"],
        "parity": {"golden_frames": len(batch), "max_abs_error": error, "tolerance": TOLERANCE},
    }
    (tmp / EXPORT_META).write_text(json.dumps(meta, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out, meta


def load_torchscript(bundle: Bundle, device: torch.device) -> torch.jit.ScriptModule:
    """The bundle's TorchScript export, checksum verified."""
    folder = bundle.path / EXPORT_DIR
    try:
        meta = json.loads((folder / EXPORT_META).read_text())
        data = (folder / meta["file"]).read_bytes()
    except (OSError, ValueError, KeyError) as err:
        raise FileNotFoundError(f"{bundle.path} has no usable export (run `inspector export`): {err}") from err
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ExportError(f"{folder / meta['file']}: checksum mismatch; the file was modified")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(folder / meta["file"]), map_location=device).eval()
