"""BatchNorm whose training statistics are those of the global batch over data-parallel ranks,
on any device and process-group backend (torch's SyncBatchNorm runs on CUDA only).

In training, the per-channel mean and biased variance are computed over the pixels of every
rank's slice of the batch: mean = sum_ranks sum(x) / n, var = sum_ranks sum((x - mean)^2) / n
(two passes, differentiable through `sum_with_grad`), and the running statistics are updated
with the unbiased variance var * n / (n - 1), as nn.BatchNorm2d does on one process. Outside
training, or without a process group, it is nn.BatchNorm2d. Parameters and buffers keep
BatchNorm2d's names, so checkpoints load either way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bench.engine import distributed


class GlobalBatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and distributed.initialised()):
            return super().forward(x)
        dims = (0, 2, 3)
        shape = (1, -1, 1, 1)
        local_count = x.new_tensor([float(x.numel() // max(x.shape[1], 1))])
        totals = distributed.sum_with_grad(torch.cat([x.sum(dims), local_count]))
        count = totals[-1].detach()
        mean = totals[:-1] / count.clamp_min(1)
        centred = x - mean.view(shape)
        var = distributed.sum_with_grad(centred.pow(2).sum(dims)) / count.clamp_min(1)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), float(count))
        return out

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: float) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                    else self.momentum)
        unbiased = var * (count / max(count - 1, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """`module` with every nn.BatchNorm2d replaced by this class, sharing its parameters
        and buffers (returned; replaced in place below the top)."""
        if type(module) is nn.BatchNorm2d:
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, device=None, dtype=None)
            converted.train(module.training)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            return converted
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


def for_ranks(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm over the global batch when data-parallel: torch's SyncBatchNorm on CUDA, this
    module's GlobalBatchNorm2d elsewhere; the model unchanged on one process."""
    if not distributed.initialised():
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlobalBatchNorm2d.convert(model)
