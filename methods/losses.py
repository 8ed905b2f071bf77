"""Loss functions shared by several methods, so that methods compose them instead of copying.

Notation: z = current logits (B x C_seen x H x W, old channels first), z_old = the previous
model's logits (B x C_old x H x W, background included), labels already remapped by the
protocol (255 = ignore). Every function returns an unweighted scalar; methods apply weights.
Means are over the global batch (`GlobalBatch`, see methods.base): on one process, the plain
mean; on data-parallel ranks, the same number from every rank's slice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.base import IGNORE_INDEX, SINGLE, GlobalBatch, LossInputs


def require_old_logits(inputs: LossInputs) -> Tensor:
    """The previous model's logits, which every incremental step of a distilling method needs
    (the engine provides them when the method says `uses_old_model`)."""
    if inputs.old_logits is None:
        raise ValueError(f"step {inputs.step} needs the previous model's logits (uses_old_model)")
    return inputs.old_logits


def knowledge_distillation(logits: Tensor, old_logits: Tensor,
                           batch: GlobalBatch = SINGLE) -> Tensor:
    """LwF's distillation on the old channels (Li & Hoiem; MiB's segmentation version).

    KD = -mean_pixels (1/C_old) sum_{c < C_old} softmax(z_old)_c * log_softmax(z[:, :C_old])_c,
    the new logits being narrowed to the old channels before their softmax. Every pixel counts
    (255 included): distillation needs no label.
    """
    old_channels = old_logits.shape[1]
    log_p = torch.log_softmax(logits[:, :old_channels], dim=1)
    targets = torch.softmax(old_logits, dim=1)
    return batch.mean(-(targets * log_p).mean(dim=1))


def unbiased_cross_entropy(logits: Tensor, labels: Tensor, old_channels: int,
                           batch: GlobalBatch = SINGLE) -> Tensor:
    """MiB's unbiased cross-entropy: background means "background or any old class".

    log p_0 = logsumexp_{c < C_old} z_c - logsumexp_c z_c, log p_c = z_c - logsumexp z for the
    new channels; NLL with 255 pixels counted as 0, mean over ALL pixels (the releases'
    reduction='none' then `.mean()`, fcdl94/MiB train.py `Trainer.train`). Labels of old
    channels (c < C_old, which only sequential mode keeps) are mapped to 0, as in MiB. With
    C_old = 1 it is the plain cross-entropy.
    """
    denominator = torch.logsumexp(logits, dim=1, keepdim=True)
    log_probs = logits - denominator
    log_background = torch.logsumexp(logits[:, :old_channels], dim=1, keepdim=True) - denominator
    log_probs = torch.cat([log_background, log_probs[:, 1:]], dim=1)
    targets = torch.where(labels < old_channels, torch.zeros_like(labels), labels)
    per_pixel = F.nll_loss(log_probs, targets, ignore_index=IGNORE_INDEX, reduction="none")
    return batch.mean(per_pixel)


def unbiased_knowledge_distillation(logits: Tensor, old_logits: Tensor,
                                    batch: GlobalBatch = SINGLE) -> Tensor:
    """MiB's unbiased distillation: the old model's background matches "background or new".

    log q_0 = logsumexp over {0} + new channels of z - logsumexp z; log q_c = z_c - logsumexp z
    for old c >= 1; t = softmax(z_old);
    L = -mean_pixels (t_0 log q_0 + sum_{1 <= c < C_old} t_c log q_c) / C_old.
    """
    old_channels = old_logits.shape[1]
    denominator = torch.logsumexp(logits, dim=1)
    background_or_new = torch.cat([logits[:, :1], logits[:, old_channels:]], dim=1)
    log_q0 = torch.logsumexp(background_or_new, dim=1) - denominator
    log_q_old = logits[:, 1:old_channels] - denominator[:, None]
    targets = torch.softmax(old_logits, dim=1)
    per_pixel = targets[:, 0] * log_q0 + (targets[:, 1:] * log_q_old).sum(dim=1)
    return batch.mean(-(per_pixel / old_channels))


def one_hot_bce(logits: Tensor, labels: Tensor, batch: GlobalBatch = SINGLE) -> Tensor:
    """iCaRL-style classification: binary cross-entropy with logits against one-hot targets.

    Summed over channels, averaged over ALL pixels with 255 pixels counted as 0, as the
    releases average it (fcdl94/MiB utils/loss.py `BCEWithLogitsLossWithIgnoreIndex` with
    reduction='none' returns 0 there, then train.py `Trainer.train` takes `.mean()`).
    """
    labelled = labels != IGNORE_INDEX
    safe = torch.where(labelled, labels, torch.zeros_like(labels))
    targets = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1)
    return batch.mean(per_pixel * labelled)


def sigmoid_distillation(logits: Tensor, old_logits: Tensor,
                         batch: GlobalBatch = SINGLE) -> Tensor:
    """iCaRL's distillation: BCE with logits of z[:, :C_old] against sigmoid(z_old).

    Mean over elements (pixels and old channels, 255 pixels included).
    """
    old_channels = old_logits.shape[1]
    return batch.mean(F.binary_cross_entropy_with_logits(
        logits[:, :old_channels], torch.sigmoid(old_logits), reduction="none"))


def downsample_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Labels (B x H x W) resized to a feature map's (h, w) by nearest neighbour."""
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest")
    return resized[:, 0].long()


def pixels_by_class(features: Tensor, labels: Tensor,
                    num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(pixels as rows, P x F; each pixel's class, P, with labels outside [0, num_classes), 255
    among them, mapped to num_classes, a spill row that sums by class drop; whether each pixel
    has a class, P)."""
    pixels = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    flat = labels.reshape(-1)
    valid = (flat >= 0) & (flat < num_classes)
    return pixels, torch.where(valid, flat, num_classes), valid


def sums_by_class(values: Tensor, classes: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class sums (num_classes x F) of `values` (P x F) and counts (num_classes), for
    `classes` from `pixels_by_class` (the spill row left out)."""
    sums = values.new_zeros((num_classes + 1, values.shape[1])).index_add(0, classes, values)
    counts = torch.bincount(classes, minlength=num_classes + 1).to(values.dtype)
    return sums[:num_classes], counts[:num_classes]


def class_sums(features: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Per-class feature sums (num_classes x F) and pixel counts (num_classes) of this slice.

    sums[c] = sum over b, y, x with labels[b, y, x] = c of features[b, :, y, x]: a true
    per-channel sum, whatever the number of images the class appears in. Labels outside
    [0, num_classes) (255) are left out.
    """
    pixels, classes, _ = pixels_by_class(features, labels, num_classes)
    return sums_by_class(pixels, classes, num_classes)


def global_class_sums(features: Tensor, labels: Tensor, num_classes: int,
                      reduce: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """`class_sums` summed over ranks by `reduce`, sums and counts in one reduction."""
    sums, counts = class_sums(features, labels, num_classes)
    both = reduce(torch.cat([sums, counts[:, None]], dim=1))
    return both[:, :-1], both[:, -1]


def class_means(features: Tensor, labels: Tensor, num_classes: int,
                batch: GlobalBatch = SINGLE) -> tuple[Tensor, Tensor]:
    """(per-class mean feature vectors over the global batch, num_classes x F; their global
    pixel counts). A class without pixels has a zero row and count 0."""
    sums, counts = global_class_sums(features, labels, num_classes, batch.sum)
    counts = counts.detach()
    return sums / counts.clamp_min(1)[:, None], counts
