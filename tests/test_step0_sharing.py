"""Step 0 is shared between methods with the same step-0 recipe (in-process, real training)."""

from __future__ import annotations

import pytest

from bench.engine.runner import Runner
from methods import Step0Recipe, get_method, register
from methods.ft import FineTuning
from methods.step0 import register_step0, step0_recipe_names
from tests.engine_helpers import spec_of


class CopyOfFineTuning(FineTuning):
    name = "ft-copy-for-tests"


class NotCrossEntropy(Step0Recipe):
    name = "not-ce-for-tests"


class OtherRecipe(FineTuning):
    name = "other-step0-for-tests"
    step0 = "not-ce-for-tests"


if NotCrossEntropy.name not in step0_recipe_names():
    register_step0(NotCrossEntropy)
for method in (CopyOfFineTuning, OtherRecipe):
    try:
        get_method(method.name)
    except Exception:
        register(method)


def spec(tmp_path, method: str, protocol: str = "voc-15-5"):
    return spec_of(protocol, method, tmp_path / "runs")


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))


def test_second_method_reuses_step0_and_says_so(tmp_path, private_cache):
    messages: list[str] = []
    first = Runner(spec(tmp_path, "ft"), log=messages.append).run(steps=[0])
    assert first[0].trained and not first[0].reused_step0
    second = Runner(spec(tmp_path, "ft-copy-for-tests"), log=messages.append).run(steps=[0])
    assert second[0].reused_step0
    assert any("reusing the shared step-0 model" in m for m in messages)
    assert second[0].record["scores"] == first[0].record["scores"]
    assert second[0].record["step0_cache"]["key"] == first[0].record["step0_cache"]["key"]
    assert second[0].record["step0_cache"]["path"].startswith("_step0/")  # relative


def test_protocols_with_the_same_first_step_share_it(tmp_path, private_cache):
    first = Runner(spec(tmp_path, "ft", "voc-15-5"), log=lambda _: None).run(steps=[0])
    second = Runner(spec(tmp_path, "ft", "voc-15-1"), log=lambda _: None).run(steps=[0])
    assert second[0].reused_step0
    assert second[0].record["confusion_matrix"] == first[0].record["confusion_matrix"]


def test_other_step0_recipe_or_mode_trains_its_own(tmp_path, private_cache):
    Runner(spec(tmp_path, "ft"), log=lambda _: None).run(steps=[0])
    other = Runner(spec(tmp_path, "other-step0-for-tests"), log=lambda _: None).run(steps=[0])
    assert other[0].trained and not other[0].reused_step0
    disjoint = Runner(spec(tmp_path, "ft", "voc-15-5-disjoint"), log=lambda _: None).run([0])
    assert disjoint[0].trained
