"""Shared fixtures: a tiny synthetic data set and a tiny trained bundle, built once per session."""

import json
import os
import shutil

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from inspector.config import TrainConfig  # noqa: E402
from inspector.data.demo import write_demo_data  # noqa: E402

torch.set_num_threads(2)

TINY_TRAIN = TrainConfig(image_size=64, epochs_frozen=1, epochs_finetune=2, batch_size=8, workers=0, device="cpu",
                         calibrate=False)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    write_demo_data(out, n_per_class=8, size=64, seed=3)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(demo_data, tmp_path_factory) -> Path:
    from inspector.train.fit import fit

    return fit(demo_data, tmp_path_factory.mktemp("store"), "tiny", TINY_TRAIN)


@pytest.fixture(scope="session")
def add_version():
    """Returns ``add(source, model_dir, version)``: the bundle ``source`` copied into a store as ``model_dir/version``
    (without exports), its bundle.json renamed after the new folders and re-sealed, since the seal covers it."""
    from inspector.artifacts.bundle import reseal

    def add(source: Path, model_dir: Path, version: str) -> Path:
        target = shutil.copytree(source, model_dir / version, ignore=shutil.ignore_patterns("export"))
        meta = json.loads((target / "bundle.json").read_text())
        (target / "bundle.json").write_text(json.dumps(meta | {"name": model_dir.name, "version": version}))
        return reseal(target)

    return add


@pytest.fixture()
def line_store(tiny_bundle, tmp_path, add_version) -> Path:
    """``<tmp>/store/line/{v1,v2}``: the tiny bundle as two versions of a store's model ``line``, v1 active."""
    from inspector.artifacts.store import promote

    model_dir = tmp_path / "store" / "line"
    for version in ("v1", "v2"):
        add_version(tiny_bundle, model_dir, version)
    promote(model_dir, "v1")
    return model_dir
