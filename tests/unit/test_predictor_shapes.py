"""Batch shapes on CUDA: a few padded sizes, each warmed before a model serves (first passes choose kernels)."""

import pytest
import torch

from inspector.config import PreprocessSpec
from inspector.errors import UsageError
from inspector.inference.predictor import Predictor, cuda_rows


class Tiny(torch.nn.Module):
    def forward(self, x):
        return x.mean((1, 2, 3))[:, None].repeat(1, 2), x[:, :1]


def _predictor() -> Predictor:
    return Predictor.for_network(Tiny().eval(), ("good", "crack"), PreprocessSpec(height=32, width=32), "cpu")


def test_cuda_rows_are_powers_of_two_then_multiples_of_eight():
    assert [cuda_rows(n) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 16]
    assert [cuda_rows(n) for n in (16, 17, 24, 25)] == [16, 24, 24, 32]


def test_warm_up_runs_each_padded_shape_on_cuda_and_one_pass_on_cpu(monkeypatch):
    predictor = _predictor()
    sizes = []
    monkeypatch.setattr(predictor, "predict", lambda frames: sizes.append(len(frames)))
    predictor.warm_up(8)
    assert sizes == [2]  # CPU: one pass
    sizes.clear()
    predictor.device = torch.device("cuda")  # only the shapes are looked at: predict is replaced
    predictor.warm_up(8)
    assert sizes == [1, 2, 4, 8]
    sizes.clear()
    predictor.warm_up(3)
    assert sizes == [1, 2, 4]


def test_warm_up_predicts_on_the_cpu():
    predictor = _predictor()
    predictor.warm_up(8)  # a real pass through all three stages
    assert len(predictor.predict([torch.zeros(40, 40, dtype=torch.uint8).numpy()])) == 1


def test_cuda_graphs_on_the_cpu_are_refused():
    with pytest.raises(UsageError, match="CUDA graphs need a CUDA device; this predictor runs on cpu"):
        Predictor(_predictor().bundle, "cpu", network=Tiny().eval(), cuda_graphs=True)


def test_the_service_replays_cuda_graphs_by_default_only_for_eager_on_cuda(monkeypatch):
    from inspector.config import ServeConfig
    from inspector.service.server import uses_cuda_graphs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert uses_cuda_graphs(ServeConfig()) is True  # device auto: CUDA here
    assert uses_cuda_graphs(ServeConfig(backend="onnx")) is False
    assert uses_cuda_graphs(ServeConfig(device="cpu")) is False
    assert uses_cuda_graphs(ServeConfig(cuda_graphs=False)) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert uses_cuda_graphs(ServeConfig()) is False


def test_each_version_is_warmed_where_the_service_says(tiny_bundle):
    from inspector.service.models import ModelManager

    warmed = []

    def on_the_model_thread(warm):  # the service passes the batcher's thread here on CUDA without graphs
        warmed.append(warm)
        return warm()

    models = ModelManager(bundle=tiny_bundle, device="cpu", warm_on=on_the_model_thread)
    models.load()
    assert len(warmed) == 1 and models.ready
