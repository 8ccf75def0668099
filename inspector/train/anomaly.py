"""Fitting the anomaly head: good training parts' patch features -> coreset memory bank -> reference scale."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader

from inspector.artifacts.meta import AnomalyRecord
from inspector.config import GOOD_CLASS, PreprocessSpec
from inspector.data.dataset import DefectDataset
from inspector.data.layouts import Sample
from inspector.errors import DataError
from inspector.evaluation.runner import run_over
from inspector.model import DefectNet
from inspector.model.anomaly import STAGES, MemoryBank, greedy_coreset, patch_features
from inspector.inference.predictor import Predictor
from inspector.progress import progress

log = logging.getLogger(__name__)

PATCH_POOL = 100_000  # good patches drawn at random before the coreset: bounds memory and coreset time
SCALE_QUANTILE = 0.99  # the reference: this quantile of good validation parts' scores maps to 1.0


@torch.inference_mode()
def _good_patches(model: DefectNet, samples: list[Sample], classes: tuple[str, ...], spec: PreprocessSpec,
                  device: torch.device, seed: int, show: bool) -> tuple[torch.Tensor, int]:
    """``(n, d)`` patch features of the samples, at most :data:`PATCH_POOL` drawn evenly; and how many there were."""
    loader = DataLoader(DefectDataset(samples, classes, spec, train=False), batch_size=16, shuffle=False)
    gen = torch.Generator().manual_seed(seed)
    kept, seen = [], 0
    for images, *_ in progress(loader, "anomaly bank", show):
        feats = patch_features(model.encoder(images.to(device).contiguous(memory_format=torch.channels_last)), STAGES)
        rows = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu()
        share = min(1.0, PATCH_POOL / (len(samples) * rows.shape[0] / len(images)))
        kept.append(rows[torch.rand(len(rows), generator=gen) < share])
        seen += len(rows)
    return torch.cat(kept), seen


def image_scores(predictor: Predictor, samples: list[Sample]) -> np.ndarray:
    """Each sample's anomaly score as the service gives it (the peak of its map over the frame), through
    ``predictor``."""
    return np.array([p.anomaly_score for _, _, p in run_over(predictor, samples, "anomaly scores", show=False)])


def fit_anomaly(model: DefectNet, train_good: list[Sample], reference: list[Sample], classes: tuple[str, ...],
                spec: PreprocessSpec, device: torch.device, bank_size: int, seed: int = 0, show: bool = True
                ) -> tuple[AnomalyRecord, np.ndarray]:
    """Attaches a memory bank of ``train_good``'s patches to ``model`` and scales it on the good parts of
    ``reference`` (the validation split; ``train_good`` when it has none).

    Returns the bundle's ``anomaly`` record (bank size and dimension, what it was fitted on, the reference) and the
    scaled anomaly scores of ``reference``.
    """
    if not train_good:
        raise DataError("the anomaly head needs good training images; the data has none")
    model.eval()
    patches, seen = _good_patches(model, train_good, classes, spec, device, seed, show)
    chosen = patches[greedy_coreset(patches.to(device), bank_size, seed).cpu()]
    bank = MemoryBank(len(chosen), chosen.shape[1]).to(device)
    bank.bank.copy_(chosen)
    model.attach_anomaly(bank)
    predictor = Predictor.for_network(model, classes, spec, str(device))
    scores = image_scores(predictor, reference)  # at scale 1: raw distances
    is_good = np.array([s.label == GOOD_CLASS for s in reference], dtype=bool)
    good_scores = scores[is_good] if is_good.any() else image_scores(predictor, train_good)
    bank.scale.fill_(float(np.quantile(good_scores, SCALE_QUANTILE)))
    log.info("anomaly bank: %d of %d good patches (dim %d), reference %.3f from %d good images", len(chosen), seen,
             chosen.shape[1], float(bank.scale), len(good_scores))
    record = AnomalyRecord(bank_size=len(chosen), dim=int(chosen.shape[1]), stages=tuple(STAGES), patches_seen=seen,
                           good_images=len(train_good), reference=float(bank.scale), reference_quantile=SCALE_QUANTILE,
                           reference_images=len(good_scores), reference_split="val" if is_good.any() else "train")
    return record, scores / float(bank.scale)
