"""An opt-in record of what each training process did: the proof that data-parallel training is what it claims.

``INSPECTOR_TRAIN_TRACE=DIR`` makes every rank write ``DIR/rank<k>.json``::

    {"rank": 0, "world": 2, "train": ["images/crack/crack_0003.png", ...],
     "epochs": [{"epoch": 1, "phase": "frozen", "draws": [[0, 17], [2, 3], ...]}, ...],
     "weights": [{"phase": "frozen", "model": "<sha256>", "shipped": "<sha256>", "model_parameters": "<sha256>",
                  "shipped_parameters": "<sha256>"}, ...]}

``train`` is the training split as image paths relative to the data root, in the order the sampler indexes it;
``draws`` are the (position in the epoch's draw, index into ``train``) pairs the rank's sampler gave its DataLoader,
in order; every one is trained on (:func:`inspector.train.sampling.rank_share` leaves no partial batch to drop).
``weights`` are :func:`state_digest` of the raw model and of the weights the phase ships (the EMA after fine-tuning,
the model itself after the frozen phase), taken on every rank at the end of each phase, after training and before rank
0 writes the bundle: of their whole state dicts, and of their parameters alone. The state dicts are taken after
:func:`inspector.train.distributed.sync_buffers` has copied rank 0's BatchNorm statistics to every rank; that copy
writes no parameter, so equal parameter digests are DDP's own doing. ``tests/integration/test_distributed.py`` reads
them: the ranks' draws partition each epoch's draw, and every rank ends with the same weights, those of the bundle.

Off (the variable unset or empty) every method returns at once: no path is formed, no weight hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

ENV = "INSPECTOR_TRAIN_TRACE"


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes, in name order: equal digests, equal weights."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class TrainTrace:
    """One rank's record, rewritten in full after every entry (a few KiB), so a run that fails leaves its part."""

    def __init__(self, folder: str | Path | None, rank: int = 0, world: int = 1):
        self.path = Path(folder) / f"rank{rank}.json" if folder else None
        self.record: dict = {"rank": rank, "world": world, "train": [], "epochs": [], "weights": []}

    @classmethod
    def from_env(cls, rank: int = 0, world: int = 1) -> TrainTrace:
        return cls(os.environ.get(ENV) or None, rank, world)

    @property
    def on(self) -> bool:
        return self.path is not None

    def split(self, train: list[str]) -> None:
        """The training split, in the sampler's index order."""
        if self.on:
            self.record["train"] = list(train)
            self._write()

    def epoch(self, epoch: int, phase: str, draws: list[tuple[int, int]]) -> None:
        """The draws one epoch trained on: (position in the epoch's whole draw, index into the split)."""
        if self.on:
            self.record["epochs"].append({"epoch": epoch, "phase": phase, "draws": [list(d) for d in draws]})
            self._write()

    def weights(self, phase: str, model: nn.Module, shipped: nn.Module) -> None:
        """Digests of the raw model's and the shipped weights at the end of ``phase``."""
        if self.on:
            self.record["weights"].append({
                "phase": phase, "model": state_digest(model.state_dict()),
                "shipped": state_digest(shipped.state_dict()),
                "model_parameters": state_digest(dict(model.named_parameters())),
                "shipped_parameters": state_digest(dict(shipped.named_parameters()))})
            self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record))
        tmp.replace(self.path)
