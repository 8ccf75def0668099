"""The anomaly head: coreset, nearest-neighbour maps, and how the anomaly score enters the verdict."""

import numpy as np
import pytest
import torch

from inspector.config import Thresholds
from inspector.model import DefectNet
from inspector.model.anomaly import MemoryBank, greedy_coreset, patch_features
from inspector.inference.postprocess import anomaly_probability, decide

CLASSES = ("good", "crack", "spot")
CONFIDENT_GOOD = np.array([0.95, 0.03, 0.02], dtype=np.float32)


def test_coreset_covers_every_cluster_before_repeating_one():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])
    x = torch.cat([c + torch.randn(500, 2, generator=gen) for c in centres])  # 4 tight clusters of 500
    chosen = greedy_coreset(x, 4, seed=1)
    assert len(set(chosen.tolist())) == 4
    assert sorted(int(i) // 500 for i in chosen) == [0, 1, 2, 3]  # one point from each cluster


def test_coreset_of_fewer_points_than_asked_keeps_them_all():
    assert greedy_coreset(torch.randn(10, 3), 64).tolist() == list(range(10))


def test_bank_distance_is_the_nearest_neighbour_distance():
    gen = torch.Generator().manual_seed(2)
    bank = MemoryBank(50, 8)
    bank.bank.copy_(torch.randn(50, 8, generator=gen))
    feats = torch.randn(2, 8, 3, 4, generator=gen)
    feats[0, :, 0, 0] = bank.bank[7]  # a patch that is in the bank
    got = bank.distances(feats)
    queries = feats.permute(0, 2, 3, 1).reshape(-1, 8)
    expected = torch.cdist(queries, bank.bank).amin(dim=1).reshape(2, 1, 3, 4)
    assert torch.allclose(got, expected, atol=1e-4)
    assert float(got[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-3)


def test_anomaly_map_is_scaled_and_at_the_input_size():
    bank = MemoryBank(4, 8)
    feats = torch.ones(1, 8, 5, 5)  # every patch at distance sqrt(8) from the all-zero bank
    bank.scale.fill_(8**0.5)
    out = bank(feats, (40, 40))
    assert out.shape == (1, 1, 40, 40)
    assert torch.allclose(out, torch.ones_like(out), atol=1e-5)  # smoothing keeps a constant map constant


def test_patch_features_put_both_stages_on_the_stride_16_grid():
    model = DefectNet("efficientnet_lite0", 3, pretrained=False).eval()
    with torch.inference_mode():
        feats = patch_features(model.encoder(torch.randn(1, 3, 64, 96)))
    assert feats.shape[-2:] == (4, 6)
    assert feats.shape[1] == model.encoder.out_channels[3] + model.encoder.out_channels[4]


def test_model_with_a_bank_also_returns_the_anomaly_map():
    model = DefectNet("efficientnet_lite0", 3, pretrained=False).eval()
    assert model(torch.randn(1, 3, 64, 64)).anomaly_map is None
    dim = model.encoder.out_channels[3] + model.encoder.out_channels[4]
    model.attach_anomaly(MemoryBank(16, dim))
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.anomaly_map.shape == (2, 1, 64, 64) and bool((out.anomaly_map > 0).all())


def test_an_accepted_but_abnormal_part_goes_to_review_by_default():
    d = decide(CONFIDENT_GOOD, CLASSES, Thresholds(), anomaly=1.2)
    assert (d.verdict, d.label, d.by_anomaly) == ("REVIEW", "good", True)
    assert decide(CONFIDENT_GOOD, CLASSES, Thresholds(), anomaly=0.8).verdict == "ACCEPT"
    assert decide(CONFIDENT_GOOD, CLASSES, Thresholds(), anomaly=None).verdict == "ACCEPT"


def test_the_anomaly_verdict_can_be_reject():
    d = decide(CONFIDENT_GOOD, CLASSES, Thresholds(anomaly=0.5, anomaly_verdict="REJECT"), anomaly=0.5)
    assert (d.verdict, d.label, d.by_anomaly) == ("REJECT", "anomaly", True)


def test_the_classifier_verdict_stands_when_it_is_not_accept():
    defect = np.array([0.1, 0.85, 0.05], dtype=np.float32)
    d = decide(defect, CLASSES, Thresholds(anomaly_verdict="REJECT"), anomaly=0.1)
    assert (d.verdict, d.label, d.by_anomaly) == ("REJECT", "crack", False)


def test_anomaly_thresholds_are_validated():
    with pytest.raises(ValueError, match="anomaly_verdict"):
        Thresholds(anomaly_verdict="ACCEPT")
    with pytest.raises(ValueError, match="anomaly threshold"):
        Thresholds(anomaly=-0.1)


def test_anomaly_probability_is_one_half_at_the_reference():
    assert anomaly_probability(1.0) == 0.5
    assert anomaly_probability(0.0) == 0.0
    assert np.all(np.diff(anomaly_probability(np.linspace(0, 10, 50))) > 0)


def test_bank_distances_keep_fp32_under_autocast():
    """A half-precision serving pass (fp16 autocast on CUDA; bf16 here on the CPU) must not change the distances:
    features far from the origin and near a bank patch are exactly where the expansion cancels."""
    gen = torch.Generator().manual_seed(0)
    bank = MemoryBank(200, 96)
    bank.bank.copy_(3 + torch.randn(200, 96, generator=gen))
    feats = (bank.bank[:24] + 0.1 * torch.randn(24, 96, generator=gen)).T.reshape(1, 96, 4, 6)
    exact = bank.distances(feats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        served = bank.distances(feats)
    assert served.dtype == torch.float32 and torch.allclose(served, exact, atol=1e-4)
    assert float(exact.max()) < 1.5  # near the bank: distances about 1, under norms of about 30


def test_the_operating_point_stands_on_good_parts_the_bank_never_saw(demo_data):
    from inspector.config import PreprocessSpec
    from inspector.data.layouts import load_dataset
    from inspector.train.anomaly import AnomalyPath, fit_anomaly, image_scores
    from inspector.inference.predictor import Predictor

    goods = [s for s in load_dataset(demo_data).samples if s.label == "good"]
    train, val = goods[:6], goods[6:]
    spec = PreprocessSpec(64, 64)
    model = DefectNet("efficientnet_lite0", 3, pretrained=False).eval()
    record, scores = fit_anomaly(model, train, val, CLASSES, spec, torch.device("cpu"), 8192, review_rate=0.2,
                                 show=False)
    # every patch of the training images is in the bank: scored by it they are all about zero (float rounding), and
    # a reference placed on them would flag nearly every new good part; out of fold they score like unseen parts
    in_bank = image_scores(Predictor.for_network(model, CLASSES, spec, "cpu"), train)
    assert record.bank_size == record.patches_seen and float(in_bank.max()) < 0.01 * record.reference
    assert record.reference_images == len(train) + len(val)
    assert record.reference_split == "train_oof+val" and record.val_review_rate is not None
    assert scores.shape == (len(val),) and (scores > 0).all()
    # scored without the decoder, the same anomaly scores as the whole model gives
    full = image_scores(Predictor.for_network(model, CLASSES, spec, "cpu"), val)
    path = image_scores(Predictor.for_network(AnomalyPath(model, len(CLASSES)).eval(), CLASSES, spec, "cpu"), val)
    assert np.allclose(path, full, rtol=1e-5) and np.allclose(scores, full, rtol=1e-5)  # the bank now scaled


def test_distances_in_chunks_equal_one_matrix(monkeypatch):
    import inspector.model.anomaly as anomaly

    torch.manual_seed(0)
    bank = MemoryBank(64, 8)
    bank.bank.copy_(torch.randn(64, 8))
    feats = torch.randn(3, 8, 5, 7)  # 105 patches
    whole = bank.distances(feats)
    monkeypatch.setattr(anomaly, "MIN_CHUNK", 1)
    monkeypatch.setattr(anomaly, "CHUNK_BYTES", 10 * 64 * 4)  # blocks of 10 rows: 11 chunks, the last of 5
    assert anomaly.query_chunk(64) == 10
    assert torch.allclose(bank.distances(feats), whole, atol=1e-5)
    q = feats.permute(0, 2, 3, 1).reshape(-1, 8)
    assert torch.allclose(whole.flatten(), torch.cdist(q, bank.bank).amin(1), atol=1e-4)


@pytest.mark.parametrize("batch", [1, 8])
def test_chunked_and_traced_distances_are_the_plain_nearest_neighbour_distances(batch):
    """The eager path (at batch 8, four blocks of the real chunk size, the last one short) and the traced one-matmul
    path of an export give the plain pairwise distances, on features away from the origin as the encoder's are."""
    from inspector.model.anomaly import query_chunk

    gen = torch.Generator().manual_seed(batch)
    bank = MemoryBank(16384, 24)  # 128 query rows a block
    bank.bank.copy_(2 + torch.randn(16384, 24, generator=gen))
    feats = 2 + torch.randn(batch, 24, 9, 7, generator=gen)  # 63 patches a frame
    feats[0, :, 0, 0] = bank.bank[11]  # in the bank: distance 0
    assert -(-batch * 63 // query_chunk(16384)) == (1 if batch == 1 else 4)
    q = feats.permute(0, 2, 3, 1).reshape(-1, 24).double()
    plain = torch.cdist(q, bank.bank.double()).amin(1).float().reshape(batch, 1, 9, 7)
    with torch.inference_mode():
        eager = bank.distances(feats)
    traced = torch.jit.trace_module(bank, {"distances": feats}).distances(feats)  # as an export: one matmul
    # squared distances to within fp32 rounding of |q|^2 (about 120 here); a square root near 0 magnifies it
    assert torch.allclose(eager**2, plain**2, atol=1e-3) and torch.allclose(traced**2, eager**2, atol=1e-3)
    assert float(eager[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-2)


def test_a_query_chunk_keeps_its_distance_block_within_the_budget():
    from inspector.model.anomaly import CHUNK_BYTES, MIN_CHUNK, query_chunk

    for size in (512, 4608, 8192, 65536):
        rows = query_chunk(size)
        assert rows >= MIN_CHUNK and (rows * size * 4 <= CHUNK_BYTES or rows == MIN_CHUNK)
    assert query_chunk(8192) == 256  # 8 MiB: 8 frames of 320 px (3200 patches) are 13 blocks
    assert query_chunk(8192, "cuda") == 4096  # a GPU keeps its large blocks (fewer launches)


def test_distances_with_autograd_on_give_the_same_values_and_a_gradient(monkeypatch):
    """A training pass through a model that has a bank (grad mode, features that require grad) cannot write into a
    shared block; it takes a block per chunk and gives the same distances."""
    import inspector.model.anomaly as anomaly

    torch.manual_seed(1)
    bank = MemoryBank(64, 8)
    bank.bank.copy_(torch.randn(64, 8))
    feats = torch.randn(2, 8, 4, 5)
    with torch.inference_mode():
        expected = bank.distances(feats)
    monkeypatch.setattr(anomaly, "MIN_CHUNK", 1)
    monkeypatch.setattr(anomaly, "CHUNK_BYTES", 16 * 64 * 4)  # 3 chunks of the 40 patches
    feats.requires_grad_(True)
    got = bank.distances(feats)
    got.sum().backward()
    assert torch.allclose(got.detach(), expected, atol=1e-5) and feats.grad is not None
