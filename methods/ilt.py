"""ILT (Michieli & Zanuttigh, ICCVW 2019): LwF's output distillation plus an L2 distillation of
the encoder features (the backbone's last stage) towards the previous model's."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from methods.base import LossInputs
from methods.lwf import LwF
from methods.registry import register


@register
class ILT(LwF):
    name = "ilt"
    description = "ILT: LwF (kd 100) + 100 x MSE between encoder features and the old ones"
    # MiB release (Cermelli et al., CVPR 2020), argparser `modify_command_options`, method ILT:
    # loss_kd = 100, loss_de = 100 (the ILT baseline of the MiB paper's experiments).
    defaults = {"kd_weight": 100.0, "feature_weight": 100.0}
    sources = {"kd_weight": "fcdl94/MiB argparser.py modify_command_options, method ILT: "
                            "loss_kd = 100",
               "feature_weight": "fcdl94/MiB argparser.py modify_command_options, method ILT: "
                                 "loss_de = 100"}

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        if inputs.old_features is None:
            raise ValueError(f"step {inputs.step} needs the previous model's encoder features")
        terms = super().loss(inputs)
        distance = inputs.batch.mean(F.mse_loss(inputs.features.float(),
                                                inputs.old_features.float(), reduction="none"))
        terms["feature_kd"] = self.params["feature_weight"] * distance
        return terms
