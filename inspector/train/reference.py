"""The validation reference a bundle keeps for drift monitoring: defect scores and input statistics."""

from __future__ import annotations

import numpy as np
import torch

from inspector.config import PreprocessSpec
from inspector.data.layouts import Sample
from inspector.drift import frame_statistics, reference
from inspector.model import DefectNet
from inspector.preprocess import preprocess, read_image


@torch.inference_mode()
def validation_reference(model: DefectNet, samples: list[Sample], spec: PreprocessSpec, device: torch.device,
                         batch_size: int = 16, defect_scores: np.ndarray | None = None) -> dict:
    """Runs the trained model over the validation samples and bins each statistic (see :mod:`inspector.drift`).

    ``defect_scores``: the samples' defect scores when they do not come from the classifier (anomaly-only models).
    """
    model.eval()
    values: dict[str, list[float]] = {"defect_score": [], "brightness": [], "contrast": [], "sharpness": []}
    for i in range(0, len(samples), batch_size):
        images = [read_image(s.image) for s in samples[i : i + batch_size]]
        for image in images:
            for k, v in frame_statistics(image).items():
                values[k].append(v)
        batch = torch.from_numpy(np.stack([preprocess(im, spec)[0] for im in images])).to(device)
        probs = model(batch.contiguous(memory_format=torch.channels_last)).logits.softmax(dim=1)
        values["defect_score"] += (1.0 - probs[:, 0]).tolist()
    if defect_scores is not None:
        values["defect_score"] = list(defect_scores)
    return reference(values)
