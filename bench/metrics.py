"""Segmentation metrics for continual semantic segmentation: confusion matrix, IoU, old/new/all.

Everything is derived from one (n, n) confusion matrix (rows = ground truth, columns = prediction)
because it is exact, additive over batches and ranks, and small enough to checkpoint. The scores
follow the label conventions of the benchmark: label 0 is background, 255 is "ignore".

Papers disagree on whether background counts in "old" and "all": SDR (and most later work) keeps
class 0 in both, MiB drops it. `step_scores` computes either and records which one it used, so a
table never mixes the two silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

IGNORE_INDEX = 255

# Labels are stored in 0..255 (uint8 PNGs); one row per possible target value keeps the bincount
# index dense and lets invalid targets show up in bins past the matrix instead of needing a pass.
_LABEL_VALUES = 256
_INT16_MAX = 32767
_LABEL_DTYPES = frozenset({torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})


class ConfusionMatrix:
    """Accumulates an (n, n) int64 confusion matrix over batches, ignoring target == 255.

    `update` is the hot loop of every evaluation, so it does one bincount per batch over a
    combined index computed in the narrowest integer type that holds it (int16 for up to 127
    classes, int32 above), with no boolean-mask indexing. Ignored pixels are not removed: they
    land in row 255 of a 256-row count table, which is simply dropped; targets in n..254 land in
    rows between the matrix and that row, so validating them costs a look at a few bins.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if not 1 <= num_classes < IGNORE_INDEX:
            raise ValueError(
                f"num_classes must be in 1..{IGNORE_INDEX - 1} "
                f"({IGNORE_INDEX} is the ignore label), got {num_classes}"
            )
        self.num_classes = num_classes
        self._matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
        # 255 * n + (n - 1) is the largest index we build; pick the smallest dtype that holds it.
        self._index_dtype = (
            torch.int16 if _LABEL_VALUES * num_classes - 1 <= _INT16_MAX else torch.int32
        )

    @property
    def device(self) -> torch.device:
        """Where the accumulated matrix lives (batches may be on another device)."""
        return self._matrix.device

    @property
    def matrix(self) -> torch.Tensor:
        """A copy of the (n, n) int64 matrix; rows = ground truth, columns = prediction."""
        return self._matrix.clone()

    def reset(self) -> None:
        """Zero the counts (e.g. before evaluating the next step)."""
        self._matrix.zero_()

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch of integer label maps of any (equal) shape.

        Pixels whose target is 255 are skipped. A target outside 0..n-1 other than 255, or a
        prediction outside 0..n-1 on a pixel that counts, raises ValueError naming the value,
        because a silently mis-sized label space gives plausible but wrong scores.
        """
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}"
            )
        for name, tensor in (("prediction", prediction), ("target", target)):
            if tensor.dtype not in _LABEL_DTYPES:
                raise TypeError(
                    f"{name} must be a uint8/int8/int16/int32/int64 tensor of labels, "
                    f"got {tensor.dtype}"
                )
        if prediction.device != target.device:
            raise ValueError(
                f"prediction is on {prediction.device} but target is on {target.device}"
            )
        if target.numel() == 0:
            return
        n = self.num_classes
        target = target.reshape(-1)
        prediction = self._checked_prediction(prediction.reshape(-1), target)
        if target.dtype != torch.uint8:
            # Needed before narrowing: a huge or negative int64 label could wrap into range.
            low, high = (int(v) for v in torch.aminmax(target))
            for value in (low, high):
                if value < 0 or value > IGNORE_INDEX:
                    raise ValueError(_bad_target_message(value, n))
        index_dtype = self._index_dtype
        index = torch.add(prediction.to(index_dtype), target.to(index_dtype), alpha=n)
        counts = torch.bincount(index, minlength=_LABEL_VALUES * n)
        invalid_rows = counts[n * n : IGNORE_INDEX * n]
        if bool(invalid_rows.any()):
            first_bin = int(invalid_rows.nonzero()[0])
            raise ValueError(_bad_target_message(n + first_bin // n, n))
        self._matrix += counts[: n * n].view(n, n).to(self._matrix.device)

    def _checked_prediction(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return `prediction` with every value in 0..n-1, or raise if a counted pixel is out.

        Out-of-range predictions on ignored pixels are tolerated (some pipelines copy 255 into
        the prediction there) and clamped so they cannot alias into a valid bin. The common case
        costs one min/max reduction.
        """
        n = self.num_classes
        low, high = (int(v) for v in torch.aminmax(prediction))
        if low >= 0 and high < n:
            return prediction
        bad = (target != IGNORE_INDEX) & ((prediction < 0) | (prediction >= n))
        if bool(bad.any()):
            value = int(prediction[bad][0])
            raise ValueError(
                f"prediction contains class {value}, outside 0..{n - 1} "
                f"(is the model's number of classes {n}?)"
            )
        return prediction.clamp(0, n - 1)

    def merge(self, other: ConfusionMatrix) -> None:
        """Add another matrix's counts (e.g. from a separately evaluated shard)."""
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix into a "
                f"{self.num_classes}-class one"
            )
        self._matrix += other._matrix.to(self._matrix.device)

    def all_reduce(self) -> None:
        """Sum the counts over all torch.distributed ranks; a no-op when not distributed.

        NCCL only reduces CUDA tensors, so a CPU matrix takes a round trip through the GPU there.
        """
        if not (dist.is_available() and dist.is_initialized()):
            return
        if dist.get_backend() == "nccl" and self._matrix.device.type != "cuda":
            on_gpu = self._matrix.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            self._matrix.copy_(on_gpu)
        else:
            dist.all_reduce(self._matrix, op=dist.ReduceOp.SUM)

    def state_dict(self) -> dict[str, Any]:
        """Counts on CPU, so a checkpoint loads on a machine without the original device."""
        return {"num_classes": self.num_classes, "matrix": self._matrix.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counts saved by `state_dict`, refusing a different number of classes."""
        num_classes = int(state["num_classes"])
        matrix = state["matrix"]
        if num_classes != self.num_classes or tuple(matrix.shape) != (num_classes, num_classes):
            raise ValueError(
                f"state is for {num_classes} classes (matrix {tuple(matrix.shape)}), "
                f"this matrix has {self.num_classes}"
            )
        self._matrix.copy_(matrix.to(dtype=torch.int64))


def _bad_target_message(value: int, num_classes: int) -> str:
    return (
        f"target contains label {value}, outside 0..{num_classes - 1} and not the ignore "
        f"label {IGNORE_INDEX} (wrong dataset, label mapping or num_classes?)"
    )


def per_class_iou(matrix: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) per class, float64; NaN where a class has no ground truth.

    A class absent from the ground truth has no meaningful IoU (any prediction of it scores 0,
    none scores 0/0), so it is NaN and left out of the means rather than counted as 0 or 1.
    """
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {tuple(matrix.shape)}")
    counts = matrix.detach().to(device="cpu", dtype=torch.float64)
    true_positive = counts.diagonal()
    ground_truth = counts.sum(dim=1)
    predicted = counts.sum(dim=0)
    union = ground_truth + predicted - true_positive
    iou = true_positive / union.clamp(min=1)
    iou[ground_truth == 0] = math.nan
    return iou


def mean_iou(iou: torch.Tensor, classes: Sequence[int] | None = None) -> float:
    """Mean of `iou` over `classes` (default: all), skipping NaN; NaN if nothing is left."""
    values = iou.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    if classes is not None:
        indices = list(classes)
        for c in indices:
            if not 0 <= c < values.numel():
                raise ValueError(f"class {c} outside 0..{values.numel() - 1}")
        values = values[torch.tensor(indices, dtype=torch.int64)]
    values = values[~torch.isnan(values)]
    if values.numel() == 0:
        return math.nan
    return float(values.mean())


def harmonic_iou(old: float, new: float) -> float:
    """Harmonic mean 2*o*n/(o+n), which punishes forgetting and not learning alike.

    0 when both are 0 (the limit), NaN when either is NaN (e.g. step 0 has no new classes).
    """
    if math.isnan(old) or math.isnan(new):
        return math.nan
    if old + new == 0:
        return 0.0
    return 2.0 * old * new / (old + new)


@dataclass(frozen=True)
class StepScores:
    """Scores of one incremental step, in percent (0..100); NaN where a set has no ground truth.

    `per_class[c]` is class c's IoU. `background_in_old_all` records the convention (True: SDR,
    background counted in old and all; False: MiB, background dropped).
    """

    old: float
    new: float
    all: float
    hiou: float
    background_in_old_all: bool
    per_class: list[float]


def step_scores(
    matrix: torch.Tensor,
    old_classes: Sequence[int],
    new_classes: Sequence[int],
    background_in_old_all: bool = True,
) -> StepScores:
    """Old / new / all mIoU and hIoU of one step from its confusion matrix.

    `old_classes` are the classes learned before this step (background 0 included if listed),
    `new_classes` those added now (never 0). "all" is the mean over old + new. With
    `background_in_old_all=False` class 0 is dropped from old and all (MiB's convention).
    Empty sets give NaN; the caller decides what step 0's "new" means.
    """
    old = [int(c) for c in old_classes]
    new = [int(c) for c in new_classes]
    if 0 in new:
        raise ValueError("background (class 0) cannot be a new class; list it in old_classes")
    if len(set(old)) != len(old) or len(set(new)) != len(new):
        raise ValueError(f"duplicate classes in old {old} or new {new}")
    overlap = sorted(set(old) & set(new))
    if overlap:
        raise ValueError(f"classes {overlap} are listed as both old and new")
    if not background_in_old_all:
        old = [c for c in old if c != 0]
    iou = per_class_iou(matrix)
    old_score = 100.0 * mean_iou(iou, old)
    new_score = 100.0 * mean_iou(iou, new)
    return StepScores(
        old=old_score,
        new=new_score,
        all=100.0 * mean_iou(iou, old + new),
        hiou=harmonic_iou(old_score, new_score),
        background_in_old_all=background_in_old_all,
        per_class=[100.0 * float(v) for v in iou],
    )
