"""Statistics of the global batch across data-parallel ranks, without Slurm: two gloo processes
on this CPU each compute every method's loss terms and BatchNorm on their slice of one batch;
values, gradients and carried state must be those of one process on the whole batch.

Why a rank's gradient is divided by the number of ranks below: with terms made of sums over
ranks, each rank's backward yields the derivative of the N (identical) terms through its own
slice, and DDP's gradient average divides by N.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bench.engine import distributed
from bench.engine.batchnorm import GlobalBatchNorm2d
from methods import IterationState, LossInputs, ModelOutput, StepContext, get_method
from methods.base import SINGLE, GlobalBatch, parameter_view
from methods.step0 import step0_learner, step0_recipe
from protocols import get_protocol

RANKS = 2
VOC_15_5 = get_protocol("voc-15-5")
METHODS = ["ft", "lwf", "lwf-mc", "ilt", "mib", "sdr", "sdr+mib", "plop", "dkd", "ewc", "pi", "rw",
           "cil"]
PENALTIES = ("ewc", "pi", "rw")  # penalties over the parameters of a tiny stand-in model


def crafted_batch(images: int) -> dict[str, torch.Tensor]:
    """Step-1 tensors of voc-15-5: class 17 only in the last image (absent from the first
    slice), 255 pixels in the first image, new class 16 spread over both slices."""
    generator = torch.Generator().manual_seed(7)
    labels = torch.zeros(images, 8, 8, dtype=torch.long)
    labels[:, :3] = 16
    labels[-1, 5:] = 17
    labels[0, 0, :4] = 255
    features = torch.rand(images, 6, 8, 8, generator=generator)  # post-ReLU-like, >= 0
    features[0, :, 7] = 0.0  # pixels whose normalised features sum to zero (sparsity)
    return {
        "labels": labels,
        "logits": torch.randn(images, 21, 8, 8, generator=generator),
        "features": features,
        "old_logits": 3 * torch.randn(images, 16, 8, 8, generator=generator),
        "old_features": torch.rand(images, 6, 8, 8, generator=generator),
    }


def class_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Current (21) and old (16) classifier rows, background first (DKD's decomposed logits)."""
    generator = torch.Generator().manual_seed(9)
    return (torch.randn(21, 6, 1, 1, generator=generator),
            torch.randn(16, 6, 1, 1, generator=generator))


def with_whole_outputs(inputs: LossInputs) -> LossInputs:
    """Every field a method may read: stages and decoder = the features, low-resolution logits
    = the logits (same size here), and the classifier weights as parameters (plop, dkd)."""
    channels = inputs.output.logits.shape[1]
    weights = class_rows()[0][:channels]
    parameters = {"classifiers.0.weight": weights[:16], "classifiers.0.bias": torch.zeros(16)}
    if channels > 16:
        parameters |= {"classifiers.1.weight": weights[16:], "classifiers.1.bias": torch.zeros(5)}
    output = dataclasses.replace(inputs.output, stages=(inputs.output.encoder,),
                                 logits_lowres=inputs.output.logits)
    old = inputs.old_output
    if old is not None:
        old = dataclasses.replace(old, decoder=old.encoder, stages=(old.encoder,),
                                  logits_lowres=old.logits)
    return dataclasses.replace(inputs, output=output, old_output=old, parameters=parameters)


def penalised_model() -> tuple[nn.Module, nn.Module]:
    """A tiny model and its "previous" version (parameters moved), the same on every rank."""
    torch.manual_seed(17)
    model = nn.Conv2d(6, 4, 1)
    old = nn.Conv2d(6, 4, 1)
    return model, old


