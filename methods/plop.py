"""PLOP (Douillard et al., CVPR 2021, "PLOP: Learning without Forgetting for Continual Semantic
Segmentation") as its release arthurdouillard/CVPR2021_PLOP computes it (train.py, class
Trainer; the method's options from argparser.py `modify_command_options`, method PLOP, and the
scripts under scripts/).

Terms of an incremental step (both already weighted):
- ce: cross-entropy on pseudo-labelled targets times the classifier-adaptive factor, averaged
  over EVERY pixel of the batch, ignored ones included (the release takes `loss.mean()` of a
  `reduction='none'` loss whose 255 pixels are 0; train.py `Trainer.train`). Pseudo-labels
  (train.py `Trainer.train`, pseudo "entropy"): a pixel labelled background (label < number of
  old channels) takes the old model's argmax class when the old model's entropy, divided by
  log(current channels), is below that class's threshold, else 255. The classifier-adaptive
  factor of an image is (background pixels kept as pseudo-labels) / (background pixels).
- pod: Local POD (train.py `features_distillation` with collapse "local", `_local_pod`) over
  the old and current model's backbone stages, the decoder output (`pre_logits`, appended to the
  attentions in segmentation_module.py `IncrementalSegmentationModule.forward`) and the
  low-resolution logits (`--pod_logits`): each map squared (`pod_prepro` "pow"), pooled at
  scales 1, 2, 4 into per-region width and height means, the L2 distance between old and new
  embeddings per image, averaged over images, times the layer's factor (`pod_factor` for every
  map but the logits, the `switch.after` factor for the logits) and sqrt(current channels / new
  channels) (`use_pod_schedule`), summed and divided by the number of maps. For the logits the
  current model's new channels are added to its background channel first (`extra_channels`
  "sum", summed logits, not probabilities).

Per-class entropy thresholds (train.py `Trainer.find_median`, mode "entropy"): one pass of the
old model over the step's training data before training; for pixels labelled 0, the normalised
entropy goes into a 100-bin histogram per predicted class, each class's median is read off it
and raised to at least `threshold` (0.001). They are summed over data-parallel ranks, carried in
the learner's state (epoch checkpoints): a resumed step uses the same thresholds.

Classifier initialisation: MiB's background-based one (`init_balanced`, argparser.py).

Release quirks reproduced (each pinned by a test):
- the entropy (train.py `entropy`) is a MEAN over channels of -p log(p + 1e-8) divided by
  log(C_old + 1e-8), then divided again by log(C_current) (`max_entropy`): values are C_old
  times smaller than the normalised entropy the paper describes; thresholds and pixels use the
  same scale, only the 0.001 floor is affected;
- the histogram median (`find_median`) adds the bin's INDEX, not its count, to the running sum
  while scanning bins (`running_sum += lower_border * nb_bins`), and computes the bin index as
  int(i / 100 * 100) in floating point (so i = 29 reads bin 28). It finds a median only when
  one bin holds about half of a class's pixels, else it divides by an empty bin (NaN: no
  pseudo-label of that class; -inf: the floor; +inf: every pixel of that class kept). At real
  scale the release's entropy scale puts every value below 1 / (C_old log C_current), i.e. in
  the first two or three bins, where such a bin exists and the two scans differ by a few
  pixels in millions. `variant=release` (default) does this; `variant=paper` takes the
  histogram's true median (the paper's "median entropy");
- the cross-entropy mean counts ignored pixels in its denominator (see above).

Departure from the release: an image without any background pixel gets classifier-adaptive
factor 1 (the release divides 0 by 0 and the NaN loss makes apex's dynamic loss scaling skip the
whole iteration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import BenchError
from methods.base import IGNORE_INDEX, SINGLE, GlobalBatch, LossInputs, Method, StepContext
from methods.mib import BackgroundInit
from methods.registry import register

SCALES = (1, 2, 4)  # argparser.py --spp_scales default
ENTROPY_BINS = 100  # train.py Trainer.find_median, mode "entropy"


# ----- Local POD ----------------------------------------------------------------------------
def local_pod_embedding(maps: Tensor, scales: Sequence[int] = SCALES) -> Tensor:
    """(N, C, H, W) -> (N, D): for each scale s, regions of k x k pixels with k = W // s (the
    release uses the WIDTH for both sides, train.py `_local_pod`), each giving its mean over the
    width (C x rows) and over the height (C x columns), concatenated."""
    images, width = maps.shape[0], maps.shape[-1]
    parts = []
    for scale in scales:
        k = width // scale
        for i in range(scale):
            for j in range(scale):
                region = maps[..., i * k:(i + 1) * k, j * k:(j + 1) * k]
                parts.append(region.mean(dim=3).reshape(images, -1))
                parts.append(region.mean(dim=2).reshape(images, -1))
    return torch.cat(parts, dim=1)


def fold_new_channels(logits: Tensor, old_channels: int) -> Tensor:
    """The current logits with the new channels' logits added to background (`extra_channels`
    "sum"): (N, C_old + C_new, h, w) -> (N, C_old, h, w)."""
    background = logits[:, :1] + logits[:, old_channels:].sum(dim=1, keepdim=True)
    return torch.cat([background, logits[:, 1:old_channels]], dim=1)


def pod_distances(old: Tensor, new: Tensor, scales: Sequence[int] = SCALES) -> Tensor:
    """Per image: the L2 distance of the Local POD embeddings of the squared maps."""
    old_embedding = local_pod_embedding(old.float().pow(2), scales)
    new_embedding = local_pod_embedding(new.float().pow(2), scales)
    return (old_embedding - new_embedding).pow(2).sum(dim=1).sqrt()


def pod_loss(old_maps: Sequence[Tensor], new_maps: Sequence[Tensor], factors: Sequence[float],
             schedule: float, batch: GlobalBatch = SINGLE,
             scales: Sequence[int] = SCALES) -> Tensor:
    """sum_l factor_l * schedule * mean over images of the distance, / number of maps."""
    total = new_maps[0].new_zeros((), dtype=torch.float32)
    for old, new, factor in zip(old_maps, new_maps, factors, strict=True):
        if factor > 0:
            total = total + factor * schedule * batch.mean(pod_distances(old, new, scales))
    return total / len(new_maps)


# ----- entropy pseudo-labels ----------------------------------------------------------------
def release_entropy(probabilities: Tensor) -> Tensor:
    """train.py `entropy`: -(1 / log(C + 1e-8)) * mean over channels of p log(p + 1e-8)."""
    factor = 1.0 / math.log(probabilities.shape[1] + 1e-8)
    return -factor * (probabilities * torch.log(probabilities + 1e-8)).mean(dim=1)


def entropy_histogram(old_logits: Tensor, labels: Tensor, rows: int, max_entropy: float,
                      bins: int = ENTROPY_BINS) -> Tensor:
    """(rows, bins) counts of the normalised entropy of pixels labelled 0, by predicted class."""
    probabilities = torch.softmax(old_logits.float(), dim=1)
    predicted = probabilities.argmax(dim=1)
    background = labels == 0
    values = release_entropy(probabilities)[background] / max_entropy
    columns = torch.clamp((values * bins).long(), max=bins - 1)
    histogram = torch.zeros(rows, bins, dtype=torch.float64, device=old_logits.device)
    histogram.index_put_((predicted[background], columns),
                         torch.ones_like(columns, dtype=torch.float64), accumulate=True)
    return histogram


def histogram_median(counts: Sequence[float], variant: str = "release") -> float:
    """The median of one class's histogram (`find_median`); NaN or +-inf where the release
    divides by an empty bin (with the release's scan, whenever no single bin holds the half).
    `release` scans with the release's running sum of bin indices; `paper` with the running
    sum of counts (the true histogram median)."""
    bins = len(counts)
    half = sum(counts) / 2
    running = 0.0
    lower, index = 0.0, 0
    for step in range(bins):
        lower = step / bins
        index = int(lower * bins)  # float: int(29 / 100 * 100) == 28
        if running <= half <= running + counts[index]:
            break
        running += lower * bins if variant == "release" else counts[index]
    excess = half - running
    if counts[index] == 0:  # the release divides tensors: 0/0 is NaN, x/0 is +-inf
        return float("nan") if excess == 0 else math.copysign(math.inf, excess)
    return lower + excess / counts[index] * (1 / bins)


def thresholds_from_histogram(histogram: Tensor, floor: float, variant: str) -> Tensor:
    """Per class: max(median, floor); classes never predicted get the floor. A NaN median stays
    NaN (Python's max(nan, floor) is nan), as in the release."""
    thresholds = []
    for counts in histogram.tolist():
        median = histogram_median(counts, variant) if sum(counts) > 0 else 0.0
        thresholds.append(max(median, floor))
    return torch.tensor(thresholds, dtype=torch.float32)


def pseudo_labels(labels: Tensor, old_logits: Tensor, thresholds: Tensor,
                  max_entropy: float) -> tuple[Tensor, Tensor]:
    """The labels with background pixels pseudo-labelled (or 255) and each image's
    classifier-adaptive factor (1 for an image without background pixels)."""
    old_channels = old_logits.shape[1]
    probabilities = torch.softmax(old_logits.float(), dim=1)
    predicted = probabilities.argmax(dim=1)
    confident = release_entropy(probabilities) / max_entropy < thresholds.to(
        old_logits.device)[predicted]
    background = labels < old_channels
    kept = confident & background
    targets = labels.clone()
    targets[background & ~confident] = IGNORE_INDEX
    targets[kept] = predicted[kept]
    kept_count = kept.flatten(1).sum(dim=1).float()
    background_count = background.flatten(1).sum(dim=1).float()
    factor = torch.where(background_count > 0, kept_count / background_count.clamp_min(1),
                         torch.ones_like(kept_count))
    return targets, factor


def adaptive_cross_entropy(logits: Tensor, targets: Tensor, factor: Tensor,
                           batch: GlobalBatch = SINGLE) -> Tensor:
    """Per-pixel CE (0 at 255) times the image's factor, mean over EVERY pixel of the batch."""
    per_pixel = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    weighted = per_pixel * factor[:, None, None]
    return batch.average(weighted.sum(), weighted.numel())


@register
class PLOP(BackgroundInit, Method):
    name = "plop"
    description = ("PLOP: Local POD (stages, decoder, logits) + entropy pseudo-labels with "
                   "per-class median thresholds + classifier-adaptive CE + MiB init")
    defaults = {"pod_factor": 0.01, "logits_pod_factor": 0.0005, "threshold": 0.001,
                "variant": "release"}
    sources = {
        "pod_factor": "arthurdouillard/CVPR2021_PLOP argparser.py modify_command_options, "
                      "method PLOP: pod_factor = 0.01; scripts/ade/plop_ade_100-50.sh: 0.001",
        "logits_pod_factor": "argparser.py modify_command_options, method PLOP: pod_options "
                             "switch.after.factor = 0.0005; scripts/ade/plop_ade_100-50.sh: "
                             "0.00001",
        "threshold": "argparser.py modify_command_options, method PLOP: threshold = 0.001 "
                     "(floor of train.py Trainer.find_median's entropy thresholds)",
        "variant": "release: train.py Trainer.find_median's median (running sum of bin "
                   "indices); paper: the histogram's true median",
    }
    choices = {"variant": ("release", "paper")}
    per_protocol = {"ade-100-50": {"pod_factor": 0.001, "logits_pod_factor": 0.00001}}
    recipe = "plop"
    uses_old_model = True

    def __init__(self, protocol: Any, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(protocol, params)
        self.thresholds: Tensor | None = None
        self.max_entropy = 0.0

    def on_step_start(self, context: StepContext) -> None:
        super().on_step_start(context)
        if context.step == 0 or context.old_model is None:
            return
        self.compute_thresholds(context)

    @torch.no_grad()
    def compute_thresholds(self, context: StepContext) -> None:
        """train.py `Trainer.before` / `find_median`: one pass of the old model."""
        rows = context.old_channels + len(context.new_channels)
        self.max_entropy = math.log(rows)
        histogram = torch.zeros(rows, ENTROPY_BINS, dtype=torch.float64, device=context.device)
        context.old_model.eval()
        for images, labels in context.train_batches():
            if images.shape[0] == 0:
                continue
            logits = context.old_model(images).logits
            histogram += entropy_histogram(logits, labels, rows, self.max_entropy)
        histogram = context.all_reduce(histogram)
        self.thresholds = thresholds_from_histogram(histogram.cpu(), self.params["threshold"],
                                                    self.params["variant"])

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        if inputs.old_output is None or self.thresholds is None:
            raise BenchError("plop needs the old model and its entropy thresholds at step "
                             f"{inputs.step}; run the step through the engine")
        old, new = inputs.old_output, inputs.output
        targets, factor = pseudo_labels(inputs.labels, old.logits, self.thresholds,
                                        self.max_entropy)
        old_channels = old.logits.shape[1]
        current = new.logits.shape[1]
        assert old.logits_lowres is not None and new.logits_lowres is not None
        old_maps = [*old.stages, old.decoder, old.logits_lowres]
        new_maps = [*new.stages, new.decoder, fold_new_channels(new.logits_lowres,
                                                                 old_channels)]
        factors = [self.params["pod_factor"]] * (len(new_maps) - 1)
        factors.append(self.params["logits_pod_factor"])
        schedule = math.sqrt(current / (current - old_channels))
        return {
            "ce": adaptive_cross_entropy(inputs.logits, targets, factor, inputs.batch),
            "pod": pod_loss(old_maps, new_maps, factors, schedule, inputs.batch),
        }

    def state_dict(self) -> dict[str, Any]:
        if self.thresholds is None:
            return {}
        return {"thresholds": self.thresholds.clone(), "max_entropy": self.max_entropy}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.thresholds = state["thresholds"].clone() if "thresholds" in state else None
        self.max_entropy = float(state.get("max_entropy", 0.0))
