"""``fit``: transfer learning (encoder frozen) then fine-tuning (encoder unfrozen, low LR), then a bundle."""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from inspector.artifacts.bundle import load_bundle, write_bundle
from inspector.artifacts.meta import AnomalyRecord, BundleMeta, DataRecord, SplitRecord
from inspector.config import ANOMALY_CLASS, GOOD_CLASS, PreprocessSpec, Thresholds, TrainConfig
from inspector.data.dataset import DefectDataset, worker_init
from inspector.data.geometry import resolve_geometry
from inspector.data.layouts import Sample, data_hash, load_dataset
from inspector.data.split import mvtec_split, split_record, stratified_split
from inspector.errors import DataError
from inspector.evaluation.calibrate import calibrated_changes
from inspector.evaluation.metrics import auroc
from inspector.evaluation.plots import plot_training_curves
from inspector.evaluation.runner import drift_reference
from inspector.model import DefectNet, get_backbone
from inspector.model.cpu import hardware_line, training_hardware
from inspector.inference.postprocess import anomaly_probability
from inspector.inference.predictor import Predictor
from inspector.train.anomaly import fit_anomaly
from inspector.train.distributed import Ranks, cleanup, setup, sync_buffers, wrap
from inspector.train.init import model_from_bundle
from inspector.train.loop import evaluate, train_one_epoch, validate
from inspector.train.sampling import ShardedBalancedSampler
from inspector.train.schedule import linear_warmup, warmup_steps
from inspector.train.trace import TrainTrace

log = logging.getLogger(__name__)


def make_spec(cfg: TrainConfig) -> PreprocessSpec:
    """The preprocessing of a new model: input size and tile from the config (``image_size`` square and whole frames
    where it leaves them None: :func:`inspector.data.geometry.resolve_geometry` chooses them from the data),
    normalisation from the backbone's weights."""
    backbone = get_backbone(cfg.backbone)
    height, width = cfg.input_size or (cfg.image_size, cfg.image_size)
    spec = PreprocessSpec(height, width, backbone.color_order, backbone.mean, backbone.std, tile=cfg.tile or 0)
    log.info("model input %dx%d px, %s", height, width,
             f"tiles of {spec.tile} frame px" if spec.tile else "whole frames")
    return spec


def _loaders(
    train: list[Sample], val: list[Sample], classes: tuple[str, ...], cfg: TrainConfig, spec: PreprocessSpec,
    ranks: Ranks,
) -> tuple[DataLoader, DataLoader]:
    """Each rank trains on its disjoint share of the epoch's balanced draw (:mod:`inspector.train.sampling`), with
    augmentation of its own; validation runs on rank 0 only."""
    common = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, worker_init_fn=worker_init,
                  persistent_workers=cfg.workers > 0)
    sampler = ShardedBalancedSampler(train, cfg.seed, ranks.rank, ranks.world, cfg.batch_size)
    train_loader = DataLoader(DefectDataset(train, classes, spec, train=True, seed=cfg.seed + ranks.rank),
                              sampler=sampler, drop_last=len(sampler) > cfg.batch_size, **common)
    val_loader = DataLoader(DefectDataset(val, classes, spec, train=False), shuffle=False, **common)
    return train_loader, val_loader


def _phase_optimizer(model: DefectNet, cfg: TrainConfig, finetune: bool) -> torch.optim.Adam:
    if not finetune:
        return torch.optim.Adam(model.head_parameters(), lr=cfg.lr_heads, weight_decay=cfg.weight_decay)
    groups = [
        {"params": model.encoder_parameters(), "lr": cfg.lr_encoder},
        {"params": model.head_parameters(), "lr": cfg.lr_heads * 0.3},
    ]
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


