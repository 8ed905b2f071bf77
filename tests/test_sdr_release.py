"""SDR's `variant=release` (LTTM/SDR's last commit) against `variant=paper`, on hand-made tensors:
every reproduced quirk gives the hand-computed release value, differs from the paper's value
where the quirk applies and agrees where it does not."""

from __future__ import annotations

import math

import pytest
import torch

from methods import get_method
from methods.base import LossInputs, ModelOutput
from methods.sdr import (
    ReleasePrototypes,
    attraction,
    prototype_matching,
    release_attraction,
    release_class_rows,
    release_matching,
    release_pixel_rows,
    release_repulsion,
    release_sparsity,
    release_updated_classes,
    repulsion,
    sparsity,
)
from protocols import get_protocol

E = math.e


def two_images() -> tuple[torch.Tensor, torch.Tensor]:
    """B=2, F=2, 1x2 pixels; class 1 at pixel 0 of both images, 0 at pixel 1 of both.
    image 0: channel 0 = (1, 5), channel 1 = (2, 6); image 1: channel 0 = (3, 7), ch 1 = (4, 8)."""
    features = torch.tensor([[[[1.0, 5.0]], [[2.0, 6.0]]], [[[3.0, 7.0]], [[4.0, 8.0]]]])
    labels = torch.tensor([[[1, 0]], [[1, 0]]])
    return features, labels


def test_the_release_gather_mixes_channels_across_images() -> None:
    features, labels = two_images()
    # flat order: image 0 ch 0, ch 1, image 1 ch 0, ch 1 = 1, 2, 3, 4 -> rows (1, 2), (3, 4)
    assert release_class_rows(features, labels, 1).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    # true per-channel values of class 1: channel 0 = (1, 3), channel 1 = (2, 4)
    single = features[:1], labels[:1]
    assert release_class_rows(*single, 1).tolist() == [[1.0], [2.0]]  # one image: exact


def test_the_release_matching_mixes_channels_within_an_image() -> None:
    # one image, F = 2, class 1 at both pixels: flat (1, 5, 2, 6) -> .view(-1, 2) rows (1, 5),
    # (2, 6): mean (1.5, 5.5); the true class mean is (3, 4)
    features = torch.tensor([[[[1.0, 5.0]], [[2.0, 6.0]]]])
    targets = torch.tensor([[[1, 1]]])
    assert release_pixel_rows(features, targets, 1).mean(dim=0).tolist() == [1.5, 5.5]
    prototypes = torch.zeros(3, 2)
    prototypes[1] = torch.tensor([1.0, 1.0])
    known = torch.tensor([True, True, False])
    # release: ((1.5 - 1)^2 + (5.5 - 1)^2) / 2 = 10.25; paper: ((3 - 1)^2 + (4 - 1)^2) / 2 = 6.5
    assert release_matching(features, targets, prototypes).item() == pytest.approx(10.25)
    assert prototype_matching(features, targets, prototypes, known).item() == pytest.approx(6.5)
    # one pixel: both gathers are the pixel's features, the two agree
    one = torch.tensor([[[1, 0]]])
    assert release_matching(features, one, prototypes).item() == pytest.approx(
        prototype_matching(features, one, prototypes, known).item())
    # class 2 has no prototype: the paper skips it, the release matches the zero vector
    two = torch.tensor([[[2, 0]]])
    assert prototype_matching(features, two, prototypes, known).item() == 0.0
    assert release_matching(features, two, prototypes).item() == pytest.approx((1 + 4) / 2)


def test_the_release_attraction_divides_inside_its_loop() -> None:
    # one image, classes 0 (pixel 1) and 1 (pixel 0), zero prototypes:
    # L0 = (5^2 + 6^2) / 2 = 30.5, L1 = (1 + 4) / 2 = 2.5
    features = torch.tensor([[[[1.0, 5.0]], [[2.0, 6.0]]]])
    labels = torch.tensor([[[1, 0]]])
    prototypes = torch.zeros(2, 2)
    assert release_attraction(features, labels, prototypes).item() == pytest.approx(
        (30.5 / 2 + 2.5) / 2)
    assert attraction(features, labels, [0, 1], prototypes).item() == pytest.approx(
        (30.5 + 2.5) / 2)
    # one class in one image: no repeated division, no mixing: the two agree
    only = torch.tensor([[[1, 1]]])
    assert release_attraction(features, only, prototypes).item() == pytest.approx(
        attraction(features, only, [1], prototypes).item())
    # 255 is not attracted
    void = torch.tensor([[[1, 255]]])
    assert release_attraction(features, void, prototypes).item() == pytest.approx(2.5)


