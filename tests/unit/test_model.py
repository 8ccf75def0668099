"""DefectNet over every registered backbone: shapes, freezing, offline weights."""

import hashlib

import pytest
import torch
from torch import nn

from inspector.model import BACKBONES, DefectNet, WeightsNotFoundError, get_backbone


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_forward_shapes_and_finite(backbone):
    torch.manual_seed(0)
    net = DefectNet(backbone, num_classes=4, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = net(x)
    assert out.logits.shape == (2, 4)
    assert out.mask_logits.shape == (2, 1, 64, 96)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.mask_logits).all()
    assert out._fields == ("logits", "mask_logits", "anomaly_map") and out.anomaly_map is None  # no bank attached


def _bn_modes(module: nn.Module) -> set[bool]:
    return {m.training for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_freeze_and_unfreeze(backbone):
    net = DefectNet(backbone, num_classes=3, pretrained=False)
    net.freeze_encoder()
    net.train()
    assert not any(p.requires_grad for p in net.encoder.parameters())
    assert all(p.requires_grad for p in net.head_parameters())
    assert _bn_modes(net.encoder) == {False}  # statistics frozen even in train mode
    assert _bn_modes(net.decoder) == {True}
    before = [b.clone() for n, b in net.encoder.named_buffers() if "running_mean" in n]
    net(torch.randn(2, 3, 64, 64))
    after = [b for n, b in net.encoder.named_buffers() if "running_mean" in n]
    assert all(torch.equal(a, b) for a, b in zip(before, after))

    net.unfreeze_encoder()
    assert all(p.requires_grad for p in net.parameters())
    assert _bn_modes(net.encoder) == {True}
    net.eval()
    assert _bn_modes(net) == {False}


def test_parameter_groups_partition_the_model():
    net = DefectNet("efficientnet_lite0", num_classes=3, pretrained=False)
    enc, heads = net.encoder_parameters(), net.head_parameters()
    assert len(enc) + len(heads) == len(list(net.parameters()))
    assert not {id(p) for p in enc} & {id(p) for p in heads}


def test_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0.*mobilenet_v2.*resnet18"):
        get_backbone("vgg99")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "resnet18"])
def test_missing_weights_file_is_a_clear_error(backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("INSPECTOR_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsNotFoundError, match=r"\.pth not found.*nothing is downloaded"):
        DefectNet(backbone, num_classes=2, pretrained=True)


def test_weights_from_a_given_file(tmp_path):
    source = DefectNet("mobilenet_v2", num_classes=2, pretrained=False)
    state = {**source.encoder.state_dict(), "classifier.1.weight": torch.zeros(1000, 1280)}
    path = tmp_path / "my-mobilenet.pth"
    torch.save(state, path)
    net = DefectNet("mobilenet_v2", num_classes=2, pretrained=True, weights_path=str(path))
    for k, v in source.encoder.state_dict().items():
        assert torch.equal(net.encoder.state_dict()[k], v)


def test_published_file_name_with_wrong_content_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_WEIGHTS_DIR", str(tmp_path))
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"fc.weight": torch.zeros(1)}, path)
    assert not hashlib.sha256(path.read_bytes()).hexdigest().startswith("f37072fd")
    with pytest.raises(ValueError, match="does not match the published"):
        DefectNet("resnet18", num_classes=2, pretrained=True)


def test_unfreeze_can_keep_batchnorm_statistics():
    net = DefectNet("efficientnet_lite0", num_classes=3, pretrained=False)
    net.freeze_encoder()
    net.unfreeze_encoder(bn_stats=False)
    net.train()
    assert all(p.requires_grad for p in net.encoder.parameters())
    assert _bn_modes(net.encoder) == {False}
    assert _bn_modes(net.decoder) == {True}


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_fine_tuning_keeps_the_layers_of_the_finest_strides(backbone):
    """keep_stride=4: every layer whose output is at 1/2 or 1/4 of the input keeps its weights and statistics (a
    training step leaves them equal), every later one trains; the probe pass leaves no statistics changed."""
    torch.manual_seed(0)
    net = DefectNet(backbone, num_classes=3, pretrained=False)
    stats = {n: b.clone() for n, b in net.encoder.named_buffers()}
    net.freeze_encoder()
    net.unfreeze_encoder(bn_stats=True, keep_stride=4)
    assert all(torch.equal(stats[n], b) for n, b in net.encoder.named_buffers())
    net.train()
    kept = {id(p) for layer in net.kept_layers for p in layer.parameters()}
    strides: dict[nn.Module, int] = {}

    def record(layer: nn.Module, _in, out: torch.Tensor) -> None:
        strides[layer] = 64 // out.shape[-1]

    hooks = [m.register_forward_hook(record) for m in net.kept_layers]
    before = {n: p.detach().clone() for n, p in net.encoder.named_parameters()}
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    out = net(torch.randn(2, 3, 64, 64))
    (out.logits.sum() + out.mask_logits.mean()).backward()
    optimizer.step()
    for hook in hooks:
        hook.remove()
    assert kept and set(strides.values()) <= {2, 4} and 4 in strides.values()
    assert _bn_modes(nn.ModuleList(net.kept_layers)) <= {False}  # their statistics stay ImageNet's too
    for name, p in net.encoder.named_parameters():
        assert p.requires_grad == (id(p) not in kept)
        assert torch.equal(p, before[name]) == (id(p) in kept), name
    net.unfreeze_encoder(keep_stride=0)
    assert net.kept_layers == [] and all(p.requires_grad for p in net.parameters())


def test_mask_head_starts_from_a_rare_defect_prior():
    torch.manual_seed(0)
    net = DefectNet("efficientnet_lite0", num_classes=2, pretrained=False).eval()
    with torch.no_grad():
        mask = net(torch.zeros(1, 3, 64, 64)).mask_logits.sigmoid()
    assert mask.mean() < 0.05  # not the 50 % an untrained zero-bias head predicts
