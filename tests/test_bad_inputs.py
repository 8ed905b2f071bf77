"""Issue 16's regression suite: bad inputs and faults a hostile but realistic user meets. Each
numbered case of the issue is pinned here: one line on stderr (no traceback), a non-zero exit
where the input was wrong, nothing lost and nothing wrongly recorded.

The `bench` CLI runs in subprocesses, as a user runs it, on the tiny embedded dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from tests.conftest import label_with, write_voc
from tests.engine_helpers import TINY, records, run_dir

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "voc-15-5"


def cli(*args: str, cache: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """`bench ARGS` as a user runs it, with a private cache."""
    full = {**os.environ, "CSS_BENCH_CACHE": str(cache), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], capture_output=True,
                          text=True, env=full, cwd=ROOT, timeout=timeout)


def run(runs: Path, cache: Path, *overrides: str, options: tuple[str, ...] = (),
        protocol: str = PROTOCOL, env: dict[str, str] | None = None,
        tiny: list[str] = TINY) -> subprocess.CompletedProcess:
    return cli("run", "--protocol", protocol, "--method", "ft", "--quiet", "--runs-root",
               str(runs), *options, *tiny, *overrides, cache=cache, env=env)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The single `bench: error:` line of a failed command, holding every fragment."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` with its modification time and size."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache) -> Path:
    """A finished tiny run (its runs root); tests copy it before changing anything."""
    runs = tmp_path_factory.mktemp("finished")
    result = run(runs, cache)
    assert result.returncode == 0, result.stderr
    return runs


def copy_of(finished: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs)
    return runs


# ----- 1 and 4: every configuration value checked before anything is written ------------------
@pytest.mark.parametrize(("override", "fragments"), [
    ("trainer.epochs=abc", ["trainer.epochs=abc is not allowed", "an integer >= 1"]),
    ("trainer.lr=fast", ["trainer.lr=fast is not allowed", "a finite number > 0"]),
    ("trainer.batch_size=big", ["trainer.batch_size=big is not allowed", "an integer >= 2"]),
    ("trainer.crop=0", ["trainer.crop=0 is not allowed", "an integer >= 1"]),
    ("trainer.epochs=0", ["trainer.epochs=0 is not allowed"]),
    ("trainer.epochs=-3", ["trainer.epochs=-3 is not allowed"]),
])
def test_wrong_values_are_one_line_and_create_nothing(tmp_path, cache, override, fragments):
    runs = tmp_path / "runs"
    one_line_error(run(runs, cache, override), *fragments)
    assert not runs.exists()  # no run directory, no spec, no lock: nothing to be confused by


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.epochs=2.5", "trainer.epochs=2.5 is not allowed: trainer.epochs must be an "
                           "integer >= 1"),
    ("trainer.epochs_incremental=0", "trainer.epochs_incremental must be an integer >= 1"),
    ("trainer.lr=nan", "trainer.lr=nan is not allowed"),
    ("trainer.lr=inf", "trainer.lr=inf is not allowed"),
    ("trainer.lr=-1", "trainer.lr=-1 is not allowed"),
    ("trainer.lr=true", "trainer.lr=true is not allowed"),
    ("trainer.lr_incremental=0", "trainer.lr_incremental=0 is not allowed"),
    ("trainer.batch_size=1", "BatchNorm needs two images per batch"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size=0 is not allowed"),
    ("trainer.momentum=1", "trainer.momentum must be a number in [0, 1)"),
    ("trainer.momentum=0", "set trainer.nesterov=false or a momentum"),
    ("trainer.nesterov=maybe", "trainer.nesterov must be true or false"),
    ("trainer.weight_decay=-1", "trainer.weight_decay must be a finite number >= 0"),
    ("trainer.poly_power=nan", "trainer.poly_power=nan is not allowed"),
    ("trainer.divergence_factor=1", "trainer.divergence_factor must be a finite number > 1"),
    ("model.output_stride=7", "model.output_stride must be one of 8, 16, 32"),
    ("model.backbone=vgg16", "model.backbone must be one of resnet18"),
    ("model.aspp_channels=0", "model.aspp_channels=0 is not allowed"),
    ("model.base_channels=abc", "model.base_channels=abc is not allowed"),
    ("data.synth.n_train=abc", "data.synth.n_train=abc is not allowed"),
    ("data.num_workers=-1", "data.num_workers must be an integer >= 0"),
    ("data.cache_mb=lots", "data.cache_mb=lots is not allowed"),
    ("eval.background_in_old_all=maybe", "eval.background_in_old_all must be true or false"),
    ("device=tpu", "device must be auto, cpu, cuda or cuda:N"),
    ("quiet=sometimes", "quiet must be true or false"),
    ("launcher.cpus_per_task=0", "launcher.cpus_per_task=0 is not allowed"),
    ("launcher.gpus_per_job=-2", "launcher.gpus_per_job=-2 is not allowed"),
    ("method.kd_weight=nan", "method.kd_weight=nan is not allowed"),
])
def test_every_configuration_value_is_checked_when_resolving(override, message):
    from bench.spec import RunSpec

    with pytest.raises(BenchError) as raised:
        RunSpec.from_names("voc-15-1", "lwf", overrides=[override], resolve_data=False)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_divergence_bound_is_not_part_of_the_identity():
    from bench.spec import RunSpec

    plain = RunSpec.from_names("voc-15-1", "ft", resolve_data=False)
    bound = RunSpec.from_names("voc-15-1", "ft", overrides=["trainer.divergence_factor=1000"],
                               resolve_data=False)
    assert bound.recipes[0].divergence_factor == 1000 and plain.recipes[0].divergence_factor == 100
    assert bound.run_hash == plain.run_hash


def test_the_spec_knows_what_the_model_builds():
    from bench.engine import model
    from bench.spec import BACKBONES, OUTPUT_STRIDES

    assert set(BACKBONES) == set(model.BACKBONES) and OUTPUT_STRIDES == model.OUTPUT_STRIDES


# ----- 2: paths -------------------------------------------------------------------------------
def test_a_runs_root_that_is_a_file_is_one_line(tmp_path, cache):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    one_line_error(run(afile, cache), f"--runs-root {afile} is a file")
    one_line_error(run(afile / "below", cache), f"{afile} is a file")
    assert afile.read_text() == "not a folder"


def test_a_cache_that_is_a_file_is_one_line(tmp_path, cache):
    afile = tmp_path / "afile"
    afile.write_text("")
    result = run(tmp_path / "runs", afile)
    one_line_error(result, f"CSS_BENCH_CACHE={afile} is a file", "unset it")
    assert not (tmp_path / "runs").exists()


def test_aggregate_to_an_existing_file_is_one_line(tmp_path, cache, finished):
    afile = tmp_path / "out"
    afile.write_text("keep me")
    one_line_error(cli("aggregate", str(finished), "--out", str(afile), cache=cache),
                   f"--out {afile} is a file")
    assert afile.read_text() == "keep me"
    one_line_error(cli("tables", str(finished), "--out", str(tmp_path), cache=cache),
                   f"--out {tmp_path} is a folder")


def test_a_data_root_that_is_a_file_is_one_line(tmp_path, cache):
    afile = tmp_path / "voc.tar"
    afile.write_bytes(b"")
    one_line_error(run(tmp_path / "runs", cache, options=("--data-root", str(afile))),
                   f"--data-root {afile} is a file")


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` seen read-only: a read-only bind mount where this process may mount (root
    ignores file permissions), else its files and folders without write permission."""
    view = folder.parent / f"{folder.name}-read-only"
    view.mkdir()
    mount = ["mount", "--bind", "-o", "ro", str(folder), str(view)]
    mounted = os.geteuid() == 0 and subprocess.run(mount, capture_output=True).returncode == 0
    if not mounted:
        view.rmdir()
        view = folder
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    try:
        yield view
    finally:
        if mounted:
            subprocess.run(["umount", str(view)], check=True)
            view.rmdir()
        else:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)


