"""Fitting the anomaly head: good training parts' patch features -> coreset memory bank -> an operating point that
holds on good parts the training never saw.

The operating point (the distance that scores 1.0) is placed for a target share of good parts sent to review, by the
conformal order statistic (:mod:`inspector.evaluation.conformal`) over as many good scores as the data has: every
good training image scored out of fold (by a bank built from the other fold, so it is as new to its bank as a part
on the line is to the served one) and every good validation image scored by the served bank. All scores go through
the serving predictor, so tiling and the letterbox are those of the service.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from inspector.artifacts.meta import AnomalyRecord
from inspector.config import GOOD_CLASS, PreprocessSpec
from inspector.data.layouts import Sample
from inspector.errors import DataError
from inspector.evaluation.conformal import OperatingPoint, conformal_threshold
from inspector.evaluation.runner import run_over
from inspector.model import DefectNet
from inspector.imaging.preprocess import read_image
from inspector.model.anomaly import PATCH_POOL, STAGES, MemoryBank, greedy_coreset, patch_features
from inspector.inference.predictor import Predictor
from inspector.progress import progress

log = logging.getLogger(__name__)

FOLDS = 2  # out-of-fold scoring of the good training images: banks built on the other half
BATCH = 16  # images per forward pass of the bank's features


@dataclass
class GoodPatches:
    """Patch features drawn from good images, and the image each row came from."""

    rows: torch.Tensor  # (n, d)
    owners: torch.Tensor  # (n,) index of the row's image
    seen: int  # patches there were before the draw


@torch.inference_mode()
def _good_patches(model: DefectNet, predictor: Predictor, samples: list[Sample], device: torch.device, seed: int,
                  show: bool) -> GoodPatches:
    """Patch features of the samples cut as the service cuts frames (whole, or every tile), at most
    :data:`PATCH_POOL` drawn evenly."""
    gen = torch.Generator().manual_seed(seed)
    kept, owners, seen, share = [], [], 0, 1.0
    batches = [samples[i : i + BATCH] for i in range(0, len(samples), BATCH)]
    for b, batch in enumerate(progress(batches, "anomaly bank", show)):
        prepared = predictor.prepare([read_image(s.image) for s in batch])
        x = torch.from_numpy(prepared.batch).to(device).contiguous(memory_format=torch.channels_last)
        feats = patch_features(model.encoder(x), STAGES)
        rows = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1]).cpu()
        if b == 0:  # the first batch tells how many patches an image gives
            share = min(1.0, PATCH_POOL / (len(samples) * len(rows) / len(batch)))
        keep = torch.rand(len(rows), generator=gen) < share
        image = torch.tensor(prepared.owners).repeat_interleave(feats.shape[2] * feats.shape[3]) + b * BATCH
        kept.append(rows[keep])
        owners.append(image[keep])
        seen += len(rows)
    return GoodPatches(torch.cat(kept), torch.cat(owners), seen)


def _bank(patches: torch.Tensor, size: int, device: torch.device, seed: int) -> MemoryBank:
    chosen = patches[greedy_coreset(patches.to(device), size, seed).cpu()]
    bank = MemoryBank(len(chosen), chosen.shape[1]).to(device)
    bank.bank.copy_(chosen)
    return bank


class AnomalyPath(torch.nn.Module):
    """The model's anomaly path alone (encoder, patch features, bank), in the shape of a DefectNet's outputs: the
    served anomaly map without the decoder's cost, for scoring many good parts through the serving predictor. The
    class and mask outputs are constants (no defect pixel), which the anomaly score does not read."""

    def __init__(self, model: DefectNet, n_classes: int) -> None:
        super().__init__()
        self.model, self.n_classes = model, n_classes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anomaly = self.model.anomaly(patch_features(self.model.encoder(x)), x.shape[-2:])
        b, _, h, w = x.shape
        return x.new_zeros(b, self.n_classes), x.new_full((b, 1, h, w), -30.0), anomaly


def image_scores(predictor: Predictor, samples: list[Sample]) -> np.ndarray:
    """Each sample's anomaly score as the service gives it (the peak of its map over the frame), through
    ``predictor``."""
    return np.array([p.anomaly_score for _, _, p in run_over(predictor, samples, "anomaly scores", show=False)])


def _out_of_fold(model: DefectNet, predictor: Predictor, good: GoodPatches, samples: list[Sample], size: int,
                 device: torch.device, seed: int) -> np.ndarray:
    """Scores of ``samples`` (the good training images), each by a bank built without its fold (raw distances)."""
    n = len(samples)
    fold = np.random.default_rng(seed).permutation(n) % FOLDS
    scores = np.zeros(n)
    for k in range(FOLDS):
        held = np.flatnonzero(fold == k)
        if len(held) == 0 or len(held) == n:
            continue
        others = torch.from_numpy(fold != k)[good.owners]
        model.attach_anomaly(_bank(good.rows[others], max(1, size * (FOLDS - 1) // FOLDS), device, seed + k))
        scores[held] = image_scores(predictor, [samples[i] for i in held])
    return scores


def fit_anomaly(model: DefectNet, train_good: list[Sample], reference: list[Sample], classes: tuple[str, ...],
                spec: PreprocessSpec, device: torch.device, bank_size: int, review_rate: float = 0.01, seed: int = 0,
                show: bool = True) -> tuple[AnomalyRecord, np.ndarray]:
    """Attaches a memory bank of ``train_good``'s patches to ``model`` and places its operating point (score 1.0) so
    that about ``review_rate`` of good parts reach it: on the out-of-fold scores of ``train_good`` and the scores of
    the good parts of ``reference`` (the validation split).

    Returns the bundle's ``anomaly`` record and the scaled anomaly scores of ``reference``.
    """
    if not train_good:
        raise DataError("the anomaly head needs good training images; the data has none")
    model.eval()
    predictor = Predictor.for_network(AnomalyPath(model, len(classes)).eval(), classes, spec, str(device))
    good = _good_patches(model, predictor, train_good, device, seed, show)
    oof = _out_of_fold(model, predictor, good, train_good, bank_size, device, seed) if len(train_good) > 1 else None
    bank = _bank(good.rows, bank_size, device, seed)
    model.attach_anomaly(bank)
    scores = image_scores(predictor, reference)  # at scale 1: raw distances
    is_good = np.array([s.label == GOOD_CLASS for s in reference], dtype=bool)
    val_good = scores[is_good]
    pooled = np.concatenate([val_good, oof if oof is not None else image_scores(predictor, train_good)])
    point = conformal_threshold(pooled, review_rate)
    bank.scale.fill_(point.threshold)
    _report(point, len(val_good), oof)
    held_out = _held_out_rate(oof, val_good, review_rate)
    record = AnomalyRecord(
        bank_size=len(bank.bank), dim=int(bank.bank.shape[1]), stages=tuple(STAGES), patches_seen=good.seen,
        good_images=len(train_good), reference=point.threshold, reference_images=point.n_good,
        reference_split="train_oof+val" if oof is not None else "train+val", review_rate=review_rate,
        review_rate_upper=point.rate_upper, reference_flagged=point.flagged, val_review_rate=held_out)
    return record, scores / point.threshold


def _held_out_rate(oof: np.ndarray | None, val_good: np.ndarray, rate: float) -> float | None:
    """The share of good validation parts at or above a threshold placed on the out-of-fold scores alone: how the
    operating point does on good parts that did not place it."""
    if oof is None or len(val_good) == 0:
        return None
    return float(np.mean(val_good >= conformal_threshold(oof, rate).threshold))


def _report(point: OperatingPoint, n_val: int, oof: np.ndarray | None) -> None:
    log.info("anomaly operating point %.4f from %d good scores (%d validation, %s out of fold): %d reach it; "
             "good parts sent to review <= %.2f %% at 95 %% confidence (target %.2f %%)", point.threshold,
             point.n_good, n_val, "none" if oof is None else len(oof), point.flagged, 100 * point.rate_upper,
             100 * point.target_rate)
    if point.shortfall():
        log.warning(point.shortfall())
