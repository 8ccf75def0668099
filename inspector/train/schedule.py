"""Learning-rate warm-up at the start of fine-tuning.

When phase 2 unfreezes the encoder, Adam's moment estimates for its parameters start from zero and the decoder's
gradients, tuned to a frozen encoder, flow into ImageNet weights at once: the first steps at the full rate can undo
the pretraining they were meant to adapt. A linear ramp of every group's rate over the first half epoch lets the
moments settle first; after it the epoch-level cosine schedule runs as before.
"""

from __future__ import annotations

import torch
from torch.utils.hooks import RemovableHandle

WARMUP_EPOCHS = 0.5  # length of the linear warm-up of fine-tuning, epochs


def warmup_steps(batches_per_epoch: int, epochs: float = WARMUP_EPOCHS) -> int:
    """Optimizer steps of the warm-up (at least 1)."""
    return max(1, round(batches_per_epoch * epochs))


def linear_warmup(optimizer: torch.optim.Optimizer, steps: int) -> RemovableHandle:
    """Scales every group's rate by ``k / steps`` for its ``k``-th step (1/steps first, the full rate from step
    ``steps`` on), stepped after each ``optimizer.step()``. Create it after the epoch scheduler (whose rates it
    ramps towards) and remove the returned handle once the ramp is over."""
    ramp = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / steps))
    return optimizer.register_step_post_hook(lambda *_: ramp.step() if ramp.last_epoch < steps else None)
