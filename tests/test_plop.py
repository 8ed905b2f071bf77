"""PLOP's terms against hand-computed values: Local POD on a 2-stage toy feature pyramid, the
release's entropy and its histogram median on a hand-made old-model output, pseudo-labels with
the classifier-adaptive factor, the cross-entropy's mean over every pixel. The arithmetic of
each expected value is in the comments; none is computed by the code under test."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.errors import BenchError
from methods import ModelOutput, StepContext, get_method
from methods.plop import (
    adaptive_cross_entropy,
    fold_new_channels,
    histogram_median,
    local_pod_embedding,
    pod_loss,
    pseudo_labels,
    release_entropy,
)
from protocols import get_protocol

VOC_15_5 = get_protocol("voc-15-5")
LN2, LN3 = math.log(2), math.log(3)


def test_local_pod_embedding_by_hand():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    # scale 1: means over the width per row [1.5, 3.5], over the height per column [2, 3];
    # scale 2 (1 x 1 regions): each pixel twice; scale 4: k = 2 // 4 = 0, empty regions
    expected = [1.5, 3.5, 2.0, 3.0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert local_pod_embedding(x).tolist() == [expected]


def test_local_pod_regions_use_the_width_for_both_sides():
    """Release quirk (train.py `_local_pod`: k = w // scale for rows too): on a 4 x 2 map the
    scale-1 region is rows 0..1 only."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]]])
    assert local_pod_embedding(x, scales=(1,)).tolist() == [[1.5, 3.5, 2.0, 3.0]]


def test_pod_on_a_two_stage_pyramid_by_hand():
    # stage 1 (2 x 2): old 0, new 1; squared 0 vs 1; 12 embedding entries (4 at scale 1, 8 at
    # scale 2, none at scale 4) each differing by 1: distance sqrt(12).
    # stage 2 (4 x 4): old 2, new 1; squared 4 vs 1; 8 + 16 + 32 = 56 entries differing by 3:
    # distance 3 sqrt(56). Image 2 has equal maps (distance 0): the mean over images halves.
    old = [torch.zeros(2, 1, 2, 2), torch.full((2, 1, 4, 4), 2.0)]
    new = [torch.ones(2, 1, 2, 2), torch.ones(2, 1, 4, 4)]
    new[0][1], new[1][1] = 0.0, 2.0
    factors, schedule = (0.01, 0.5), 2.0
    expected = (0.01 * 2 * math.sqrt(12) / 2 + 0.5 * 2 * 3 * math.sqrt(56) / 2) / 2
    assert pod_loss(old, new, factors, schedule).item() == pytest.approx(expected, rel=1e-6)


def test_new_channels_are_summed_into_background_for_the_logits_pod():
    logits = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    assert fold_new_channels(logits, 2).flatten().tolist() == [8.0, 2.0]  # 1 + 3 + 4, 2


def test_release_entropy_is_a_mean_over_channels():
    """Release quirk (train.py `entropy`): a uniform 2-class pixel scores 1/2, not 1."""
    uniform = torch.full((1, 2, 1, 1), 0.5)
    assert release_entropy(uniform).item() == pytest.approx(0.5, abs=1e-6)


def test_histogram_median_release_and_paper():
    counts = [2.0, 2.0, 2.0] + [0.0] * 97  # total 6, half 3
    # release: running sum of bin INDICES 0, 0, 1: breaks at bin 2 (1 <= 3 <= 1 + 2);
    # 0.02 + (3 - 1) / 2 * 0.01 = 0.03
    assert histogram_median(counts, "release") == pytest.approx(0.03)
    # paper: running sum of counts 0, 2: breaks at bin 1; 0.01 + (3 - 2) / 2 * 0.01 = 0.015
    assert histogram_median(counts, "paper") == pytest.approx(0.015)


class TwoPlusOne:
    """A protocol stand-in whose step 1 has 2 old channels and 1 new one."""

    def old_classes(self, step: int) -> list[int]:
        return [0, 1]

    def channels_of(self, step: int) -> range:
        return range(2, 3)


class OldLogits(nn.Module):
    def forward(self, images: torch.Tensor) -> ModelOutput:
        return ModelOutput(images)


def hand_made_pass(variant: str) -> torch.Tensor:
    """Old model with 2 channels, 3 current channels (max entropy ln 3); five pixels:
    [0, 0] x2 labelled 0 (class 0; entropy 1/2 / ln 3 = 0.4551, bin 45), [0, 2] labelled 0
    (class 1; q = sigmoid(2) = 0.880797, entropy -(q ln q + (1 - q) ln(1 - q)) / 2 / ln 2
    = 0.263535, / ln 3 = 0.239881, bin 23), [0, 2] labelled 255 and [5, 0] labelled 2 (left
    out: only pixels labelled 0 count)."""
    logits = torch.tensor([[0.0, 0, 0, 0, 5], [0, 0, 2, 2, 0]]).view(1, 2, 1, 5)
    labels = torch.tensor([[[0, 0, 0, 255, 2]]])
    plop = get_method("plop")
    method = plop(VOC_15_5, {**plop.defaults, "variant": variant})
    context = StepContext(TwoPlusOne(), 1, nn.Identity(), OldLogits(),  # type: ignore[arg-type]
                          torch.device("cpu"), lambda: [(logits, labels)])
    method.compute_thresholds(context)
    state = method.state_dict()
    assert state["max_entropy"] == pytest.approx(LN3)
    return state["thresholds"]


def test_entropy_thresholds_on_a_hand_made_old_output():
    paper = hand_made_pass("paper")
    # class 0: 2 pixels in bin 45, half 1: 0.45 + 1 / 2 * 0.01 = 0.455;
    # class 1: 1 pixel in bin 23, half 0.5: 0.23 + 0.5 / 1 * 0.01 = 0.235; others: the floor
    assert paper[:2].tolist() == pytest.approx([0.455, 0.235])
    assert paper[2:].tolist() == pytest.approx([0.001])
    release = hand_made_pass("release")
    # class 0, release scan: index sums 0, 0, 1 -> breaks at bin 2 (1 <= 1 <= 1 + 0) whose
    # count is 0: 0 / 0 = NaN, and max(NaN, 0.001) stays NaN (no pseudo-label of class 0)
    assert math.isnan(release[0].item())
    # class 1: half 0.5 never fits; after the scan (0.5 - 4950) / 0 = -inf -> the floor
    assert release[1].item() == pytest.approx(0.001)


def test_pseudo_labels_and_classifier_adaptive_factor_by_hand():
    # old channels 2, 3 current (max entropy ln 3); pixels: [0, 0] (class 0, 0.4551), [0, 2]
    # (class 1, 0.2399; see hand_made_pass), [0, 2] labelled 2 (new), [0, 0] labelled 255
    old = torch.tensor([[0.0, 0, 0, 0], [0, 2, 2, 0]]).view(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 2, 255]]])
    thresholds = torch.tensor([0.3, 0.3, 0.001])
    targets, factor = pseudo_labels(labels, old, thresholds, LN3)
    # pixel 0: 0.455 >= 0.3 -> 255; pixel 1: 0.2399 < 0.3 -> class 1; new and 255 unchanged
    assert targets.tolist() == [[[255, 1, 2, 255]]]
    assert factor.tolist() == [0.5]  # 1 kept of 2 background pixels
    # current logits all 0 over 3 channels: CE ln 3 at pixels 1 and 2, times 0.5, over ALL
    # 4 pixels (ignored ones in the denominator, train.py `loss.mean()`): ln 3 / 4
    ce = adaptive_cross_entropy(torch.zeros(1, 3, 1, 4), targets, factor)
    assert ce.item() == pytest.approx(LN3 / 4)


