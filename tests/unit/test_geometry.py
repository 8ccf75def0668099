"""The input geometry chosen from the data (shape, tiles), thin defects kept in the training target, tiled training
items, a bundle's tile used by its predictor, and the warm-up of fine-tuning."""

from __future__ import annotations

import dataclasses
import types
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from inspector.artifacts.bundle import BundleMeta, load_bundle, write_bundle
from inspector.config import PreprocessSpec, Thresholds, TrainConfig
from inspector.data.dataset import DefectDataset, defect_window
from inspector.data.geometry import (Geometry, choose_geometry, choose_input_size, image_size_hw, input_shape,
                                     resolve_geometry)
from inspector.data.layouts import Sample
from inspector.data.masks import letterbox_mask, shrink_mask
from inspector.imaging.tiling import Window, plan, window_at
from inspector.inference.options import InferenceOptions
from inspector.inference.predictor import Predictor
from inspector.model import DefectNet
from inspector.train.schedule import linear_warmup, warmup_steps

# --- the input shape -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, expected", [
    ([(460, 1130)] * 5, (192, 480)),  # BSData's wide frames: aspect 2.46
    ([(1130, 460)] * 5, (480, 192)),  # the same, portrait
    ([(300, 300), (310, 290), (280, 330)], (320, 320)),  # square
    ([(327, 272), (250, 600), (380, 120), (320, 300), (300, 330)], (320, 320)),  # mixed: median aspect 0.91
    ([(100, 200), (100, 210), (100, 190), (500, 500)], (224, 448)),  # mostly 2:1, one square outlier
])
def test_input_follows_the_median_aspect_at_about_the_pixel_budget(sizes, expected):
    h, w = choose_input_size(sizes, 320)
    assert (h, w) == expected
    assert h % 32 == 0 and w % 32 == 0
    assert 0.8 < h * w / 320**2 < 1.25  # training cost stays about that of 320 x 320
    PreprocessSpec(h, w)  # the spec accepts it


@pytest.mark.parametrize("aspect", [0.1, 0.3, 0.55, 0.79, 1.0, 1.3, 1.8, 2.46, 3.3, 12.0])
@pytest.mark.parametrize("budget", [64, 256, 320, 512])
def test_every_choice_is_a_multiple_of_32_near_the_aspect(aspect, budget):
    h, w = input_shape(aspect, budget)
    assert h % 32 == 0 and w % 32 == 0 and min(h, w) >= 32
    clipped = min(max(aspect, 0.25), 4.0)
    if 0.8 <= aspect <= 1.25:
        assert h == w
    elif budget >= 256:  # enough multiples of 32 to follow the aspect closely
        assert abs(math.log(w / h / clipped)) < 0.25
        assert 0.75 < h * w / budget**2 < 1.33


def test_image_sizes_come_from_headers(tmp_path: Path):
    for ext in (".png", ".jpg", ".bmp"):
        path = tmp_path / f"a{ext}"
        cv2.imwrite(str(path), np.zeros((37, 91, 3), np.uint8))
        assert image_size_hw(path) == (37, 91)


# --- tiles -----------------------------------------------------------------------------------------------------------


def test_small_defects_on_wide_frames_get_tiles():
    frames = [(460, 1130)] * 20
    defects = [(30.0, 460, 1130)] * 10  # pits of ~30 px: 12.5 px on a whole-frame 192 x 480 input
    geo = choose_geometry(frames, defects, 320)
    # the largest tile that brings them to 20 px: 480 frame px into 320 x 320, three tiles a frame (320 px: eight)
    assert geo.tile == 480 and geo.input_size == (320, 320) and geo.tile_px == 20
    assert geo.whole_px < 16 and geo.tile_px >= 1.5 * geo.whole_px
    assert geo.tiles_per_frame == len(plan(460, 1130, 480)) == 3


def test_large_defects_or_small_frames_stay_whole():
    wide = [(460, 1130)] * 20
    large = choose_geometry(wide, [(200.0, 460, 1130)] * 10, 320)
    assert large.tile == 0 and large.input_size == (192, 480) and large.whole_px >= 16
    small_frames = choose_geometry([(300, 260)] * 20, [(8.0, 300, 260)] * 10, 320)  # tiny defects, nothing to tile
    assert small_frames.tile == 0 and small_frames.input_size == (320, 320)
    assert choose_geometry(wide, [], 320).tile == 0  # no masks: nothing to measure


