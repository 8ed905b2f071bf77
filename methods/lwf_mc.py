"""LwF-MC, the iCaRL-style multi-class LwF (Rebuffi et al., CVPR 2017) as re-implemented for
segmentation by MiB's authors: sigmoid outputs everywhere, step 0 included.

Classification: binary cross-entropy with logits against one-hot targets, summed over channels,
mean over all pixels, 255 pixels counted as 0 (as the release). Distillation: BCE with logits
of z[:, :C_old] against sigmoid(z_old), read as "mean over elements" (every pixel, 255
included, and every old channel), then multiplied by C_old, so that it is a per-pixel SUM over
the old channels (the MiB release multiplies its mean-reduced BCE by the number of old channels
for exactly that reason).
Because step 0 is trained with the BCE too, this method has its own step-0 recipe (`bce`).
"""

from __future__ import annotations

from torch import Tensor

from methods.base import LossInputs, Method, Step0Recipe
from methods.losses import one_hot_bce, require_old_logits, sigmoid_distillation
from methods.registry import register
from methods.step0 import register_step0


@register_step0
class OneHotBCE(Step0Recipe):
    name = "bce"
    description = "one-hot binary cross-entropy over the step-0 classes (LwF-MC)"

    def step0_loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        return {"bce": one_hot_bce(inputs.logits, inputs.labels, inputs.batch)}


@register
class LwFMC(Method):
    name = "lwf-mc"
    description = "LwF-MC (iCaRL-style): one-hot BCE at every step + 10 x C_old x sigmoid KD"
    defaults = {"kd_weight": 10.0}
    sources = {"kd_weight": "fcdl94/MiB argparser.py modify_command_options, method LWF-MC: "
                            "icarl_importance = 10"}
    step0 = "bce"
    uses_old_model = True

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        old_logits = require_old_logits(inputs)
        old_channels = old_logits.shape[1]
        distillation = sigmoid_distillation(inputs.logits, old_logits, inputs.batch)
        return {
            "bce": one_hot_bce(inputs.logits, inputs.labels, inputs.batch),
            "kd": self.params["kd_weight"] * old_channels * distillation,
        }