def test_an_image_without_background_gets_factor_one():
    old = torch.zeros(1, 2, 1, 2)
    _, factor = pseudo_labels(torch.tensor([[[2, 255]]]), old, torch.ones(3), LN3)
    assert factor.tolist() == [1.0]


def test_thresholds_are_carried_in_the_state_and_required():
    plop = get_method("plop")(VOC_15_5)
    assert plop.state_dict() == {}
    with pytest.raises(BenchError, match="thresholds"):
        plop.loss(_inputs_without_thresholds())
    state = {"thresholds": torch.tensor([0.5, 0.25]), "max_entropy": LN3}
    plop.load_state_dict(state)
    restored = get_method("plop")(VOC_15_5)
    restored.load_state_dict(plop.state_dict())
    assert restored.state_dict()["thresholds"].tolist() == [0.5, 0.25]
    assert restored.max_entropy == LN3


def _inputs_without_thresholds():
    from methods import LossInputs

    return LossInputs.from_tensors(1, torch.zeros(1, 21, 2, 2), torch.zeros(1, 2, 2).long(),
                                   features=torch.zeros(1, 2, 2, 2),
                                   old_logits=torch.zeros(1, 16, 2, 2))


def test_unknown_variant_is_one_clear_error():
    plop = get_method("plop")
    with pytest.raises(BenchError, match=r"method.variant must be one of release \| paper"):
        plop.resolve_params("voc-15-5", {"variant": "other"})