def method_with_state(name: str):
    cls = get_method(name)
    # SDR's variant=paper: every statistic is one of the global batch; the release variant's
    # are per rank slice, as in the release's own processes (methods/sdr.py)
    overrides = {"variant": "paper"} if name.startswith("sdr") else {}
    method = cls(VOC_15_5, cls.resolve_params("voc-15-5", overrides))
    if name in PENALTIES:
        model, old = penalised_model()
        generator = torch.Generator().manual_seed(19)
        statistics = {"ewc": ("fisher",), "pi": ("score",), "rw": ("fisher", "score")}[name]
        method.load_state_dict({"carried": {
            statistic: {n: torch.rand(p.shape, generator=generator)
                        for n, p in old.named_parameters()} for statistic in statistics}})
        method.on_step_start(StepContext(VOC_15_5, 1, model, old, torch.device("cpu"),
                                         lambda: []))
        method.penalised = model
    if name == "plop":  # per-class entropy thresholds: some pixels kept, some not
        thresholds = 0.02 * torch.rand(21, generator=torch.Generator().manual_seed(4))
        method.load_state_dict({"thresholds": thresholds, "max_entropy": math.log(21)})
    if name == "dkd":  # the old model's class rows (what the step start takes from it)
        method.old_rows = class_rows()[1][1:].flatten(1)
    if name.startswith("sdr"):
        generator = torch.Generator().manual_seed(3)
        counts = torch.zeros(21, dtype=torch.float64)
        counts[:16] = 4.0
        counts[2] = 0.0  # an old class without prototype
        method.load_state_dict({"sums": torch.rand(21, 6, generator=generator,
                                                   dtype=torch.float64), "counts": counts})
    return method


def terms_and_grads(tensors: dict[str, torch.Tensor], batch: GlobalBatch, step: int) -> dict:
    """Per method: loss term values, the gradient of their sum w.r.t. logits and features, and
    the method's state afterwards."""
    out = {}
    for name in METHODS:
        logits = tensors["logits"].clone().requires_grad_()
        features = tensors["features"].clone().requires_grad_()
        method = method_with_state(name)
        if step == 0:  # step 0 is learned by the method's step-0 recipe
            learner = step0_learner(method)
            inputs = LossInputs.from_tensors(
                0, logits[:, :16], tensors["labels"].clamp(max=15).where(
                    tensors["labels"] != 255, 255), features=features, batch=batch)
        else:
            learner = method
            inputs = LossInputs.from_tensors(
                step, logits, tensors["labels"], features=features,
                old_logits=tensors["old_logits"][:, :16],
                old_features=tensors["old_features"], batch=batch)
        inputs = with_whole_outputs(inputs)
        if name in PENALTIES:
            inputs.parameters = parameter_view(method.penalised)
        terms = learner.loss(inputs)
        sum(terms.values()).backward()
        out[name] = {
            "terms": {k: v.detach() for k, v in terms.items()},
            "logits_grad": logits.grad, "features_grad": features.grad,
            "state": method.state_dict(),
        }
    return out


class OldLogits(nn.Module):
    """A stand-in old model whose output logits are its input (the crafted old logits)."""

    def forward(self, images: torch.Tensor) -> ModelOutput:
        return ModelOutput(images)


def plop_thresholds(tensors: dict[str, torch.Tensor], all_reduce=lambda t: t,
                    shard=lambda t: t) -> dict[str, torch.Tensor]:
    """PLOP's per-class entropy thresholds (both variants) from one pass over this rank's
    slices of two batches (the first image alone: one rank's slice is empty, then the
    others)."""
    old_logits, labels = tensors["old_logits"][:, :16], tensors["labels"]
    found = {}
    for variant in ("release", "paper"):
        method = get_method("plop")(VOC_15_5, {**get_method("plop").defaults,
                                               "variant": variant})
        batches = [(shard(old_logits[:1]), shard(labels[:1])),
                   (shard(old_logits[1:]), shard(labels[1:]))]
        context = StepContext(VOC_15_5, 1, nn.Identity(), OldLogits(), torch.device("cpu"),
                              lambda batches=batches: batches, all_reduce=all_reduce)
        method.compute_thresholds(context)
        found[variant] = method.state_dict()["thresholds"]
    return found