def test_tiles_grow_until_a_frame_needs_at_most_a_dozen():
    frames = [(2000, 3000)] * 4  # 88 tiles of 320 px, too many: larger tiles
    geo = choose_geometry(frames, [(12.0, 2000, 3000)] * 4, 320)
    assert geo.tile > 320 and geo.tiles_per_frame <= 12
    assert len(plan(2000, 3000, geo.tile)) <= 12 < len(plan(2000, 3000, geo.tile - 32))


def test_given_values_are_kept(tmp_path: Path):
    geo = choose_geometry([(460, 1130)], [(30.0, 460, 1130)], 320, input_size=(256, 384), tile=0)
    assert (geo.input_size, geo.tile) == ((256, 384), 0)
    cfg = TrainConfig(input_size=(96, 160), tile=0)
    assert resolve_geometry(cfg, []) is cfg


def test_resolve_measures_images_and_masks(tmp_path: Path):
    samples = []
    for i in range(4):
        image = tmp_path / f"good{i}.png"
        cv2.imwrite(str(image), np.full((230, 565), 120, np.uint8))
        samples.append(Sample(image, "good", None))
        image, mask = tmp_path / f"pit{i}.png", tmp_path / f"pit{i}_mask.png"
        cv2.imwrite(str(image), np.full((230, 565), 120, np.uint8))
        m = np.zeros((230, 565), np.uint8)
        cv2.circle(m, (100 + 50 * i, 100), 4, 255, -1)  # ~8 px pits: 3 px on a whole-frame 96 x 224 input
        cv2.imwrite(str(mask), m)
        samples.append(Sample(image, "pit", mask))
    cfg = resolve_geometry(TrainConfig(image_size=128), samples)
    assert cfg.input_size == (128, 128) and cfg.tile == 128
    whole = resolve_geometry(TrainConfig(image_size=128, tile=0), samples)
    assert whole.input_size == (96, 224) and whole.tile == 0


# --- masks -----------------------------------------------------------------------------------------------------------


def test_a_one_pixel_line_survives_a_3x_shrink():
    mask = np.zeros((300, 300), np.uint8)
    cv2.line(mask, (20, 30), (280, 260), 255, 1)  # a diagonal crack, 1 px wide
    mask[12, 10:290] = 255  # and a straight one
    binary = (mask > 127).astype(np.uint8)
    plain = cv2.resize(binary.astype(np.float32), (100, 100), interpolation=cv2.INTER_AREA) >= 0.5
    kept = shrink_mask(binary, 100, 100)
    assert not plain.any()  # what the target was: the cracks vanish
    n, _ = cv2.connectedComponents(kept.astype(np.uint8), connectivity=8)
    assert n - 1 == 2  # both cracks, each unbroken
    assert kept[4, 4:96].all()  # the straight one end to end
    assert kept.sum() < 2.5 * 100 * 2  # about one target pixel wide


def test_a_large_blob_is_not_inflated_beyond_its_border():
    mask = np.zeros((300, 300), np.uint8)
    cv2.circle(mask, (150, 150), 60, 255, -1)
    spec = PreprocessSpec(96, 96)
    target = letterbox_mask(mask, spec)  # shrink 3.125x
    plain = cv2.resize((mask > 127).astype(np.float32), (96, 96), interpolation=cv2.INTER_AREA) >= 0.5
    border = 2 * math.pi * 60 / 3.125  # its perimeter in target px
    assert target.dtype == np.float32 and set(np.unique(target)) == {0.0, 1.0}
    assert plain.sum() <= target.sum() <= plain.sum() + border
    assert target[plain].all()  # every half-covered pixel stays


def test_a_small_spot_becomes_one_pixel_and_a_letterbox_pads_with_zero():
    mask = np.zeros((120, 480), np.uint8)
    mask[60:62, 200:202] = 255  # 2 x 2 px spot, shrunk 7.5x into a 64 x 64 letterbox (16 rows of frame)
    target = letterbox_mask(mask, PreprocessSpec(64, 64))
    assert target.sum() >= 1 and target[:24].sum() == 0 and target[40:].sum() == 0
    assert letterbox_mask(np.zeros((10, 20), np.uint8), PreprocessSpec(64, 64)).sum() == 0  # enlarging, empty


# --- tiled training items --------------------------------------------------------------------------------------------


def test_window_at_holds_its_point_and_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(100, 900, 2)
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        win = window_at(int(h), int(w), 64, y, x)
        assert 0 <= win.x and win.x + win.w <= w and 0 <= win.y and win.y + win.h <= h
        assert win.y <= int(y) < win.y + win.h and win.x <= int(x) < win.x + win.w
    assert window_at(90, 90, 64, 10, 10) == Window(0, 0, 90, 90)  # not tiled by plan(): the whole frame


