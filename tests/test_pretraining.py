"""model.pretrained=synth: the embedded data's stand-in for ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.engine import pretraining
from bench.engine.runner import Runner
from bench.errors import BenchError
from bench.spec import RunSpec
from tests.engine_helpers import TINY

SYNTH_TINY = [o for o in TINY if o != "model.pretrained=none"]


def spec_with(tmp_path: Path, *overrides: str) -> RunSpec:
    return RunSpec.from_names("voc-15-1", "ft", 0, [*SYNTH_TINY, *overrides,
                                                    f"runs_root={tmp_path / 'runs'}",
                                                    "quiet=true"])


def test_the_pretraining_is_joint_training_on_other_images(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    spec = spec_with(tmp_path, "data.synth.seed=3")
    assert spec.model.pretrained == "synth"
    inner = pretraining.pretraining_spec(spec)
    assert inner.method == "joint" and inner.seed == 0 and inner.model.pretrained == "none"
    assert dict(inner.data.synth)["seed"] == 3 + pretraining.SEED_OFFSET
    assert {k: v for k, v in inner.data.synth if k != "seed"} == \
        {k: v for k, v in spec.data.synth if k != "seed"}
    assert inner.data.digest != spec.data.digest  # other images
    assert (inner.model.backbone, inner.model.base_channels) == ("resnet18", 8)
    (recipe,) = inner.recipes
    assert (recipe.epochs, recipe.lr) == (pretraining.EPOCHS, pretraining.LR)
    assert (recipe.batch_size, recipe.crop) == (spec.recipes[0].batch_size, spec.recipes[0].crop)
    assert Path(inner.execution.runs_root) == tmp_path / "cache" / "pretraining"
    # another step-0 recipe of the benchmark does not change the pretraining
    assert pretraining.pretraining_spec(spec_with(tmp_path, "data.synth.seed=3",
                                                  "trainer.lr=0.5")).run_hash == inner.run_hash


def test_step0_starts_from_the_pretrained_backbone_trained_once(tmp_path: Path,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pretraining, "EPOCHS", 1)
    runner = Runner(spec_with(tmp_path), log=lambda _: None)
    first, _ = runner.models_for(0)  # pretrains, then seeds and builds
    pretrained_run = Runner(pretraining.pretraining_spec(runner.spec), log=lambda _: None)
    assert pretrained_run.run_dir.is_done(0)
    done = pretrained_run.run_dir.step_dir(0) / "done"
    stamp = done.stat().st_mtime_ns
    expected = pretraining.backbone_of(pretrained_run.checkpoint(0)["model"])
    for name, value in first.backbone.state_dict().items():
        assert torch.equal(value, expected[name]), name
    second, _ = runner.models_for(0)  # reads it back: no second pretraining
    assert done.stat().st_mtime_ns == stamp
    # pretraining in this process or not, the rest of the model is initialised the same
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    scratch, _ = Runner(spec_with(tmp_path, "model.pretrained=none"),
                        log=lambda _: None).models_for(0)
    assert not torch.equal(scratch.backbone.conv1.weight, first.backbone.conv1.weight)


def test_synth_pretraining_on_real_data_is_one_line_naming_the_fix(crafted_voc: Path) -> None:
    with pytest.raises(BenchError) as raised:
        RunSpec.from_names("voc-15-1", "ft", 0, ["model=small", "model.pretrained=synth"],
                           data_root=crafted_voc)
    message = str(raised.value)
    assert "model.pretrained=synth" in message and "model.pretrained=auto" in message
    assert "\n" not in message
