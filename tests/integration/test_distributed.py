"""``torchrun --nproc_per_node 2 -m inspector train``: DDP with gloo on the CPU writes one bundle."""

import os
import subprocess
import sys

from inspector.artifacts.bundle import load_bundle
from inspector.inference.predictor import Predictor
from inspector.imaging.preprocess import read_image


def test_two_cpu_processes_train_one_model(demo_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "inspector", "train", "--data", str(demo_data), "--out", str(tmp_path), "--name", "ddp",
           "--image-size", "64", "--epochs-frozen", "1", "--epochs-finetune", "1", "--batch-size", "4",
           "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.strip()]
    assert printed == [str(tmp_path / "ddp" / "v1")]  # rank 0 alone writes and prints
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.is_dir()) == ["v1"]
    bundle = load_bundle(tmp_path / "ddp")
    assert bundle.meta.train_processes == 2
    image = read_image(demo_data / "images" / "crack" / "crack_0000.png")
    [pred] = Predictor.from_bundle(tmp_path / "ddp", device="cpu").predict([image])
    assert pred.mask.shape == image.shape and pred.model_version == "ddp/v1"