def batchnorm_pass(x: torch.Tensor, batch: GlobalBatch, convert: bool) -> dict:
    torch.manual_seed(11)
    layers = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    if convert:
        layers = GlobalBatchNorm2d.convert(layers)
    x = x.clone().requires_grad_()
    outputs = []
    for _ in range(2):  # two training iterations: running statistics accumulate
        out = layers(x)
        outputs.append(out.detach())
        weights = torch.linspace(0.5, 2.0, out.shape[1]).view(1, -1, 1, 1)
        batch.mean(out.pow(2) * weights).backward()
    return {"outputs": outputs, "x_grad": x.grad,
            "weight_grads": [p.grad for p in layers.parameters()],
            "buffers": [b.clone() for b in layers.buffers()]}


def importance_pass(tensors: dict[str, torch.Tensor], batch: GlobalBatch, average) -> dict:
    """Two SGD iterations of a 1x1 classifier on the features under the `ce+importance` step-0
    recipe; `average` turns this rank's parameter gradients into DDP's average. Returns what the
    recipe recorded (EWC's Fisher, PI's path integral, RW's score)."""
    torch.manual_seed(23)
    head = nn.Conv2d(6, 16, 1)
    recipe = step0_recipe("ce+importance")(VOC_15_5)
    parameters = parameter_view(head)
    labels = tensors["labels"].clamp(max=15).where(tensors["labels"] != 255, 255)
    for iteration in range(2):
        head.zero_grad()
        logits = head(tensors["features"])
        inputs = LossInputs.from_tensors(0, logits, labels, batch=batch)
        sum(recipe.loss(inputs).values()).backward()
        for parameter in head.parameters():
            parameter.grad = average(parameter.grad)
        recipe.after_backward(IterationState(0, 0, iteration, parameters, batch))
        with torch.no_grad():
            for parameter in head.parameters():
                parameter -= 0.5 * parameter.grad
    return recipe.state_dict()


def worker(rank: int, port: int, images: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=RANKS)
    try:
        batch = GlobalBatch(sum=distributed.sum_with_grad, max=distributed.max_with_grad)
        sliced = {k: distributed.shard(v) for k, v in crafted_batch(images).items()}
        result = {"step1": terms_and_grads(sliced, batch, 1),
                  "step0": terms_and_grads(sliced, batch, 0)}
        result["thresholds"] = plop_thresholds(crafted_batch(images), distributed.all_reduce_sum,
                                               distributed.shard)
        image = torch.rand(images, 3, 6, 6, generator=torch.Generator().manual_seed(5))
        bn = batchnorm_pass(distributed.shard(image), batch, convert=True)
        # what DDP would hold after its average over ranks
        bn["weight_grads"] = [distributed.all_reduce_sum(g) / RANKS for g in bn["weight_grads"]]
        result["batchnorm"] = bn
        result["importance"] = importance_pass(
            sliced, batch, lambda grad: distributed.all_reduce_sum(grad) / RANKS)
        torch.save(result, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=lambda m: f"{what}: {m}")


