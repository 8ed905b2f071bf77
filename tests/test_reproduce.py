"""`bench reproduce`: papers and tables from the published sources, cells -> runs (variant,
recipe), one sweep with shared step 0s, the cost estimate, progress per table, and the embedded
equivalent of a table run end to end with the debug executor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.report.published import load_published
from bench.reproduce.cells import RunRequest, cells_of, plan_cells
from bench.reproduce.estimate import Estimate, figures_hours, pick_device
from bench.reproduce.papers import find_paper, paper_key, papers, table_slug
from tests.engine_helpers import TINY, bench

# A crafted published file with the columns `variant` and `recipe` (variant empty: a method
# without variants).
# Its table 1 is the smallest embedded reproduction of an SDR table: voc-19-1 (2 steps), FT and
# SDR, which share one step 0; `rcil` is not a method of the harness.
PUBLISHED = """source,dataset,setting,mode,method,step,column,value,convention,variant,recipe,notes
"SDR paper (a test copy, 2099), Table 1: test",voc,19-1,overlap,ft,1,all,50.0,sdr,,mib,
"SDR paper (a test copy, 2099), Table 1: test",voc,19-1,overlap,ft,1,old,60.0,sdr,,mib,
"SDR paper (a test copy, 2099), Table 1: test",voc,19-1,overlap,sdr,1,all,55.0,sdr,release,sdr,
"SDR paper (a test copy, 2099), Table 1: test",voc,19-1,overlap,rcil,1,all,52.0,sdr,,,
"SDR paper (a test copy, 2099), Table 2 (ADE)",ade,100-50,overlap,sdr,1,all,30.0,sdr,paper,sdr,
"DKD paper (Baek et al., NeurIPS 2022), Table 1, as quoted",voc,15-1,overlap,ft,5,all,9.0,mib,,mib,
"MiB row as quoted in github.com/x/y/issues/3",voc,15-1,overlap,mib,5,all,29.0,mib,,mib,
"""


@pytest.fixture
def published(tmp_path: Path) -> Path:
    path = tmp_path / "published.csv"
    path.write_text(PUBLISHED)
    return path


@pytest.mark.parametrize(("source", "key", "slug"), [
    ("SDR paper (Michieli & Zanuttigh, CVPR 2021), VOC charts: all classes after the last step",
     "sdr", "voc-charts"),
    ("MiB paper (Cermelli et al., CVPR 2020), Table 1, as quoted in github.com/fcdl94/MiB/issues"
     "/17", "mib", "table-1"),
    ("PLOP paper (Douillard et al., CVPR 2021), as quoted in github.com/arthurdouillard/"
     "CVPR2021_PLOP issues 3 and 19", "plop", "quoted"),
    ("SDR paper (Michieli & Zanuttigh, CVPR 2021), leaderboard entries (Papers with Code)", "sdr",
     "leaderboard-entries"),
    ("MiB row as quoted in github.com/arthurdouillard/CVPR2021_PLOP/issues/3", "mib", "row"),
])
def test_a_source_names_its_paper_and_table(source, key, slug):
    assert (paper_key(source), table_slug(source)) == (key, slug)


def test_the_repository_lists_the_sdr_mib_and_plop_papers():
    found = {paper.key: paper for paper in papers(load_published())}
    assert {"sdr", "mib", "plop"} <= set(found)
    assert found["sdr"].title == "SDR paper (Michieli & Zanuttigh, CVPR 2021)"
    assert [t.slug for t in found["sdr"].tables][:3] == ["voc-charts", "ade20k-charts",
                                                         "sequential-voc"]


def test_tables_are_chosen_by_slug_or_number_and_unknown_ones_are_named(published):
    table = load_published(published)
    assert [p.key for p in papers(table)] == ["sdr", "dkd", "mib"]
    paper = find_paper(table, "SDR")
    assert [t.number for t in paper.select(["table-2", "1"])] == [1, 2]
    with pytest.raises(BenchError, match=r"no table 'table-9'.*1 \(table-1\), 2 \(table-2\)"):
        paper.select(["table-9"])
    with pytest.raises(BenchError, match="no paper 'plop'.*known papers: sdr, dkd, mib"):
        find_paper(table, "plop")


def test_cells_become_runs_with_their_variant_and_recipe_on_real_data_only(published):
    table = load_published(published)
    paper = find_paper(table, "sdr")
    cells = cells_of(table, paper.tables)
    real = plan_cells(cells, real_data=lambda protocol: protocol.startswith("ade"),
                      known_method=lambda m: m != "rcil")
    # the old and all columns of FT share one run; the recipe applies only where data is real
    assert {r: len(c) for r, c in real.requests.items()} == {
        RunRequest("voc-19-1", "ft", "", ""): 2, RunRequest("voc-19-1", "sdr", "release", ""): 1,
        RunRequest("ade-100-50", "sdr", "paper", "sdr"): 1}
    assert RunRequest("ade-100-50", "sdr", "paper", "sdr").overrides() == [
        "method.variant=paper", "trainer=sdr"]
    assert [(c.method, reason) for c, reason in real.not_reproducible] == [
        ("rcil", "no method 'rcil' in this harness (bench list methods)")]


def test_a_cell_whose_run_cannot_be_resolved_is_listed_and_the_others_go_ahead(
        published, monkeypatch):
    from bench.reproduce import plan
    from bench.spec import RunSpec
    from bench.sweep.plan import Plan

    planned = []
    monkeypatch.setattr(plan, "plan_specs", lambda specs: planned.extend(specs) or Plan([], []))
    table = load_published(published)
    paper = find_paper(table, "sdr")

    def make_spec(protocol, method, seed, overrides):
        if protocol.startswith("ade"):
            raise BenchError("ade-100-50-partition needs imported split files (bench data ...)")
        return RunSpec.from_names(protocol, method, seed=seed, overrides=overrides,
                                  resolve_data=False)

    reproduction = plan.plan_reproduction(table, paper, paper.tables, [0, 1], make_spec,
                                          real_data=lambda protocol: False)
    assert sorted(s.label for s in planned) == [
        "voc-19-1/ft/seed0", "voc-19-1/ft/seed1", "voc-19-1/sdr/seed0", "voc-19-1/sdr/seed1"]
    assert sorted((c.method, reason) for c, reason in reproduction.cells.not_reproducible) == [
        ("rcil", "no method 'rcil' in this harness (bench list methods)"),
        ("sdr", "ade-100-50-partition needs imported split files (bench data ...)")]
    # the FT cells (old and all) share their runs, one per seed
    (table_1, _) = paper.tables
    assert len(reproduction.runs_of(reproduction.cells_of(table_1))) == 4


def test_the_estimate_comes_from_the_gpu_figures_when_no_run_has_finished():
    from bench.spec import RunSpec

    spec = RunSpec.from_names("voc-19-1", "ft", overrides=["data.dataset=voc", "data.root=/x",
                                                           "trainer=mib"], resolve_data=False)
    device = {"model": {"backbone": "resnet101", "crop": 512},
              "figures": [{"step": "step 0", "batch": 24, "config": "fp32",
                           "ms_per_iteration": 600.0, "eval_ms_per_image": 20.0},
                          {"step": "step 1", "batch": 12, "config": "fp32",
                           "ms_per_iteration": 400.0, "eval_ms_per_image": 30.0}]}
    counts = {0: (2400, 100), 1: (480, 200)}
    # step 0: 30 epochs x 100 iterations x 600 ms + 100 x 20 ms; step 1: batch 24 from the
    # batch-12 figure scaled per image (800 ms), 30 x 20 x 800 ms + 200 x 30 ms
    expected = (30 * 100 * 0.6 + 2.0 + 30 * 20 * 0.8 + 6.0) / 3600
    assert figures_hours(spec, [0, 1], device, counts) == pytest.approx(expected)
    small = RunSpec.from_names("voc-19-1", "ft", resolve_data=False)  # the embedded model
    assert figures_hours(small, [0, 1], device, counts) is None
    figures = {"devices": {"NVIDIA H200": device}}
    assert pick_device(figures, None) == "NVIDIA H200" == pick_device(figures, "h200")
    with pytest.raises(BenchError, match="no GPU benchmark figures for 'A100'"):
        pick_device(figures, "A100")
    estimate = Estimate()
    estimate.add(1.5, "the cost of finished runs", "a")
    estimate.add(None, "x", "voc-19-1/ft/seed1")
    assert estimate.text() == ("estimated cost: 1.5 or more device-hours (1 from the cost of "
                               "finished runs; unknown for 1 (voc-19-1/ft/seed1))")
    assert Estimate(unknown=["b"]).text().startswith("estimated cost: unknown (")


def test_list_names_the_papers_and_tables(tmp_path, published):
    out = bench("reproduce", "--list", "--published", str(published), runs_root=tmp_path / "r",
                cache=tmp_path / "cache").stdout
    assert "sdr: SDR paper (a test copy, 2099)" in out
    assert "  1  table-1: 4 cells, 1 protocol(s); methods ft, rcil, sdr" in out
    assert "dkd: DKD paper (Baek et al., NeurIPS 2022)" in out


def test_per_cell_keys_cannot_be_overridden(tmp_path, published):
    result = bench("reproduce", "sdr", "--published", str(published), "trainer=sdr",
                   runs_root=tmp_path / "r", cache=tmp_path / "cache", check=False)
    assert result.returncode == 2
    assert "bench reproduce sets trainer per cell" in result.stderr


def test_a_table_reproduced_end_to_end_on_the_embedded_data(tmp_path, published, monkeypatch,
                                                           capsys):
    """Plan and dry run, then the debug executor runs the table; status and tables follow, a
    second reproduction submits nothing and a new seed is estimated from the finished runs.
    In-process (the debug executor runs its jobs in process anyway): one torch import."""
    from bench.cli import main

    runs = tmp_path / "runs"
    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # a sweep extends it
    monkeypatch.delenv("CSS_BENCH_VOC_ROOT", raising=False)

    def bench_here(*args: str, code: int = 0) -> str:
        assert main([*args, "--runs-root", str(runs)]) == code
        return capsys.readouterr().out

    common = ["reproduce", "sdr", "--published", str(published), "--tables", "table-1"]
    dry = bench_here(*common, "--executor", "slurm", "--dry-run", *TINY)
    assert "4 published cells need 2 configuration(s) x 1 seed(s) = 2 distinct run(s)" in dry
    assert "1 cell(s): no method 'rcil' in this harness" in dry
    assert "to submit: 2 run job(s) and 1 step-0 job(s)" in dry
    assert "estimated cost: unknown (" in dry
    assert "phase A: 1 array of 1 step-0 job(s)" in dry and "#SBATCH" in dry
    assert not (runs / "_sweeps").exists()

    out = bench_here(*common, "--executor", "debug", *TINY)
    assert "submitted 1 step-0 job(s) and 2 run job(s) (debug)" in out
    assert ("sdr:table-1 (table 1): 4 cells: 3 complete, 0 partial, 0 not started, "
            "1 not reproducible here; runs 2 of 2 done") in out
    (manifest,) = (runs / "_sweeps").glob("*.json")
    content = json.loads(manifest.read_text())
    assert content["reproduction"]["paper"] == "sdr"
    status = bench_here("status", manifest.stem)
    assert "reproduction of SDR paper (a test copy, 2099) (seeds 0):" in status
    assert "runs 2 of 2 done" in status

    tables = tmp_path / "tables.md"
    assert main(["tables", str(runs), "--published", str(published), "--out",
                 str(tables)]) == 0
    text = tables.read_text().split("## Embedded synthetic data", 1)[1]
    assert "| FT | 19-1 | overlap | 1 | all | sdr | mib | 50.0 |" in text
    assert "(n=1, synth-voc" in text

    again = bench_here(*common, "--executor", "debug", *TINY)
    assert "nothing to submit" in again and "0 run job(s) and 0 step-0 job(s)" in again
    more = bench_here(*common, "--seeds", "0,1", "--executor", "debug", "--dry-run", *TINY)
    assert "to submit: 2 run job(s) and 1 step-0 job(s) (2 run(s) already done" in more
    assert "device-hours (3 from the cost of finished runs)" in more


def test_a_cell_whose_runs_are_partial_says_so():
    from bench.report.paper_tables import PARTIAL, _partial, _reproduced

    run = {"protocol": "voc-15-1", "method": "ft", "variant": "", "num_steps": 6}
    progress = pd.DataFrame([
        {**run, "data_kind": "synthetic", "recipe": "synth", "seed": 1, "done_steps": 3},
        {**run, "data_kind": "synthetic", "recipe": "synth", "seed": 0, "done_steps": 1},
        {**run, "data_kind": "real", "recipe": "sdr", "seed": 0, "done_steps": 2},
        {**run, "data_kind": "synthetic", "variant": "paper", "recipe": "synth", "seed": 2,
         "done_steps": 4}])
    row = pd.Series({"protocol": "voc-15-1", "method": "ft", "variant": "", "recipe": "mib"})
    partial = _partial(progress, row, ["synthetic"])
    # synthetic runs: any recipe (the embedded one); another variant is another cell
    assert partial == "2 partial run(s) (steps done: 1 of 6, 3 of 6)"
    # real data: only the cell's recipe
    assert _partial(progress, row, ["real"]) == ""
    assert _partial(progress, row.replace("mib", "sdr"), ["real"]) == (
        "1 partial run(s) (steps done: 2 of 6)")
    empty = pd.DataFrame(columns=["ft"])
    assert _reproduced(empty, "all", 5.0, True, partial) == (f"{PARTIAL}: {partial}", "")


def test_what_a_debug_job_raised_is_shown_by_status(tmp_path):
    """A debug job leaves no result file; the sweep keeps what it raised in its manifest."""
    from bench.spec import RunSpec
    from bench.sweep.status import rows

    spec = RunSpec.from_names("voc-19-1", "ft", resolve_data=False)
    run = {"protocol": "voc-19-1", "method": "ft", "seed": 0, "run_hash": spec.run_hash,
           "runs_root": str(tmp_path), "num_steps": 2, "job_id": "DEBUG_1",
           "step0_job_id": None, "spec": spec.to_dict()}
    content = {"executor": "debug", "folder": str(tmp_path / "logs"), "runs": [run],
               "step0_jobs": [], "errors": {"DEBUG_1": "BenchError: step 3 has no image"}}
    (row,) = rows(content)
    assert (row["state"], row["error"]) == ("failed", "BenchError: step 3 has no image")


def test_on_real_data_each_cell_runs_the_recipe_it_names(tmp_path, published, crafted_voc,
                                                         monkeypatch, capsys):
    """With a VOC root the VOC cells run on it with their published recipe; the ADE cells,
    without a root, stay on the embedded data with its own recipe. FT (MiB's recipe) and SDR
    (SDR's) train different step 0s."""
    from bench.cli import main

    monkeypatch.setenv("CSS_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CSS_BENCH_ADE_ROOT", raising=False)
    assert main(["reproduce", "sdr", "--published", str(published), "--tables", "1",
                 "--voc-root", str(crafted_voc), "--dry-run", "--runs-root",
                 str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "  voc-19-1: ft (recipe=mib), sdr (variant=release, recipe=sdr)" in out
    assert "embedded synthetic data" not in out
    assert "to submit: 2 run job(s) and 2 step-0 job(s)" in out


def test_progress_per_table_counts_complete_partial_and_not_started_cells(tmp_path):
    from bench.reproduce.progress import table_progress
    from bench.store.runs import RunStore

    runs = {h: {"protocol": "voc-19-1", "method": m, "seed": 0, "run_hash": h,
                "runs_root": str(tmp_path), "num_steps": 2}
            for h, m in (("aaaa", "ft"), ("bbbb", "lwf"), ("cccc", "mib"))}
    for run_hash, done in (("aaaa", [0, 1]), ("bbbb", [0])):  # mib: not started
        run_dir = RunStore(tmp_path).run("voc-19-1", runs[run_hash]["method"], 0, run_hash)
        for step in done:
            run_dir.step_dir(step).mkdir(parents=True)
            (run_dir.step_dir(step) / "done").write_text("")
    cells = [{"cell": "ft all", "runs": ["aaaa"], "not_reproducible": None},
             {"cell": "ft old", "runs": ["aaaa"], "not_reproducible": None},
             {"cell": "ft+lwf", "runs": ["aaaa", "bbbb"], "not_reproducible": None},
             {"cell": "mib", "runs": ["cccc"], "not_reproducible": None},
             {"cell": "rcil", "runs": [], "not_reproducible": "no method 'rcil'"}]
    section = {"paper": "sdr", "runs": runs,
               "tables": [{"number": 1, "slug": "t", "source": "s", "cells": cells}]}
    (progress,) = table_progress(section)
    assert progress.line() == ("sdr:t (table 1): 5 cells: 2 complete, 1 partial, 1 not started, "
                               "1 not reproducible here; runs 1 of 3 done")
