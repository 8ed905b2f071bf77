"""Tests for bench.engine.model: shapes, per-step classifiers, backbone weights, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models

from bench.engine.model import (
    DeepLabV3,
    ModelConfig,
    build_model,
    cached_weight_paths,
    set_output_stride,
)
from bench.errors import BenchError

SMALL = ModelConfig(backbone="resnet18", aspp_channels=32)


def small_model(classes: tuple[int, ...] = (3, 2), **overrides: object) -> DeepLabV3:
    config = ModelConfig(**{**SMALL.__dict__, **overrides})
    return build_model(config, classes, log=lambda _: None)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_small_model_shapes(output_stride: int) -> None:
    model = small_model(output_stride=output_stride)
    out = model(torch.randn(2, 3, 64, 64))
    side = 64 // output_stride
    assert out.encoder.shape == (2, 512, side, side)
    assert out.decoder.shape == (2, 32, side, side)
    assert out.logits_lowres.shape == (2, 5, side, side)
    assert out.logits.shape == (2, 5, 64, 64)
    assert out.stages[-1] is out.encoder and len(out.stages) == 4
    assert model.num_classes == 5 and model.classes_per_step == (3, 2)
    expected = model.upsample(out.logits_lowres, (64, 64))
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=0)


def test_resnet101_shapes_odd_input() -> None:
    model = build_model(ModelConfig(), [16, 5], log=lambda _: None).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 65, 65))
    side = math.ceil(65 / 16)
    assert out.encoder.shape == (2, 2048, side, side)
    assert out.decoder.shape == (2, 256, side, side)
    assert out.logits_lowres.shape == (2, 21, side, side)
    assert out.logits.shape == (2, 21, 65, 65)


@pytest.mark.parametrize(
    ("output_stride", "replace"), [(16, [False, False, True]), (8, [False, True, True])]
)
def test_set_output_stride_matches_torchvision(output_stride: int, replace: list[bool]) -> None:
    ours = models.resnet50()
    set_output_stride(ours, output_stride)
    reference = models.resnet50(replace_stride_with_dilation=replace)
    convs = [(name, m) for name, m in ours.named_modules() if isinstance(m, nn.Conv2d)]
    ref_convs = dict(reference.named_modules())
    for name, conv in convs:
        ref = ref_convs[name]
        assert (conv.stride, conv.dilation, conv.padding) == (
            ref.stride,
            ref.dilation,
            ref.padding,
        ), name


def test_add_classifier_keeps_old_logits_bit_identical() -> None:
    torch.manual_seed(0)
    model = small_model().eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(images).logits_lowres
        conv = model.add_classifier(4)
        after = model(images).logits_lowres
    assert conv is model.classifiers[-1] and conv.out_channels == 4
    assert model.num_classes == 9 and after.shape[1] == 9
    assert torch.equal(after[:, :5], before)


def test_frozen_old_classifier_untouched_by_optimizer_step() -> None:
    torch.manual_seed(0)
    model = small_model()
    new = model.add_classifier(2)
    old_weights = [c.weight.detach().clone() for c in model.classifiers[:-1]]
    new_weight = new.weight.detach().clone()
    model.classifiers[:-1].requires_grad_(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    out = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, model.num_classes, (2, 64, 64))
    nn.functional.cross_entropy(out.logits, target).backward()
    optimizer.step()
    for conv, weight in zip(model.classifiers[:-1], old_weights, strict=True):
        assert torch.equal(conv.weight, weight)
    assert not torch.equal(new.weight, new_weight)


def test_load_torchvision_state_dict_from_path(tmp_path: Path) -> None:
    torch.manual_seed(123)
    reference = models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.* which must be ignored
    logs: list[str] = []
    model = build_model(
        ModelConfig(backbone="resnet18", aspp_channels=32, pretrained=str(path)), [3], logs.append
    )
    assert torch.equal(model.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert torch.equal(model.backbone.bn1.running_var, reference.bn1.running_var)
    assert any(str(path) in line for line in logs)


def test_wrong_architecture_weights_raise_bench_error(tmp_path: Path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(models.resnet34().state_dict(), path)
    with pytest.raises(BenchError, match="r34.pth"):
        small_model(pretrained=str(path))


def test_missing_pretrained_path_raises_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "resnet18.pth"
    with pytest.raises(BenchError, match="resnet18.pth") as info:
        small_model(pretrained=str(missing))
    assert str(missing) in str(info.value)


def test_auto_without_cache_stops_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(BenchError) as info:
        build_model(ModelConfig(backbone="resnet18", aspp_channels=32, pretrained="auto"), [3])
    message = str(info.value)
    assert "no ImageNet weights" in message and "model.pretrained=PATH" in message
    assert "model.pretrained=none" in message
    assert str(tmp_path / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_auto_loads_cached_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    paths = cached_weight_paths("resnet101")
    assert [p.name for p in paths] == ["resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"]
    reference = models.resnet18()
    cached = cached_weight_paths("resnet18")[0]
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    model = small_model(pretrained="auto")
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)


def test_same_seed_gives_identical_parameters() -> None:
    states = []
    for _ in range(2):
        torch.manual_seed(7)
        states.append(small_model().state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [({"backbone": "vgg16"}, "vgg16"), ({"output_stride": 4}, "output_stride")],
)
def test_bad_config_raises_bench_error(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(BenchError, match=needle):
        small_model(**overrides)


def test_narrow_backbone_shapes_and_no_pretrained(tmp_path: Path) -> None:
    model = small_model(base_channels=16)
    out = model(torch.randn(2, 3, 64, 64))
    assert model.encoder_channels == 128 and out.encoder.shape == (2, 128, 4, 4)
    assert out.stages[0].shape[1] == 16 and out.logits.shape == (2, 5, 64, 64)
    assert sum(p.numel() for p in model.backbone.parameters()) < 1_000_000
    path = tmp_path / "r18.pth"
    torch.save(models.resnet18().state_dict(), path)
    with pytest.raises(BenchError, match="base_channels"):
        small_model(base_channels=16, pretrained=str(path))
    config = ModelConfig(backbone="resnet18", base_channels=16, pretrained="auto")
    with pytest.raises(BenchError, match="narrow backbone"):
        build_model(config, [3])