def test_a_finished_run_in_a_read_only_store_is_read_and_never_rewritten(tmp_path, cache,
                                                                           finished):
    runs = copy_of(finished, tmp_path)
    before = snapshot(runs)
    with read_only(runs) as view:
        result = run(view, cache)
        assert result.returncode == 0, result.stderr
        assert "nothing to train" in result.stdout and "done earlier" in result.stdout
        aggregated = cli("aggregate", str(view), "--out", str(tmp_path / "agg"), cache=cache)
        assert aggregated.returncode == 0, aggregated.stderr
    assert snapshot(runs) == before


def test_an_unfinished_run_in_a_read_only_store_is_one_line(tmp_path, cache, finished):
    runs = copy_of(finished, tmp_path)
    shutil.rmtree(run_dir(runs, PROTOCOL, "ft") / "step1")
    before = snapshot(runs)
    with read_only(runs) as view:
        one_line_error(run(view, cache), "is not writable", "pass a writable --runs-root")
    assert snapshot(runs) == before


# ----- 3: sweeps without a cluster ------------------------------------------------------------
def fake_slurm(folder: Path, stderr: str, returncode: int) -> Path:
    """A bin folder whose `sbatch` answers like an sbatch that cannot reach its controller (or
    like one that accepts), and an `srun`; with python3 and nothing else of Slurm."""
    folder.mkdir()
    for name, text in (("sbatch", f"#!/bin/sh\necho '{stderr}' >&2\nexit {returncode}\n"),
                       ("srun", "#!/bin/sh\nexit 1\n")):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


