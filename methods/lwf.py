"""LwF (Li & Hoiem, ECCV 2016) for segmentation: cross-entropy plus distillation of the old
model's softmax on the old channels, as re-implemented for segmentation by MiB's authors."""

from __future__ import annotations

from torch import Tensor

from methods.base import LossInputs, Method, cross_entropy
from methods.losses import knowledge_distillation, require_old_logits
from methods.registry import register


@register
class LwF(Method):
    name = "lwf"
    description = "LwF: cross-entropy + 100 x distillation of the old softmax on old channels"
    # MiB release (Cermelli et al., CVPR 2020), argparser `modify_command_options`, method LWF:
    # loss_kd = 100 (the LwF baseline of the MiB paper's experiments).
    defaults = {"kd_weight": 100.0}
    sources = {"kd_weight": "fcdl94/MiB argparser.py modify_command_options, method LWF: "
                            "loss_kd = 100"}
    uses_old_model = True

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        old_logits = require_old_logits(inputs)
        return {
            "ce": cross_entropy(inputs),
            "kd": self.params["kd_weight"] * knowledge_distillation(inputs.logits, old_logits,
                                                                      inputs.batch),
        }
