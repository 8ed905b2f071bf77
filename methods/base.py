"""The method interface: how a step is learned, as hooks around the engine's loop.

Nearly every continual-segmentation method reduces to three things (see DESIGN.md):
1. step start: receive a frozen copy of the previous model, initialise new classifier rows,
   load state carried between steps;
2. a loss of the current and the previous model's outputs (every backbone stage, the decoder
   features, low-resolution and upsampled logits), the labels and a read-only view of the
   current model's parameters, as named terms; optionally, hooks after each backward pass and
   each optimizer update (for importance estimates accumulated from gradients);
3. step end: update the state to carry forward (saved in the step checkpoint).

The engine drives a `Learner`; it never names a method. An incremental step is learned by the
`Method`; step 0 by the method's `Step0Recipe` (see methods/step0.py), which all methods naming
the same recipe share, together with the cached step-0 model and what the recipe recorded.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import BenchError
from protocols.protocol import Protocol

IGNORE_INDEX = 255
NO_PARAMETERS: Mapping[str, Tensor] = MappingProxyType({})


def _unchanged(tensor: Tensor) -> Tensor:
    return tensor


@dataclass(frozen=True)
class GlobalBatch:
    """The batch a loss term is a statistic of, when data-parallel ranks each hold a slice of it.

    `sum` and `max` reduce over ranks with gradient (identity on one process; the engine passes
    `bench.engine.distributed`'s). A term written with them (a mean as `average` of a local total
    and count, a class mean from summed class sums) has, on every rank, the value it has on one
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
class ModelOutput:
    """Everything one forward pass exposes (the engine's model returns it).

    logits: (N, C, H, W) upsampled to the input size; logits_lowres: (N, C, h, w) at decoder
    resolution; encoder: the backbone's last stage; decoder: after ASPP and the 3x3 head, before
    the classifier; stages: every backbone stage's output, first to last (the last is
    `encoder`). Fields a stand-in model does not compute are None / empty.
    """

    logits: Tensor
    encoder: Tensor | None = None
    decoder: Tensor | None = None
    logits_lowres: Tensor | None = None
    stages: tuple[Tensor, ...] = ()


@dataclass
class LossInputs:
    """What a loss sees for one batch: this rank's slice when data-parallel (`batch` turns
    statistics of the slice into statistics of the global batch).

    `output` / `old_output` are the current and the previous model's whole outputs (the old one
    only when the learner `uses_old_model`, computed under no_grad); `parameters` is a read-only
    view of the current model's named parameters (for penalties on them)."""

    step: int
    output: ModelOutput
    labels: Tensor
    old_output: ModelOutput | None = None
    parameters: Mapping[str, Tensor] = field(default_factory=lambda: NO_PARAMETERS)
    batch: GlobalBatch = SINGLE

    @classmethod
    def from_tensors(cls, step: int, logits: Tensor, labels: Tensor,
                     features: Tensor | None = None, decoder: Tensor | None = None,
                     old_logits: Tensor | None = None, old_features: Tensor | None = None,
                     batch: GlobalBatch = SINGLE) -> LossInputs:
        """Inputs from bare tensors (tests, hand-made examples)."""
        old = None if old_logits is None else ModelOutput(old_logits, old_features)
        return cls(step, ModelOutput(logits, features, decoder if decoder is not None
                                     else features), labels, old, batch=batch)

    @property
    def logits(self) -> Tensor:
        """Upsampled logits in float32 (whatever the autocast precision)."""
        return self.output.logits.float()

    @property
    def features(self) -> Tensor:
        """The encoder features (the backbone's last stage)."""
        assert self.output.encoder is not None, "the model computed no encoder features"
        return self.output.encoder

    @property
    def decoder(self) -> Tensor | None:
        return self.output.decoder

    @property
    def old_logits(self) -> Tensor | None:
        return None if self.old_output is None else self.old_output.logits.float()

    @property
    def old_features(self) -> Tensor | None:
        return None if self.old_output is None else self.old_output.encoder


@dataclass
class IterationState:
    """What the iteration hooks see: after `after_backward` the parameters' `.grad` hold this
    iteration's gradient (averaged over data-parallel ranks: the single-process gradient);
    after `after_update` the parameters hold their updated values."""

    step: int
    epoch: int
    iteration: int  # counted over the whole step, from 0
    parameters: Mapping[str, Tensor]
    batch: GlobalBatch = SINGLE


