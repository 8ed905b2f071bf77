"""SDR (Michieli & Zanuttigh, CVPR 2021, "Continual Semantic Segmentation via Repulsion-Attraction
of Sparse and Disentangled Latent Representations"), on the encoder features f (B x F x h x w,
the backbone's last stage) with labels nearest-downsampled to (h, w).

Two variants (hyperparameter `variant`, part of the run identity):
- `release` (the default: what produced the paper's numbers): every term as the last commit of
  LTTM/SDR computes it, quirks included; each function `release_*` below cites the release's
  file and function. The quirks: the `.view(F, -1)` / `.view(-1, F)` gathers, the attraction
  divided inside its loop, the prototypes the release updates (background never in overlap, old
  classes and background at every sequential step) with zero vectors for missing ones, the
  sparsity over every pixel with 255 normalised as a class, eps 1e-15 and 0 for an
  all-background batch, and step-0 prototypes accumulated while step 0 trains (recorded by the
  shared `ce` step 0: `ReleasePrototypes`). In sequential mode it therefore keeps updating the
  background's and the old classes' prototypes and attracts every class present. Its latent
  terms are statistics of each data-parallel rank's own slice, as in each process of the
  release (only the prototype sums are summed over ranks): with several ranks they are not
  those of the whole batch, unlike every other term of this project.
- `paper`: the paper's definitions, the release's bugs fixed (below). In sequential mode it
  keeps the paper's reading: prototypes of a class come from the step that learns it and are
  frozen afterwards, and only background and the new classes are attracted, because a
  prototype that keeps moving with the current model no longer anchors the old representation
  the matching term distils towards.

Terms of an incremental step with variant=paper (all already weighted):
- unbiased_ce, unbiased_kd: MiB's, with kd weight 100 (MiB's classifier init is NOT used here;
  `sdr+mib` adds it);
- matching: for each old class c >= 1 with a prototype, the pixels labelled background that the
  old model predicts as c (argmax of the old logits, downsampled; in sequential mode, the pixels
  labelled c): the mean of their CURRENT features is pulled to p_c by an MSE (mean over channels);
  averaged over those classes, 0 when none;
- attraction: for background and the new classes present, the mean over the class's pixels and
  the channels of (f - p_c)^2, averaged over classes; new classes use the running prototype of
  this step (detached, the current batch included), background its step-0 prototype;
- repulsion: mean over ordered pairs of distinct labelled classes present of 1 / ||m_i - m_j||_2,
  m = the batch's class means WITH gradient; pairs at zero distance are dropped; 0 with fewer
  than two classes;
- sparsity: each pixel's features divided by the maximum activation (over its class's pixels and
  all channels; the max is NOT detached, as in the release, so the term is invariant to scaling a
  class's features), then sum_k exp(f_k) / (sum_k f_k + eps), mean over labelled pixels.

Direction of the sparsity term (checked, not assumed): with post-ReLU features normalised into
[0, 1], e^x >= e * x gives sum_k e^{f_k} / sum_k f_k >= e, with equality only when every channel
is at the class maximum; a one-hot pixel scores (K - 1 + e), and d ratio / d f_k =
(e^{f_k} - ratio) / sum_k f_k <= 0 for every channel. Minimised with a positive weight, as the
paper and its release do, it therefore raises weak normalised activations towards the class
maximum (denser normalised codes), not towards zero; it is implemented as published and this is
stated rather than "fixed". tests/test_methods.py checks the direction.

Prototypes: per class, sum and count of the detached features of every iteration of the step in
which the class is learned (sum / count = the running mean); frozen afterwards; carried in
`state_dict` (epoch and step checkpoints). Data-parallel ranks sum each batch's class sums
before adding them, so every rank holds the sums of the global batches and an epoch checkpoint
written by rank 0 is the whole state. Every statistic of a batch (class means, class maxima,
means over pixels) is one of the global batch (`GlobalBatch`), so a term has the same value on
N ranks as on one process.

Deviations of variant=paper from the paper:
- step-0 prototypes are computed after step 0, from the final step-0 model, by one pass over the
  step-0 training batches in eval mode under no_grad (the paper accumulates them during step-0
  training); sharing the cached plain-CE step 0 with ft/lwf/ilt/mib requires this.

Deviations of variant=paper from the public release (the paper's definitions instead; these
are what variant=release reproduces):
- class features are gathered as TRUE per-channel means (mask-weighted sums / counts); the release
  gathers with a boolean mask then `.view(F, -1)` (prototypes, attraction), which mixes channels
  as soon as a class is in more than one image, or `.view(-1, F)` (matching), which mixes them
  even within one image;
- the attraction is averaged over classes once; the release divides its running sum by the
  number of classes inside its loop over classes (earlier classes are divided repeatedly);
- background has a real prototype (from step 0); the release's stays zero in overlap, which pulls
  background features towards the origin;
- an old class that had no pixel in its own step has no prototype and is skipped by matching and
  attraction (the release would use a zero vector);
- sparsity leaves out ignored (255) pixels and pixels whose normalised features sum to zero
  (ratio undefined; the release's eps = 1e-15 makes such a pixel's term about K * 1e15); the
  release also normalises 255 pixels as a class of their own and returns 0 for a batch that is
  all background, which is computed here like any other batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bench.errors import BenchError
from methods.base import (
    IGNORE_INDEX,
    SINGLE,
    GlobalBatch,
    LossInputs,
    Method,
    Recorder,
    StepContext,
)
from methods.losses import (
    class_means,
    downsample_labels,
    global_class_sums,
    pixels_by_class,
    require_old_logits,
    sums_by_class,
)
from methods.mib import UnbiasedLosses
from methods.registry import register
from methods.step0 import register_recorder
from protocols.protocol import Protocol

SPARSITY_EPS = 1e-15  # the release's eps for the ratio's denominator and the class maximum


def old_class_targets(labels: Tensor, old_logits: Tensor, old_channels: int,
                      sequential: bool) -> Tensor:
    """B x h x w: the old class (>= 1) each pixel stands for, 0 where none.

    Overlap/disjoint: old classes are labelled background, so the old model's argmax (at label
    size, nearest-downsampled to `labels`' size) on pixels labelled 0. Sequential: the labels.
    """
    if sequential:
        old = (labels >= 1) & (labels < old_channels)
        return torch.where(old, labels, torch.zeros_like(labels))
    predicted = downsample_labels(old_logits.argmax(dim=1), tuple(labels.shape[-2:]))
    return torch.where(labels == 0, predicted, torch.zeros_like(labels))


def prototype_matching(features: Tensor, targets: Tensor, prototypes: Tensor, known: Tensor,
                       batch: GlobalBatch = SINGLE) -> Tensor:
    """Mean over old classes c >= 1 in `targets` (anywhere in the global batch) with a prototype
    of mean_channels (mean of the current features of c's pixels - p_c)^2; 0 when none."""
    means, counts = class_means(features, targets, prototypes.shape[0], batch)
    selected = (counts > 0) & known.to(counts.device)
    selected[0] = False
    if not bool(selected.any()):
        return features.new_zeros(())
    return (means[selected] - prototypes[selected]).pow(2).mean(dim=1).mean()


def attraction(features: Tensor, labels: Tensor, classes: Sequence[int], prototypes: Tensor,
               batch: GlobalBatch = SINGLE) -> Tensor:
    """Mean over `classes` (each present in the global batch) of the mean over the class's pixels
    and channels of (f - p_c)^2."""
    if not classes:
        return features.new_zeros(())
    num_classes = prototypes.shape[0]
    pixels, pixel_classes, valid = pixels_by_class(features, labels, num_classes)
    own = prototypes[torch.where(valid, pixel_classes, 0)]
    distance = (pixels - own).pow(2).sum(dim=1, keepdim=True)
    totals, counts = sums_by_class(distance, pixel_classes, num_classes)
    both = batch.sum(torch.stack([totals[:, 0], counts]))
    index = torch.tensor(list(classes), device=features.device)
    return (both[0, index] / (both[1, index].clamp_min(1) * pixels.shape[1])).mean()


def repulsion(features: Tensor, labels: Tensor, classes: Sequence[int],
              batch: GlobalBatch = SINGLE) -> Tensor:
    """Mean over ordered pairs i != j of `classes` of 1 / ||m_i - m_j||_2 (class means over the
    global batch, with gradient); pairs at zero distance are dropped; 0 with fewer than two
    classes."""
    if len(classes) < 2:
        return features.new_zeros(())
    means, _ = class_means(features, labels, max(classes) + 1, batch)
    return inverse_distance_mean(means[torch.tensor(list(classes), device=features.device)])


def inverse_distance_mean(means: Tensor) -> Tensor:
    """The mean over ordered pairs i != j of rows of 1 / ||m_i - m_j||_2, pairs at zero distance
    dropped; 0 when none is left."""
    squared = (means[:, None] - means[None]).pow(2).sum(dim=-1)
    distinct = ~torch.eye(len(means), dtype=torch.bool, device=means.device) & (squared > 0)
    if not bool(distinct.any()):
        return means.new_zeros(())
    return squared[distinct].sqrt().reciprocal().mean()


def sparsity(features: Tensor, labels: Tensor, num_classes: int,
             batch: GlobalBatch = SINGLE) -> Tensor:
    """Mean over labelled pixels of sum_k exp(g_k) / (sum_k g_k + eps), g = f / (max of f over
    the pixel's class's pixels in the global batch and all channels + eps); pixels with
    sum_k g_k = 0 are left out. Features are post-ReLU (>= 0): an absent class's maximum is 0."""
    pixels, pixel_classes, valid = pixels_by_class(features, labels, num_classes)
    class_max = pixels.new_zeros(num_classes + 1).scatter_reduce(
        0, pixel_classes, pixels.amax(dim=1), reduce="amax", include_self=False)
    class_max = batch.max(class_max[:num_classes])
    g = pixels / (class_max[torch.where(valid, pixel_classes, 0)] + SPARSITY_EPS)[:, None]
    # unlabelled pixels are left out; zeroed before exp so that they make no inf * 0 = NaN
    g = torch.where(valid[:, None], g, torch.zeros_like(g))
    summed = g.sum(dim=1)
    keep = valid & (summed > 0)
    ratio = g.exp().sum(dim=1) / (torch.where(keep, summed, 1.0) + SPARSITY_EPS)
    return batch.average((ratio * keep).sum(), keep.sum())


# ----- variant=release: the LTTM/SDR release's last commit, computed as it computes it ----------
def release_class_rows(features: Tensor, labels: Tensor, label: int) -> Tensor:
    """F x N: the features of `label`'s N pixels as LTTM/SDR gathers them (utils/loss.py
    `FeaturesClusteringSeparationLoss.forward`, train.py `Trainer._update_running_stats`): a
    boolean mask over (B, F, h, w) flattens image by image and, within an image, channel by
    channel, then `.view(F, -1)` cuts that sequence into F rows of N. Row r is channel r only
    when the class is in a single image; otherwise rows mix channels of several images."""
    mask = (labels == label)[:, None].expand_as(features)
    return features[mask].view(features.shape[1], -1)


def release_pixel_rows(features: Tensor, labels: Tensor, label: int) -> Tensor:
    """N x F: the same gather cut by `.view(-1, F)` (utils/loss.py
    `DistillationEncoderPrototypesLoss.forward`): rows of F consecutive values of one channel's
    pixels, which mixes pixels for a channel and channels for a row even within one image."""
    mask = (labels == label)[:, None].expand_as(features)
    return features[mask].view(-1, features.shape[1])


def release_updated_classes(labels: Tensor, mode: str, step: int) -> list[int]:
    """The labels whose prototypes a batch updates (train.py `Trainer._update_running_stats`):
    the sorted labels present, without the first one in overlap or at incremental steps of the
    other modes but sequential (meant to drop background; it drops the smallest class when a
    batch has no background), without 255 when last. The release ran ADE's partition without
    `--overlap` (its files sit in data/ade/<task>/, not <task>-ov), so `partition` counts as
    disjoint. An empty list where the release would fail indexing an empty tensor."""
    present = torch.unique(labels)
    if mode == "overlap" or (mode != "sequential" and step > 0):
        present = present[1:]
    if len(present) and int(present[-1]) == IGNORE_INDEX:
        present = present[:-1]
    return [int(c) for c in present]


def release_prototype_sums(features: Tensor, labels: Tensor, classes: Sequence[int],
                           num_classes: int) -> tuple[Tensor, Tensor]:
    """Per class of `classes`: the row sums of `release_class_rows` (F) and its pixel count, as
    float64 (num_classes x F, num_classes); sum / count is the release's running mean."""
    sums = features.new_zeros((num_classes, features.shape[1]), dtype=torch.float64)
    counts = features.new_zeros(num_classes, dtype=torch.float64)
    for label in classes:
        rows = release_class_rows(features, labels, label).double()
        sums[label] = rows.sum(dim=-1)
        counts[label] = rows.shape[1]
    return sums, counts


def release_matching(features: Tensor, targets: Tensor, prototypes: Tensor) -> Tensor:
    """utils/loss.py `DistillationEncoderPrototypesLoss.forward` with loss_de_prototypes_sumafter
    (set for SDR by argparser.py `modify_command_options`): for each class c >= 1 in `targets`,
    MSE(mean over the rows of `release_pixel_rows`, p_c) / (number of such classes), summed; a
    class without prototype matches the zero vector the release initialises (run.py)."""
    present = [c for c in torch.unique(targets).tolist() if c != 0]
    total = features.new_zeros(())
    for label in present:
        current = release_pixel_rows(features, targets, label).mean(dim=0)
        total = total + (current - prototypes[label]).pow(2).mean() / len(present)
    return total


def release_attraction(features: Tensor, labels: Tensor, prototypes: Tensor) -> Tensor:
    """utils/loss.py `FeaturesClusteringSeparationLoss.forward` (lfc_nobgr off): for every
    labelled class present, in label order, add MSE(`release_class_rows`, p_c) and then divide
    the running total by the number of classes (inside the loop: the first class is divided
    once per class); NaN becomes 0 (train.py `Trainer.train`)."""
    present = [c for c in torch.unique(labels).tolist() if c != IGNORE_INDEX]
    total = features.new_zeros(())
    for label in present:
        rows = release_class_rows(features, labels, label)
        total = (total + (rows - prototypes[label][:, None]).pow(2).mean()) / len(present)
    return torch.nan_to_num(total, nan=0.0)


def release_repulsion(features: Tensor, labels: Tensor) -> Tensor:
    """The same function's separation term: the mean over ordered pairs of labelled classes
    present of 1 / ||m_i - m_j||, m_c the row means of `release_class_rows` (with gradient);
    infinite terms (i = j, equal means) dropped; 0 when none is left."""
    present = [c for c in torch.unique(labels).tolist() if c != IGNORE_INDEX]
    if len(present) < 2:
        return features.new_zeros(())
    means = torch.stack([release_class_rows(features, labels, c).mean(dim=-1) for c in present])
    return inverse_distance_mean(means)


def release_sparsity(features: Tensor, labels: Tensor) -> Tensor:
    """utils/loss.py `FeaturesSparsificationLoss.forward` with max_maskedforclass, exponential,
    ratio (argparser.py for SDR): every label present (255 too) is a class whose pixels are
    divided by its maximum over pixels and channels + 1e-15, except a batch holding background
    only, whose normalised features stay zero and whose loss is 0; otherwise the mean over ALL
    pixels of sum_k exp(g_k) / (sum_k g_k + 1e-15) (a pixel with g = 0 gives F * 1e15)."""
    classes = torch.unique(labels).tolist()
    if classes[-1] == 0:
        classes = classes[:-1]
    normalised = torch.zeros_like(features)
    for label in classes:
        mask = (labels == label)[:, None]
        class_max = features[mask.expand_as(features)].max()
        normalised = normalised + features / (class_max + SPARSITY_EPS) * mask.to(features.dtype)
    if not bool(normalised.sum() > 0):
        return features.new_zeros(())
    ratio = normalised.exp().sum(dim=1) / (normalised.sum(dim=1) + SPARSITY_EPS)
    return ratio.mean()


class ReleasePrototypes(Recorder):
    """The release's step-0 prototypes: `release_updated_classes` and `release_prototype_sums`
    of every step-0 training batch, with the features of the model being trained (as LTTM/SDR's
    step 0, run with --loss_de_prototypes 1 for this only: its README). Recorded by the shared
    `ce` step 0, so SDR keeps sharing it; data-parallel ranks sum their slices' sums."""

    name = "sdr-release-prototypes"
    version = 1

    def __init__(self, protocol: Protocol) -> None:
        super().__init__(protocol)
        self.sums: Tensor | None = None
        self.counts: Tensor | None = None

    def observe(self, inputs: LossInputs) -> None:
        if inputs.output.encoder is None:
            return
        features = inputs.features.detach().float()
        labels = downsample_labels(inputs.labels, tuple(features.shape[-2:]))
        classes = release_updated_classes(labels, self.protocol.mode, 0)
        num_classes = len(self.protocol.class_order)
        sums, counts = release_prototype_sums(features, labels, classes, num_classes)
        both = inputs.batch.sum(torch.cat([sums, counts[:, None]], dim=1))
        if self.sums is None or self.counts is None:
            self.sums, self.counts = both[:, :-1].clone(), both[:, -1].clone()
        else:
            self.sums += both[:, :-1].to(self.sums.device)
            self.counts += both[:, -1].to(self.counts.device)

    def state_dict(self) -> dict[str, Any]:
        if self.sums is None or self.counts is None:
            return {}
        return {"sums": self.sums.cpu().clone(), "counts": self.counts.cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = state["sums"].double() if state else None
        self.counts = state["counts"].double() if state else None


register_recorder("ce", ReleasePrototypes)


@register
class SDR(UnbiasedLosses, Method):
    name = "sdr"
    description = "SDR: MiB's unbiased CE/KD + prototype matching, attraction, repulsion, sparsity"
    # Michieli & Zanuttigh, CVPR 2021, implementation details of the experiments: prototype
    # matching 1e-2, contrastive attraction and repulsion 1e-3 each, sparsification 1e-3, MiB's
    # unbiased distillation 100 (values as this benchmark specifies them from the paper).
    defaults = {"kd_weight": 100.0, "matching_weight": 1e-2, "attraction_weight": 1e-3,
                "repulsion_weight": 1e-3, "sparsity_weight": 1e-3, "variant": "release"}
    sources = {**{key: "Michieli & Zanuttigh, CVPR 2021, implementation details"
                  for key in defaults if key != "variant"},
               "variant": "release: LTTM/SDR's last commit (its published numbers); paper: the "
                          "paper's definitions (see the module docstring)"}
    choices = {"variant": ("release", "paper")}
    step0_records = (ReleasePrototypes.name,)
    recipe = "sdr"  # SDR's own recipe (batch 8 / lr 1e-3 on VOC): its paper's numbers use it
    uses_old_model = True

    def __init__(self, protocol: Protocol, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(protocol, params)
        self.sums: Tensor | None = None  # classes x F, float64, channels indexed as the model's
        self.counts: Tensor | None = None  # classes, float64

    # ----- prototypes -----------------------------------------------------------------------
    def accumulate(self, features: Tensor, labels: Tensor, channels: range, num_classes: int,
                   reduce: Callable[[Tensor], Tensor]) -> Tensor:
        """Add the detached features of `channels`' pixels in the global batch (this slice's
        class sums, summed over ranks by `reduce`) to their running sums and counts; returns
        the global pixel count of every class below `num_classes`."""
        sums, counts = global_class_sums(features.detach().float(), labels, num_classes,
                                         lambda both: reduce(both.double()))
        self.add_sums(sums, counts, channels)
        return counts

    def add_sums(self, sums: Tensor, counts: Tensor, rows: Sequence[int]) -> None:
        """Add class sums and counts (rows indexed by channel) of `rows` to the prototypes'."""
        if self.sums is None or self.counts is None:
            classes = len(self.protocol.class_order)
            self.sums = sums.new_zeros((classes, sums.shape[1]))
            self.counts = counts.new_zeros(classes)
        self.sums = self.sums.to(sums.device)
        self.counts = self.counts.to(sums.device)
        index = torch.tensor(list(rows), dtype=torch.long, device=sums.device)
        self.sums[index] += sums[index]
        self.counts[index] += counts[index]

    def prototypes(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(classes x F prototypes as `like`'s dtype/device, bool: whether each one exists)."""
        if self.sums is None or self.counts is None:
            raise BenchError(f"{self.name} has no prototypes: its step-0 checkpoint carries no "
                             "method state (step 0 must end with this method's on_step_end)")
        counts = self.counts.to(like.device)
        means = self.sums.to(like.device) / counts.clamp_min(1)[:, None]
        return means.to(like.dtype), counts > 0

    def step0_prototypes(self, context: StepContext) -> None:
        """One pass over step 0's training batches with the final step-0 model (eval mode)."""
        self.sums = self.counts = None
        model, channels = context.model, context.protocol.channels_of(0)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for images, labels in context.train_batches():
                features = model(images.to(context.device)).encoder.float()
                labels = downsample_labels(labels.to(context.device), tuple(features.shape[-2:]))
                self.accumulate(features, labels, channels, len(channels), context.all_reduce)
        model.train(was_training)

    def on_step_end(self, context: StepContext) -> None:
        super().on_step_end(context)
        if context.step != 0:
            return
        if self.params["variant"] == "paper":
            self.step0_prototypes(context)
            return
        record = (context.step0_record or {}).get(ReleasePrototypes.name)
        if not record:
            raise BenchError(f"{self.name} (variant=release) needs the prototypes step 0 "
                             "accumulated while training, which this step 0 did not record; "
                             "rerun step 0 (its cache predates the record) or use "
                             "method.variant=paper")
        self.sums, self.counts = record["sums"].double(), record["counts"].double()

    def state_dict(self) -> dict[str, Any]:
        if self.sums is None or self.counts is None:
            return {}
        return {"sums": self.sums.detach().cpu().clone(),
                "counts": self.counts.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            self.sums = self.counts = None
            return
        if set(state) != {"sums", "counts"}:
            raise BenchError(f"method {self.name}: unexpected state keys {sorted(state)}")
        self.sums = state["sums"].to(torch.float64)
        self.counts = state["counts"].to(torch.float64)

    # ----- loss -----------------------------------------------------------------------------
    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        self.prototypes(inputs.features)  # fails early, before accumulating, without step 0's
        if self.params["variant"] == "release":
            return self.release_loss(inputs)
        terms = self.unbiased_terms(inputs)
        old_logits = require_old_logits(inputs)
        batch = inputs.batch
        features = inputs.features.float()
        labels = downsample_labels(inputs.labels, tuple(features.shape[-2:]))
        new_channels = self.protocol.channels_of(inputs.step)
        seen = inputs.logits.shape[1]
        counts = self.accumulate(features, labels, new_channels, seen, batch.sum)
        prototypes, known = self.prototypes(features)
        targets = old_class_targets(labels, old_logits, old_logits.shape[1],
                                    self.protocol.mode == "sequential")
        present = torch.nonzero(counts > 0).flatten().tolist()
        attracted = [c for c in present if (c == 0 or c in new_channels) and bool(known[c])]
        weights = self.params
        terms["matching"] = weights["matching_weight"] * prototype_matching(
            features, targets, prototypes, known, batch)
        terms["attraction"] = weights["attraction_weight"] * attraction(
            features, labels, attracted, prototypes, batch)
        terms["repulsion"] = weights["repulsion_weight"] * repulsion(
            features, labels, present, batch)
        terms["sparsity"] = weights["sparsity_weight"] * sparsity(features, labels, seen, batch)
        return terms

    def release_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        """The release's terms (train.py `Trainer.train`): prototypes updated with this batch
        first (`release_updated_classes`: in sequential mode background and old classes too),
        then matching, attraction over every labelled class present, repulsion, sparsity.
        Statistics are those of this rank's slice, as each process of the release computes
        them; the prototype sums alone are summed over ranks (every rank holds the same)."""
        terms = self.unbiased_terms(inputs)
        old_logits = require_old_logits(inputs)
        features = inputs.features.float()
        labels = downsample_labels(inputs.labels, tuple(features.shape[-2:]))
        classes = release_updated_classes(labels, self.protocol.mode, inputs.step)
        sums, counts = release_prototype_sums(features.detach(), labels, classes,
                                              len(self.protocol.class_order))
        both = inputs.batch.sum(torch.cat([sums, counts[:, None]], dim=1))
        self.add_sums(both[:, :-1], both[:, -1], range(len(self.protocol.class_order)))
        prototypes, _ = self.prototypes(features)
        targets = old_class_targets(labels, old_logits, old_logits.shape[1],
                                    self.protocol.mode == "sequential")
        weights = self.params
        terms["matching"] = weights["matching_weight"] * release_matching(
            features, targets, prototypes)
        terms["attraction"] = weights["attraction_weight"] * release_attraction(
            features, labels, prototypes)
        terms["repulsion"] = weights["repulsion_weight"] * release_repulsion(features, labels)
        terms["sparsity"] = weights["sparsity_weight"] * release_sparsity(features, labels)
        return terms