def _ema(model: DefectNet, steps_per_epoch: int) -> AveragedModel:
    """An exponential moving average of ``model``'s weights (BatchNorm statistics too) with a half-life of one epoch:
    the weights fine-tuning ships, averaged over its last steps instead of picked by validation."""
    decay = 0.5 ** (1.0 / max(1, steps_per_epoch))
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _run_phase(model, name, epochs, cfg, loaders, device, history, classes, ranks,
               trace: TrainTrace | None = None) -> None:
    """One phase on a fixed schedule (cosine decay; fine-tuning: warm-up, then the EMA of its weights kept).

    No epoch is picked by validation and nothing stops early: validation figures are curves to read, so the split
    stays free to choose thresholds and give figures that were not the ones the model was picked on.
    """
    train_loader, val_loader = loaders
    trace = trace or TrainTrace(None)
    net = wrap(model, ranks, device)  # after (un)freezing: DDP syncs the parameters that train in this phase
    optimizer = _phase_optimizer(model, cfg, finetune=name == "finetune")
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=1e-6)
    # fine-tuning starts with a linear warm-up over half an epoch, stepped per batch (inspector.train.schedule)
    warmup = linear_warmup(optimizer, warmup_steps(len(train_loader))) if name == "finetune" else None
    ema = _ema(model, len(train_loader)) if name == "finetune" and epochs else None
    if ema is not None:
        optimizer.register_step_post_hook(lambda *_: ema.update_parameters(model))
    shipped = model if ema is None else ema.module
    for epoch in range(1, epochs + 1):
        t0 = time.time()
        train_loader.sampler.set_epoch(len(history) + 1)  # a new draw each epoch, the same on every rank
        row = train_one_epoch(net, train_loader, optimizer, device, f"{name} {epoch}/{epochs}",
                              cfg.mask_loss_weight, cfg.label_smoothing, show=ranks.main, bf16=cfg.bf16)
        if warmup is not None:  # over within the first epoch
            warmup.remove()
            warmup = None
        if ranks.main and (epoch % cfg.val_every == 0 or epoch == epochs):  # curves to read: every point costs
            row |= evaluate(shipped, val_loader, device, classes, bf16=cfg.bf16)
        scheduler.step()
        if trace.on:
            trace.epoch(len(history) + 1, name, train_loader.sampler.last)
        history.append({"epoch": len(history) + 1, "phase": name, **row})
        log.info("%s %d/%d (%.0f s) %s", name, epoch, epochs, time.time() - t0,
                 " ".join(f"{k}={v:.4f}" for k, v in row.items()))
    sync_buffers(model, ranks)
    if ema is not None:
        sync_buffers(ema.module, ranks)
    trace.weights(name, model, shipped)
    if ema is not None:
        model.load_state_dict(ema.module.state_dict())


def fit(data: str | Path, out: str | Path, name: str = "default", cfg: TrainConfig = TrainConfig()) -> Path | None:
    """Trains a DefectNet on ``data`` and writes a new bundle version under ``out``; returns its folder.

    Under torchrun every rank trains its share and rank 0 validates and writes the bundle (others return None).
    """
    ranks, device = setup(cfg.device)
    try:
        return _fit(data, out, name, cfg, ranks, device)
    finally:
        cleanup(ranks)