def test_ade_100_50_uses_its_script_factors():
    params = get_method("plop").resolve_params("ade-100-50", {})
    assert (params["pod_factor"], params["logits_pod_factor"]) == (0.001, 0.00001)
    assert get_method("plop").resolve_params("voc-15-1", {})["pod_factor"] == 0.01


def test_step_start_initialises_like_mib_and_computes_thresholds_from_one_pass():
    from bench.engine.model import DeepLabV3
    from methods.mib import init_from_background

    torch.manual_seed(0)
    old = DeepLabV3("resnet18", [16], base_channels=4, aspp_channels=8).eval()
    model = DeepLabV3("resnet18", [16, 5], base_channels=4, aspp_channels=8)
    model.load_state_dict(old.state_dict(), strict=False)
    expected = DeepLabV3("resnet18", [16, 5], base_channels=4, aspp_channels=8)
    expected.load_state_dict(model.state_dict())
    init_from_background(expected.classifiers)
    images = torch.rand(2, 3, 16, 16)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    passes = []

    def batches():
        passes.append(1)
        return [(images, labels)]

    plop = get_method("plop")(VOC_15_5)
    plop.on_step_start(StepContext(VOC_15_5, 1, model, old, torch.device("cpu"), batches))
    assert passes == [1]
    for got, want in zip(model.classifiers.parameters(), expected.classifiers.parameters(),
                         strict=True):
        assert torch.equal(got, want)
    state = plop.state_dict()
    assert state["thresholds"].shape == (21,) and state["max_entropy"] == pytest.approx(
        math.log(21))


@pytest.mark.parametrize(("method", "values"), [
    ("plop", {"batch_size": 24, "epochs": (30, 30), "lr": (0.01, 0.001), "precision": "bf16"}),
    # DKD: the 10x (ASPP/classifier) rates of the release's 1e-3 / 1e-4
    ("dkd", {"batch_size": 32, "epochs": (60, 60), "lr": (1e-2, 1e-3), "precision": "bf16"}),
])
def test_recipes_are_selectable_by_name(tmp_path, method, values):
    from bench.spec import RunSpec

    spec = RunSpec.from_names("voc-15-5", method, overrides=[
        f"trainer={method}", f"runs_root={tmp_path}", "quiet=true"])
    assert spec.recipe_name == method
    step0, step1 = spec.recipes
    assert step0.batch_size == values["batch_size"] == step1.batch_size
    assert (step0.epochs, step1.epochs) == values["epochs"]
    assert (step0.lr, step1.lr) == pytest.approx(values["lr"])
    assert step0.precision == values["precision"]