@pytest.fixture()
def wide_pit(tmp_path: Path) -> tuple[Sample, Sample]:
    image = np.full((200, 600, 3), 140, np.uint8)
    image[150:156, 500:506] = 20
    mask = np.zeros((200, 600), np.uint8)
    mask[150:156, 500:506] = 255
    cv2.imwrite(str(tmp_path / "pit.png"), image)
    cv2.imwrite(str(tmp_path / "pit_mask.png"), mask)
    cv2.imwrite(str(tmp_path / "good.png"), np.full((200, 600, 3), 140, np.uint8))
    return Sample(tmp_path / "pit.png", "pit", tmp_path / "pit_mask.png"), Sample(tmp_path / "good.png", "good", None)


def test_a_tiled_item_has_the_spec_shape_and_defect_draws_hold_the_defect(wide_pit):
    pit, good = wide_pit
    spec = PreprocessSpec(64, 64, tile=96)
    data = DefectDataset([pit, good], ("good", "pit"), spec, train=True, seed=1)
    labels, hits = [], 0
    for _ in range(40):
        image, mask, has_mask, label = data[0]
        assert image.shape == (3, 64, 64) and mask.shape == (1, 64, 64) and has_mask == 1.0
        labels.append(label)
        hits += bool(mask.sum() > 0)
        assert (label == 1) == bool(mask.sum() > 0)  # a tile beside the pit is good
    assert 15 <= hits < 40  # half the draws centred on the pit, a few random ones find it too
    assert data[1][0].shape == (3, 64, 64) and data[1][3] == 0
    val = DefectDataset([pit], ("good", "pit"), spec, train=False)
    image, mask, _, label = val[0]
    assert label == 1 and mask.sum() >= 9  # the validation tile is centred on the pit, seen at 64/96 of its size
    assert torch.equal(val[0][1], mask)  # and always the same


def test_defect_window_draws_every_component_and_holds_it():
    mask = np.zeros((400, 1200), np.uint8)
    mask[10:300, 20:400] = 255  # a large stain
    mask[380:383, 1150:1153] = 255  # a 3 px pit in a corner
    rng = np.random.default_rng(0)
    pits = 0
    for _ in range(60):
        win = defect_window(mask, 128, rng)
        assert (win.w, win.h) == (128, 128)
        assert mask[win.y : win.y + win.h, win.x : win.x + win.w].any()
        pits += win.x > 1000
    assert 15 <= pits <= 45  # components are drawn alike, not by area
    largest = defect_window(mask, 128, None)
    assert largest.x < 400 and largest.y < 300


def test_untiled_specs_show_the_whole_frame(wide_pit):
    pit, _ = wide_pit
    image, mask, _, label = DefectDataset([pit], ("good", "pit"), PreprocessSpec(64, 192), train=False)[0]
    assert image.shape == (3, 64, 192) and label == 1 and mask.sum() > 0  # a 6 px pit shrunk 3.1x, kept


# --- the predictor uses the bundle's tile ----------------------------------------------------------------------------


class DarkSpotNet(torch.nn.Module):
    """Defect wherever the input is nearly black; the part is defective if any pixel is."""

    def forward(self, x: torch.Tensor):
        dark = (x[:, :1] < -0.6).float()  # (b, 1, h, w)
        found = dark.amax(dim=(1, 2, 3))  # (b,)
        return torch.stack([8 - 16 * found, -8 + 16 * found], dim=1), dark * 20 - 10


def test_a_bundle_trained_on_tiles_is_inspected_as_tiles(tmp_path: Path):
    meta = BundleMeta(backbone="efficientnet_lite0", classes=("good", "spot"),
                      preprocess=PreprocessSpec(64, 64, tile=64), thresholds=Thresholds(min_region_area=4))
    bundle = load_bundle(write_bundle(tmp_path, "spots", DefectNet("efficientnet_lite0", 2, pretrained=False), meta))
    assert bundle.spec.tile == 64  # through bundle.json
    frame = np.full((768, 1024), 200, np.uint8)
    frame[500:505, 700:705] = 0  # a 5 px pit, averaged away when the frame is resized to 64 px
    default = Predictor(bundle, "cpu", network=DarkSpotNet())
    assert default.options.tile == 64 and len(default.prepare([frame]).owners) == len(plan(768, 1024, 64))
    assert default.predict([frame])[0].verdict == "REJECT"
    whole = Predictor(bundle, "cpu", options=InferenceOptions(tile=0), network=DarkSpotNet())  # --tile 0
    assert len(whole.prepare([frame]).owners) == 1 and whole.predict([frame])[0].verdict == "ACCEPT"


