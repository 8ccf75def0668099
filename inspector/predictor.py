"""The inferencer: a bundle in, predictions out. Knows nothing of gRPC or Prometheus.

The three stages (``prepare``, ``infer``, ``finish``) are public so a server can run them on different threads;
``predict`` chains them for a batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from inspector.bundle import Bundle, load_bundle
from inspector.config import Thresholds
from inspector.devices import resolve_device
from inspector.postprocess import Region, decide, find_regions
from inspector.preprocess import Letterbox, mask_to_frame, preprocess


@dataclass
class Prediction:
    verdict: str  # ACCEPT | REVIEW | REJECT
    label: str  # predicted class under the thresholds (good unless rejected)
    defect_class: str  # most likely defect class
    defect_score: float  # 1 - p(good)
    class_scores: dict[str, float]
    mask: np.ndarray  # (h, w) float32 defect probability at the frame's own size
    regions: list[Region]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, shared by the batch


@dataclass
class Prepared:
    """Preprocessed frames ready for the model."""

    batch: np.ndarray  # (b, 3, H, W) float32
    geometry: list[Letterbox]


class Predictor:
    """Runs a bundle's model on decoded frames (grayscale or BGR uint8, any size).

    Args:
        bundle: A loaded bundle; preprocessing and thresholds come from it, never from defaults here.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        fp16: Half-precision autocast on CUDA.
        backend: ``eager`` (the bundle's weights in PyTorch), ``torchscript`` or ``onnx`` (its checked exports;
            ``onnx`` runs on ONNX Runtime).
    """

    def __init__(self, bundle: Bundle, device: str = "auto", fp16: bool = True, backend: str = "eager") -> None:
        self.bundle = bundle
        self.device = resolve_device(device)
        self.spec = bundle.spec
        self.classes = bundle.classes
        self.thresholds = bundle.thresholds
        self.autocast = fp16 and self.device.type == "cuda"
        if backend == "eager":
            self.model = bundle.build_model(self.device).to(memory_format=torch.channels_last)
        elif backend in ("torchscript", "onnx"):
            from inspector.export import load_export

            self.model = load_export(bundle, backend, self.device)
        else:
            raise ValueError(f"unknown backend {backend!r}; choose eager, torchscript or onnx")

    @classmethod
    def from_bundle(cls, path: str | Path, device: str = "auto", fp16: bool = True, backend: str = "eager") -> Predictor:
        return cls(load_bundle(path), device, fp16, backend)

    @property
    def version(self) -> str:
        return f"{self.bundle.name}/{self.bundle.version}"

    def prepare(self, frames: Sequence[np.ndarray]) -> Prepared:
        """Letterboxes and normalises each frame by the bundle's spec."""
        done = [preprocess(frame, self.spec) for frame in frames]
        return Prepared(np.stack([t for t, _ in done]), [g for _, g in done])

    @torch.inference_mode()
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(b, 3, H, W)`` -> class probabilities ``(b, n_classes)`` and defect probabilities ``(b, H, W)``."""
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.autocast):
            logits, mask_logits = self.model(x)[:2]  # a DefectOutput, or the plain tuple of an export
        probs = logits.float().softmax(dim=1)  # (b, n_classes)
        masks = mask_logits.float().sigmoid()[:, 0]  # (b, H, W)
        return probs.cpu().numpy(), masks.cpu().numpy()

    def finish(
        self, probs: np.ndarray, masks: np.ndarray, geometry: list[Letterbox], thresholds: Thresholds | None = None
    ) -> list[Prediction]:
        """Decisions, masks at each frame's size and regions."""
        thresholds = thresholds or self.thresholds
        out = []
        for p, m, geo in zip(probs, masks, geometry):
            decision = decide(p, self.classes, thresholds)
            frame_mask = mask_to_frame(m, geo)
            out.append(
                Prediction(
                    verdict=decision.verdict,
                    label=decision.label,
                    defect_class=decision.defect_class,
                    defect_score=decision.defect_score,
                    class_scores={c: float(v) for c, v in zip(self.classes, p)},
                    mask=frame_mask,
                    regions=find_regions(frame_mask, decision.defect_class, thresholds),
                    model_version=self.version,
                )
            )
        return out

    def predict(self, frames: Sequence[np.ndarray]) -> list[Prediction]:
        """Runs a batch of frames of any sizes through all three stages."""
        if not frames:
            return []
        t0 = time.perf_counter()
        prepared = self.prepare(frames)
        t1 = time.perf_counter()
        probs, masks = self.infer(prepared.batch)
        t2 = time.perf_counter()
        predictions = self.finish(probs, masks, prepared.geometry)
        timings = {"preprocess": t1 - t0, "infer": t2 - t1, "postprocess": time.perf_counter() - t2}
        for p in predictions:
            p.timings = timings
        return predictions
