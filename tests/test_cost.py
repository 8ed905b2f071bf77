"""What every step cost, in its record and in the aggregate (a shared step 0 counted once);
execution settings vs identity; TensorBoard event files; elapsed and remaining time."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.errors import BenchError
from tests.engine_helpers import run_dir, spec_of

PROTOCOL = "voc-15-5"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """FT trains step 0 and step 1; MiB reuses FT's step 0 from the shared cache."""
    from bench.engine.runner import Runner

    folder = tmp_path_factory.mktemp("cost")
    os.environ["CSS_BENCH_CACHE"] = str(folder / "cache")
    for method in ("ft", "mib"):
        Runner(spec_of(PROTOCOL, method, folder / "runs"), log=lambda _: None).run()
    return folder / "runs"


def record(runs: Path, method: str, step: int) -> dict:
    return json.loads((run_dir(runs, PROTOCOL, method) / f"step{step}" /
                       "record.json").read_text())


def test_every_trained_step_records_its_cost(runs):
    for step in (0, 1):
        cost = record(runs, "ft", step)["cost"]
        assert cost["device"]["type"] == "cpu" and cost["device"]["count"] == 1
        assert cost["device"]["name"]
        assert cost["train_seconds"] > 0 and cost["eval_seconds"] > 0
        assert cost["device_hours"] == pytest.approx(
            (cost["train_seconds"] + cost["eval_seconds"]) / 3600, abs=1e-6)
        # TINY: 2 epochs of full batches of 8 (synth-voc v3: 56 step-0 images -> 7 a epoch,
        # 24 -> 3)
        assert cost["train_images"] == 2 * 8 * (7 if step == 0 else 3)
        assert cost["images_per_second"] == pytest.approx(  # stored to 2 decimals
            cost["train_images"] / cost["train_seconds"], abs=0.006)
        assert cost["peak_memory_bytes"] > 0 and "resident" in cost["peak_memory"]
        assert cost["paid_by"] is None
    assert not list(runs.rglob("progress.json"))  # a finished step keeps no progress hint


def test_a_reused_step_0_cost_nothing_and_names_the_entry_that_paid(runs):
    trained, reused = record(runs, "ft", 0), record(runs, "mib", 0)
    assert reused["step0_cache"]["reused"] and not trained["step0_cache"]["reused"]
    cost = reused["cost"]
    assert cost["device_hours"] == 0 and cost["train_seconds"] == 0
    assert cost["paid_by"]["step0_cache"] == trained["step0_cache"]["path"]
    assert cost["paid_by"]["step0_cache"].startswith("_step0/")
    assert cost["paid_by"]["device_hours"] == trained["cost"]["device_hours"]
    entry = json.loads((runs / cost["paid_by"]["step0_cache"] / "evaluation.json").read_text())
    assert entry["cost"] == trained["cost"]


def test_aggregate_writes_device_hours_per_run_and_cell_with_step_0_counted_once(runs,
                                                                                  tmp_path):
    from bench.cli import main

    out = tmp_path / "aggregated"
    assert main(["aggregate", str(runs), "--out", str(out)]) == 0
    ft0, ft1 = (record(runs, "ft", s)["cost"]["device_hours"] for s in (0, 1))
    mib1 = record(runs, "mib", 1)["cost"]["device_hours"]
    per_run = pd.read_csv(out / "cost_runs.csv").set_index("method")
    assert per_run.loc["ft", "device_hours"] == pytest.approx(ft0 + ft1, abs=2e-6)
    assert per_run.loc["mib", "device_hours"] == pytest.approx(ft0 + mib1, abs=2e-6)
    assert per_run.loc["mib", "paid_device_hours"] == pytest.approx(mib1, abs=2e-6)
    assert bool(per_run.loc["ft", "step0_trained_here"])
    assert not bool(per_run.loc["mib", "step0_trained_here"])
    cells = pd.read_csv(out / "cost_cells.csv").set_index("method")
    assert cells.loc["mib", "step0_device_hours"] == pytest.approx(ft0, abs=2e-6)
    text = (out / "cost.md").read_text()
    assert "each of the 1 shared step-0 model(s) counted once" in text
    summary = (out / "summary_sdr.md").read_text()
    assert "| device-h |" in summary and "counted once" in summary
    steps = pd.read_csv(out / "per_step.csv")
    mib_rows = steps[(steps["method"] == "mib") & (steps["convention"] == "sdr")]
    assert list(mib_rows["device_hours"]) == pytest.approx([ft0, ft0 + mib1], abs=1e-4)  # %.4f


