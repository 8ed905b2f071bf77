"""The methods: each loss against hand-computed values on tiny tensors, MiB's initialisation,
SDR's prototypes and latent terms, composition of sdr+mib, and one tiny real run per method.

Expected numbers are literals computed by hand (the arithmetic is in the comments), never by
calling the code under test.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.model import DeepLabV3
from bench.errors import BenchError
from bench.store.files import load_torch
from methods import LossInputs, StepContext, get_method, method_names
from methods.base import GlobalBatch
from methods.losses import (
    class_means,
    knowledge_distillation,
    one_hot_bce,
    sigmoid_distillation,
    unbiased_cross_entropy,
    unbiased_knowledge_distillation,
)
from methods.mib import init_from_background
from methods.sdr import SDR, attraction, old_class_targets, prototype_matching, repulsion, sparsity
from methods.step0 import step0_learner
from protocols import get_protocol
from tests.engine_helpers import TINY

LN2, LN3 = math.log(2), math.log(3)
VOC_15_5 = get_protocol("voc-15-5")


def pixels(*columns: list[float]) -> torch.Tensor:
    """A 1 x C x 1 x W tensor from W pixel vectors of C values each."""
    return torch.tensor(columns, dtype=torch.float32).T[None, :, None, :].contiguous()


def labels_row(*values: int) -> torch.Tensor:
    return torch.tensor([[values]])


def inputs(step: int, logits, labels, old_logits=None, features=None, old_features=None):
    features = torch.ones(1, 2, 1, 1) if features is None else features
    return LossInputs.from_tensors(step, logits, labels, features=features,
                                   old_logits=old_logits, old_features=old_features)


# ----- shared losses --------------------------------------------------------------------------
def test_knowledge_distillation_by_hand():
    # pixel A: softmax(z_old=[0, 0]) = [1/2, 1/2]; log_softmax(z[:2]=[0, ln3]) = [ln 1/4, ln 3/4]
    #   -> -(1/2)(1/2 ln 1/4 + 1/2 ln 3/4) = 0.5596...
    # pixel B: softmax([ln3, 0]) = [3/4, 1/4]; log_softmax([0, 0]) = [ln 1/2, ln 1/2]
    #   -> -(1/2)(ln 1/2) = 0.3466...;  mean of A and B = 0.38253384933644
    # The third (new) channel must not matter: it is narrowed away before the softmax.
    logits = pixels([0.0, LN3, 5.0], [0.0, 0.0, -7.0])
    old = pixels([0.0, 0.0], [LN3, 0.0])
    assert knowledge_distillation(logits, old).item() == pytest.approx(0.38253384933644)
    lwf = get_method("lwf")(VOC_15_5)
    terms = lwf.loss(inputs(1, logits, labels_row(0, 2), old))
    assert set(terms) == {"ce", "kd"}
    assert terms["kd"].item() == pytest.approx(38.253384933644)


def test_unbiased_cross_entropy_by_hand():
    # C_old = 2 (channels 0, 1), new channel 2.
    # [0, 0, ln2] label 0: -(lse(0, 0) - lse(0, 0, ln2)) = -(ln2 - ln4) = ln 2
    # [ln3, 0, 0] label 2: -(0 - ln(3 + 1 + 1)) = ln 5
    # [0, ln3, 0] label 1 (an old class, sequential mode) -> 0: -(ln4 - ln5) = ln(5/4)
    # [9, 9, 9] label 255: counts as 0 in a mean over all 4 pixels (the releases' averaging)
    # Mean = (ln2 + ln5 + ln(5/4) + 0) / 4 = 0.6314321610770639
    logits = pixels([0.0, 0.0, LN2], [LN3, 0.0, 0.0], [0.0, LN3, 0.0], [9.0, 9.0, 9.0])
    labels = labels_row(0, 2, 1, 255)
    value = unbiased_cross_entropy(logits, labels, old_channels=2)
    assert value.item() == pytest.approx((math.log(2) + math.log(5) + math.log(5 / 4)) / 4)
    assert value.item() == pytest.approx(0.6314321610770639)


def test_unbiased_cross_entropy_is_cross_entropy_without_old_classes():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, 4, generator=generator)
    labels = torch.randint(0, 5, (2, 3, 4), generator=generator)
    labels[0, 0, :2] = 255
    # the releases' averaging: reduction='none' (255 pixels give 0), then the mean of all
    expected = F.cross_entropy(logits, labels, ignore_index=255, reduction="none").mean()
    assert torch.allclose(unbiased_cross_entropy(logits, labels, old_channels=1), expected)


def test_unbiased_knowledge_distillation_by_hand():
    # Channels: old 0 (background), 1; new 2.   L = -(t0 log q0 + t1 log q1) / C_old, C_old = 2
    # pixel 1: z = [0, 0, ln2], lse = ln4; q0 = lse(z0, z2) - lse = ln(3/4); q1 = ln(1/4);
    #   t = softmax([0, ln3]) = [1/4, 3/4] -> -(1/4 ln 3/4 + 3/4 ln 1/4) / 2 = 0.5558...
    # pixel 2: z = [ln3, ln2, 0], lse = ln6; q0 = ln(4/6); q1 = ln(2/6); t = [1/2, 1/2]
    #   -> -(1/2 ln 2/3 + 1/2 ln 1/3) / 2 = 0.3760...   Mean = 0.46591999683525004
    logits = pixels([0.0, 0.0, LN2], [LN3, LN2, 0.0])
    old = pixels([0.0, LN3], [0.0, 0.0])
    assert unbiased_knowledge_distillation(logits, old).item() == pytest.approx(0.46591999683525)
    mib = get_method("mib")(VOC_15_5)  # kd weight 10 on 15-5
    terms = mib.loss(inputs(1, logits, labels_row(0, 2), old))
    assert set(terms) == {"unbiased_ce", "unbiased_kd"}
    assert terms["unbiased_kd"].item() == pytest.approx(4.6591999683525)


def test_one_hot_bce_and_sigmoid_distillation_by_hand():
    # [0, 0] label 1: -ln(1 - s(0)) - ln s(0) = 2 ln2;  [5, -5] label 255: 0;
    # [ln3, 0] label 0: -ln s(ln3) - ln(1 - s(0)) = ln(4/3) + ln2.
    # Mean over all 3 pixels (the releases' averaging) = (3 ln2 + ln(4/3)) / 3 = 0.7890412047
    logits = pixels([0.0, 0.0], [5.0, -5.0], [LN3, 0.0])
    assert one_hot_bce(logits, labels_row(1, 255, 0)).item() == pytest.approx(
        (3 * math.log(2) + math.log(4 / 3)) / 3)
    # Distillation on C_old = 2 channels of one pixel, z = [ln3, 0, (new) 4], z_old = [0, ln3]:
    # channel 0: s(ln3) = 3/4 vs target s(0) = 1/2: -(1/2 ln 3/4 + 1/2 ln 1/4) = 0.8369...
    # channel 1: s(0) = 1/2: ln 2 whatever the target.  Mean over elements = 0.7650676986728906
    # LwF-MC's term: 10 * C_old * mean = 15.301353973457811
    logits = pixels([LN3, 0.0, 4.0])
    old = pixels([0.0, LN3])
    assert sigmoid_distillation(logits, old).item() == pytest.approx(0.7650676986728906)
    method = get_method("lwf-mc")(VOC_15_5)
    assert method.step0 == "bce"
    assert set(step0_learner(method).loss(inputs(0, logits, labels_row(2)))) == {"bce"}
    terms = method.loss(inputs(1, logits, labels_row(2), old))
    assert terms["kd"].item() == pytest.approx(15.301353973457811)


def test_ilt_adds_feature_distillation():
    # MSE([[1, 2], [3, 4]], 0) = (1 + 4 + 9 + 16) / 4 = 7.5, weighted by 100 -> 750
    features = pixels([1.0, 2.0], [3.0, 4.0])
    logits, old = pixels([0.0, 0.0, 0.0]), pixels([0.0, 0.0])
    terms = get_method("ilt")(VOC_15_5).loss(
        inputs(1, logits, labels_row(2), old, features, torch.zeros_like(features)))
    assert set(terms) == {"ce", "kd", "feature_kd"}
    assert terms["feature_kd"].item() == pytest.approx(750.0)


def test_mib_kd_weight_per_setting_uses_exact_keys():
    # 100 on 15-1 only (fcdl94/MiB#22, #43); 10-1 has no source for it and keeps 10
    mib = get_method("mib")
    weight = {name: mib(get_protocol(name)).params["kd_weight"]
              for name in ("voc-15-1", "voc-15-1-disjoint", "voc-10-1", "voc-10-10", "voc-15-5")}
    assert weight == {"voc-15-1": 100, "voc-15-1-disjoint": 100, "voc-10-1": 10,
                      "voc-10-10": 10, "voc-15-5": 10}


def test_joint_collapses_the_protocol_into_one_step():
    joint = get_method("joint")(VOC_15_5)
    planned = joint.plan_protocol(VOC_15_5)
    assert joint.step0 == "joint"
    assert planned.step_sizes == (21,) and planned.name == "voc-15-5-joint"
    assert planned.class_order == VOC_15_5.class_order


# ----- MiB's initialisation -------------------------------------------------------------------
def tiny_model() -> DeepLabV3:
    torch.manual_seed(0)
    return DeepLabV3("resnet18", [16], base_channels=4, aspp_channels=8).eval()


def context_for(model, step: int, protocol=VOC_15_5, batches=(), all_reduce=None) -> StepContext:
    extra = {} if all_reduce is None else {"all_reduce": all_reduce}
    return StepContext(protocol, step, model, None, torch.device("cpu"), lambda: batches, **extra)


def test_mib_init_keeps_old_predictions_and_splits_background_evenly():
    model = tiny_model()
    with torch.no_grad():
        model.classifiers[0].bias.normal_()
    old = copy.deepcopy(model)
    model.add_classifier(5)
    get_method("mib")(VOC_15_5).on_step_start(context_for(model, 1))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = old(images).logits.softmax(dim=1)
        after = model(images).logits.softmax(dim=1)
    assert torch.allclose(after[:, 1:16], before[:, 1:16], atol=1e-6)
    assert torch.allclose(after[:, 0] + after[:, 16:].sum(dim=1), before[:, 0], atol=1e-6)
    for channel in [0, *range(16, 21)]:  # N + 1 = 6 equal shares of the old background
        assert torch.allclose(after[:, channel], before[:, 0] / 6, atol=1e-6)


def test_mib_init_does_nothing_at_step_zero_and_sdr_never_initialises():
    model = tiny_model()
    state = copy.deepcopy(model.state_dict())
    get_method("mib")(VOC_15_5).on_step_start(context_for(model, 0))
    model.add_classifier(5)
    reference = copy.deepcopy(model.state_dict())
    get_method("sdr")(VOC_15_5).on_step_start(context_for(model, 1))
    assert all(torch.equal(state[k], model.state_dict()[k]) for k in state)
    assert all(torch.equal(reference[k], model.state_dict()[k]) for k in reference)


# ----- SDR ------------------------------------------------------------------------------------
class IdentityEncoder(nn.Module):
    """A stand-in model whose encoder features are its input (to craft features by hand)."""

    def forward(self, images):
        return SimpleNamespace(encoder=images)


# Two images of two pixels, F = 2 channels: class 1 is in BOTH images.
#   image 0: [1, 10] (class 1), [2, 20] (class 0);  image 1: [5, 50] (class 1), [7, 70] (class 2)
# True per-channel means: class 1 = [(1+5)/2, (10+50)/2] = [3, 30]; class 0 = [2, 20];
# class 2 = [7, 70]. (The release's mask-then-view(F, -1) gives [5.5, 27.5] for class 1.)
STEP0_FEATURES = torch.tensor([[[[1.0, 2.0]], [[10.0, 20.0]]], [[[5.0, 7.0]], [[50.0, 70.0]]]])
STEP0_LABELS = torch.tensor([[[1, 0]], [[1, 2]]])


def paper_sdr(method: str = "sdr") -> SDR:
    """SDR with the paper's definitions (variant=paper), which the tests below compute by hand;
    tests/test_sdr_release.py pins the release variant."""
    cls = get_method(method)
    return cls(VOC_15_5, cls.resolve_params("voc-15-5", {"variant": "paper"}))


def sdr_after_step0(batches=None, method: str = "sdr") -> SDR:
    sdr = paper_sdr(method)
    batches = [(STEP0_FEATURES, STEP0_LABELS)] if batches is None else batches
    sdr.on_step_end(context_for(IdentityEncoder(), 0, batches=batches))
    return sdr


def test_class_means_are_true_per_channel_means():
    means, counts = class_means(STEP0_FEATURES, STEP0_LABELS, 4)
    assert torch.equal(means, torch.tensor([[2.0, 20.0], [3.0, 30.0], [7.0, 70.0], [0.0, 0.0]]))
    assert torch.equal(counts, torch.tensor([1.0, 2.0, 1.0, 0.0]))
    ignored = torch.tensor([[[1, 255]], [[1, 2]]])  # 255 goes nowhere
    assert torch.equal(class_means(STEP0_FEATURES, ignored, 3)[0][0], torch.zeros(2))


def test_sdr_step0_prototypes_from_one_pass_and_carried_in_state():
    for batches in (None, [(STEP0_FEATURES[:1], STEP0_LABELS[:1]),
                           (STEP0_FEATURES[1:], STEP0_LABELS[1:])]):
        sdr = sdr_after_step0(batches)
        prototypes, known = sdr.prototypes(torch.zeros(()))
        assert torch.equal(prototypes[:3], torch.tensor([[2.0, 20.0], [3.0, 30.0], [7.0, 70.0]]))
        assert known[:3].all() and not known[3:].any()
    clone = paper_sdr()
    clone.load_state_dict(sdr.state_dict())
    assert torch.equal(clone.prototypes(torch.zeros(()))[0], prototypes)
    assert torch.equal(sdr.state_dict()["counts"][:3], torch.tensor([1.0, 2.0, 1.0],
                                                                    dtype=torch.float64))


def incremental_inputs(features, labels, old_argmax) -> LossInputs:
    """Step-1 inputs of voc-15-5 at feature resolution: old logits one-hot on `old_argmax`."""
    old_logits = 5.0 * F.one_hot(old_argmax, 16).permute(0, 3, 1, 2).float()
    logits = torch.zeros(features.shape[0], 21, *labels.shape[-2:])
    return inputs(1, logits, labels, old_logits, features)


def test_sdr_running_prototypes_of_new_classes_summed_over_ranks_per_batch():
    sdr = sdr_after_step0()
    # Class 16 in both images: [1, 3] and [3, 5] in batch 1, [8, 2] in batch 2 -> [4, 10/3].
    # Background pixels ([9, 9]) must not move background's frozen prototype [2, 20].
    features = torch.tensor([[[[1.0, 9.0]], [[3.0, 9.0]]], [[[3.0, 9.0]], [[5.0, 9.0]]]])
    labels = torch.tensor([[[16, 0]], [[16, 0]]])
    sdr.loss(incremental_inputs(features, labels, torch.zeros_like(labels)))
    second = torch.tensor([[[[8.0]], [[2.0]]]])
    sdr.loss(incremental_inputs(second, torch.tensor([[[16]]]), torch.tensor([[[0]]])))
    prototypes, known = sdr.prototypes(torch.zeros((), dtype=torch.float64))
    assert torch.allclose(prototypes[16], torch.tensor([4.0, 10.0 / 3], dtype=torch.float64))
    assert torch.equal(prototypes[0], torch.tensor([2.0, 20.0], dtype=torch.float64))
    assert known[16] and not known[17]
    # a batch's class sums go through the global batch's sum (here: two ranks that saw the
    # same slice): this step's rows double, old rows stay, the running mean is unchanged
    doubled = paper_sdr()
    doubled.load_state_dict(sdr_after_step0().state_dict())
    twice = GlobalBatch(sum=lambda t: 2 * t)
    for step_inputs in (incremental_inputs(features, labels, torch.zeros_like(labels)),
                        incremental_inputs(second, torch.tensor([[[16]]]), torch.tensor([[[0]]]))):
        doubled.loss(dataclasses.replace(step_inputs, batch=twice))
    counts = doubled.state_dict()["counts"]
    assert counts[16].item() == 6 and counts[1].item() == 2
    assert torch.allclose(doubled.prototypes(torch.zeros(()))[0][16], torch.tensor([4.0, 10 / 3]))


def test_prototype_matching_by_hand():
    # Five pixels, all labelled background except the last (new class 16). Old argmax:
    # [1, 1, 0, 2, 1]. Class 1: pixels [2, 4], [4, 0] -> mean [3, 2]; p_1 = [1, 1]:
    #   ((3-1)^2 + (2-1)^2) / 2 = 2.5.  Class 2: [1, 3] vs p_2 = [0, 0]: (1 + 9) / 2 = 5.
    # The new-class pixel ([100, 100], predicted 1 by the old model) is not matched.
    # Mean over classes = 3.75.
    features = pixels([2.0, 4.0], [4.0, 0.0], [9.0, 9.0], [1.0, 3.0], [100.0, 100.0])
    labels = labels_row(0, 0, 0, 0, 16)
    old_logits = 5.0 * F.one_hot(labels_row(1, 1, 0, 2, 1), 16).permute(0, 3, 1, 2).float()
    prototypes = torch.zeros(21, 2)
    prototypes[1] = torch.tensor([1.0, 1.0])
    known = torch.zeros(21, dtype=torch.bool)
    known[[0, 1, 2]] = True
    targets = old_class_targets(labels, old_logits, 16, sequential=False)
    assert torch.equal(targets, labels_row(1, 1, 0, 2, 0))
    assert prototype_matching(features, targets, prototypes, known).item() == pytest.approx(3.75)
    sequential = old_class_targets(labels_row(1, 1, 0, 2, 16), old_logits, 16, sequential=True)
    assert torch.equal(sequential, targets)
    known[2] = False  # a class without prototype is skipped
    assert prototype_matching(features, targets, prototypes, known).item() == pytest.approx(2.5)
    assert prototype_matching(features, torch.zeros_like(targets), prototypes, known).item() == 0


def test_attraction_by_hand():
    # Background pixels [1, 1], [3, 1] vs p_0 = [0, 0]: (1+1)/2 = 1 and (9+1)/2 = 5 -> 3;
    # class 16 pixel [1, 3] vs p_16 = [1, 1]: (0 + 4)/2 = 2.   Mean over classes = 2.5
    features = pixels([1.0, 1.0], [3.0, 1.0], [1.0, 3.0])
    prototypes = torch.zeros(21, 2)
    prototypes[16] = torch.tensor([1.0, 1.0])
    value = attraction(features, labels_row(0, 0, 16), [0, 16], prototypes)
    assert value.item() == pytest.approx(2.5)


def test_repulsion_by_hand_with_gradient():
    # Class means: m_0 = mean([-1, 0], [1, 0]) = [0, 0], m_1 = [3, 4], m_2 = [0, 4].
    # Distances 5, 4, 3 -> mean over ordered pairs of 1/d = (1/5 + 1/4 + 1/3) / 3 = 47/180.
    features = pixels([-1.0, 0.0], [1.0, 0.0], [3.0, 4.0], [0.0, 4.0]).requires_grad_()
    labels = labels_row(0, 0, 1, 2)
    value = repulsion(features, labels, [0, 1, 2])
    assert value.item() == pytest.approx(47 / 180)
    value.backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    assert repulsion(features, labels, [1]).item() == 0
    same = pixels([1.0, 1.0], [1.0, 1.0])  # two classes at zero distance: the pair is dropped
    assert repulsion(same, labels_row(0, 1), [0, 1]).item() == 0


def test_sparsity_by_hand_and_its_direction():
    # Class 0 (max 2): [2, 0] -> [1, 0]: (e + 1) / 1; [1, 1] -> [1/2, 1/2]: 2 e^(1/2) / 1.
    # Class 16 (max 4): [4, 4] -> [1, 1]: 2e / 2 = e.  Label 255 ([100, 0]) is left out.
    # Mean = (e + 1 + 2 sqrt(e) + e) / 3 = 3.244668732772782
    features = pixels([2.0, 0.0], [1.0, 1.0], [4.0, 4.0], [100.0, 0.0])
    value = sparsity(features, labels_row(0, 0, 16, 255), 21)
    assert value.item() == pytest.approx(3.244668732772782)
    # Direction: minimised, the ratio prefers dense normalised codes: all channels at the class
    # max give e = 2.718..., a one-hot pixel gives (K - 1 + e) = 5.718... for K = 4.
    dense = sparsity(pixels([1.0, 1.0, 1.0, 1.0]), labels_row(0), 21)
    sparse = sparsity(pixels([1.0, 0.0, 0.0, 0.0]), labels_row(0), 21)
    assert dense.item() == pytest.approx(math.e) and sparse.item() == pytest.approx(3 + math.e)
    # A pixel whose features are all zero has no ratio and is left out (no 1e15 blow-up).
    zero = sparsity(pixels([0.0, 0.0], [2.0, 2.0]), labels_row(0, 0), 21)
    assert zero.item() == pytest.approx(math.e)


def crafted_step1(seed: int = 0) -> LossInputs:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, :2] = 16
    labels[1, 2:] = 17
    labels[1, 0, 0] = 255
    features = torch.rand(2, 3, 4, 4, generator=generator)  # non-negative, like post-ReLU
    return LossInputs.from_tensors(
        1, torch.randn(2, 21, 4, 4, generator=generator), labels, features=features,
        old_logits=torch.randn(2, 16, 4, 4, generator=generator), old_features=features)


def sdr_with_prototypes(method: str = "sdr") -> SDR:
    sdr = paper_sdr(method)
    sums = torch.rand(21, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts = torch.zeros(21, dtype=torch.float64)
    counts[:16] = 1.0
    sdr.load_state_dict({"sums": sums, "counts": counts})
    return sdr


def test_sdr_terms_are_its_parts():
    batch = crafted_step1()
    sdr = sdr_with_prototypes()
    terms = sdr.loss(batch)
    assert set(terms) == {"unbiased_ce", "unbiased_kd", "matching", "attraction", "repulsion",
                          "sparsity"}
    mib = get_method("mib")(VOC_15_5).loss(batch)  # MiB's kd weight is 10 here, SDR's 100
    assert torch.allclose(terms["unbiased_ce"], mib["unbiased_ce"])
    assert torch.allclose(terms["unbiased_kd"], 10 * mib["unbiased_kd"])
    prototypes, known = sdr.prototypes(batch.features)
    targets = old_class_targets(batch.labels, batch.old_logits, 16, sequential=False)
    expected = {
        "matching": 1e-2 * prototype_matching(batch.features, targets, prototypes, known),
        "attraction": 1e-3 * attraction(batch.features, batch.labels, [0, 16, 17], prototypes),
        "repulsion": 1e-3 * repulsion(batch.features, batch.labels, [0, 16, 17]),
        "sparsity": 1e-3 * sparsity(batch.features, batch.labels, 21),
    }
    for name, value in expected.items():
        assert torch.allclose(terms[name], value), name
        assert terms[name].item() > 0, name


def test_sdr_plus_mib_is_sdr_plus_mib_init():
    batch = crafted_step1()
    sdr_terms = sdr_with_prototypes("sdr").loss(batch)
    both_terms = sdr_with_prototypes("sdr+mib").loss(batch)
    assert set(both_terms) == set(sdr_terms)
    assert all(torch.equal(both_terms[k], sdr_terms[k]) for k in sdr_terms)
    assert get_method("sdr+mib").step0 == get_method("sdr").step0 == "ce"
    model = tiny_model()
    model.add_classifier(5)
    by_mib, by_both = copy.deepcopy(model), copy.deepcopy(model)
    get_method("mib")(VOC_15_5).on_step_start(context_for(by_mib, 1))
    get_method("sdr+mib")(VOC_15_5).on_step_start(context_for(by_both, 1))
    init_from_background(model.classifiers)
    for reference in (by_mib, model):
        assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(),
                                                     by_both.state_dict().values(), strict=True))


def test_sdr_step0_state_is_empty_until_its_prototypes_exist():
    # A shared step 0's epoch checkpoint may be resumed by another method: SDR must not leave
    # state there (the other methods refuse state they do not carry).
    sdr = get_method("sdr")(VOC_15_5)
    assert sdr.state_dict() == {}
    assert set(sdr_after_step0().state_dict()) == {"sums", "counts"}
    with pytest.raises(BenchError, match="no prototypes"):
        sdr.loss(crafted_step1())


# ----- every method through the real engine ---------------------------------------------------
FAST = [*TINY, "trainer.epochs=1", "trainer.epochs_incremental=1", "data.synth.n_train=16",
        "data.synth.n_val=8", "trainer.crop=24", "trainer.batch_size=4"]
PACKAGE_METHODS = [n for n in method_names() if get_method(n).__module__.startswith("methods.")]
TERMS = {
    "ft": {"ce"}, "lwf": {"ce", "kd"}, "ilt": {"ce", "kd", "feature_kd"},
    "lwf-mc": {"bce", "kd"}, "mib": {"unbiased_ce", "unbiased_kd"}, "joint": {"ce"},
    "sdr": {"unbiased_ce", "unbiased_kd", "matching", "attraction", "repulsion", "sparsity"},
    "plop": {"ce", "pod"}, "dkd": {"mbce", "kd", "dkd_pos", "dkd_neg", "ac"},
    "ewc": {"ce", "penalty"}, "pi": {"ce", "penalty"}, "rw": {"ce", "penalty"},
    "cil": {"ce", "kd"},
}
TERMS["sdr+mib"] = TERMS["sdr"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """One runs root and cache for all methods (so ce-recipe methods share step 0); one thread,
    which is much faster for these tiny models on busy cores."""
    from bench.spec import RunSpec

    root = tmp_path_factory.mktemp("methods-engine")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CSS_BENCH_CACHE", str(root / "cache"))

        def spec(method: str) -> RunSpec:
            return RunSpec.from_names("voc-15-5", method, overrides=[
                *FAST, f"runs_root={root / 'runs'}", "quiet=true"])

        yield spec
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", PACKAGE_METHODS)
def test_every_method_runs_an_incremental_step_end_to_end(engine, name):
    from bench.engine.runner import Runner

    runner = Runner(engine(name), log=lambda _: None)
    results = runner.run()
    expected_steps = 1 if name == "joint" else 2
    assert [r.step for r in results] == list(range(expected_steps))
    for result in results:
        scores = result.record["scores"]
        assert scores["all"] is not None and scores["old"] is not None
        numbers = [scores[k] for k in ("old", "new", "all", "hiou", "step_old", "step_new")]
        assert all(math.isfinite(v) for v in numbers if v is not None)
    last = results[-1].record
    assert last["loss_history"], "no loss history recorded"
    names = set().union(*last["loss_history"])
    assert TERMS.get(name, names) <= names
    assert all(math.isfinite(v) for epoch in last["loss_history"] for v in epoch.values())
    if name.startswith("sdr"):
        state = load_torch(runner.run_dir.step_dir(1) / "checkpoint.pt")["method"]
        assert (state["counts"][:16] > 0).any() and (state["counts"][16:] > 0).any()
