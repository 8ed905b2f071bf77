"""Parameter-importance penalties (EWC, PI, RW as the MiB release computes them): what the three
share. Each method's own statistic lives in its module (methods/ewc.py, pi.py, rw.py).

Source: fcdl94/MiB `utils/regularizer.py` (classes EWC, PI, RW, `normalize_fn`) and `train.py`
(`Trainer.train`: after the backward pass of the task loss, `regularizer.update()` reads the
parameters' gradients, then `reg_importance * regularizer.penalty()` is backpropagated, then the
optimizer steps).

- Importance is accumulated online, from every iteration's gradients, during step 0 and during
  every incremental step. Step 0 is learned by the shared step-0 recipe `ce+importance`
  (methods/step0.py): plain cross-entropy, with each method's statistic registered on it as a
  `Recorder`, so EWC, PI and RW share one cached step 0 and each reads its record at step 0's
  end (`StepContext.step0_record`).
- The statistics are those of the TASK loss's gradient, as in the release (its update runs
  before the penalty's backward pass). The engine backpropagates the sum of all terms once, so
  `task_gradients` removes the penalty's own gradient, 2 * weight * W * (p - p_old), which it
  knows in closed form.
- Gradients are read unscaled: LTTM/SDR `train.py` backpropagates through apex `amp.scale_loss`
  at the default `--opt_level O0` (loss scale 1). The MiB version read here (commit 04c97b9)
  uses torch.cuda.amp's `GradScaler`, so its update reads gradients multiplied by the current
  loss scale; the per-tensor min-max normalisation cancels a constant factor (not the scale's
  changes during training, nor its weight against the Fisher's initial ones). Not reproduced.
- The penalty: weight * sum over the previous model's parameters of W * (p - p_old)^2, W the
  carried importance min-max normalised per parameter tensor (`min_max`, the release's
  `normalize_fn`; on by default: `--reg_no_normalize` is off in the release's presets).
- Data-parallel: the gradients the hooks read are DDP's average (the single-process gradient),
  and every rank updates its copy identically, so the carried importance is the single-process
  one on every rank (the release updates on rank 0 only, from the same averaged gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from bench.errors import BenchError
from methods.base import (
    IterationState,
    LossInputs,
    Method,
    Recorder,
    StepContext,
    cross_entropy,
)

NORMALISE_EPS = 1e-8  # utils/regularizer.py: EPS of `normalize_fn`

Tensors = dict[str, Tensor]


def min_max(tensor: Tensor) -> Tensor:
    """(t - min t) / (max t - min t + 1e-8), over the whole tensor (one parameter)."""
    return (tensor - tensor.min()) / (tensor.max() - tensor.min() + NORMALISE_EPS)


def snapshot(parameters: Mapping[str, Tensor], names: Any = None) -> Tensors:
    """Detached copies of the named parameters (all, or those in `names`)."""
    return {name: p.detach().clone() for name, p in parameters.items()
            if names is None or name in names}


def gradients(parameters: Mapping[str, Tensor]) -> Tensors:
    """The parameters' current gradients (parameters without one are left out)."""
    return {name: p.grad.detach() for name, p in parameters.items() if p.grad is not None}


def cloned(tensors: Mapping[str, Tensor]) -> Tensors:
    return {name: t.detach().cpu().clone() for name, t in tensors.items()}


def on(tensors: Mapping[str, Tensor], like: Tensor) -> Tensors:
    return {name: t.to(like.device) for name, t in tensors.items()}


def saved(values: Mapping[str, Any]) -> dict[str, Any]:
    """Accumulators as saved: dicts of tensors copied to the CPU, other values as they are."""
    return {key: cloned(value) if isinstance(value, dict) else value
            for key, value in values.items()}


def loaded(values: Mapping[str, Any], like: Tensor | None) -> dict[str, Any]:
    """Saved accumulators back on `like`'s device (as they are when `like` is None)."""
    return {key: (on(value, like) if like is not None else dict(value))
            if isinstance(value, dict) else value for key, value in values.items()}


