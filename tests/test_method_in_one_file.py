"""A new method is one file: this module defines one (distillation of a backbone stage of the
old model plus a penalty on the parameters' drift), registers it, and runs two steps through the
real engine, with no other file touched."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.engine.runner import Runner
from methods import IterationState, LossInputs, Method, StepContext, get_method, register
from methods.base import cross_entropy
from tests.engine_helpers import spec_of


class StageDistillationWithDrift(Method):
    name = "stage-drift-for-tests"
    description = "CE + MSE of backbone stage 2 to the old model's + L2 drift of parameters"
    defaults = {"stage_weight": 1.0, "drift_weight": 1e-2}
    uses_old_model = True

    def __init__(self, protocol, params=None) -> None:
        super().__init__(protocol, params)
        self.anchor: dict[str, Tensor] = {}
        self.gradient_norms: list[float] = []

    def on_step_start(self, context: StepContext) -> None:
        assert context.old_model is not None
        self.anchor = {name: p.detach().clone()
                       for name, p in context.old_model.named_parameters()}

    def loss(self, inputs: LossInputs) -> dict[str, Tensor]:
        assert inputs.old_output is not None
        stage, old_stage = inputs.output.stages[1], inputs.old_output.stages[1]
        drift = sum(((parameter - self.anchor[name]) ** 2).sum()
                    for name, parameter in inputs.parameters.items() if name in self.anchor)
        return {"ce": cross_entropy(inputs),
                "stage": self.params["stage_weight"] * inputs.batch.mean(
                    F.mse_loss(stage, old_stage, reduction="none")),
                "drift": self.params["drift_weight"] * drift}

    def after_backward(self, state: IterationState) -> None:
        grads = [p.grad for p in state.parameters.values() if p.grad is not None]
        self.gradient_norms.append(float(torch.stack([g.norm() for g in grads]).norm()))


def test_a_method_defined_in_one_file_runs_two_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    try:
        get_method(StageDistillationWithDrift.name)
    except Exception:
        register(StageDistillationWithDrift)
    runner = Runner(spec_of("voc-15-5", StageDistillationWithDrift.name, tmp_path / "runs"),
                    log=lambda _: None)
    results = runner.run()
    assert [r.step for r in results] == [0, 1]
    history = results[1].record["loss_history"]
    assert set(history[0]) == {"ce", "stage", "drift"}
    # the old model's stage differs from the new one's as soon as training moves the backbone,
    # and the drift penalty is zero only before the first update
    assert all(epoch["stage"] > 0 and epoch["drift"] > 0 for epoch in history)
    assert all(math.isfinite(v) for epoch in history for v in epoch.values())
    assert len(runner.method.gradient_norms) == runner.scenario.iterations(1, 8) * 2
    assert results[1].record["spec"]["identity"]["method"]["params"] == {
        "drift_weight": 1e-2, "stage_weight": 1.0}
