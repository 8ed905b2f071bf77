"""`bench run` end to end on a tiny embedded dataset: store, resume, step-0 reuse, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine_helpers import TINY, bench, records, run_dir, spec_of

PROTOCOL = "voc-15-5"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache) -> Path:
    """An uninterrupted run: the records every other run of the same config must equal."""
    runs = tmp_path_factory.mktemp("reference")
    bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", *TINY, runs_root=runs,
          cache=cache)
    return run_dir(runs, PROTOCOL, "ft")


def test_run_writes_every_step_with_records_and_done_markers(reference):
    for step in (0, 1):
        directory = reference / f"step{step}"
        assert (directory / "done").is_file() and (directory / "checkpoint.pt").is_file()
        assert not (directory / "epoch.pt").exists()
        record = json.loads((directory / "record.json").read_text())
        assert record["step"] == step and record["method"] == "ft"
        assert record["protocol"]["name"] == PROTOCOL
        assert record["spec"]["identity"]["recipe"]["steps"][step]["epochs"] == 2
        assert len(record["loss_history"]) == 2
        assert record["versions"]["torch"]
        seen = 16 if step == 0 else 21
        assert len(record["confusion_matrix"]) == seen
        assert set(record["scores"]["per_class"]) == {str(c) for c in range(seen)}
    assert json.loads((reference / "spec.json").read_text())["inputs"]["method"] == "ft"
    assert not list(reference.rglob("*.tmp"))


def test_cli_prints_the_embedded_default_and_a_table(tmp_path, cache, reference):
    result = bench("run", "--protocol", PROTOCOL, "--method", "ft", *TINY,
                   runs_root=reference.parents[2], cache=cache)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("no data configured: running on the embedded synthetic dataset")
    assert "nothing to train" in result.stdout
    table = [line for line in lines if line[:1].isdigit()]
    assert [line.split()[0] for line in table] == ["0", "1"]
    assert f"run directory: {reference}" in result.stdout


def test_a_second_identical_run_does_no_training(reference, cache):
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file()}
    bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", *TINY,
          runs_root=reference.parents[2], cache=cache)
    after = {p: p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file()}
    assert [p.name for p in after if before.get(p) != after[p]] == []


def test_same_seed_is_bit_for_bit_repeatable(tmp_path, cache, reference):
    bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", *TINY, runs_root=tmp_path,
          cache=cache)
    assert records(run_dir(tmp_path, PROTOCOL, "ft")) == records(reference)


def test_interrupted_step_resumes_to_identical_records(tmp_path, cache, reference):
    """Stop after the first epoch of step 1 (its epoch checkpoint exists), resume, compare."""
    command = [sys.executable, "-m", "bench.cli", "run", "--protocol", PROTOCOL, "--method", "ft",
               "--quiet", *TINY, "--runs-root", str(tmp_path)]
    env = {**os.environ, "CSS_BENCH_CACHE": str(cache)}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob("*/ft/*/step1/epoch.pt")):
        assert process.poll() is None and time.time() < deadline, "run ended before step 1"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    directory = run_dir(tmp_path, PROTOCOL, "ft")
    assert not (directory / "step1" / "done").exists()
    result = bench("run", "--protocol", PROTOCOL, "--method", "ft", *TINY, runs_root=tmp_path,
                   cache=cache)
    assert "resuming after epoch 1 of 2" in result.stdout
    assert records(directory) == records(reference)


@pytest.mark.parametrize("moment", ["training", "checkpoint.pt", "record.json"])
def test_sigkill_at_random_moments_never_corrupts_the_run(tmp_path, cache, reference, moment):
    """Kill during training, or while a checkpoint or a record is being written (the write
    window is widened by CSS_BENCH_WRITE_DELAY), resume each time, compare the final records."""
    import random

    rng = random.Random(moment)
    env = {**os.environ, "CSS_BENCH_CACHE": str(cache), "CSS_BENCH_WRITE_DELAY": "0.3"}
    command = [sys.executable, "-m", "bench.cli", "run", "--protocol", PROTOCOL, "--method", "ft",
               "--quiet", *TINY, "--runs-root", str(tmp_path)]
    kills = 0
    for _attempt in range(3):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while process.poll() is None and time.time() < deadline:
            if moment == "training":
                hit = bool(list(tmp_path.rglob("epoch.pt"))) and rng.random() < 0.02
            else:
                hit = bool(list(tmp_path.rglob(f".{moment}.*.tmp")))
            if hit:
                process.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.01)
        process.wait()
        if process.returncode == 0:
            break
    assert kills >= 1
    bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", *TINY, runs_root=tmp_path,
          cache=cache)
    assert records(run_dir(tmp_path, PROTOCOL, "ft")) == records(reference)


def test_changed_config_is_a_new_run_and_the_cli_says_so(reference, cache):
    runs = reference.parents[2]
    result = bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", "--steps", "0",
                   *TINY, "trainer.lr=0.03", runs_root=runs, cache=cache)
    assert "this is a new run" in result.stdout and reference.name in result.stdout
    assert len(list((runs / PROTOCOL / "ft").glob("seed0-*"))) == 2


def test_non_finite_loss_names_step_epoch_iteration_and_keeps_earlier_steps(tmp_path, cache):
    result = bench("run", "--protocol", PROTOCOL, "--method", "ft", "--quiet", *TINY,
                   "trainer.lr_incremental=1e30", runs_root=tmp_path, cache=cache, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "non-finite loss at step 1, epoch 1, iteration" in result.stderr
    directory = run_dir(tmp_path, PROTOCOL, "ft")
    assert (directory / "step0" / "done").is_file()
    assert not (directory / "step1" / "done").exists()


@pytest.mark.parametrize("args,message", [
    (["--protocol", "voc-15-2", "--method", "ft"], "unknown protocol 'voc-15-2'"),
    (["--protocol", "voc-15-1", "--method", "fft"], "unknown method 'fft'. Did you mean: ft"),
    (["--protocol", "voc-15-1", "--method", "ft", "trainer.nope=1"], "bad configuration"),
    (["--protocol", "voc-15-1", "--method", "ft", "trainer.lr"], "is not key=value"),
    (["--protocol", "voc-15-1", "--method", "ft", "--data-root", "/nowhere"], "does not exist"),
    (["--protocol", "voc-15-1", "--method", "ft", "--steps", "x"], "is not a step range"),
])
def test_bad_input_is_one_clear_line(tmp_path, cache, args, message):
    result = bench("run", *args, runs_root=tmp_path, cache=cache, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_step_with_a_single_training_image_still_trains(tmp_path):
    """voc-15-1 on 64 images leaves step 3 with one training image: a full batch is drawn with
    replacement (a batch of one cannot pass BatchNorm in training)."""
    from bench.engine.runner import Runner

    os.environ["CSS_BENCH_CACHE"] = str(tmp_path / "cache")
    spec = spec_of("voc-15-1", "ft", tmp_path / "runs", "trainer.epochs=1",
                   "trainer.epochs_incremental=1")
    runner = Runner(spec, log=lambda _: None)
    sizes = [runner.scenario.train_count(step) for step in range(6)]
    assert min(sizes) < 8  # the tiny dataset has a step smaller than one batch
    small = sizes.index(min(sizes))
    loader = runner.scenario.train_loader(small, 0, 8)
    assert [len(labels) for _, labels in loader] == [8]
    results = runner.run()
    assert [r.step for r in results] == list(range(6))
