"""Data parallelism inside one job: process-group set-up, rank queries, sums across ranks.

The engine stays method-agnostic: methods see only `StepContext.all_reduce` and
`LossInputs.batch` (`methods.base.GlobalBatch`), which this module provides (identity when
single). Every rank draws the same global batch, with the same random augmentations, and trains
on its contiguous slice of it, so a run on N ranks sees exactly the inputs of a single-process
run with the same global batch; only rank 0 writes the store.

What makes N ranks compute the single-process gradient: every statistic of the batch (a loss's
mean over pixels, SDR's class means, BatchNorm's mean and variance) is summed over ranks by
`sum_with_grad`, whose backward sums the gradient over ranks too. A term computed on every rank
from such global sums has the same value on every rank; rank r's backward then yields the
derivative of the N identical terms through rank r's own inputs, and DDP's average over ranks
(1/N of the sum) is the single-process gradient. BatchNorm over the global batch is
`bench.engine.batchnorm.for_ranks`.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if initialised() else 1


def rank() -> int:
    return dist.get_rank() if initialised() else 0


def is_main() -> bool:
    return rank() == 0


def _all_reduce(tensor: Tensor, op: dist.ReduceOp) -> Tensor:
    """`op` over ranks into a new tensor (the input is left alone); NCCL reduces on the GPU."""
    result = tensor.clone()
    if dist.get_backend() == "nccl" and result.device.type != "cuda":
        on_gpu = result.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=op)
        return on_gpu.to(tensor.device)
    dist.all_reduce(result, op=op)
    return result


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """The sum of `tensor` over ranks (a new tensor; the input is left alone)."""
    if not initialised():
        return tensor
    return _all_reduce(tensor, dist.ReduceOp.SUM)


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) whose backward is all_reduce(SUM) of the incoming gradient."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        return all_reduce_sum(tensor.detach().contiguous())

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return all_reduce_sum(grad.contiguous())


def sum_with_grad(tensor: Tensor) -> Tensor:
    """The sum of `tensor` over ranks, differentiable (identity when single). Every rank must
    call it, in the same order, for the same shapes."""
    if not initialised():
        return tensor
    return _SumOverRanks.apply(tensor)


def max_with_grad(tensor: Tensor) -> Tensor:
    """The element-wise maximum over ranks, differentiable: the gradient reaches the ranks that
    hold the maximum (shared evenly on ties, as torch's amax does); identity when single."""
    if not initialised():
        return tensor
    top = _all_reduce(tensor.detach().contiguous(), dist.ReduceOp.MAX)
    holders = (tensor.detach() == top).to(tensor.dtype)
    shares = holders / all_reduce_sum(holders).clamp_min(1)
    return top + sum_with_grad((tensor - tensor.detach()) * shares)


def barrier() -> None:
    if initialised():
        dist.barrier()


def shard(tensor: Tensor) -> Tensor:
    """This rank's contiguous slice of a global batch (ranks get equal slices, the last ones
    one item fewer when the batch does not divide)."""
    if not initialised():
        return tensor
    size, index = world_size(), rank()
    per_rank = -(-tensor.shape[0] // size)
    return tensor[index * per_rank:(index + 1) * per_rank]


def shard_indices(count: int) -> list[int]:
    """Items of a dataset this rank evaluates or scans (every item exactly once overall)."""
    return list(range(rank(), count, world_size()))


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to run forward/backward through: DDP (gradients averaged) when distributed.

    Buffers are not broadcast from rank 0 at each forward; `average_buffers` averages them at
    the end of each epoch instead, which for BatchNorm running means equals the single-process
    value (their update is linear in the batch mean)."""
    if not initialised():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False,
                                   find_unused_parameters=True)


def average_buffers(model: nn.Module) -> None:
    if not initialised():
        return
    for buffer in model.buffers():
        if buffer.dtype.is_floating_point:
            buffer.copy_(all_reduce_sum(buffer) / world_size())


def init_from_environment() -> bool:
    """Join the process group of a multi-task Slurm job (submitit's environment); False when
    the job has a single task. CPU jobs use gloo, GPU jobs NCCL."""
    if initialised():
        return True
    if _submitit_tasks() <= 1:
        return False
    from submitit.helpers import TorchDistributedEnvironment

    # overwrite: a requeued job may find the previous attempt's variables
    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                            world_size=env.world_size)
    return True


def _submitit_tasks() -> int:
    """Tasks of the current submitit job (Slurm or local executor); 1 outside a job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return 1
    import submitit

    try:
        return int(submitit.JobEnvironment().num_tasks)
    except Exception:  # not inside a submitit job after all
        return 1


def shutdown() -> None:
    if initialised():
        dist.destroy_process_group()
