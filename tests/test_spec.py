"""RunSpec: one resolution of a run's names, an identity that covers what changes a number."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.spec import RunSpec
from methods import get_method
from tests.engine_helpers import TINY


def resolved(protocol: str, method: str, *overrides: str, **names) -> RunSpec:
    return RunSpec.from_names(protocol, method, overrides=overrides, resolve_data=False, **names)


def test_method_hyperparameters_are_resolved_and_part_of_the_identity():
    mib = resolved("voc-15-1", "mib")
    assert mib.params == {"kd_weight": 100.0}  # the per-protocol value of 15-1
    assert resolved("voc-15-5", "mib").params == {"kd_weight": 10.0}
    assert mib.identity()["method"]["params"] == {"kd_weight": 100.0}
    changed = resolved("voc-15-1", "mib", "method.kd_weight=5")
    assert changed.params == {"kd_weight": 5.0} and changed.run_hash != mib.run_hash
    assert resolved("voc-15-1", "sdr").params == {
        "kd_weight": 100.0, "matching_weight": 1e-2, "attraction_weight": 1e-3,
        "repulsion_weight": 1e-3, "sparsity_weight": 1e-3, "variant": "release"}
    paper = resolved("voc-15-1", "sdr", "method.variant=paper")
    assert paper.params["variant"] == "paper"
    assert paper.run_hash != resolved("voc-15-1", "sdr").run_hash
    with pytest.raises(BenchError, match=r"method.variant=fixed is not allowed for sdr\+mib: "
                                         r"method.variant must be one of release \| paper"):
        resolved("voc-15-1", "sdr+mib", "method.variant=fixed")


def test_every_step_has_its_recipe_and_the_identity_holds_them():
    spec = resolved("voc-15-1", "ft", "trainer.epochs=3", "trainer.epochs_incremental=2")
    assert [r.epochs for r in spec.recipes] == [3, 2, 2, 2, 2, 2]
    assert [r.lr for r in spec.recipes] == [0.02] + [0.005] * 5  # trainer/synth.yaml
    other = resolved("voc-15-1", "ft", "trainer.epochs=3", "trainer.epochs_incremental=1")
    assert other.run_hash != spec.run_hash
    joint = resolved("voc-15-1", "joint")
    assert len(joint.recipes) == 1 and joint.planned_protocol.step_sizes == (21,)


def test_execution_settings_are_not_identity_and_not_stored_with_the_inputs():
    plain = resolved("voc-15-5", "ft")
    moved = resolved("voc-15-5", "ft", "runs_root=/somewhere/else", "device=cpu",
                     "data.num_workers=2", "quiet=true", "trainer.eval_batch_size=7")
    assert moved.run_hash == plain.run_hash
    assert moved.inputs.overrides == () and moved.execution.runs_root == "/somewhere/else"
    assert moved.execution.eval_batch_size == 7


def test_the_seed_is_identity_but_not_setup():
    zero, one = resolved("voc-15-5", "ft"), resolved("voc-15-5", "ft", seed=1)
    assert zero.run_hash != one.run_hash and zero.setup_hash == one.setup_hash


def test_real_data_uses_the_paper_model_and_the_method_s_recipe():
    mib = resolved("voc-15-1", "mib", dataset="voc")
    assert (mib.model.backbone, mib.recipe_name, mib.recipes[0].batch_size) == (
        "resnet101", "mib", 24)
    sdr = resolved("voc-15-1", "sdr", dataset="voc")
    assert (sdr.recipe_name, sdr.recipes[0].batch_size, sdr.recipes[0].lr) == ("sdr", 8, 1e-3)
    chosen = resolved("voc-15-1", "sdr", "trainer=mib", dataset="voc")
    assert chosen.recipe_name == "mib"


@pytest.mark.parametrize(("names", "overrides", "message"), [
    ({}, ("seed=3",), "set the seed with --seed"),
    ({}, ("method.nope=1",), "has no hyperparameter ['nope']"),
    ({}, ("method.kd_weight=high",), "method.kd_weight='high' for mib is not a float"),
    ({}, ("trainer.precision=fp8",), "trainer.precision=fp8 is not allowed: trainer.precision "
                                     "must be one of fp32, bf16"),
    ({}, ("eval.crop=middle",), "eval.crop=middle is not allowed: eval.crop must be one of "
                                "center, full"),
    ({"dataset": "synth-ade"}, (), "is a VOC protocol but the dataset 'synth-ade' is ADE"),
])
def test_bad_names_are_one_clear_error(names, overrides, message):
    with pytest.raises(BenchError, match=None) as raised:
        resolved("voc-15-1", "mib", *overrides, **names)
    assert message in str(raised.value)


def test_the_data_digest_is_part_of_the_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    small = RunSpec.from_names("voc-15-5", "ft", overrides=TINY)
    assert len(small.data.digest) == 16
    other = RunSpec.from_names("voc-15-5", "ft", overrides=[*TINY, "data.synth.n_train=65"])
    assert other.data.digest != small.data.digest and other.run_hash != small.run_hash


def test_bench_config_prints_the_resolved_hyperparameters(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    assert main(["config", "--protocol", "voc-15-1", "--method", "mib", *TINY]) == 0
    out = capsys.readouterr().out
    assert "kd_weight: 100.0" in out
    first_hash = out.rsplit(": ", 1)[1].strip()
    assert main(["config", "--protocol", "voc-15-1", "--method", "sdr", *TINY]) == 0
    out = capsys.readouterr().out
    for weight in ("kd_weight: 100.0", "matching_weight: 0.01", "attraction_weight: 0.001",
                   "repulsion_weight: 0.001", "sparsity_weight: 0.001"):
        assert weight in out
    monkeypatch.setattr(get_method("mib"), "per_protocol", {"voc-15-1": {"kd_weight": 50.0}})
    assert main(["config", "--protocol", "voc-15-1", "--method", "mib", *TINY]) == 0
    out = capsys.readouterr().out
    assert "kd_weight: 50.0" in out and out.rsplit(": ", 1)[1].strip() != first_hash


def test_a_changed_default_starts_a_new_run_and_says_why(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    command = ["run", "--protocol", "voc-15-5", "--method", "mib", "--steps", "0", "--quiet",
               "--runs-root", str(tmp_path / "runs"), *TINY]
    assert main(command) == 0
    first = capsys.readouterr().out.split("run directory: ")[1].strip()
    monkeypatch.setattr(get_method("mib"), "defaults", {"kd_weight": 7.0})
    assert main(command) == 0
    out = capsys.readouterr().out
    second = out.split("run directory: ")[1].strip()
    assert second != first
    old_name = first.rsplit("/", 1)[1]
    assert (f"{old_name} was resolved from the same names and overrides, but today's "
            "resolution differs (method.params.kd_weight: 10.0 -> 7.0)") in out
    assert "it is stale, and this is a new run" in out
    assert "shared step 0 reused" in out  # the method's default does not change step 0


def test_mib_kd_weight_is_100_on_15_1_only() -> None:
    """fcdl94/MiB#22 and #43 give 100 for 15-1; 10-1 (and 10-10) keep the release's 10."""
    for protocol, weight in (("voc-15-1", 100.0), ("voc-10-1", 10.0), ("voc-10-10", 10.0),
                             ("voc-15-1-disjoint", 100.0)):
        spec = RunSpec.from_names(protocol, "mib", resolve_data=False)
        assert spec.params["kd_weight"] == weight, protocol
