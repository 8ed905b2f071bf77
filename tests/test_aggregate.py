"""`bench aggregate`: records -> long table -> per-step scores -> seed summary, on crafted runs.

IoUs are known by hand (see tests/aggregate_helpers.py): after step 1 of VOC 19-1, with
`correct_new` of class 20's 10 pixels right and the rest predicted as background,
IoU(20) = correct_new / 10, IoU(0) = 10 / (20 - correct_new), every other class 1.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.report.aggregate import load_runs, long_table
from bench.report.summary import scores_table, seed_summary, summary_markdown
from bench.store.record_reading import data_origin
from tests.aggregate_helpers import (
    REAL_DATA,
    identity_matrix,
    matrix_19_1,
    write_record,
    write_run_19_1,
)


def three_seeds(root: Path) -> Path:
    for seed, correct in enumerate((5, 6, 7)):
        write_run_19_1(root, correct_new=correct, seed=seed)
    return root


def row(frame: pd.DataFrame, **where: object) -> pd.Series:
    selected = frame
    for key, value in where.items():
        selected = selected[selected[key] == value]
    assert len(selected) == 1, f"{len(selected)} rows match {where}"
    return selected.iloc[0]


def test_long_table_holds_per_class_iou_of_the_confusion_matrix(tmp_path: Path) -> None:
    write_run_19_1(tmp_path, correct_new=5, seed=0)
    table = long_table(load_runs([tmp_path]).runs)
    assert len(table) == 20 + 21  # step 0 sees 0-19, step 1 all 21 classes
    last = table[table["step"] == 1]
    assert row(last, **{"class": 0})["iou"] == pytest.approx(100 * 10 / 15)
    assert row(last, **{"class": 20})["iou"] == pytest.approx(50.0)
    assert row(last, **{"class": 20})["class_name"] == "tvmonitor"
    assert row(last, **{"class": 20})["added_at_step"] == 1
    assert row(last, **{"class": 7})["iou"] == pytest.approx(100.0)
    assert 20 not in set(table[table["step"] == 0]["class"])
    first = table.iloc[0]
    assert (first["protocol"], first["setting"], first["mode"], first["method"],
            first["recipe"], first["status"], first["data_kind"]) == (
        "voc-19-1", "19-1", "overlap", "ft", "synth", "complete", "synthetic")


def test_both_metric_conventions_on_a_crafted_matrix(tmp_path: Path) -> None:
    write_run_19_1(tmp_path, correct_new=5, seed=0)
    scores = scores_table(load_runs([tmp_path]).runs, ["sdr", "mib"])
    sdr = row(scores, convention="sdr", step=1)
    # old = 0-19: (IoU(0) = 2/3 + 19 * 1) / 20; new = IoU(20) = 1/2; all over 21 classes
    assert sdr["old"] == pytest.approx(98.3333, abs=1e-4)
    assert sdr["new"] == pytest.approx(50.0)
    assert sdr["all"] == pytest.approx(96.0317, abs=1e-4)
    assert sdr["hiou"] == pytest.approx(66.2921, abs=1e-4)
    assert sdr["old_classes"] == "0-19"
    mib = row(scores, convention="mib", step=1)
    # foreground only: old = 1-19 (all perfect), all over 20 classes
    assert (mib["old"], mib["new"], mib["all"]) == pytest.approx((100.0, 50.0, 97.5))
    assert mib["hiou"] == pytest.approx(66.6667, abs=1e-4)
    assert mib["old_classes"] == "1-19"
    # per-step view: old = classes before step 1 (0-19), new = the step's own class 20
    assert (sdr["step_old"], sdr["step_new"]) == pytest.approx((98.3333, 50.0), abs=1e-4)
    step0 = row(scores, convention="sdr", step=0)
    assert step0["old"] == pytest.approx(100.0) and math.isnan(step0["new"])


def test_mean_and_std_over_three_seeds(tmp_path: Path) -> None:
    summary = seed_summary(scores_table(load_runs([three_seeds(tmp_path)]).runs,
                                        ["sdr", "mib"]))
    sdr = row(summary, convention="sdr", step=1)
    assert (sdr["n"], sdr["seeds"]) == (3, "0,1,2")
    # IoU(20) = 50, 60, 70 %: mean 60, sample std 10
    assert (sdr["new_mean"], sdr["new_std"], sdr["new_n"]) == (pytest.approx(60.0),
                                                               pytest.approx(10.0), 3)
    # old = (10/15, 10/14, 10/13 for background, + 19) / 20 -> mean 98.5836
    assert sdr["old_mean"] == pytest.approx(98.5836, abs=1e-4)
    mib = row(summary, convention="mib", step=1)
    assert (mib["old_mean"], mib["old_std"]) == pytest.approx((100.0, 0.0))
    assert mib["all_mean"] == pytest.approx((1900 + 60) / 20)


def test_partial_runs_are_flagged_and_never_averaged_with_complete_ones(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    write_run_19_1(tmp_path, correct_new=0, seed=3, complete=False)  # step 0 only
    # a last step with its record but no `done` marker is not finished either
    write_run_19_1(tmp_path, correct_new=0, seed=4)
    (next(tmp_path.glob("voc-19-1/ft/seed4-*")) / "step1" / "done").unlink()
    runs = load_runs([tmp_path]).runs
    assert {r.seed: r.status for r in runs} == {0: "complete", 1: "complete", 2: "complete",
                                                3: "partial", 4: "partial"}
    table = long_table(runs)
    assert set(table[table["seed"] == 3]["status"]) == {"partial"}
    summary = seed_summary(scores_table(runs, ["sdr"]))
    complete = row(summary, status="complete", step=1)
    assert (complete["n"], complete["new_mean"]) == (3, pytest.approx(60.0))
    assert row(summary, status="complete", step=0)["seeds"] == "0,1,2"
    partial = row(summary, status="partial", step=1)
    assert (partial["seeds"], partial["new_mean"]) == ("4", pytest.approx(0.0))
    assert row(summary, status="partial", step=0)["seeds"] == "3,4"
    text = summary_markdown(summary, "sdr", [str(tmp_path)])
    assert "Partial runs (not finished; not comparable with the complete ones)" in text


def test_two_configs_of_one_seed_are_both_shown_with_their_hashes(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    write_run_19_1(tmp_path, correct_new=10, seed=0, overrides=("trainer.lr=0.05",))
    runs = load_runs([tmp_path]).runs
    seed0 = [r for r in runs if r.seed == 0]
    assert len(seed0) == 2 and seed0[0].run_hash != seed0[1].run_hash
    summary = seed_summary(scores_table(runs, ["sdr"]))
    last = summary[summary["step"] == 1]
    assert sorted(last["n"]) == [1, 3]  # never one group of 4
    other = row(last, n=1)
    assert other["new_mean"] == pytest.approx(100.0)
    assert other["run_hashes"] in (seed0[1].run_hash, seed0[0].run_hash)
    text = summary_markdown(summary, "sdr", [str(tmp_path)])
    hashes = sorted(last["setup_hash"])
    assert f"FT (complete) has 2 configurations ({', '.join(hashes)})" in text
    assert f"run config(s) {seed0[1].run_hash}" in text or \
        f"run config(s) {seed0[0].run_hash}" in text
    notices = load_runs([tmp_path]).notices()
    assert (f"voc-19-1 / ft / seed 0 has 2 configurations ("
            f"{', '.join(sorted(r.run_hash for r in seed0))})") in " ".join(notices)


def test_unreadable_records_are_named_with_path_and_reason(tmp_path: Path, capsys) -> None:
    three_seeds(tmp_path)
    newer = write_record(tmp_path, step=0, matrix=identity_matrix(20), seed=7, format=99)
    broken = write_record(tmp_path, step=0, matrix=identity_matrix(20), seed=8)
    broken.write_text('{"format": 2, "protocol"')
    odd = write_record(tmp_path, step=0, matrix=identity_matrix(20), seed=9)
    raw = json.loads(odd.read_text())
    raw["seed"] = {"not": "a number"}
    odd.write_text(json.dumps(raw))
    assert main(["aggregate", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert f"{newer}: format 99 is newer than this css-bench reads (up to 2)" in error
    assert f"{broken}: not readable JSON" in error
    assert f"{odd}: malformed record (TypeError" in error
    assert "Traceback" not in error
    assert main(["aggregate", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--skip-unreadable"]) == 0
    assert f"unreadable record skipped: {newer}" in capsys.readouterr().err


def test_a_record_without_spec_or_matrix_is_named_unreadable(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    no_matrix = write_record(tmp_path, step=0, matrix=None, seed=5)
    no_spec = write_record(tmp_path, step=0, matrix=identity_matrix(20), seed=6)
    raw = json.loads(no_spec.read_text())
    del raw["spec"]
    no_spec.write_text(json.dumps(raw))
    collection = load_runs([tmp_path])
    reasons = {str(u.path): u.reason for u in collection.unreadable}
    assert reasons == {str(no_matrix): "no confusion_matrix",
                       str(no_spec): "no spec (expected the run's resolved spec with its "
                                     "identity)"}


def test_a_format_1_record_is_read_but_stale(tmp_path: Path) -> None:
    """Records written before run specs: scores still read, the run listed apart as stale."""
    path = write_record(tmp_path, step=0, matrix=identity_matrix(20), seed=0)
    raw = json.loads(path.read_text())
    raw.update(format=1, config={"trainer": {"name": "synth"}}, config_hash=raw["run_hash"])
    del raw["spec"]
    path.write_text(json.dumps(raw))
    (run,) = load_runs([tmp_path]).runs
    assert run.status == "stale" and "record format 1" in run.stale
    summary = seed_summary(scores_table([run], ["sdr"]))
    assert "Stale runs" in summary_markdown(summary, "sdr", [str(tmp_path)])


def test_a_run_whose_method_default_changed_is_stale(tmp_path: Path, monkeypatch) -> None:
    from methods import get_method

    write_run_19_1(tmp_path, correct_new=5, seed=0, method="lwf")
    (current,) = load_runs([tmp_path]).runs
    assert current.status == "complete" and current.stale is None
    monkeypatch.setattr(get_method("lwf"), "defaults", {"kd_weight": 50.0})
    (stale,) = load_runs([tmp_path]).runs
    assert stale.status == "stale"
    assert "method.params.kd_weight: 100.0 -> 50.0" in stale.stale
    notices = " ".join(load_runs([tmp_path]).notices())
    assert "stale run, listed apart" in notices


def test_a_root_without_records_is_a_user_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty" / "_step0" / "abc").mkdir(parents=True)
    assert main(["aggregate", str(tmp_path / "empty")]) == 2
    assert f"no run records under {tmp_path / 'empty'}" in capsys.readouterr().err
    with pytest.raises(BenchError, match="does not exist"):
        load_runs([tmp_path / "missing"])


def test_aggregate_cli_writes_csv_parquet_markdown_and_latex(tmp_path: Path, capsys) -> None:
    root = three_seeds(tmp_path / "runs")
    out = tmp_path / "out"
    assert main(["aggregate", str(root), "--out", str(out)]) == 0
    long = pd.read_csv(out / "per_class.csv")
    assert len(long) == 3 * (20 + 21)
    assert pd.read_parquet(out / "per_class.parquet").shape == long.shape
    assert set(pd.read_csv(out / "per_step.csv")["convention"]) == {"sdr", "mib"}
    sdr_md = (out / "summary_sdr.md").read_text()
    assert "background counted in old and all" in sdr_md
    # IoU(20) = 50, 60, 70: mean 60, s 10, 95 % interval 60 +- 4.3027 * 10 / sqrt(3)
    assert "| FT | synth |" in sdr_md and "| 60.0 ± 10.0 [35.2, 84.8] |" in sdr_md
    assert "embedded synthetic data, not comparable" in sdr_md
    assert "foreground only" in (out / "summary_mib.md").read_text()
    tex = (out / "summary_mib.tex").read_text()
    assert r"\toprule" in tex and r"60.0 $\pm$ 10.0 [35.2, 84.8]" in tex
    assert "foreground only" in tex
    summary = pd.read_csv(out / "summary_sdr.csv")
    assert set(summary["convention"]) == {"sdr"}
    last = summary[summary["step"] == 1].iloc[0]
    assert (last["new_ci_low"], last["new_ci_high"]) == pytest.approx((35.1586, 84.8414),
                                                                     abs=1e-3)
    assert main(["aggregate", str(root), "--out", str(out / "one"), "--convention", "mib"]) == 0
    assert sorted(p.name for p in (out / "one").glob("summary_*")) == [
        "summary_mib.csv", "summary_mib.md", "summary_mib.tex"]


def test_the_same_run_under_two_roots_is_read_once(tmp_path: Path) -> None:
    three_seeds(tmp_path / "exported")
    # `runs/` holding a nested store (`runs/embedded/...`) with the same runs, one unfinished
    shutil.copytree(tmp_path / "exported", tmp_path / "runs" / "embedded")
    (next((tmp_path / "runs").glob("embedded/voc-19-1/ft/seed1-*")) / "step1" / "done").unlink()
    collection = load_runs([tmp_path / "runs", tmp_path / "exported"])
    assert len(collection.runs) == 3
    assert all(r.complete for r in collection.runs)  # the complete copy is kept
    assert len(collection.duplicate_copies) == 3


def test_a_joint_run_is_scored_as_after_the_last_step(tmp_path: Path) -> None:
    from protocols import get_protocol

    requested = get_protocol("voc-19-1")
    planned = {**requested.to_dict(), "name": "voc-19-1-joint", "step_sizes": [21]}
    path = write_record(tmp_path, step=0, matrix=matrix_19_1(5), method="joint", num_steps=1)
    raw = json.loads(path.read_text())
    raw["protocol"] = {**requested.to_dict(), "trained_as": planned}
    path.write_text(json.dumps(raw))
    (run,) = load_runs([tmp_path]).runs
    assert run.complete and run.steps[0].eval_step == 1
    scores = scores_table([run], ["sdr"])
    assert row(scores, convention="sdr")["new"] == pytest.approx(50.0)


def test_only_records_naming_real_data_count_as_real() -> None:
    assert data_origin(REAL_DATA) == ("voc", "real")
    assert data_origin({"dataset": "synth-ade"}) == ("synth-ade", "synthetic")
    # a format-1 record naming a real set whose files live in the synthetic cache
    assert data_origin({"dataset": "voc", "root": "/c/synth/synth-voc-1a2b"})[1] == "synthetic"
    assert data_origin({}) == ("unknown", "unknown")


def test_a_cell_mixing_torch_releases_is_warned_about(tmp_path: Path) -> None:
    for seed, torch_version in enumerate(("2.14.1", "2.14.1", "2.15.0")):
        write_run_19_1(tmp_path, correct_new=5, seed=seed,
                       versions={"torch": torch_version})
    notices = load_runs([tmp_path]).notices()
    warnings = [n for n in notices if n.startswith("warning:")]
    assert len(warnings) == 1
    assert "voc-19-1 / ft" in warnings[0] and "mixes runs of torch 2.14.1, 2.15.0" in warnings[0]
    write_run_19_1(tmp_path / "same", correct_new=5, seed=0, versions={"torch": "2.14.1"})
    assert not [n for n in load_runs([tmp_path / "same"]).notices() if "warning" in n]
