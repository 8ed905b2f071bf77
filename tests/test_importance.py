"""EWC, PI, RW (parameter-importance penalties, MiB release) and CIL (Klingner et al. 2020):
hand-computed importance of a tiny model over two hand-made batches, the penalty after one step,
the task gradient the importance reads, and the state carried through an epoch checkpoint."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import methods.rw
from bench.engine.hooks import EpochCheckpoint
from bench.engine.runner import Runner
from bench.spec import RunSpec
from bench.store.files import load_torch
from methods import IterationState, LossInputs, ModelOutput, StepContext, get_method
from methods.base import SINGLE, parameter_view
from methods.cil import cil_terms
from methods.importance import min_max
from methods.step0 import recipe_of, step0_learner
from protocols import get_protocol
from tests.engine_helpers import records, spec_of

VOC_15_5 = get_protocol("voc-15-5")
LR = 0.25


class Tiny(nn.Module):
    """One parameter vector w; the "batches" below are least-squares rows x . w ~ y."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))


# two hand-made batches: w0 = (1, 2); batch 1: x = (1, 0), y = 0 -> residual 1, g1 = (2, 0),
# w1 = w0 - 0.25 g1 = (0.5, 2); batch 2: x = (1, 1), y = 2 -> residual 0.5, g2 = (1, 1),
# w2 = (0.25, 1.75)
BATCHES = [(torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0),
           (torch.tensor([1.0, 1.0], dtype=torch.float64), 2.0)]


def train_step0(learner, model: Tiny, extra_loss=None) -> None:
    """Two SGD iterations (lr 0.25) over BATCHES, calling the learner's iteration hooks."""
    parameters = parameter_view(model)
    for iteration, (x, y) in enumerate(BATCHES):
        model.w.grad = None
        loss = ((x * model.w).sum() - y).pow(2)
        if extra_loss is not None:
            loss = loss + extra_loss(parameters)
        loss.backward()
        state = IterationState(0, 0, iteration, parameters)
        learner.after_backward(state)
        with torch.no_grad():
            model.w -= LR * model.w.grad
        learner.after_update(state)


def context(step: int, model: nn.Module, old_model: nn.Module | None = None,
            record=None) -> StepContext:
    return StepContext(VOC_15_5, step, model, old_model, torch.device("cpu"), lambda: [],
                       step0_record=record)


def after_step0(name: str) -> tuple:
    """The method after the shared step 0 on the tiny model, and that model."""
    method = get_method(name)(VOC_15_5)
    model = Tiny([1.0, 2.0])
    recipe = step0_learner(method)
    train_step0(recipe, model)
    method.on_step_end(context(0, model, record=recipe.state_dict()))
    return method, model


