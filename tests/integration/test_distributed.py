"""``torchrun --nproc_per_node 2 -m inspector train``: DDP with gloo on the CPU writes one bundle, and its trace
(``INSPECTOR_TRAIN_TRACE``, :mod:`inspector.train.trace`) proves the ranks split each epoch and end as one model."""

import json
import os
import subprocess
import sys

import pytest
import torch

from inspector.artifacts.bundle import WEIGHTS_FILE, load_bundle
from inspector.data.layouts import load_dataset
from inspector.data.split import samples_from_record
from inspector.imaging.preprocess import read_image
from inspector.inference.predictor import Predictor
from inspector.train.sampling import ShardedBalancedSampler, rank_share
from inspector.train.trace import ENV, TrainTrace, state_digest

WORLD, BATCH = 2, 4


@pytest.fixture(scope="module")
def ddp_run(demo_data, tmp_path_factory):
    """One 2-process training (1 + 1 epochs at 64 px, about 20 s on 2 cores) with the trace on."""
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
           str(WORLD), "-m", "inspector", "train", "--data", str(demo_data), "--out", str(out / "store"),
           "--name", "ddp", "--image-size", "64", "--epochs-frozen", "1", "--epochs-finetune", "1", "--batch-size",
           str(BATCH), "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", ENV: str(out / "trace")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    traces = [json.loads((out / "trace" / f"rank{k}.json").read_text()) for k in range(WORLD)]
    return done, out / "store", traces


def test_two_cpu_processes_train_one_model(ddp_run, demo_data):
    done, store, _ = ddp_run
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    assert printed == [str(store / "ddp" / "v1")]  # rank 0 alone writes and prints
    assert sorted(p.name for p in (store / "ddp").iterdir() if p.is_dir()) == ["v1"]
    bundle = load_bundle(store / "ddp")
    assert bundle.meta.train_processes == WORLD
    image = read_image(demo_data / "images" / "crack" / "crack_0000.png")
    [pred] = Predictor.from_bundle(store / "ddp", device="cpu").predict([image])
    assert pred.mask.shape == image.shape and pred.model_version == "ddp/v1"


def test_ranks_split_every_epoch_into_disjoint_shares_of_one_draw(ddp_run, demo_data):
    """Each epoch is one balanced draw, with replacement, of the training split: rank k trains on its positions
    k, k + 2, ... and nothing else, so the shares are disjoint and together are the whole draw, the one a single
    process of the same seed makes. (With replacement an image may stand at two positions of a draw, and so on
    both ranks, as it would be seen twice by one process: disjoint means disjoint positions.)"""
    _, store, traces = ddp_run
    train = traces[0]["train"]
    assert [t["rank"] for t in traces] == list(range(WORLD)) and all(t["world"] == WORLD for t in traces)
    assert all(t["train"] == train for t in traces)  # one split, indexed alike on every rank
    assert sorted(train) == list(load_bundle(store / "ddp").meta.split.train)  # the bundle's training split
    share = rank_share(len(train), WORLD, BATCH)
    assert share % BATCH == 0 and share > 0  # whole batches only: nothing drawn is dropped, equal steps per rank
    single = ShardedBalancedSampler(samples_from_record(load_dataset(demo_data), train), seed=0, batch_size=BATCH)
    assert len(single) == share * WORLD  # 24 training images: one process draws as many as two together
    by_epoch = [[t["epochs"][e] for t in traces] for e in range(2)]
    draws = []
    for epoch, (phase, shares) in enumerate(zip(["frozen", "finetune"], by_epoch), start=1):
        assert [s["epoch"] for s in shares] == [epoch] * WORLD and [s["phase"] for s in shares] == [phase] * WORLD
        positions = [[p for p, _ in s["draws"]] for s in shares]
        for rank, mine in enumerate(positions):
            assert mine == list(range(rank, share * WORLD, WORLD))  # its own positions, in order, each once
        assert set(positions[0]).isdisjoint(positions[1])
        assert sorted(positions[0] + positions[1]) == list(range(share * WORLD))  # together: the whole draw
        draw = dict(pair for s in shares for pair in s["draws"])
        draw = [draw[p] for p in range(share * WORLD)]
        assert all(0 <= i < len(train) for i in draw)
        assert draw == single.epoch_draw(epoch).tolist()  # the draw one process makes
        draws.append(draw)
    assert draws[0] != draws[1]  # set_epoch: a new draw each epoch