def test_a_bundle_without_a_tile_reads_as_whole_frames():
    meta = BundleMeta(name="m", version="v1", backbone="efficientnet_lite0", classes=("good", "spot"),
                      preprocess=PreprocessSpec(64, 64), weights_sha256="0" * 64)
    raw = meta.to_dict()
    del raw["preprocess"]["tile"]  # a bundle written before tiles
    assert BundleMeta.from_dict(raw).preprocess.tile == 0
    assert dataclasses.replace(meta.preprocess, tile=96).tile == 96


# --- warm-up ---------------------------------------------------------------------------------------------------------


def test_warmup_ramps_every_group_then_holds():
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.Adam([{"params": [params[0]], "lr": 1e-4}, {"params": [params[1]], "lr": 3e-4}])
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4, eta_min=1e-6)
    steps = warmup_steps(10)
    assert steps == 5
    handle = linear_warmup(optimizer, steps)
    seen = []
    for _ in range(10):  # one epoch of 10 batches
        seen.append([g["lr"] for g in optimizer.param_groups])
        params[0].grad = params[1].grad = torch.ones(2)
        optimizer.step()
    handle.remove()
    ramp = [lr for lr, _ in seen]
    assert ramp[:5] == pytest.approx([1e-4 * k / 5 for k in range(1, 6)])
    assert ramp[5:] == pytest.approx([1e-4] * 5)
    assert seen[0][1] == pytest.approx(3e-4 / 5)
    cosine.step()  # the epoch schedule goes on from the full rate
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6 + (1e-4 - 1e-6) * (1 + math.cos(math.pi / 4)) / 2)


def test_finetune_phase_warms_up_and_ships_the_average_of_its_steps(monkeypatch):
    from inspector.train import fit as fit_module
    from inspector.train.distributed import Ranks

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)

        def encoder_parameters(self):
            return self.enc.parameters()

        def head_parameters(self):
            return self.head.parameters()

    lrs: list[float] = []
    live: list[torch.Tensor] = []

    def fake_epoch(net, loader, optimizer, *args, **kwargs):
        for _ in loader:
            lrs.append(optimizer.param_groups[0]["lr"])
            for p in net.parameters():
                p.grad = torch.ones_like(p)
            optimizer.step()
        live[:] = [p.detach().clone() for p in net.parameters()]
        return {"loss": 0.0}

    monkeypatch.setattr(fit_module, "train_one_epoch", fake_epoch)
    monkeypatch.setattr(fit_module, "evaluate", lambda *a, **k: {"val_macro_f1": 0.5, "val_miou": 0.5})  # curves only
    cfg = TrainConfig(lr_encoder=1e-4)
    class Batches(list):  # eight batches, and a sampler that draws each epoch anew (ShardedBalancedSampler's API)
        sampler = types.SimpleNamespace(set_epoch=lambda epoch: None, last=[])

    loaders = (Batches([0] * 8), [])
    ranks = Ranks()  # one process
    model = Tiny()
    fit_module._run_phase(model, "finetune", 2, cfg, loaders, torch.device("cpu"), [], ("good", "x"), ranks)
    assert lrs[:4] == pytest.approx([1e-4 / 4, 2e-4 / 4, 3e-4 / 4, 1e-4])  # half an epoch of 8 batches
    assert lrs[4:8] == pytest.approx([1e-4] * 4) and lrs[8] < 1e-4  # then cosine from the full rate
    # fine-tuning ships the moving average of its steps, which lags the last step's weights
    assert not any(torch.equal(p, q) for p, q in zip(model.parameters(), live))
    lrs.clear()
    model = Tiny()
    fit_module._run_phase(model, "frozen", 1, cfg, loaders, torch.device("cpu"), [], ("good", "x"), ranks)
    assert lrs == pytest.approx([cfg.lr_heads] * 8)  # no warm-up before fine-tuning
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), live))  # and no average: the last step


def test_geometry_is_a_record():
    geo = Geometry((320, 320), 0, (10, 10), None, None, None, 1.0, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        geo.tile = 5  # type: ignore[misc]


def test_input_size_flag_parses_height_by_width():
    import argparse

    from inspector.cli.args import input_size

    assert input_size("224x448") == (224, 448) and input_size("96X160") == (96, 160)
    for bad in ("224", "224x450", "0x64", "axb"):
        with pytest.raises(argparse.ArgumentTypeError):
            input_size(bad)