def close(got: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(got, torch.tensor(expected, dtype=got.dtype), rtol=1e-12,
                               atol=1e-12)


def test_ewc_pi_rw_share_one_step0_recipe_recording_all_three():
    recipes = {recipe_of(get_method(name)) for name in ("ewc", "pi", "rw")}
    assert len(recipes) == 1
    (recipe,) = recipes
    assert recipe.identity()["records"] == {"fisher": 1, "path_integral": 1,
                                            "riemannian_walk": 1}
    assert recipe_of(get_method("ft")).name == "ce"  # a different cached step 0


def test_ewc_fisher_of_two_batches_by_hand():
    method, model = after_step0("ewc")
    close(model.w.detach(), [0.25, 1.75])
    # F = 1, then 0.9 g^2 + 0.1 F: (0.9*4 + 0.1, 0.1) = (3.7, 0.1); (0.9 + 0.37, 0.9 + 0.01)
    close(method.carried["fisher"]["w"], [1.27, 0.91])


def test_pi_score_of_two_batches_by_hand():
    method, _ = after_step0("pi")
    # delta = g2 * (w0 - w1) = (1, 1) * (0.5, 0) = (0.5, 0) (the gradient AFTER the update);
    # score = delta / (w2 - w0)^2 = (0.5 / 0.5625, 0 / 0.0625)
    close(method.carried["score"]["w"], [0.5 / 0.5625, 0.0])


def test_rw_score_of_two_batches_by_hand(monkeypatch):
    # the release scores every 10 iterations; with two batches nothing is scored ...
    method, _ = after_step0("rw")
    close(method.carried["score"]["w"], [0.0, 0.0])
    close(method.carried["fisher"]["w"], [1.27, 0.91])
    # ... so score every iteration here: g2 * (w0 - w1) / (0.5 * F1 * (w1 - w0)^2 + 1e-8),
    # F1 = (3.7, 0.1) the Fisher before iteration 2's update
    monkeypatch.setattr(methods.rw, "SCORE_EVERY", 1)
    method, _ = after_step0("rw")
    close(method.carried["score"]["w"], [0.5 / (0.5 * 3.7 * 0.25 + 1e-8), 0.0])


def test_rw_scores_every_tenth_iteration_against_the_snapshot_ten_back():
    running = methods.rw.walk_start({"w": torch.zeros(1, requires_grad=True)}, None)
    for i in range(11):
        p = torch.tensor([float(i)])
        methods.rw.walk_update(running, {"w": p}, {"w": torch.tensor([-1.0])})
        if i < 10:
            assert running["score"]["w"].item() == 0.0
    # at i = 10: g (p0 - p10) = 10; Fisher before the update: 0.9 * 1 + 0.1 * 0.9 ... = decayed
    fisher = 1.0
    for _ in range(10):
        fisher = 0.9 + 0.1 * fisher
    expected = 10.0 / (0.5 * fisher * 100.0 + 1e-8)
    assert running["score"]["w"].item() == pytest.approx(expected, rel=1e-6)
    assert running["count"] == 11 and running["previous"]["w"].item() == 10.0


def step1(name: str, shift: float = 0.1):
    """Step 1 on the tiny model: the old model is the step-0 one, the parameters moved by
    `shift`. Returns (method, model, old model)."""
    method, model = after_step0(name)
    old = copy.deepcopy(model)
    method.on_step_start(context(1, model, old))
    with torch.no_grad():
        model.w += shift
    return method, model, old


def penalty_of(method, model) -> torch.Tensor:
    logits = torch.zeros(1, 21, 2, 2)
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    inputs = LossInputs(1, ModelOutput(logits), labels, parameters=parameter_view(model))
    return method.loss(inputs)["penalty"]


@pytest.mark.parametrize(("name", "weights"), [
    # EWC: F = (1.27, 0.91) min-max normalised: ((0.36) / (0.36 + 1e-8), 0)
    ("ewc", [0.36 / (0.36 + 1e-8), 0.0]),
    # PI: s = (0.888.., 0) -> (s / (s + 1e-8), 0)
    ("pi", [(0.5 / 0.5625) / (0.5 / 0.5625 + 1e-8), 0.0]),
    # RW: normalised Fisher + normalised score (all zero: 0 / 1e-8 = 0)
    ("rw", [0.36 / (0.36 + 1e-8), 0.0]),
])
def test_penalty_after_one_step_by_hand(name, weights):
    method, model, _ = step1(name, shift=0.1)
    weight = method.params["penalty_weight"]
    expected = weight * sum(w * 0.01 for w in weights)
    assert penalty_of(method, model).item() == pytest.approx(expected, rel=1e-9)


def test_release_penalty_weights_and_the_synth_recipe_scale():
    for name, release in (("ewc", 500.0), ("pi", 500.0), ("rw", 100.0)):
        method = get_method(name)
        assert method.resolve_params("voc-15-1", {})["penalty_weight"] == release
        assert method.resolve_params("voc-15-1", {}, recipe="mib")["penalty_weight"] == release
        assert method.resolve_params("voc-15-1", {}, recipe="synth")["penalty_weight"] == (
            release / 5)
        # the user's value wins over the recipe's
        assert method.resolve_params("voc-15-1", {"penalty_weight": 7.0},
                                     recipe="synth")["penalty_weight"] == 7.0
    spec = RunSpec.from_names("voc-15-1", "ewc", resolve_data=False)
    assert dict(spec.param_items)["penalty_weight"] == 100.0


def test_the_synth_weights_keep_the_release_product_of_learning_rate_and_weight():
    """The per-recipe table is data: weight x incremental lr on the embedded recipe equals the
    release's weight x the MiB recipe's incremental lr, and lr x the penalty's largest stiffness
    stays below Nesterov's stability bound 2 (1 + m) / (1 + 2 m) there."""
    for name, largest_w in (("ewc", 1.0), ("pi", 1.0), ("rw", 2.0)):
        products = []
        for overrides in ([], ["trainer=mib"]):
            spec = RunSpec.from_names("voc-15-1", name, overrides=overrides, resolve_data=False)
            recipe = spec.recipes[1]
            weight = dict(spec.param_items)["penalty_weight"]
            products.append(recipe.lr * weight)
            assert recipe.nesterov
            bound = 2 * (1 + recipe.momentum) / (1 + 2 * recipe.momentum)
            assert recipe.lr * 2 * weight * largest_w < bound
        assert products[0] == pytest.approx(products[1], rel=1e-12)


def test_importance_reads_the_task_gradient_without_the_penalty():
    """Step 1: the penalty's gradient is removed before the Fisher update (the release updates
    before backpropagating the penalty)."""
    method, model, _ = step1("ewc", shift=0.1)
    parameters = parameter_view(model)
    model.w.grad = None
    x, y = BATCHES[1]
    task = ((x * model.w).sum() - y).pow(2)
    total = task + penalty_of(method, model)
    total.backward()
    task_grad = 2 * ((x * model.w).sum() - y).detach() * x
    assert not torch.allclose(model.w.grad, task_grad)  # the penalty does pull
    before = method.running["fisher"]["w"].clone()
    method.after_backward(IterationState(1, 0, 0, parameters))
    torch.testing.assert_close(method.running["fisher"]["w"],
                               0.9 * task_grad.pow(2) + 0.1 * before)


def test_pi_step1_adds_to_the_carried_score():
    method, model, _ = step1("pi", shift=0.0)
    carried = method.carried["score"]["w"].clone()
    parameters = parameter_view(model)
    for iteration, (x, y) in enumerate(BATCHES):
        model.w.grad = None
        (((x * model.w).sum() - y).pow(2) + penalty_of(method, model)).backward()
        method.after_backward(IterationState(1, 0, iteration, parameters))
        with torch.no_grad():
            model.w -= LR * model.w.grad
    method.on_step_end(context(1, model))
    assert (method.carried["score"]["w"] >= carried).all()
    assert method.running is None and set(method.state_dict()) == {"carried"}


# ----- CIL ------------------------------------------------------------------------------------
def test_cil_terms_by_hand():
    # voc-15-5 step 1: channels 0..15 old, 16..20 new; two pixels: one labelled 16, one 0
    logits = torch.zeros(1, 21, 1, 2)
    logits[0, 16, 0, 0] = 2.0
    old_logits = torch.zeros(1, 16, 1, 2)
    old_logits[0, 3, 0, 1] = math.log(15.0)  # teacher: class 3 p = 0.5, 15 others 1/30 each
    labels = torch.tensor([[[16, 0]]])
    terms = cil_terms(logits, old_logits, labels, range(16, 21), 1.0, SINGLE)
    ce = -(2.0 - math.log(math.exp(2.0) + 20))
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-6)
    # pixel 2: student uniform over 21 -> -sum p_old log(1/21) = log 21; entropy of the
    # teacher in bits: 0.5 * 1 + 15 * (1/30) * log2(30)
    entropy_bits = 0.5 * 1.0 + 0.5 * math.log2(30.0)
    assert terms["kd"].item() == pytest.approx((1 + entropy_bits) * math.log(21.0), rel=1e-5)


