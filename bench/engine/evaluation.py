"""Evaluation of a model on a step's test set: a streaming confusion matrix over seen channels."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from bench.data.transforms import normalize
from bench.engine.compute import autocast as bf16_autocast
from bench.metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_channels: int,
             device: torch.device, bf16: bool = False,
             predict: Callable[[Tensor], Tensor] | None = None) -> ConfusionMatrix:
    """Predict with `predict` (default: the argmax) from the `num_channels` seen channels'
    logits (float32); 255 labels are not counted."""
    model.eval()
    matrix = ConfusionMatrix(num_channels, device=device)
    autocast = bf16_autocast(device, bf16)
    for images, labels in batches:
        images = normalize(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        with autocast:
            logits = model(images).logits
        seen = logits[:, :num_channels].float()
        matrix.update(seen.argmax(dim=1) if predict is None else predict(seen), labels)
    matrix.all_reduce()  # ranks evaluated disjoint shards; a no-op when single
    return matrix