@dataclass
class StepContext:
    """What step hooks see. `old_model` is a frozen copy of the previous step's model (None at
    step 0); `train_batches()` iterates over the step's training data, normalised and on the
    device, without shuffling (for hooks that need a pass over it); `all_reduce` sums a tensor
    across distributed ranks (identity when single); `step0_record` is what the step-0 recipe
    recorded while training step 0 (at step 0's end only; the same whether step 0 was trained
    here or reused from the shared cache)."""

    protocol: Protocol
    step: int
    model: torch.nn.Module
    old_model: torch.nn.Module | None
    device: torch.device
    train_batches: Callable[[], Iterable[tuple[Tensor, Tensor]]]
    all_reduce: Callable[[Tensor], Tensor] = field(default=lambda tensor: tensor)
    step0_record: Mapping[str, Any] | None = None

    @property
    def old_channels(self) -> int:
        """Output channels learned before this step (background included)."""
        return len(self.protocol.old_classes(self.step))

    @property
    def new_channels(self) -> range:
        return self.protocol.channels_of(self.step)


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters the optimizer updates together: at `lr_factor` times the recipe's (poly-decayed)
    learning rate, with `weight_decay` (None: the recipe's)."""

    parameters: tuple[torch.nn.Parameter, ...]
    lr_factor: float = 1.0
    weight_decay: float | None = None


def parameter_view(model: torch.nn.Module) -> Mapping[str, Tensor]:
    """A read-only name -> parameter map of `model` (the tensors themselves, not copies)."""
    return MappingProxyType(dict(model.named_parameters()))


def cross_entropy(inputs: LossInputs) -> Tensor:
    """Cross-entropy over all current channels, mean over ALL pixels with 255 pixels counted
    as 0, as the releases average it (fcdl94/MiB and LTTM/SDR train.py `Trainer.train`: the
    criterion with reduction='none', then `.mean()`). Only labels holding 255 (sequential
    mode's void) make this differ from the mean over labelled pixels."""
    per_pixel = F.cross_entropy(inputs.logits, inputs.labels, ignore_index=IGNORE_INDEX,
                                reduction="none")
    return inputs.batch.mean(per_pixel)


class Learner:
    """What the engine's step loop drives: hooks with do-nothing defaults and a loss."""

    uses_old_model: ClassVar[bool] = False

    def on_step_start(self, context: StepContext) -> None:
        """Called once the model has the new step's classifier and the old model is frozen."""

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        """Named loss terms; the engine backpropagates their sum."""
        return {"ce": cross_entropy(inputs)}

    def after_backward(self, state: IterationState) -> None:
        """After each backward pass, before the optimizer step."""

    def after_update(self, state: IterationState) -> None:
        """After each optimizer step."""

    def parameter_groups(self, model: torch.nn.Module) -> list[ParameterGroup]:
        """What the optimizer updates, at which learning-rate factor and weight decay (default:
        every parameter with requires_grad, at the recipe's values)."""
        return [ParameterGroup(tuple(p for p in model.parameters() if p.requires_grad))]

    def train_mode(self, model: torch.nn.Module) -> None:
        """After `model.train()` at each epoch's start: put modules that must not train (frozen
        BatchNorm statistics, dropout) back in eval mode. Default: everything trains."""

    def predict(self, logits: Tensor) -> Tensor:
        """The predicted channel of each pixel from the seen channels' logits (N, C, H, W)."""
        return logits.argmax(dim=1)

    def on_step_end(self, context: StepContext) -> None:
        """Called after the step's training (or after a shared step 0 was loaded)."""

    def state_dict(self) -> dict[str, Any]:
        """State carried between steps (and saved with epoch checkpoints)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            raise BenchError(f"{type(self).__name__} carries no state but a checkpoint has "
                             "some")


class Method(Learner):
    """Base class: fine-tuning behaviour (plain cross-entropy) unless a hook is overridden.

    Class attributes are the method's data:
    - `name`: the registry name; `description`: one line for `bench list methods`;
    - `defaults`: hyperparameters with their published values; `sources`: where each comes from;
      `choices`: the allowed values of a hyperparameter that takes one of a few (e.g. `variant`:
      `release` | `paper`, the first one the default);
    - `per_protocol`: glob over `<dataset>-<setting>` (e.g. `voc-15-1`, any mode or order) ->
      hyperparameters that differ there (first match wins);
    - `per_recipe`: trainer recipe name (`synth`, `mib`, `sdr`) -> hyperparameters that differ
      under that recipe (applied after `per_protocol`; each entry says why in its source);
    - `step0`: the name of the step-0 recipe (methods/step0.py), which learns step 0; methods
      naming the same recipe share one cached step 0;
    - `step0_records`: names of the step-0 recorders whose record the method reads (part of its
      run identity; see `Step0Recipe.identity`);
    - `recipe`: the trainer recipe of the paper whose numbers the method reproduces, used on
      real data when no `trainer=` is given; `real_model`: the model used on real data;
    - `uses_old_model`: whether the engine must run the previous model on each batch.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    sources: ClassVar[Mapping[str, str]] = {}
    choices: ClassVar[Mapping[str, tuple[Any, ...]]] = {}
    per_protocol: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    per_recipe: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    step0: ClassVar[str] = "ce"
    step0_records: ClassVar[tuple[str, ...]] = ()
    recipe: ClassVar[str] = "mib"
    real_model: ClassVar[str] = "r101"

    def __init__(self, protocol: Protocol, params: Mapping[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.params = (dict(params) if params is not None else
                       self.resolve_params(f"{protocol.dataset}-{protocol.setting}", {}))

    @classmethod
    def resolve_params(cls, setting: str, overrides: Mapping[str, Any],
                       recipe: str | None = None) -> dict[str, Any]:
        """Defaults, then the first `per_protocol` glob matching `setting` (e.g. `voc-15-1`,
        whatever the mode or class order), then `per_recipe[recipe]` (the trainer recipe's
        name), then the user's overrides (of a compatible type)."""
        params = dict(cls.defaults)
        for pattern, values in cls.per_protocol.items():
            if fnmatch.fnmatch(setting, pattern):
                params.update(values)
                break
        if recipe is not None:
            params.update(cls.per_recipe.get(recipe, {}))
        unknown = set(overrides) - set(params)
        if unknown:
            known = ", ".join(sorted(params)) or "none"
            raise BenchError(f"method {cls.name} has no hyperparameter {sorted(unknown)}; "
                             f"its hyperparameters: {known}")
        for key, value in overrides.items():
            params[key] = _typed(cls.name, key, value, params[key])
        for key, allowed in cls.choices.items():
            if params[key] not in allowed:
                raise BenchError(f"method.{key}={params[key]} is not allowed for {cls.name}: "
                                 f"method.{key} must be one of {' | '.join(map(str, allowed))}")
        return params

    @classmethod
    def plan_protocol(cls, protocol: Protocol) -> Protocol:
        """The protocol this method actually trains on (joint training collapses the steps)."""
        return protocol


def _typed(method: str, key: str, value: Any, default: Any) -> Any:
    """`value` as the type of `default` (an int for a float is fine); else a BenchError."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(value, bool) and isinstance(default, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int | float):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif default is None:
        return value
    raise BenchError(f"method.{key}={value!r} for {method} is not a {type(default).__name__} "
                     f"(default {default!r})")


class Recorder:
    """A statistic a step-0 recipe records while step 0 trains, for methods that need it later
    (carried in the step-0 cache with the model). `name` keys it in the step-0 record;
    `version` is part of the step-0 cache key (bump it when what is recorded changes)."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol

    def observe(self, inputs: LossInputs) -> None:
        """Each training batch, after the forward pass."""

    def after_backward(self, state: IterationState) -> None:
        """Each iteration's gradients."""

    def after_update(self, state: IterationState) -> None:
        """Each iteration's updated parameters."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from an epoch checkpoint."""


class Step0Recipe(Learner):
    """How step 0 is trained (its loss) and what it records (its recorders), shared by every
    method naming it: a cached step 0 is reused only by methods with the same recipe identity."""

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""
    recorders: ClassVar[tuple[type[Recorder], ...]] = ()

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.active = [recorder(protocol) for recorder in self.recorders]

    @classmethod
    def identity(cls, records: Iterable[str] | None = None) -> dict[str, Any]:
        """Name, version and recorders (all of them, the step-0 cache's key; or only `records`,
        the ones a method reads: a recorder another method needs changes no other run)."""
        kept = None if records is None else set(records)
        return {"name": cls.name, "version": cls.version,
                "records": {r.name: r.version for r in cls.recorders
                            if kept is None or r.name in kept}}

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        terms = self.step0_loss(inputs)
        for recorder in self.active:
            recorder.observe(inputs)
        return terms

    def step0_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        return {"ce": cross_entropy(inputs)}

    def after_backward(self, state: IterationState) -> None:
        for recorder in self.active:
            recorder.after_backward(state)

    def after_update(self, state: IterationState) -> None:
        for recorder in self.active:
            recorder.after_update(state)

    def state_dict(self) -> dict[str, Any]:
        """The record: every recorder's state by name (empty without recorders)."""
        return {recorder.name: recorder.state_dict() for recorder in self.active}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        expected = {recorder.name for recorder in self.active}
        if set(state) != expected:
            raise BenchError(f"step-0 recipe {self.name}: the checkpoint records "
                             f"{sorted(state)}, the recipe records {sorted(expected)}")
        for recorder in self.active:
            recorder.load_state_dict(state[recorder.name])