SWEEP = ["sweep", "--protocols", "voc-15-1", "--methods", "ft", "--executor", "slurm", *TINY]


def test_a_dry_run_without_slurm_prints_the_scripts_and_says_slurm_was_not_asked(tmp_path,
                                                                                 cache):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty)}  # no srun, no sbatch (the interpreter is called by its path)
    result = cli(*SWEEP, "--dry-run", "--runs-root", str(tmp_path / "runs"), cache=cache,
                 env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "#SBATCH --time=240" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith(
        "Slurm was not asked whether it accepts these jobs: sbatch and srun not on PATH")
    submitted = cli(*SWEEP, "--runs-root", str(tmp_path / "runs"), cache=cache, env=env)
    one_line_error(submitted, "cannot submit to Slurm", "not on PATH", "nothing was submitted")
    assert not (tmp_path / "runs" / "_sweeps").exists()


def test_a_dry_run_with_an_unreachable_controller_says_so(tmp_path, cache):
    words = "sbatch: error: Unable to contact slurm controller (connect failure)"
    env = {"PATH": f"{fake_slurm(tmp_path / 'bin', words, 1)}:{os.environ['PATH']}"}
    result = cli(*SWEEP, "--dry-run", "--runs-root", str(tmp_path / "runs"), cache=cache,
                 env=env)
    assert result.returncode == 0 and "#SBATCH" in result.stdout, result.stderr
    last = result.stdout.rstrip().splitlines()[-1]
    assert last.startswith("Slurm was not asked") and "Unable to contact slurm" in last
    submitted = cli(*SWEEP, "--runs-root", str(tmp_path / "runs"), cache=cache, env=env)
    one_line_error(submitted, "no Slurm controller could be reached", "nothing was submitted")
    assert not (tmp_path / "runs" / "_sweeps").exists()


def test_a_dry_run_reports_what_slurm_answered(tmp_path, cache):
    accepting = fake_slurm(tmp_path / "ok", "sbatch: Job 3 to start at now", 0)
    result = cli(*SWEEP, "--dry-run", "--runs-root", str(tmp_path / "runs"), cache=cache,
                 env={"PATH": f"{accepting}:{os.environ['PATH']}"})
    assert result.returncode == 0
    assert result.stdout.rstrip().splitlines()[-1] == (
        "Slurm accepts these jobs (sbatch --test-only: sbatch: Job 3 to start at now)")
    refusing = fake_slurm(tmp_path / "no", "sbatch: error: invalid partition specified: x", 1)
    result = cli(*SWEEP, "--dry-run", "--runs-root", str(tmp_path / "runs"), cache=cache,
                 env={"PATH": f"{refusing}:{os.environ['PATH']}"})
    one_line_error(result, "Slurm refuses these jobs", "invalid partition specified")


# ----- 5: a step is done only with a sound model ----------------------------------------------
def test_a_step0_with_non_finite_buffers_is_neither_recorded_nor_shared(tmp_path, cache):
    """lr 300 on the tiny recipe and synth-voc v3: every loss stays finite but BatchNorm's running
    variances overflow (the issue's lr=1e6 on voc-19-1, at this scale; lr 100 diverges with
    finite buffers, lr 3000 gives a non-finite loss first)."""
    runs = tmp_path / "runs"
    line = one_line_error(run(runs, cache, "trainer.lr=300"),
                          "step 0, epoch 1 of 2", "non-finite values in backbone.",
                          "running_var", "nothing of this step was recorded")
    assert "non-finite loss" not in line
    assert not list(runs.rglob("done")) and not list(runs.rglob("record.json"))
    assert not list(runs.glob("_step0/*/checkpoint.pt"))
    assert not list(runs.glob(f"{PROTOCOL}/ft/*/step0"))


def test_a_diverged_step_stops_and_earlier_steps_stay(tmp_path, cache):
    """lr 300 at step 1: the loss grows to 1e5 times its start, finite all along."""
    runs = tmp_path / "runs"
    one_line_error(run(runs, cache, "trainer.lr_incremental=300"),
                   "step 1, epoch", "diverged: its mean loss",
                   "trainer.divergence_factor=100 times the first iteration's",
                   "nothing of this step was recorded")
    directory = run_dir(runs, PROTOCOL, "ft")
    assert (directory / "step0" / "done").is_file()
    assert not (directory / "step1" / "done").exists()
    assert not (directory / "step1" / "record.json").exists()


def test_a_diverged_step0_is_not_shared(tmp_path, cache):
    runs = tmp_path / "runs"
    one_line_error(run(runs, cache, "trainer.lr=100"), "step 0, epoch 1 of 2 diverged")
    assert not list(runs.glob("_step0/*/done")) and not list(runs.rglob("record.json"))


def test_soundness_names_every_non_finite_tensor():
    import torch

    from bench.engine.hooks import UnsoundStep, require_sound, unsound_tensors

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    require_sound(model, "fine")
    model[1].running_var[0] = float("inf")
    model[0].weight.data[0] = float("nan")
    assert unsound_tensors(model) == ["0.weight", "1.running_var"]
    with pytest.raises(UnsoundStep, match="step 3: the model has non-finite values in "
                                          "0.weight, 1.running_var"):
        require_sound(model, "step 3")


# ----- 6: --steps -----------------------------------------------------------------------------
def test_a_reversed_step_range_is_an_error(tmp_path, cache):
    one_line_error(run(tmp_path / "runs", cache, options=("--steps", "3-1"), protocol="voc-15-1"),
                   "--steps 3-1 is a reversed range", "--steps 1-3")
    assert not (tmp_path / "runs").exists()


# ----- 7: bench data check reads every image --------------------------------------------------
def noisy_voc(root: Path, size: int = 24) -> Path:
    """A VOC layout (12 training, 4 validation images) with noisy JPEGs, whose entropy-coded
    data is long enough to cut or damage in the middle."""
    rng = np.random.default_rng(0)
    train = {f"t{i}": label_with(0, 1 + i % 15, 16 + i % 5, size=size) for i in range(12)}
    val = {f"v{i}": label_with(0, 1 + 3 * i, 16 + i, size=size) for i in range(4)}
    write_voc(root, train, val)
    for name in [*train, *val]:
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
    return root


def test_data_check_finds_truncated_and_damaged_images(tmp_path, cache):
    root = noisy_voc(tmp_path / "voc")
    assert cli("data", "check", "--dataset", "voc", "--root", str(root),
               cache=cache).returncode == 0
    cut = root / "JPEGImages" / "t3.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    damaged = root / "JPEGImages" / "v1.jpg"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2: len(data) // 2 + 40] = b"\xff\xd8" * 20
    damaged.write_bytes(bytes(data))
    quick = cli("data", "check", "--dataset", "voc", "--root", str(root), cache=cache)
    assert f"bad: {cut}: truncated (JPEG without its end marker)" in quick.stdout
    one_line_error(quick, "1 problem(s) in the 32 image and label files")
    deep = cli("data", "check", "--dataset", "voc", "--root", str(root), "--deep", cache=cache)
    assert f"bad: {cut}: cannot be decoded" in deep.stdout
    assert f"bad: {damaged}: cannot be decoded" in deep.stdout
    one_line_error(deep, "2 problem(s)")


def test_data_check_finds_an_image_and_label_of_different_sizes(tmp_path, cache):
    root = noisy_voc(tmp_path / "voc")
    Image.new("RGB", (30, 24)).save(root / "JPEGImages" / "t5.jpg")
    result = cli("data", "check", "--dataset", "voc", "--root", str(root), cache=cache)
    assert "t5.jpg: is 30x24 but its label map t5.png is 24x24" in result.stdout
    one_line_error(result, "1 problem(s)")


# ----- 8: the same data at another root -------------------------------------------------------
REAL_TINY = ["model=small", "trainer=synth", "model.base_channels=8", "model.aspp_channels=16",
             "trainer.crop=16", "trainer.batch_size=4", "trainer.epochs=1",
             "trainer.epochs_incremental=1", "trainer.eval_batch_size=4",
             "model.pretrained=none"]


def test_another_copy_of_the_same_data_reuses_the_results_and_says_so(tmp_path, cache):
    first = noisy_voc(tmp_path / "voc")
    runs = tmp_path / "runs"
    trained = run(runs, cache, options=("--data-root", str(first)), tiny=REAL_TINY)
    assert trained.returncode == 0, trained.stderr
    directory = run_dir(runs, PROTOCOL, "ft")
    before = snapshot(runs)
    copy = tmp_path / "copy" / "voc"
    shutil.copytree(first, copy)
    again = run(runs, cache, options=("--data-root", str(copy)), tiny=REAL_TINY)
    assert again.returncode == 0, again.stderr
    assert (f"step(s) 0, 1 were computed earlier from the data at {first.resolve()}; the data "
            f"at {copy.resolve()} has the same content") in again.stdout
    assert "done earlier" in again.stdout and snapshot(runs) == before
    # different content (one label map changed) is another run
    label = np.array(Image.open(copy / "SegmentationClassAug" / "v2.png"))
    label[0, 0] = 17
    Image.fromarray(label, mode="P").save(copy / "SegmentationClassAug" / "v2.png")
    changed = run(runs, cache, options=("--data-root", str(copy)), tiny=REAL_TINY)
    assert changed.returncode == 0, changed.stderr
    assert "this is a new run" in changed.stdout and "computed earlier" not in changed.stdout
    assert len(list(directory.parent.glob("seed0-*"))) == 2


# ----- 9: one process computes a run at a time ------------------------------------------------
def test_a_second_run_of_a_run_in_progress_waits_and_reads_its_records(tmp_path, cache,
                                                                       finished):
    runs = tmp_path / "runs"
    # step 0 long enough (tens of seconds) that the second run starts and finds the lock while
    # the first still trains: with 4 epochs the first finished before the second's imports did
    longer = ("trainer.epochs=40",)
    command = [sys.executable, "-m", "bench.cli", "run", "--protocol", PROTOCOL, "--method", "ft",
               "--quiet", "--runs-root", str(runs), *TINY, *longer]
    env = {**os.environ, "CSS_BENCH_CACHE": str(cache)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=ROOT)
    deadline = time.time() + 300
    while not list(runs.glob("_step0/*/epoch.pt")):  # the first holds the run's lock
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, err + second.stderr
    assert f"run {PROTOCOL}/ft/seed0-" in second.stdout and "is being computed by process" \
        in second.stdout
    table = [line for line in second.stdout.splitlines() if line[:1].isdigit()]
    assert [line.split()[-2:] for line in table] == [["done", "earlier"]] * 2
    assert "epoch" not in second.stdout  # it trained nothing
    assert [line.split()[-1] for line in out.splitlines() if line[:1].isdigit()] == [
        "trained", "trained"]


# ----- 10: recovery advice that works ---------------------------------------------------------
def follow(advice: str) -> list[Path]:
    """Delete what the error message says, as a user would; returns what was deleted."""
    match = re.search(r"delete (.+?) \(rm -r (.+?)\)", advice)
    assert match and match[1] == match[2], advice
    deleted = [Path(p) for p in match[1].split()]
    for path in deleted:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return deleted


def test_a_corrupt_record_is_recomputed_after_following_the_advice(tmp_path, cache, finished):
    runs = copy_of(finished, tmp_path)
    directory = run_dir(runs, PROTOCOL, "ft")
    expected = records(directory)
    (directory / "step1" / "record.json").write_text('{"trunc')
    advice = one_line_error(run(runs, cache), "step1/record.json is unreadable")
    assert follow(advice) == [directory / "step1"]
    again = run(runs, cache)
    assert again.returncode == 0, again.stderr
    assert [line.split()[-1] for line in again.stdout.splitlines() if line[:1].isdigit()] == [
        "earlier", "trained"]
    assert records(directory) == expected


def test_a_truncated_checkpoint_is_recomputed_after_following_the_advice(tmp_path, cache,
                                                                         finished):
    """Step 1 still to train needs step 0's checkpoint: it is cut short; the advice deletes
    step 0 (and what came after), which is then reused from the shared cache, and step 1
    trains again to the same record."""
    runs = copy_of(finished, tmp_path)
    directory = run_dir(runs, PROTOCOL, "ft")
    expected = records(directory)
    shutil.rmtree(directory / "step1")
    checkpoint = directory / "step0" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:40])
    advice = one_line_error(run(runs, cache), f"checkpoint {checkpoint} is unreadable")
    assert follow(advice) == [directory / "step0"]
    again = run(runs, cache)
    assert again.returncode == 0, again.stderr
    assert records(directory) == expected