def test_cil_distillation_pulls_the_student_towards_the_teacher():
    """Not the release class's sum of softmax products (which minimised pushes away)."""
    generator = torch.Generator().manual_seed(0)
    old_logits = 3 * torch.randn(2, 16, 4, 4, generator=generator)
    logits = torch.randn(2, 21, 4, 4, generator=generator).requires_grad_()
    labels = torch.zeros(2, 4, 4, dtype=torch.long)

    def kl() -> float:
        target = torch.softmax(old_logits, 1)
        student = F.log_softmax(logits.detach(), 1)[:, :16]
        return float((target * (target.log() - student)).sum(1).mean())

    before = kl()
    cil_terms(logits, old_logits, labels, range(16, 21), 1.0, SINGLE)["kd"].backward()
    with torch.no_grad():
        logits -= 0.5 * logits.grad
    assert kl() < before


def test_cil_weights_uncertain_teacher_pixels_more():
    from methods.cil import teacher_weights

    certain = torch.softmax(torch.tensor([10.0, 0.0, 0.0, 0.0]), 0).view(1, 4, 1, 1)
    uniform = torch.full((1, 4, 1, 1), 0.25)
    assert teacher_weights(uniform, 1.0).item() == pytest.approx(3.0, rel=1e-6)  # 1 + 2 bits
    assert teacher_weights(certain, 1.0).item() < 1.01


