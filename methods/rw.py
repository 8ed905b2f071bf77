"""RW, Riemannian Walk (Chaudhry et al., ECCV 2018), as the MiB release runs it for
segmentation: EWC's online Fisher plus a path-integral score measured in the Fisher metric.

Source: fcdl94/MiB `utils/regularizer.py`, class `RW` (`__init__`, `update`, `get_score`,
`penalty`) with `normalize_fn`; presets in `argparser.py` `modify_command_options` (method RW:
`regularizer = "rw"`, `reg_importance = 100`; `reg_alpha` 0.9, `reg_iterations` 10,
`reg_no_normalize` off); the call order in `train.py` `Trainer.train`. Shared machinery:
methods/importance.py; the Fisher is EWC's (methods/ewc.py).

- Every iteration i of a step (counted from 0 in each step), after the backward pass, with theta
  the parameters then and g the task gradient: when i % 10 == 0, if a snapshot theta_s from
  10 iterations earlier exists, score += g * (theta_s - theta) /
  (0.5 * F * (theta - theta_s)^2 + 1e-8) with F the Fisher BEFORE this iteration's update; then
  theta_s = theta. Then, every iteration, F <- 0.9 * g^2 + 0.1 * F (as EWC's).
- At a step's end: score negative values set to 0, then averaged with the previous score where
  one exists: 0.5 * (score + score_prev) (new parameters: the score alone); the Fisher is carried
  raw and keeps decaying through the next step; the score restarts at 0 every step.
- Penalty of step t: penalty_weight * sum over the previous model's parameters of
  (F~ + s~) * (p - p_old)^2, F~ and s~ the Fisher and score after step t-1, each min-max
  normalised per parameter tensor.
- Step 0 is the shared `ce+importance` step 0; this module registers the RW recorder on it
  (it keeps its own copy of the Fisher, equal to EWC's record, so that each recorder stands
  alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from methods.ewc import FISHER_ALPHA, SYNTH_SCALE, fisher_start, fisher_update
from methods.importance import (
    NORMALISE_EPS,
    ImportancePenalty,
    RunningRecorder,
    Tensors,
    gradients,
    min_max,
    snapshot,
)
from methods.registry import register
from methods.step0 import register_recorder

SCORE_EVERY = 10  # fcdl94/MiB argparser.py: --reg_iterations default 10
DENOMINATOR_EPS = NORMALISE_EPS  # utils/regularizer.py RW.update: EPS = 1e-8


def walk_start(parameters: Mapping[str, Tensor], fisher: Mapping[str, Tensor] | None
               ) -> dict[str, Any]:
    return {"fisher": fisher_start(parameters, fisher),
            "score": {name: torch.zeros_like(p.detach()) for name, p in parameters.items()
                      if p.requires_grad},
            "previous": None, "count": 0}


def walk_update(running: dict[str, Any], parameters: Mapping[str, Tensor],
                grads: Mapping[str, Tensor]) -> None:
    if running["count"] % SCORE_EVERY == 0:
        previous = running["previous"]
        if previous is not None:
            score, fisher = running["score"], running["fisher"]
            for name, grad in grads.items():
                p = parameters[name].detach()
                before = previous[name].to(p.device)
                moved = grad * (before - p)
                metric = 0.5 * fisher[name].to(p.device) * (p - before).pow(2) + DENOMINATOR_EPS
                score[name] = score[name].to(p.device) + moved / metric
        running["previous"] = snapshot(parameters, grads)
    running["count"] += 1
    fisher_update(running["fisher"], grads, FISHER_ALPHA)


def walk_score(score: Mapping[str, Tensor], previous: Mapping[str, Tensor] | None) -> Tensors:
    out = {}
    for name, value in score.items():
        value = torch.where(value >= 0, value, torch.zeros_like(value))
        if previous is not None and name in previous:
            value = 0.5 * (value + previous[name].to(value.device))
        out[name] = value
    return out


class WalkRecorder(RunningRecorder):
    """Step 0's RW accumulators: Fisher, score, snapshot and iteration count."""

    name = "riemannian_walk"
    version = 1

    def start(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        return walk_start(parameters, None)

    def update(self, parameters: Mapping[str, Tensor]) -> None:
        walk_update(self.running, parameters, gradients(parameters))


register_recorder("ce+importance", WalkRecorder)


@register
class RW(ImportancePenalty):
    name = "rw"
    description = ("RW / Riemannian Walk (MiB release): CE + weight * sum (F~ + s~)(p - p_old)^2, "
                   "online Fisher + Fisher-metric path score, min-max normalised")
    defaults = {"penalty_weight": 100.0, "normalize": True}
    sources = {
        "penalty_weight": "fcdl94/MiB argparser.py modify_command_options, method RW: "
                          "reg_importance = 100 (LTTM/SDR argparser.py sets 1000); x0.2 on the "
                          "embedded synth recipe (lr_incremental 5x the MiB recipe's), see "
                          "methods/ewc.py SYNTH_SCALE",
        "normalize": "fcdl94/MiB argparser.py: --reg_no_normalize off -> normalize_fn applied "
                     "(utils/regularizer.py RW.__init__)",
    }
    per_recipe = {"synth": {"penalty_weight": 100.0 * SYNTH_SCALE}}
    record = "riemannian_walk"

    def penalty_weights(self, carried: Mapping[str, Tensors]) -> Tensors:
        normalise = min_max if self.params["normalize"] else (lambda t: t.clone())
        weights = {name: normalise(f) for name, f in carried["fisher"].items()}
        for name, s in carried["score"].items():
            weights[name] = weights[name] + normalise(s)
        return weights

    def start_step(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        assert self.carried is not None
        return walk_start(parameters, self.carried["fisher"])

    def accumulate(self, running: dict[str, Any], parameters: Mapping[str, Tensor],
                   grads: Tensors) -> None:
        walk_update(running, parameters, grads)

    def finish_step(self, running: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Tensors]:
        assert self.carried is not None
        return {"fisher": running["fisher"],
                "score": walk_score(running["score"], self.carried["score"])}

    def from_record(self, record: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Tensors]:
        return {"fisher": record["fisher"], "score": walk_score(record["score"], None)}