class RunningRecorder(Recorder):
    """A step-0 recorder of running accumulators (EWC's Fisher, PI's path, RW's walk): started
    at step 0's first backward pass, updated after every one, saved with epoch checkpoints; what
    it holds at step 0's end is its record."""

    def __init__(self, protocol: Any) -> None:
        super().__init__(protocol)
        self.running: dict[str, Any] | None = None

    def start(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    def update(self, parameters: Mapping[str, Tensor]) -> None:
        """One iteration's update of `self.running` from the parameters' gradients."""
        raise NotImplementedError

    def after_backward(self, state: IterationState) -> None:
        if self.running is None:
            self.running = self.start(state.parameters)
        self.update(state.parameters)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.running is None else saved(self.running)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.running = loaded(state, None) if state else None


def drift_penalty(parameters: Mapping[str, Tensor], anchor: Mapping[str, Tensor],
                  weights: Mapping[str, Tensor]) -> Tensor:
    """sum over parameters n in both `anchor` and `weights` of sum(W_n * (p_n - anchor_n)^2)."""
    total = None
    for name, parameter in parameters.items():
        if name in anchor and name in weights and parameter.requires_grad:
            term = (weights[name] * (parameter - anchor[name]).pow(2)).sum()
            total = term if total is None else total + term
    if total is None:
        raise BenchError("the parameter penalty found no parameter of the previous model in "
                         "the current one (model and checkpoint do not match)")
    return total


class ImportancePenalty(Method):
    """An incremental step: cross-entropy + weight * the drift penalty under the carried
    importance; the importance of this step accumulated from the task gradient (subclasses:
    `start_step`, `accumulate`, `finish_step`, `penalty_weights`).

    State (`state_dict`): `carried`, the importance after the previous steps (raw, before
    normalisation); during a step also `running`, this step's accumulators (epoch checkpoints
    carry both, so a resumed step continues exactly)."""

    step0 = "ce+importance"
    record: ClassVar[str] = ""  # the name of the method's recorder in the step-0 record
    uses_old_model = False

    def __init__(self, protocol: Any, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(protocol, params)
        self.carried: dict[str, Tensors] | None = None  # statistic -> parameter -> tensor
        self.running: dict[str, Any] | None = None
        self.anchor: Tensors = {}
        self.weights: Tensors = {}

    # ----- what a method defines ------------------------------------------------------------
    def start_step(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        """This step's accumulators, from the carried importance and the step's parameters."""
        raise NotImplementedError

    def accumulate(self, running: dict[str, Any], parameters: Mapping[str, Tensor],
                   grads: Tensors) -> None:
        """One iteration's task gradient (`grads`) at the parameters before the update."""
        raise NotImplementedError

    def finish_step(self, running: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Tensors]:
        """The importance carried after this step (keys: the method's statistics)."""
        raise NotImplementedError

    def from_record(self, record: Mapping[str, Any],
                    parameters: Mapping[str, Tensor]) -> dict[str, Tensors]:
        """The importance carried after step 0, from what the step-0 recorder recorded."""
        raise NotImplementedError

    def penalty_weights(self, carried: Mapping[str, Tensors]) -> Tensors:
        """W per parameter, from the carried importance."""
        raise NotImplementedError

    # ----- hooks ----------------------------------------------------------------------------
    def on_step_start(self, context: StepContext) -> None:
        if self.carried is None:
            raise BenchError(f"{self.name} has no importance from the previous steps: its "
                             "step checkpoint carries no method state (step 0 must end with "
                             "this method's on_step_end)")
        assert context.old_model is not None
        like = next(context.model.parameters())
        self.anchor = snapshot(dict(context.old_model.named_parameters()))
        self.weights = self.penalty_weights(loaded(self.carried, like))
        parameters = dict(context.model.named_parameters())
        self.running = self.start_step(parameters)

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        penalty = drift_penalty(inputs.parameters, self.anchor, self.weights)
        return {"ce": cross_entropy(inputs), "penalty": self.params["penalty_weight"] * penalty}

    def task_gradients(self, parameters: Mapping[str, Tensor]) -> Tensors:
        """The gradient of the task loss alone: the total minus the penalty's closed form."""
        grads = gradients(parameters)
        scale = 2.0 * self.params["penalty_weight"]
        for name, grad in grads.items():
            if name in self.anchor and name in self.weights:
                p = parameters[name].detach()
                grads[name] = grad - scale * self.weights[name] * (p - self.anchor[name])
        return grads

    def after_backward(self, state: IterationState) -> None:
        if self.running is None:
            raise BenchError(f"{self.name}: an iteration ran before the step started")
        self.accumulate(self.running, state.parameters, self.task_gradients(state.parameters))

    def on_step_end(self, context: StepContext) -> None:
        parameters = dict(context.model.named_parameters())
        if context.step == 0:
            record = context.step0_record or {}
            if self.record not in record:
                raise BenchError(f"{self.name}: the step-0 record holds no {self.record!r} "
                                 f"(it holds {sorted(record)}); delete the shared step 0 to "
                                 "train it again with the ce+importance recipe")
            self.carried = saved(self.from_record(record[self.record], parameters))
        else:
            assert self.running is not None
            self.carried = saved(self.finish_step(self.running, parameters))
        self.running = None

    # ----- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.carried is None:
            return {}
        state: dict[str, Any] = {"carried": saved(self.carried)}
        if self.running is not None:
            state["running"] = saved(self.running)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not state:
            self.carried, self.running = None, None
            return
        if not set(state) <= {"carried", "running"} or "carried" not in state:
            raise BenchError(f"method {self.name}: unexpected state keys {sorted(state)}")
        self.carried = loaded(state["carried"], None)
        if "running" in state:
            self.running = loaded(state["running"], next(iter(self.anchor.values()), None))
