"""EWC (Kirkpatrick et al., PNAS 2017) as the MiB release runs it for segmentation: an online,
exponentially decayed empirical Fisher (squared task gradients) and a quadratic penalty on the
drift from the previous model's parameters.

Source: fcdl94/MiB `utils/regularizer.py`, class `EWC` (`__init__`, `update`, `penalty`) with
`normalize_fn`; presets in `argparser.py` `modify_command_options` (method EWC:
`regularizer = "ewc"`, `reg_importance = 500`; `reg_alpha` default 0.9; `reg_no_normalize` off);
the call order in `train.py` `Trainer.train`. Shared machinery: methods/importance.py.

- Fisher, per parameter element, every iteration of every step (step 0 included), from the
  task gradient g: F <- alpha * g^2 + (1 - alpha) * F, alpha = 0.9, F = 1 where a parameter is
  first seen (step 0's parameters, each new step's classifier).
- The Fisher is carried across steps raw and keeps decaying through the next step (the release
  clones the previous Fisher into its running one); the penalty of step t uses the Fisher after
  step t-1, min-max normalised per parameter tensor.
- Penalty: penalty_weight * sum over the previous model's parameters of F~ * (p - p_old)^2.
- Step 0 is the shared `ce+importance` step 0; this module registers the Fisher recorder on it
  (alpha there is the release's 0.9: a shared step 0 cannot depend on one method's values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from methods.importance import ImportancePenalty, RunningRecorder, Tensors, gradients, min_max
from methods.registry import register
from methods.step0 import register_recorder

FISHER_ALPHA = 0.9  # fcdl94/MiB argparser.py: --reg_alpha default 0.9 (EWC and RW)

# The embedded recipe (trainer/synth.yaml) trains incremental steps at lr 0.005, five times the
# MiB recipe's 0.001. On its own the penalty is a quadratic of stiffness k = 2 * weight * W per
# parameter (W <= 1 for EWC and PI, <= 2 for RW), and SGD with Nesterov momentum 0.9 (both
# recipes) is stable on a quadratic only for lr * k < 2 (1 + 0.9) / (1 + 2 * 0.9) = 1.36. The
# release's weights give lr * k = 1.0 (EWC, PI) and 0.4 (RW) under the MiB recipe, but 5 and 2
# under the embedded one, where the most important parameter of every tensor (W = 1) oscillates
# with growing amplitude. On the embedded recipe the weights are therefore divided by 5, which
# keeps the release's lr * weight exactly (tests/test_importance.py checks the products from
# the recipes' files; `bench run ... method.penalty_weight=500` runs the release's value).
SYNTH_SCALE = 0.2  # = 0.001 / 0.005, the two recipes' incremental learning rates


def fisher_start(parameters: Mapping[str, Tensor], previous: Mapping[str, Tensor] | None
                 ) -> Tensors:
    """The running Fisher at a step's start: the previous one where it exists, else ones."""
    return {name: (previous[name].to(p.device).clone() if previous and name in previous
                   else torch.ones_like(p.detach()))
            for name, p in parameters.items() if p.requires_grad}


def fisher_update(fisher: Tensors, grads: Mapping[str, Tensor], alpha: float) -> None:
    for name, grad in grads.items():
        fisher[name] = alpha * grad.pow(2) + (1 - alpha) * fisher[name].to(grad.device)


class FisherRecorder(RunningRecorder):
    """The online Fisher of step 0 (ones, then one decayed update per iteration)."""

    name = "fisher"
    version = 1

    def start(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        return {"fisher": fisher_start(parameters, None)}

    def update(self, parameters: Mapping[str, Tensor]) -> None:
        fisher_update(self.running["fisher"], gradients(parameters), FISHER_ALPHA)


register_recorder("ce+importance", FisherRecorder)


@register
class EWC(ImportancePenalty):
    name = "ewc"
    description = ("EWC (MiB release): CE + weight * sum F~ (p - p_old)^2, F an online decayed "
                   "Fisher, min-max normalised")
    defaults = {"penalty_weight": 500.0, "normalize": True}
    sources = {
        "penalty_weight": "fcdl94/MiB argparser.py modify_command_options, method EWC: "
                          "reg_importance = 500 (LTTM/SDR argparser.py sets 1000); x0.2 on the "
                          "embedded synth recipe (lr_incremental 5x the MiB recipe's), see "
                          "methods/ewc.py SYNTH_SCALE",
        "normalize": "fcdl94/MiB argparser.py: --reg_no_normalize off -> normalize_fn applied "
                     "(utils/regularizer.py EWC.__init__)",
    }
    per_recipe = {"synth": {"penalty_weight": 500.0 * SYNTH_SCALE}}
    record = "fisher"

    def penalty_weights(self, carried: Mapping[str, Tensors]) -> Tensors:
        fisher = carried["fisher"]
        return {name: min_max(f) if self.params["normalize"] else f.clone()
                for name, f in fisher.items()}

    def start_step(self, parameters: Mapping[str, Tensor]) -> dict[str, Any]:
        assert self.carried is not None
        return {"fisher": fisher_start(parameters, self.carried["fisher"])}

    def accumulate(self, running: dict[str, Any], parameters: Mapping[str, Tensor],
                   grads: Tensors) -> None:
        fisher_update(running["fisher"], grads, FISHER_ALPHA)

    def finish_step(self, running: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Any]:
        return {"fisher": running["fisher"]}

    def from_record(self, record: Mapping[str, Any], parameters: Mapping[str, Tensor]
                    ) -> dict[str, Any]:
        return {"fisher": record["fisher"]}