def test_execution_settings_are_not_identity_but_precision_is():
    from bench.spec import RunSpec

    def resolved(*overrides: str):
        return RunSpec.from_names(PROTOCOL, "ft", overrides=overrides, resolve_data=False)

    plain = resolved()
    fast = resolved("trainer.channels_last=true", "trainer.compile=true",
                    "trainer.cudnn_benchmark=false", "data.num_workers=auto",
                    "data.prefetch_factor=8", "logger=tensorboard", "logger.every=5")
    assert fast.run_hash == plain.run_hash and fast.inputs.overrides == ()
    assert (fast.execution.channels_last, fast.execution.compile,
            fast.execution.prefetch_factor, fast.execution.logger["kind"]) == (
        True, True, 8, "tensorboard")
    assert resolved("trainer.precision=bf16").run_hash != plain.run_hash


def test_compute_settings_resolve_per_device():
    from bench.engine.compute import ComputeSettings, autocast

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ComputeSettings.resolve("auto", False, True, cpu) == ComputeSettings()
    assert ComputeSettings.resolve("auto", True, True, cuda) == ComputeSettings(True, True, True)
    assert ComputeSettings.resolve(True, False, False, cpu).channels_last
    with pytest.raises(BenchError, match="trainer.channels_last=sometimes"):
        ComputeSettings.resolve("sometimes", False, False, cpu)
    conv = torch.nn.Conv2d(3, 4, 3)
    with autocast(cpu, bf16=True):  # bf16 means bf16 on the CPU too
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.bfloat16
    with autocast(cpu, bf16=False):
        assert conv(torch.rand(1, 3, 8, 8)).dtype == torch.float32


def test_a_missing_tensorboard_package_is_one_clear_line(monkeypatch):
    import importlib.util

    from bench.engine.tensorboard import check_logger

    assert check_logger({"kind": "none"}) is False
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(BenchError, match=r"pip install 'css-bench\[tensorboard\]'"):
        check_logger({"kind": "tensorboard", "every": 20})
    with pytest.raises(BenchError, match="logger kind 'wandb' is unknown"):
        check_logger({"kind": "wandb"})


def test_tensorboard_event_files_per_step(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional extra css-bench[tensorboard]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bench.engine.runner import Runner

    os.environ["CSS_BENCH_CACHE"] = str(tmp_path / "cache")
    spec = spec_of(PROTOCOL, "lwf", tmp_path / "runs", "logger=tensorboard", "logger.every=2")
    Runner(spec, log=lambda _: None).run()
    folder = run_dir(tmp_path / "runs", PROTOCOL, "lwf") / "tensorboard"
    step1 = EventAccumulator(str(folder / "step1"))
    step1.Reload()
    tags = set(step1.Tags()["scalars"])
    assert {"loss/ce", "loss/kd", "loss/total", "lr", "epoch/loss_ce", "epoch/loss_kd",
            "scores/all", "scores/old", "cost/device_hours"} <= tags
    # 3 iterations an epoch, 2 epochs: terms logged at iterations 2, 4 and 6
    assert [event.step for event in step1.Scalars("loss/ce")] == [2, 4, 6]
    assert [event.step for event in step1.Scalars("epoch/loss_ce")] == [1, 2]
    history = json.loads((folder.parent / "step1" / "record.json").read_text())["loss_history"]
    assert [e.value for e in step1.Scalars("epoch/loss_ce")] == pytest.approx(
        [h["ce"] for h in history], rel=1e-6)
    assert (folder / "step0").is_dir()


def test_status_estimates_elapsed_and_remaining_time(tmp_path):
    from bench.store.runs import RunDir
    from bench.sweep.status import duration, timing

    run = RunDir(tmp_path, PROTOCOL, "ft", 0, "abc")
    for step, (train, evaluation) in enumerate([(100.0, 10.0), (50.0, 5.0)]):
        run.finish_step(step, {"cost": {"train_seconds": train, "eval_seconds": evaluation}},
                        {})
    now = time.time()
    run.write_progress(2, {"epoch": 1, "epochs": 4, "iteration": 10, "iterations": 40,
                           "train_seconds": 20.0, "updated": now - 5})
    found = timing(run, num_steps=4, live=True, now=now)
    # elapsed: 110 + 55 done, 20 s of step 2's epochs, 5 s since its last epoch ended
    assert found["elapsed"] == pytest.approx(190.0)
    # step 2 at 2 s an iteration: 80 s in all, 25 s spent; step 3 at the mean of steps >= 1
    assert found["left"] == pytest.approx(55.0 + 55.0)
    assert duration(found["left"]) == "2m" and duration(3700) == "1h02m"
    # while step 0 trains, the later steps cannot be estimated yet
    early = RunDir(tmp_path, PROTOCOL, "lwf", 0, "def")
    early.write_progress(0, {"iteration": 5, "iterations": 50, "train_seconds": 10.0,
                             "updated": now})
    assert timing(early, num_steps=3, live=True, now=now) == {"elapsed": 10.0, "left": None}
