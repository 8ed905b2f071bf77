"""`bench plot`: forgetting curves and class x step heatmaps, written as PNG and PDF."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.cli import main
from bench.report.aggregate import load_runs, long_table
from bench.report.plots import _heatmap_frame
from tests.aggregate_helpers import write_run_19_1


def test_plot_writes_curves_and_heatmaps_as_png_and_pdf(tmp_path: Path, capsys) -> None:
    root = tmp_path / "runs"
    write_run_19_1(root, correct_new=5, seed=0)
    write_run_19_1(root, correct_new=7, seed=1)
    write_run_19_1(root, correct_new=7, seed=2, method="mib", complete=False)
    out = tmp_path / "plots"
    assert main(["plot", str(root), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    stems = {n.rsplit(".", 1)[0] for n in names}
    assert "curves_voc-19-1_synth-voc_sdr" in stems
    assert "heatmap_voc-19-1_synth-voc_ft" in stems
    assert "heatmap_voc-19-1_synth-voc_mib_partial" in stems
    assert len(names) == 2 * len(stems)  # every figure as PNG and PDF
    for name in names:
        head = (out / name).read_bytes()[:8]
        assert head.startswith(b"\x89PNG" if name.endswith(".png") else b"%PDF")
    assert "1 forgetting-curve figure(s), 2 heatmap(s) and 0 loss-curve figure(s)" in \
        capsys.readouterr().out  # these crafted records hold no loss history


def test_heatmap_is_the_seed_mean_per_class_and_step(tmp_path: Path) -> None:
    write_run_19_1(tmp_path, correct_new=5, seed=0)
    write_run_19_1(tmp_path, correct_new=7, seed=1)
    table, added = _heatmap_frame(long_table(load_runs([tmp_path]).runs))
    assert list(table.columns) == [0, 1]
    assert table.index[20] == "20 tvmonitor"
    assert table.loc["20 tvmonitor", 1] == pytest.approx(60.0)  # (50 + 70) / 2
    assert math.isnan(table.loc["20 tvmonitor", 0])  # not seen at step 0
    assert table.loc["0 background", 1] == pytest.approx(100 * (10 / 15 + 10 / 13) / 2)
    assert added == [0] * 20 + [1]


def test_plot_draws_each_step_s_per_epoch_loss_terms(tmp_path: Path, capsys) -> None:
    from bench.report.plots import loss_table

    root = tmp_path / "runs"
    for seed, scale in ((0, 1.0), (1, 3.0)):
        history = [{"ce": 2.0 * scale, "kd": 0.5}, {"ce": 1.0 * scale, "kd": 0.25}]
        write_run_19_1(root, correct_new=5, seed=seed, method="lwf", loss_history=history)
    out = tmp_path / "plots"
    assert main(["plot", str(root), "--out", str(out)]) == 0
    assert (out / "losses_voc-19-1_synth-voc_lwf.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "losses_voc-19-1_synth-voc_lwf.pdf").read_bytes()[:4] == b"%PDF"
    assert "and 1 loss-curve figure(s)" in capsys.readouterr().out
    table = loss_table(load_runs([root]).runs)
    # 2 seeds x 2 steps x 2 epochs x 2 terms; the curve is their mean over seeds
    assert len(table) == 16
    epoch_one = table[(table["step"] == 1) & (table["epoch"] == 1) & (table["term"] == "ce")]
    assert epoch_one["loss"].mean() == pytest.approx((2.0 + 6.0) / 2)