def test_ranks_end_with_the_weights_rank_0_ships(ddp_run):
    _, store, traces = ddp_run
    weights = [t["weights"] for t in traces]
    assert [w["phase"] for w in weights[0]] == ["frozen", "finetune"]
    assert weights[0] == weights[1]  # every digest, raw model and shipped EMA, parameters and whole state
    finetune = weights[0][-1]
    assert finetune["shipped"] != finetune["model"]  # the EMA is not the last step's weights...
    state = torch.load(store / "ddp" / "v1" / WEIGHTS_FILE, weights_only=True)
    trained = {k: v for k, v in state.items() if not k.startswith("anomaly.")}  # the anomaly head came after
    assert state_digest(trained) == finetune["shipped"]  # ...and it is what the bundle holds


def test_train_says_the_precision_and_cpu_it_used(ddp_run):
    done, store, _ = ddp_run
    hardware = load_bundle(store / "ddp").meta.train_hardware
    assert hardware["device"] == "cpu" and hardware["precision"] in ("bf16", "fp32")
    assert hardware["cpu"]["threads"] == 1  # OMP_NUM_THREADS=1
    precision = "bf16 autocast" if hardware["precision"] == "bf16" else "fp32"
    said = [line for line in done.stderr.splitlines() if "INFO training on cpu" in line]
    assert len(said) == WORLD  # every rank says it
    assert all(f"training on cpu, {precision}; CPU {hardware['cpu']['model']} (" in line for line in said)


def test_the_trace_is_off_without_its_variable(monkeypatch, tmp_path):
    class Untouchable(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            raise AssertionError("hashed with the trace off")

    monkeypatch.delenv(ENV, raising=False)
    trace = TrainTrace.from_env(rank=1, world=2)
    trace.split(["a.png"])
    trace.epoch(1, "frozen", [(1, 0)])
    trace.weights("frozen", Untouchable(), Untouchable())
    assert not trace.on and trace.path is None
    monkeypatch.setenv(ENV, str(tmp_path / "t"))
    on = TrainTrace.from_env(rank=1, world=2)
    on.epoch(1, "frozen", [(1, 0)])
    assert json.loads((tmp_path / "t" / "rank1.json").read_text())["epochs"] == [
        {"epoch": 1, "phase": "frozen", "draws": [[1, 0]]}]


@pytest.mark.parametrize("n, world", [(24, 2), (23, 2), (22, 2), (10, 3), (3, 2)])
def test_sharded_sampler_partitions_the_draw_of_every_epoch(demo_data, n, world):
    samples = list(load_dataset(demo_data).samples)[:n]
    ranks = [ShardedBalancedSampler(samples, seed=5, rank=r, world=world, batch_size=BATCH) for r in range(world)]
    for epoch in (1, 2):
        for sampler in ranks:
            sampler.set_epoch(epoch)
        shares = [list(sampler) for sampler in ranks]
        assert all(len(s) == len(ranks[0]) for s in shares)  # equal steps per rank
        whole = ranks[0].epoch_draw()
        assert all(torch.equal(whole, sampler.epoch_draw()) for sampler in ranks)  # one draw, whoever draws it
        assert sorted(p for sampler in ranks for p, _ in sampler.last) == list(range(len(whole)))
        assert all(whole[p] == i for sampler in ranks for p, i in sampler.last)
    assert ranks[0].epoch_draw(1).tolist() != ranks[0].epoch_draw(2).tolist()