def test_a_truncated_shared_step0_is_retrained_after_following_the_advice(tmp_path, cache,
                                                                          finished):
    runs = copy_of(finished, tmp_path)
    directory = run_dir(runs, PROTOCOL, "ft")
    expected = records(directory)
    shutil.rmtree(directory / "step1")
    (shared,) = runs.glob("_step0/*/checkpoint.pt")
    shared.write_bytes(shared.read_bytes()[:40])
    advice = one_line_error(run(runs, cache), f"{shared} is unreadable")
    match = re.search(r"delete (\S+) and (\S+) to train step 0 again", advice)
    assert match, advice
    for path in match.groups():
        shutil.rmtree(path)
    again = run(runs, cache)
    assert again.returncode == 0, again.stderr
    assert [line.split()[-1] for line in again.stdout.splitlines() if line[:1].isdigit()] == [
        "trained", "trained"]
    assert records(directory) == expected


def test_a_truncated_epoch_checkpoint_restarts_the_step_after_following_the_advice(
        tmp_path, cache, finished):
    runs = copy_of(finished, tmp_path)
    directory = run_dir(runs, PROTOCOL, "ft")
    expected = records(directory)
    shutil.rmtree(directory / "step1")
    epoch = directory / "step1" / "epoch.pt"
    epoch.parent.mkdir()
    epoch.write_bytes(b"\x80\x02truncated")
    advice = one_line_error(run(runs, cache), f"{epoch} is unreadable",
                            f"delete {epoch} to restart this step")
    epoch.unlink()
    assert "restart" in advice
    again = run(runs, cache)
    assert again.returncode == 0, again.stderr
    assert records(directory) == expected


def test_no_run_directory_for_a_run_that_failed_before_keeping_anything(tmp_path, cache):
    """A run stopped in its first step leaves no run directory, so later runs of the same
    protocol, method and seed do not list it as an earlier configuration."""
    runs = tmp_path / "runs"
    one_line_error(run(runs, cache, "trainer.lr=100"), "diverged")
    assert not list(runs.glob(f"{PROTOCOL}/ft/seed0-*"))
    result = run(runs, cache, options=("--steps", "0"))
    assert result.returncode == 0 and "differs from" not in result.stdout, result.stdout
    assert json.loads(next(runs.glob(f"{PROTOCOL}/ft/seed0-*/spec.json")).read_text())