def test_the_release_repulsion_uses_the_mixed_class_means() -> None:
    features, labels = two_images()
    # release means: class 0 rows (5, 6), (7, 8) -> (5.5, 7.5); class 1 -> (1.5, 3.5);
    # distance sqrt(16 + 16); true means: class 0 (6, 7), class 1 (2, 3): the same distance
    assert release_repulsion(features, labels).item() == pytest.approx(1 / math.sqrt(32))
    assert repulsion(features, labels, [0, 1]).item() == pytest.approx(1 / math.sqrt(32))
    # a pixel layout where the mixing moves the means apart differently
    labels = torch.tensor([[[1, 0]], [[0, 1]]])
    # class 1: image 0 pixel 0 (1, 2), image 1 pixel 1 (7, 8): flat 1, 2, 7, 8 -> rows (1, 2),
    # (7, 8): means (1.5, 7.5); true (4, 5). class 0: flat 5, 6, 3, 4 -> (5.5, 3.5); true (4, 5)
    assert release_repulsion(features, labels).item() == pytest.approx(1 / math.sqrt(32))
    assert repulsion(features, labels, [0, 1]).item() == 0.0  # equal true means: dropped


def test_the_release_sparsity_normalises_void_and_averages_every_pixel() -> None:
    # pixel A: class 1, features (1, 0); pixel B: 255, features (0.5, 0.5)
    features = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[1, 255]]])
    # release: g_A = (1, 0): e + 1; g_B = (1, 1) (255 normalised by its own max): 2e / 2 = e
    assert release_sparsity(features, labels).item() == pytest.approx((E + 1 + E) / 2)
    assert sparsity(features, labels, 2).item() == pytest.approx(E + 1)  # 255 left out
    # a pixel whose normalised features are zero: the release's eps makes it F * 1e15
    dead = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    assert release_sparsity(dead, torch.tensor([[[1, 1]]])).item() == pytest.approx(
        (E + 1 + 2e15) / 2, rel=1e-6)
    assert sparsity(dead, torch.tensor([[[1, 1]]]), 2).item() == pytest.approx(E + 1)
    # a batch of background only: 0 in the release, a ratio like any other in the paper's
    background = torch.zeros(1, 1, 2, dtype=torch.long)
    assert release_sparsity(features, background).item() == 0.0
    assert sparsity(features, background, 2).item() > E
    # one labelled class, no void, no dead pixel: the two agree
    assert release_sparsity(features, torch.tensor([[[1, 1]]])).item() == pytest.approx(
        sparsity(features, torch.tensor([[[1, 1]]]), 2).item())


def test_which_prototypes_a_release_batch_updates() -> None:
    labels = torch.tensor([[[0, 1, 2, 255]]])
    assert release_updated_classes(labels, "overlap", 0) == [1, 2]  # background never
    assert release_updated_classes(labels, "disjoint", 0) == [0, 1, 2]
    assert release_updated_classes(labels, "disjoint", 1) == [1, 2]
    assert release_updated_classes(labels, "partition", 0) == [0, 1, 2]  # run as disjoint
    assert release_updated_classes(labels, "sequential", 3) == [0, 1, 2]
    # a batch without background: the release drops its smallest class instead
    assert release_updated_classes(torch.tensor([[[1, 2]]]), "overlap", 1) == [2]


def sdr(variant: str, protocol: str = "voc-15-5"):
    cls = get_method("sdr")
    return cls(get_protocol(protocol),
               cls.resolve_params(protocol.split("-", 1)[1], {"variant": variant}))


