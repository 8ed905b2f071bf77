"""The training loop of one step: SGD with a poly schedule, method hooks, epoch checkpoints.

Exact resume: every epoch starts by seeding torch from (seed, step, epoch), so an epoch is a pure
function of the state at its start. The state after each epoch (model, optimizer, method state,
iteration, loss history) is checkpointed atomically; a resumed step continues from the last one
and reaches bit-identical weights on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from bench import distributed
from bench.data.transforms import normalize
from bench.errors import BenchError
from bench.store import load_torch, save_torch
from methods.base import GlobalBatch, LossInputs, Method, StepContext


@dataclass(frozen=True)
class StepRecipe:
    """The optimisation settings of one step (already resolved for the dataset and step)."""

    epochs: int
    lr: float
    batch_size: int
    momentum: float
    nesterov: bool
    weight_decay: float
    poly_power: float
    bf16: bool


def derived_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from parts (Python's hash() is salted per process)."""
    value = 1469598103934665603
    for char in "/".join(str(p) for p in parts).encode():
        value = ((value ^ char) * 1099511628211) % (1 << 63)
    return value


def poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    return base_lr * (1 - iteration / max(total, 1)) ** power


class NonFiniteLoss(BenchError):
    pass


def train_step(
    context: StepContext,
    method: Method,
    recipe: StepRecipe,
    batches: Callable[[int], Iterable[tuple[Tensor, Tensor]]],
    iterations_per_epoch: int,
    seed: int,
    epoch_checkpoint: Path,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train `context.model` for one step; returns the mean loss terms of every epoch.

    `batches(epoch)` yields (uint8 images, labels) on the CPU; the loop moves them to the device
    and normalises them there.
    """
    model, old_model, device, step = context.model, context.old_model, context.device, context.step
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    total = recipe.epochs * iterations_per_epoch
    start_epoch, iteration, history = 0, 0, []
    if epoch_checkpoint.is_file():
        state = load_torch(epoch_checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])
        start_epoch, iteration, history = state["epoch"], state["iteration"], state["history"]
        log(f"step {step}: resuming after epoch {start_epoch} of {recipe.epochs}")
    run_old = method.uses_old_model and old_model is not None
    # statistics of the global batch when data-parallel (identity on one process)
    global_batch = GlobalBatch(sum=distributed.sum_with_grad, max=distributed.max_with_grad)
    forward = distributed.wrap(model, device)  # DDP averages gradients across ranks
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if recipe.bf16 and device.type == "cuda" else nullcontext())
    for epoch in range(start_epoch, recipe.epochs):
        torch.manual_seed(derived_seed(seed, step, epoch))
        model.train()
        sums: dict[str, Tensor] = {}
        count = 0
        progress = tqdm(batches(epoch), total=iterations_per_epoch, disable=quiet, leave=False,
                        desc=f"step {step} epoch {epoch + 1}/{recipe.epochs}", dynamic_ncols=True)
        for batch_index, (images, labels) in enumerate(progress):
            images = normalize(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            for group in optimizer.param_groups:
                group["lr"] = poly_lr(recipe.lr, iteration, total, recipe.poly_power)
            with autocast:
                output = forward(images)
                old_output = None
                if run_old:
                    with torch.no_grad():
                        old_output = old_model(images)
                terms = method.loss(LossInputs(
                    step=step, logits=output.logits.float(), features=output.encoder,
                    decoder=output.decoder, labels=labels,
                    old_logits=None if old_output is None else old_output.logits.float(),
                    old_features=None if old_output is None else old_output.encoder,
                    old_decoder=None if old_output is None else old_output.decoder,
                    batch=global_batch,
                ))
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
                raise NonFiniteLoss(
                    f"non-finite loss at step {step}, epoch {epoch + 1}, iteration "
                    f"{batch_index + 1} ({values}); earlier steps are intact. Lower the learning "
                    "rate (trainer.lr / trainer.lr_incremental) or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            count += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0) + value.detach().float()
            if not quiet and (batch_index % 10 == 0 or batch_index + 1 == iterations_per_epoch):
                progress.set_postfix({k: f"{(v / count).item():.3f}" for k, v in sums.items()})
        progress.close()
        distributed.average_buffers(model)
        means = {k: float(distributed.all_reduce_sum(v / max(count, 1))
                          / distributed.world_size()) for k, v in sums.items()}
        history.append(means)
        if not all(math.isfinite(v) for v in means.values()):
            raise NonFiniteLoss(f"non-finite mean loss at step {step}, epoch {epoch + 1}")
        if distributed.is_main():  # one writer; every rank resumes from the same file
            save_torch(epoch_checkpoint, {
                "epoch": epoch + 1, "iteration": iteration, "history": history,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "method": method.state_dict(),
            })
        distributed.barrier()
        if quiet:
            log(f"step {step} epoch {epoch + 1}/{recipe.epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    return history


def freeze(model: nn.Module) -> nn.Module:
    """An eval-mode copy-free freeze (used on the deep copy of the previous model)."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