@pytest.fixture(scope="module", params=[4, 3], ids=["even-slices", "uneven-slices"])
def ranks_and_reference(request, tmp_path_factory):
    images = request.param
    folder = tmp_path_factory.mktemp(f"ranks{images}")
    mp.spawn(worker, args=(free_port(), images, str(folder)), nprocs=RANKS, join=True)
    per_rank = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(RANKS)]
    whole = crafted_batch(images)
    reference = {"step1": terms_and_grads(whole, SINGLE, 1),
                 "step0": terms_and_grads(whole, SINGLE, 0),
                 "thresholds": plop_thresholds(whole)}
    image = torch.rand(images, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    reference["batchnorm"] = batchnorm_pass(image, SINGLE, convert=False)
    reference["importance"] = importance_pass(whole, SINGLE, lambda grad: grad)
    return per_rank, reference


@pytest.mark.parametrize("step", ["step0", "step1"])
@pytest.mark.parametrize("method", METHODS)
def test_loss_terms_and_gradients_of_the_global_batch(ranks_and_reference, method, step):
    per_rank, reference = ranks_and_reference
    expected = reference[step][method]
    for rank, result in enumerate(per_rank):
        got = result[step][method]
        assert got["terms"].keys() == expected["terms"].keys()
        for key, value in expected["terms"].items():
            close(got["terms"][key], value, f"rank {rank} {method} {step} {key}")
        for state_key, value in expected["state"].items():
            close(got["state"][state_key], value, f"rank {rank} {method} state {state_key}")
    for grad in ("logits_grad", "features_grad"):
        whole = expected[grad]
        if whole is None:  # the method's loss does not read this input
            assert all(r[step][method][grad] is None for r in per_rank)
            continue
        stitched = torch.cat([r[step][method][grad] for r in per_rank]) / RANKS
        close(stitched, whole, f"{method} {step} {grad}")


def test_sdr_terms_are_not_trivially_zero(ranks_and_reference):
    """The comparison above means something only if the latent terms are active here."""
    _, reference = ranks_and_reference
    terms = reference["step1"]["sdr"]["terms"]
    assert all(terms[k].item() > 0 for k in ("matching", "attraction", "repulsion", "sparsity"))


def test_plop_thresholds_of_the_global_pass(ranks_and_reference):
    """Histograms summed over ranks: every rank holds the single-process thresholds (NaN and
    inf where the release's median divides by an empty bin), and they are not all the floor."""
    per_rank, reference = ranks_and_reference
    for variant, expected in reference["thresholds"].items():
        for rank, result in enumerate(per_rank):
            torch.testing.assert_close(result["thresholds"][variant], expected, equal_nan=True,
                                       msg=lambda m, r=rank, v=variant: f"rank {r} {v}: {m}")
    paper = reference["thresholds"]["paper"]
    assert torch.isfinite(paper).all() and (paper[:16] > 0.001).sum() >= 2


def test_new_terms_are_not_trivially_zero(ranks_and_reference):
    _, reference = ranks_and_reference
    for method, keys in (("plop", ("ce", "pod")),
                         ("dkd", ("mbce", "kd", "dkd_pos", "dkd_neg", "ac"))):
        terms = reference["step1"][method]["terms"]
        assert all(terms[k].item() > 0 for k in keys), (method, terms)


def test_batchnorm_over_ranks_equals_batchnorm_on_the_whole_batch(ranks_and_reference):
    per_rank, reference = ranks_and_reference
    expected = reference["batchnorm"]
    for index, whole in enumerate(expected["outputs"]):
        close(torch.cat([r["batchnorm"]["outputs"][index] for r in per_rank]), whole,
              f"BatchNorm output, iteration {index}")
    close(torch.cat([r["batchnorm"]["x_grad"] for r in per_rank]) / RANKS, expected["x_grad"],
          "input gradient")
    for result in per_rank:
        for got, want in zip(result["batchnorm"]["weight_grads"], expected["weight_grads"],
                             strict=True):
            close(got, want, "parameter gradient after DDP's average")
        for got, want in zip(result["batchnorm"]["buffers"], expected["buffers"], strict=True):
            close(got.to(want.dtype), want, "running statistics")


def test_importance_from_gradients_is_the_single_process_one(ranks_and_reference):
    """EWC's Fisher, PI's path integral and RW's score, recorded from DDP's averaged gradients
    on each rank, equal those of one process on the whole batch."""
    per_rank, reference = ranks_and_reference
    expected = reference["importance"]
    assert set(expected) == {"fisher", "path_integral", "riemannian_walk"}
    assert (expected["path_integral"]["delta"]["weight"] != 0).any()
    for rank, result in enumerate(per_rank):
        torch.testing.assert_close(result["importance"], expected, rtol=1e-5, atol=1e-6,
                                   msg=lambda m, rank=rank: f"rank {rank}: {m}")


def test_parameter_penalties_are_not_trivially_zero(ranks_and_reference):
    _, reference = ranks_and_reference
    assert all(reference["step1"][name]["terms"]["penalty"].item() > 0 for name in PENALTIES)