def test_step0_prototypes_are_accumulated_while_step0_trains() -> None:
    """The recorder sees each step-0 training batch with the features of that moment; the
    release SDR takes its prototypes from that record (the paper variant makes its own pass)."""
    protocol = get_protocol("voc-15-5-disjoint")
    recorder = ReleasePrototypes(protocol)
    first = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])
    second = torch.tensor([[[[5.0, 7.0]], [[6.0, 8.0]]]])
    labels = torch.tensor([[[0, 1]]])
    for features in (first, second):
        recorder.observe(LossInputs(0, ModelOutput(torch.zeros(1, 16, 1, 2), features), labels))
    record = recorder.state_dict()
    assert record["counts"][:3].tolist() == [2.0, 2.0, 0.0]
    assert record["sums"][0].tolist() == [1.0 + 5.0, 2.0 + 6.0]  # disjoint step 0: background
    assert record["sums"][1].tolist() == [3.0 + 7.0, 4.0 + 8.0]
    overlap = ReleasePrototypes(get_protocol("voc-15-5"))
    overlap.observe(LossInputs(0, ModelOutput(torch.zeros(1, 16, 1, 2), first), labels))
    assert overlap.state_dict()["counts"][:2].tolist() == [0.0, 1.0]  # no background


def step1_inputs(labels: torch.Tensor, features: torch.Tensor) -> LossInputs:
    logits = torch.zeros(1, 21, *labels.shape[-2:])
    old_logits = torch.zeros(1, 16, *labels.shape[-2:])
    old_logits[:, 0] = 1.0  # the old model predicts background everywhere
    return LossInputs.from_tensors(1, logits, labels, features=features, old_logits=old_logits)


@pytest.mark.parametrize("variant", ["release", "paper"])
def test_sequential_prototypes_of_background_and_old_classes(variant) -> None:
    """Sequential step 1: the release updates background's and old class 3's prototypes too and
    attracts them; the paper variant updates only the new class 16's."""
    method = sdr(variant, "voc-15-5-sequential")
    sums = torch.ones(21, 2, dtype=torch.float64)
    counts = torch.zeros(21, dtype=torch.float64)
    counts[:16] = 1.0
    method.load_state_dict({"sums": sums.clone(), "counts": counts.clone()})
    labels = torch.tensor([[[0, 3, 16]]])
    features = torch.tensor([[[[2.0, 4.0, 6.0]], [[3.0, 5.0, 7.0]]]])
    method.loss(step1_inputs(labels, features))
    changed = (method.state_dict()["counts"] != counts).nonzero().flatten().tolist()
    assert changed == ([0, 3, 16] if variant == "release" else [16])
    if variant == "release":
        assert method.state_dict()["sums"][3].tolist() == [1.0 + 4.0, 1.0 + 5.0]


def test_the_variants_agree_where_no_quirk_applies_and_differ_where_one_does() -> None:
    """Overlap step 1, one image, one new class and background, features > 0, no void:
    matching (no old class predicted), repulsion and sparsity agree; the attraction differs:
    release ((0.5 / 2) + 0) / 2 (divided inside its loop), paper (0.5 + 0) / 2, with
    L_0 = ((1 - 2)^2 + (2 - 2)^2) / 2 and class 16's running prototype its only pixel."""
    release, paper = sdr("release"), sdr("paper")
    sums = torch.zeros((21, 2), dtype=torch.float64)
    sums[:16] = 2.0
    counts = torch.zeros(21, dtype=torch.float64)
    counts[:16] = 1.0
    state = {"sums": sums, "counts": counts}
    release.load_state_dict({k: v.clone() for k, v in state.items()})
    paper.load_state_dict({k: v.clone() for k, v in state.items()})
    labels = torch.tensor([[[0, 16]]])
    features = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])
    got = {name: m.loss(step1_inputs(labels, features))
           for name, m in (("release", release), ("paper", paper))}
    for term in ("unbiased_ce", "unbiased_kd", "matching", "repulsion", "sparsity"):
        assert got["release"][term].item() == pytest.approx(got["paper"][term].item()), term
    assert got["release"]["attraction"].item() == pytest.approx(1e-3 * 0.125)
    assert got["paper"]["attraction"].item() == pytest.approx(1e-3 * 0.25)
