"""The method interface: how a step is learned, as hooks around the engine's loop.

Nearly every continual-segmentation method reduces to three things (see DESIGN.md):
1. step start: receive a frozen copy of the previous model, initialise new classifier rows,
   load state carried between steps;
2. a loss of (logits, features, old logits, old features, labels), as named terms;
3. step end: update the state to carry forward (saved in the step checkpoint).

The engine calls these hooks and never names a method. Step 0 is trained with the loss of the
method's `step0_recipe`; methods with the same recipe share one cached step 0.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import BenchError
from protocols.protocol import Protocol

IGNORE_INDEX = 255


def _unchanged(tensor: Tensor) -> Tensor:
    return tensor


@dataclass(frozen=True)
class GlobalBatch:
    """The batch a loss term is a statistic of, when data-parallel ranks each hold a slice of it.

    `sum` and `max` reduce over ranks with gradient (identity on one process; the engine passes
    `bench.distributed`'s). A term written with them (a mean as `average` of a local total and
    count, a class mean from summed class sums) has, on every rank, the value it has on one
    process with the whole batch, and DDP then averages the gradient the single process would
    get. Every rank must make the same calls in the same order: decide on global quantities
    (summed counts), never on what one slice happens to contain.
    """

    sum: Callable[[Tensor], Tensor] = _unchanged
    max: Callable[[Tensor], Tensor] = _unchanged

    def average(self, total: Tensor, count: Tensor | int) -> Tensor:
        """sum of `total` over ranks / sum of `count` over ranks; 0 when the count is 0.
        Computed in float64 (pixel-times-channel counts pass 2^24), returned as `total`'s dtype."""
        count = torch.as_tensor(count, device=total.device)
        both = self.sum(torch.stack([total.double(), count.double()]))
        return (both[0] / both[1].clamp_min(1)).to(total.dtype)

    def mean(self, values: Tensor) -> Tensor:
        """The mean of every element of `values` over the global batch."""
        return self.average(values.sum(), values.numel())


SINGLE = GlobalBatch()


@dataclass
class LossInputs:
    """What a loss sees for one batch: this rank's slice when data-parallel (`batch` turns
    statistics of the slice into statistics of the global batch). Logits are upsampled to the
    label size."""

    step: int
    logits: Tensor
    features: Tensor
    decoder: Tensor
    labels: Tensor
    old_logits: Tensor | None = None
    old_features: Tensor | None = None
    old_decoder: Tensor | None = None
    batch: GlobalBatch = SINGLE


@dataclass
class StepContext:
    """What step hooks see. `old_model` is a frozen copy of the previous step's model (None at
    step 0); `train_batches()` iterates over the step's training data, normalised and on the
    device, without shuffling (for hooks that need a pass over it); `all_reduce` sums a tensor
    across distributed ranks (identity when single)."""

    protocol: Protocol
    step: int
    model: torch.nn.Module
    old_model: torch.nn.Module | None
    device: torch.device
    train_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]
    all_reduce: Callable[[Tensor], Tensor] = field(default=lambda tensor: tensor)

    @property
    def old_channels(self) -> int:
        """Output channels learned before this step (background included)."""
        return len(self.protocol.old_classes(self.step))

    @property
    def new_channels(self) -> range:
        return self.protocol.channels_of(self.step)


def cross_entropy(inputs: LossInputs) -> Tensor:
    """Cross-entropy over all current channels, 255 ignored, mean over labelled pixels."""
    per_pixel = F.cross_entropy(inputs.logits, inputs.labels, ignore_index=IGNORE_INDEX,
                                reduction="none")
    return inputs.batch.average(per_pixel.sum(), (inputs.labels != IGNORE_INDEX).sum())


class Method:
    """Base class: fine-tuning behaviour (plain cross-entropy) unless a hook is overridden.

    Class attributes are the method's data:
    - `name`: the registry name;
    - `defaults`: hyperparameters with their published values;
    - `per_protocol`: glob over `<dataset>-<setting>` (e.g. `voc-15-1`, any mode or order) ->
      hyperparameters that differ there (first match wins);
    - `step0_recipe`: methods with equal recipes share one cached step 0;
    - `uses_old_model`: whether the engine must run the previous model on each batch.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    per_protocol: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    step0_recipe: ClassVar[str] = "ce"
    uses_old_model: ClassVar[bool] = False

    def __init__(self, protocol: Protocol, overrides: Mapping[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.params = self.resolve_params(f"{protocol.dataset}-{protocol.setting}", overrides or {})

    @classmethod
    def resolve_params(cls, setting: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults, then the first `per_protocol` glob matching `setting` (e.g. `voc-15-1`,
        whatever the mode or class order), then the user's overrides."""
        params = dict(cls.defaults)
        for pattern, values in cls.per_protocol.items():
            if fnmatch.fnmatch(setting, pattern):
                params.update(values)
                break
        unknown = set(overrides) - set(params)
        if unknown:
            known = ", ".join(sorted(params)) or "none"
            raise BenchError(f"method {cls.name} has no hyperparameter {sorted(unknown)}; "
                             f"its hyperparameters: {known}")
        params.update(overrides)
        return params

    def plan_protocol(self, protocol: Protocol) -> Protocol:
        """The protocol this method actually trains on (joint training collapses the steps)."""
        return protocol

    def on_step_start(self, context: StepContext) -> None:
        """Called once the model has the new step's classifier and the old model is frozen."""

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        """Named loss terms; the engine backpropagates their sum."""
        if inputs.step == 0:
            return self.step0_loss(inputs)
        return self.step_loss(inputs)

    def step0_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        return {"ce": cross_entropy(inputs)}

    def step_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        return {"ce": cross_entropy(inputs)}

    def on_step_end(self, context: StepContext) -> None:
        """Called after the step's training (or after a shared step 0 was loaded)."""

    def state_dict(self) -> dict[str, Any]:
        """State carried between steps (and saved with epoch checkpoints)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise BenchError(f"method {self.name} carries no state but a checkpoint has some")
