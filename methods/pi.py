"""PI, the path integral of Synaptic Intelligence (Zenke et al., ICML 2017), as the MiB release
runs it for segmentation.

Source: fcdl94/MiB `utils/regularizer.py`, class `PI` (`__init__`, `update`, `penalty`, `get`)
with `normalize_fn`; presets in `argparser.py` `modify_command_options` (method PI:
`regularizer = "pi"`, `reg_importance = 500`; `reg_no_normalize` off); the call order in
`train.py` `Trainer.train`. Shared machinery: methods/importance.py.

- Every iteration of a step, after the backward pass and before the update, with theta the
  parameters then, g the task gradient and theta_prev those of the previous iteration:
  delta += g * (theta_prev - theta) (from the second iteration on). The release multiplies the
  previous update by the gradient computed AFTER it, at the new parameters (Zenke et al. use
  the gradient that made the update); reproduced as the release does it.
- At a step's end: s = delta / ((theta_end - theta_start)^2 + 1e-20), negative values set to
  0, plus the score carried from the previous steps (a running SUM, although the release's
  comment calls it an average). theta_start: the parameters when the step's accumulation
  starts (the initial weights at step 0; the previous model's weights and the new classifier's
  initial ones at an incremental step); delta restarts at 0 every step.
- Penalty of step t: penalty_weight * sum over the previous model's parameters of
  s~ * (p - p_old)^2, s~ the score after step t-1, min-max normalised per parameter tensor.
- Step 0 is the shared `ce+importance` step 0; this module registers the path-integral recorder
  on it; the score is completed at step 0's end from the final step-0 parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from methods.ewc import SYNTH_SCALE
from methods.importance import (
    ImportancePenalty,
    RunningRecorder,
    Tensors,
    gradients,
    min_max,
    snapshot,
)
from methods.registry import register
from methods.step0 import register_recorder

SCORE_EPS = 1e-20  # utils/regularizer.py PI.get: EPS


def path_start(parameters: Mapping[str, Tensor]) -> dict[str, Any]:
    """A step's accumulators: delta 0, theta_start the parameters now, no previous iterate."""
    return {"delta": {name: torch.zeros_like(p.detach()) for name, p in parameters.items()},
            "start": snapshot(parameters), "previous": None}


def path_update(running: dict[str, Any], parameters: Mapping[str, Tensor],
                grads: Mapping[str, Tensor]) -> None:
    previous = running["previous"]
    if previous is not None:
        delta = running["delta"]
        for name, grad in grads.items():
            p = parameters[name].detach()
            delta[name] = delta[name].to(p.device) + grad * (previous[name].to(p.device) - p)
    running["previous"] = snapshot(parameters, grads)


def path_score(running: Mapping[str, Any], parameters: Mapping[str, Tensor],
               carried: Mapping[str, Tensor] | None) -> Tensors:
    score = {}
    for name, p in parameters.items():
        p = p.detach()
        value = running["delta"][name].to(p.device) / (
            (p - running["start"][name].to(p.device)).pow(2) + SCORE_EPS)
        value = torch.where(value > 0, value, torch.zeros_like(value))
        if carried is not None and name in carried:
            value = carried[name].to(p.device) + value
        score[name] = value
    return score


class PathIntegralRecorder(RunningRecorder):
    """Step 0's delta, theta_start and previous iterate (the score needs the final step-0
    parameters, so it is completed by the method at step 0's end)."""

    name = "path_integral"
    version = 1

    def start(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        return path_start(parameters)

    def update(self, parameters: Mapping[str, Tensor]) -> None:
        path_update(self.running, parameters, gradients(parameters))


register_recorder("ce+importance", PathIntegralRecorder)


@register
class PI(ImportancePenalty):
    name = "pi"
    description = ("PI / path integral (MiB release): CE + weight * sum s~ (p - p_old)^2, s the "
                   "summed path-integral score, min-max normalised")
    defaults = {"penalty_weight": 500.0, "normalize": True}
    sources = {
        "penalty_weight": "fcdl94/MiB argparser.py modify_command_options, method PI: "
                          "reg_importance = 500 (LTTM/SDR argparser.py sets 1000); x0.2 on the "
                          "embedded synth recipe (lr_incremental 5x the MiB recipe's), see "
                          "methods/ewc.py SYNTH_SCALE",
        "normalize": "fcdl94/MiB argparser.py: --reg_no_normalize off -> normalize_fn applied "
                     "(utils/regularizer.py PI.__init__)",
    }
    per_recipe = {"synth": {"penalty_weight": 500.0 * SYNTH_SCALE}}
    record = "path_integral"

    def penalty_weights(self, carried: Mapping[str, Tensors]) -> Tensors:
        return {name: min_max(s) if self.params["normalize"] else s.clone()
                for name, s in carried["score"].items()}

    def start_step(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        return path_start(parameters)

    def accumulate(self, running: dict[str, Any], parameters: Mapping[str, Tensor],
                   grads: Tensors) -> None:
        path_update(running, parameters, grads)

    def finish_step(self, running: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Tensors]:
        assert self.carried is not None
        return {"score": path_score(running, parameters, self.carried["score"])}

    def from_record(self, record: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Tensors]:
        return {"score": path_score(record, parameters, None)}