def test_min_max_is_per_tensor():
    close(min_max(torch.tensor([2.0, 4.0, 3.0], dtype=torch.float64)),
          [0.0, 2 / (2 + 1e-8), 1 / (2 + 1e-8)])


# ----- carried state through an epoch checkpoint, resumed bit-identical -----------------------
class Interrupted(Exception):
    pass


def run_tiny(root, cache, monkeypatch, stop_at=None, method="rw"):
    """A tiny run; `stop_at` = (step, epoch): raise after that epoch's checkpoint."""
    monkeypatch.setenv("CSS_BENCH_CACHE", str(cache))
    if stop_at is not None:
        original = EpochCheckpoint.after_epoch

        def stopping(self, trainer):
            original(self, trainer)
            if (trainer.step, trainer.epoch) == stop_at:
                raise Interrupted

        monkeypatch.setattr(EpochCheckpoint, "after_epoch", stopping)
        with pytest.raises(Interrupted):
            Runner(spec_of("voc-15-5", method, root), log=lambda _: None).run()
        monkeypatch.setattr(EpochCheckpoint, "after_epoch", original)
    runner = Runner(spec_of("voc-15-5", method, root), log=lambda _: None)
    runner.run()
    return runner.run_dir.path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("rw-reference")
    with pytest.MonkeyPatch.context() as patch:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield run_tiny(root / "runs", root / "cache", patch)
        finally:
            torch.set_num_threads(threads)


@pytest.mark.parametrize("stop_at", [(0, 0), (1, 0)], ids=["step0-recorder", "step1-running"])
def test_interrupted_step_resumes_with_bit_identical_importance(tmp_path, monkeypatch,
                                                               uninterrupted, stop_at):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = run_tiny(tmp_path / "runs", tmp_path / "cache", monkeypatch, stop_at)
    finally:
        torch.set_num_threads(threads)
    want = load_torch(uninterrupted / "step1" / "checkpoint.pt")
    got = load_torch(resumed / "step1" / "checkpoint.pt")
    for statistic in ("fisher", "score"):
        expected = want["method"]["carried"][statistic]
        assert expected and got["method"]["carried"][statistic].keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(got["method"]["carried"][statistic][name], tensor), name
    for name, tensor in want["model"].items():
        assert torch.equal(got["model"][name], tensor), name
    assert records(resumed) == records(uninterrupted)
    # the importance moved during step 1 (the score is not all zero, the Fisher not all ones)
    score = want["method"]["carried"]["score"]
    assert any(bool((s > 0).any()) for s in score.values())


def test_tiny_run_terms(uninterrupted):
    history = records(uninterrupted)[1]["loss_history"]
    assert set(history[0]) == {"ce", "penalty"}
    assert all(epoch["penalty"] > 0 for epoch in history)


def test_ewc_and_pi_reuse_the_step0_rw_trained_and_read_their_own_record(uninterrupted,
                                                                          monkeypatch):
    root = uninterrupted.parents[3]  # <root>/runs/voc-15-5/rw/seed...
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, statistic in (("ewc", "fisher"), ("pi", "score")):
            monkeypatch.setenv("CSS_BENCH_CACHE", str(root / "cache"))
            runner = Runner(spec_of("voc-15-5", name, root / "runs"), log=lambda _: None)
            results = runner.run()
            assert results[0].reused_step0 and results[1].trained
            step0 = load_torch(runner.run_dir.path / "step0" / "checkpoint.pt")["method"]
            assert set(step0["carried"]) == {statistic}
            assert any(bool((t != 1).any() if name == "ewc" else (t > 0).any())
                       for t in step0["carried"][statistic].values())
    finally:
        torch.set_num_threads(threads)


def test_bench_list_methods_shows_the_new_methods_with_sources_and_recipe_values():
    from bench.commands.listing import method_lines

    lines = method_lines()
    text = "\n".join(lines)
    for name in ("ewc", "pi", "rw", "cil"):
        assert any(line.startswith(f"{name} ") for line in lines), name
    assert "step 0: recipe ce+importance" in text
    assert "penalty_weight = 500.0  [fcdl94/MiB argparser.py" in text
    assert "with trainer=synth: penalty_weight=100.0" in text
    assert "entropy_scale = 1.0  [LTTM/SDR train.py" in text
