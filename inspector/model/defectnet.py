"""DefectNet: one pretrained encoder, a U-Net decoder with a defect-mask head, and a classifier.

One forward pass gives both the class logits (``good`` + defect classes) and the defect-mask logits.
"""

from __future__ import annotations

from typing import NamedTuple

import segmentation_models_pytorch as smp
import torch
from torch import nn

from inspector.model.anomaly import MemoryBank, patch_features
from inspector.model.backbones import get_backbone

MASK_PRIOR_LOGIT = -4.6  # log(0.01 / 0.99): start the mask head at "1 % of pixels are defect", not 50 %
DECODER_CHANNELS = (128, 64, 32, 16, 8)  # deepest first; light at full resolution, where the cost is


class DefectOutput(NamedTuple):
    logits: torch.Tensor  # (b, n_classes) class logits, softmax over good + defect classes
    mask_logits: torch.Tensor  # (b, 1, h, w) defect-vs-background logits at input resolution
    anomaly_map: torch.Tensor | None = None  # (b, 1, h, w) distance to good parts' patches, when there is a bank


class ClassifierHead(nn.Module):
    """Average- and max-pooled deepest feature -> dropout -> linear. Max pooling keeps small defects visible."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # (b, 2c)
        return self.fc(self.dropout(pooled))  # (b, n_classes)


class DefectNet(nn.Module):
    """Encoder + U-Net decoder + segmentation head + classification head on the deepest feature.

    Args:
        backbone: A name from :data:`inspector.model.backbones.BACKBONES`.
        num_classes: Number of image classes, ``good`` included.
        pretrained: Load the backbone's ImageNet weights (offline; an error names a missing file).
        weights_path: Weights file for backbones that read one.
    """

    def __init__(self, backbone: str, num_classes: int, pretrained: bool = True, weights_path: str | None = None):
        super().__init__()
        spec = get_backbone(backbone)
        unet = smp.Unet(spec.smp_name, encoder_weights=None, classes=1, decoder_channels=DECODER_CHANNELS)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.segmentation_head = unet.segmentation_head
        torch.nn.init.constant_(self.segmentation_head[0].bias, MASK_PRIOR_LOGIT)  # defects are rare pixels
        self.classification_head = ClassifierHead(self.encoder.out_channels[-1], num_classes)
        self.encoder_bn_frozen = False
        self.kept_layers: list[nn.Module] = []  # encoder layers that keep their pretrained weights in fine-tuning
        self.anomaly: MemoryBank | None = None  # set by attach_anomaly
        if pretrained:
            load_encoder_weights(self.encoder, spec.load_weights(weights_path))

    def forward(self, x: torch.Tensor) -> DefectOutput:
        features = self.encoder(x)  # [x, (b, c1, h/2, w/2), ..., (b, c5, h/32, w/32)]
        mask_logits = self.segmentation_head(self.decoder(features))  # (b, 1, h, w)
        anomaly_map = None if self.anomaly is None else self.anomaly(patch_features(features), x.shape[-2:])
        return DefectOutput(self.classification_head(features[-1]), mask_logits, anomaly_map)

    def attach_anomaly(self, bank: MemoryBank) -> None:
        """Adds the anomaly head: every forward pass also gives the anomaly map (same encoder features)."""
        self.anomaly = bank

    def freeze_encoder(self) -> None:
        """Transfer learning: encoder weights fixed and its BatchNorm statistics frozen (eval mode)."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.encoder_bn_frozen = True  # read by train(): the encoder stays in eval mode

    def unfreeze_encoder(self, bn_stats: bool = True, keep_stride: int = 0) -> None:
        """Fine-tuning: encoder weights trainable again.

        Args:
            bn_stats: Let BatchNorm statistics update again (smp semantics). ``False`` keeps the pretrained
                statistics (affine weights still train), which is steadier with small batches.
            keep_stride: The layers that run at this output stride or finer (2: the stem; 4: the stem and the
                first stage; 0: none) keep their pretrained weights and statistics, as detectron2's ``FREEZE_AT``:
                generic edge and texture filters, and the most expensive layers to back-propagate through.
        """
        self.encoder.requires_grad_(True)
        self.kept_layers = early_layers(self.encoder, keep_stride) if keep_stride else []
        for layer in self.kept_layers:
            layer.requires_grad_(False)
        self.encoder_bn_frozen = not bn_stats
        self.train(self.training)

    def train(self, mode: bool = True) -> DefectNet:
        super().train(mode)
        if self.encoder_bn_frozen:
            self.encoder.eval()
        for layer in self.kept_layers:
            layer.eval()
        return self

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Decoder and both heads: everything trained from scratch."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder_ids]


@torch.no_grad()
def early_layers(encoder: nn.Module, stride: int, probe: int = 64) -> list[nn.Module]:
    """The encoder's layers with weights, in the order they run, up to the first whose output is coarser than
    ``stride`` (found by one forward pass of a ``probe`` px square; BatchNorm statistics are left untouched)."""
    order: list[tuple[nn.Module, int]] = []
    layers = [m for m in encoder.modules() if any(True for _ in m.parameters(recurse=False))]
    hooks = [m.register_forward_hook(lambda m, _in, out: order.append((m, probe // out.shape[-1])))
             for m in layers]
    was_training = encoder.training
    try:
        encoder.eval()
        encoder(torch.zeros(1, 3, probe, probe, device=next(encoder.parameters()).device))
    finally:
        encoder.train(was_training)
        for hook in hooks:
            hook.remove()
    kept = []
    for layer, layer_stride in order:
        if layer_stride > stride:
            break
        kept.append(layer)
    return kept


def load_encoder_weights(encoder: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Loads ImageNet weights into ``encoder``; every encoder tensor must be provided with its shape."""
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ValueError(f"pretrained weights lack {len(missing)} encoder tensors, e.g. {missing[:3]}")
    encoder.load_state_dict({k: state[k] for k in own}, strict=True)