def _fit(data, out, name: str, cfg: TrainConfig, ranks: Ranks, device: torch.device) -> Path | None:
    torch.manual_seed(cfg.seed)  # the same initial heads on every rank
    dataset = load_dataset(data, good_only=cfg.good_only)
    init = load_bundle(cfg.init) if cfg.init else None
    if init is not None:  # the bundle's backbone and preprocessing carry over
        cfg = dataclasses.replace(cfg, backbone=init.meta.backbone, image_size=init.spec.height)
    else:  # input size and tile from the data where the config leaves them open
        cfg = resolve_geometry(cfg, dataset.samples)
    spec = init.spec if init is not None else make_spec(cfg)
    group_by = cfg.group_by if cfg.group_by is not None else dataset.group_by
    if cfg.good_only and dataset.layout == "mvtec":
        train, val = mvtec_split(dataset)
    else:
        train, val = stratified_split(dataset, cfg.val_fraction, cfg.seed, group_by)
    classes = (GOOD_CLASS, ANOMALY_CLASS) if cfg.good_only else dataset.classes
    if init is not None:
        model = model_from_bundle(init, classes)
    else:
        model = DefectNet(cfg.backbone, len(classes), pretrained=cfg.pretrained, weights_path=cfg.weights_path)
    model = model.to(device).to(memory_format=torch.channels_last)
    log.info("training %s on %d images (%s), %s, %d process(es)", cfg.backbone, len(dataset.samples), dataset.layout,
             device, ranks.world)
    hardware = training_hardware(device, cfg.bf16)
    log.info("training on %s", hardware_line(hardware))
    trace = TrainTrace.from_env(ranks.rank, ranks.world)
    trace.split([str(s.image.relative_to(dataset.root)) for s in train])
    history, started, figures = [], time.time(), {}
    if not cfg.good_only:  # the supervised phases
        loaders = _loaders(train, val, classes, cfg, spec, ranks)
        model.freeze_encoder()
        _run_phase(model, "frozen", cfg.epochs_frozen, cfg, loaders, device, history, classes, ranks, trace)
        model.unfreeze_encoder(bn_stats=cfg.finetune_bn_stats, keep_stride=cfg.keep_stride)
        _run_phase(model, "finetune", cfg.epochs_finetune, cfg, loaders, device, history, classes, ranks, trace)
        if ranks.main:
            figures = _final_figures(model, loaders[1], device, classes, cfg)
    if not ranks.main:
        return None
    anomaly, anomaly_figures = _anomaly_head(model, train, val, classes, spec, device, cfg)
    figures |= anomaly_figures
    thresholds = Thresholds(review=Thresholds().reject) if cfg.good_only else Thresholds()  # no band: see README
    split = split_record(dataset, train, val)
    meta = BundleMeta(
        backbone=cfg.backbone,
        classes=tuple(classes),
        preprocess=spec,
        thresholds=thresholds,
        calibration=None,
        anomaly=anomaly,
        validation=figures,
        data=DataRecord(hash=data_hash(dataset), root=str(Path(data).resolve()), layout=dataset.layout,
                        n_images=len(dataset.samples), per_class=dict(Counter(s.label for s in dataset.samples))),
        split=SplitRecord(train=tuple(split["train"]), val=tuple(split["val"]), group_by=group_by or None),
        train_config=dataclasses.asdict(cfg),
        train_seconds=round(time.time() - started, 1),
        train_processes=ranks.world,
        train_hardware=hardware,
        init_from=f"{init.name}/{init.version}" if init is not None else None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        plot_training_curves(history, Path(tmp) / "curves.png")
        curves = (Path(tmp) / "curves.png").read_bytes()
    files = {"history.json": json.dumps(history, indent=1).encode(), "training_curves.png": curves}
    meta = dataclasses.replace(meta, **_as_served(model.cpu(), meta, files, val, str(device), cfg.calibrate))
    return write_bundle(Path(out), name, model, meta, files)


def _final_figures(model: DefectNet, val_loader: DataLoader, device: torch.device, classes: tuple[str, ...],
                   cfg: TrainConfig) -> dict[str, Any]:
    """The shipped weights' validation figures (model input scale; undefined ones left out) and their 95 %
    bootstrap intervals (``ci95``, keyed as report.json's figures)."""
    result = validate(model, val_loader, device, classes, bf16=cfg.bf16)
    figures = {k: v for k, v in result.figures().items() if v is not None}
    return figures | {"ci95": result.intervals(cfg.seed)}


def _anomaly_head(model: DefectNet, train: list[Sample], val: list[Sample], classes: tuple[str, ...],
                  spec: PreprocessSpec, device: torch.device, cfg: TrainConfig) -> tuple[AnomalyRecord | None, dict]:
    """Fits the anomaly head when asked; for a good-only model also its validation AUROC (its only figure)."""
    if not (cfg.anomaly or cfg.good_only):
        return None, {}
    train_good = [s for s in train if s.label == GOOD_CLASS]
    reference = val if cfg.good_only else [s for s in val if s.label == GOOD_CLASS]  # good-only: score all of val
    record, scores = fit_anomaly(model, train_good, reference, classes, spec, device, cfg.anomaly_bank,
                                 cfg.anomaly_review_rate, cfg.seed)
    record = dataclasses.replace(record, only=cfg.good_only)
    if not cfg.good_only:
        return record, {}
    is_defect = np.array([s.label != GOOD_CLASS for s in val])
    figures = {"val_review_rate": record.val_review_rate}  # good parts past a reference placed without them
    if 0 < is_defect.sum() < len(val):  # defect figures only where there are defects
        figures["val_auroc"] = auroc(is_defect, anomaly_probability(scores))
    return record, figures


def _as_served(model: DefectNet, meta: BundleMeta, files: dict[str, bytes], val: list[Sample], device: str,
               calibrate: bool) -> dict[str, Any]:
    """Thresholds chosen on the validation split (F1-optimal, as ``inspector calibrate`` does by default; the defaults
    when not asked or when the split cannot support it), then the drift reference under them: both through the
    serving predictor of a draft bundle, so the reference holds the defect scores the service will compute.

    A good-only model keeps its anomaly operating point (the share of good parts it sends to review, placed on every
    good part): an F1-optimal threshold on the few defects of a validation split sent 5-8 % of good parts to review
    on BSData and magnetic-tile. ``inspector calibrate`` still moves it when asked."""
    with tempfile.TemporaryDirectory() as tmp:
        predictor = Predictor(load_bundle(write_bundle(Path(tmp), "draft", model, meta, files)), device)
        # the anomaly head's operating point stands for a good-only model, and where validation holds no defect
        if calibrate and not meta.anomaly_only and any(s.label != GOOD_CLASS for s in val):
            try:
                changes = calibrated_changes(predictor, val, show_progress=False)
            except DataError as err:
                log.warning("thresholds left at their defaults: %s", err)
            else:
                t = predictor.thresholds
                log.info("thresholds chosen on the validation split: reject %.3f, review %.3f, mask weight %.2f",
                         t.reject, t.review, t.mask_weight)
                changes["calibration"] = {**changes["calibration"], "split": "val", "at": "train"}
                return changes
        return {"reference": drift_reference(predictor, val)}
