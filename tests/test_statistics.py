"""Intervals and paired tests against printed tables and hand arithmetic."""

from __future__ import annotations

import math

import pytest

from bench.report.statistics import interval, paired, t_cdf, t_quantile


@pytest.mark.parametrize(("dof", "printed"), [
    (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262), (29, 2.045),
    (120, 1.980),
])
def test_t_quantiles_match_the_printed_table(dof, printed):
    # two-sided 95 % critical values, e.g. any statistics textbook's t table
    assert t_quantile(0.975, dof) == pytest.approx(printed, abs=5e-4)


def test_t_cdf_known_values():
    assert t_cdf(0.0, 3) == pytest.approx(0.5)
    # dof 1 is the Cauchy distribution: P(T <= 1) = 1/2 + atan(1)/pi = 0.75
    assert t_cdf(1.0, 1) == pytest.approx(0.75)
    # dof 2 has a closed form: P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2)); t = 2 -> 0.9082483
    assert t_cdf(2.0, 2) == pytest.approx(0.5 + 2 / (2 * math.sqrt(6)))
    assert t_cdf(-2.0, 2) == pytest.approx(0.5 - 2 / (2 * math.sqrt(6)))


def test_interval_of_three_seeds_by_hand():
    # mean 60, s = 10, t(0.975, 2) = 4.3027: half width 4.3027 * 10 / sqrt(3) = 24.8414
    result = interval([50.0, 60.0, 70.0])
    assert (result.mean, result.std, result.n) == (60.0, 10.0, 3)
    assert (result.low, result.high) == pytest.approx((35.1586, 84.8414), abs=1e-4)
    single = interval([42.0])
    assert single.mean == 42.0 and math.isnan(single.std) and math.isnan(single.low)
    assert interval([float("nan"), 1.0, 3.0]).n == 2


def test_paired_difference_uses_common_seeds_only():
    # differences over seeds 0, 1, 2: 1, 1.5, 2.5 (seed 3 only in A is left out)
    # mean 5/3, s = sqrt(((-2/3)^2 + (-1/6)^2 + (5/6)^2) / 2) = 0.76376, t = 3.7796, p = 0.0634
    result = paired({0: 1.0, 1: 2.0, 2: 3.5, 3: 99.0}, {0: 0.0, 1: 0.5, 2: 1.0})
    assert result.seeds == (0, 1, 2)
    assert result.difference.mean == pytest.approx(5 / 3)
    assert result.difference.std == pytest.approx(0.763763, abs=1e-6)
    assert result.t == pytest.approx(3.779645, abs=1e-6)
    assert result.p_value == pytest.approx(0.063414, abs=1e-6)
    assert not result.significant  # the interval [-0.23, 3.56] holds 0
    clear = paired({0: 10.0, 1: 11.0, 2: 12.0}, {0: 1.0, 1: 2.1, 2: 2.9})
    assert clear.significant and clear.p_value < 0.001


def test_bench_compare_pairs_seeds_of_two_methods(tmp_path, capsys):
    from bench.cli import main
    from tests.aggregate_helpers import write_run_19_1

    # class 20's IoU (the only new class) per seed: ft 50/60/70 %, lwf 60/80/90 %
    # differences lwf - ft on "new": 10, 20, 20: mean 16.67, s = 5.7735, t = 5.0, p = 0.0377
    for seed, (ft, lwf) in enumerate(((5, 6), (6, 8), (7, 9))):
        write_run_19_1(tmp_path, correct_new=ft, seed=seed, method="ft")
        write_run_19_1(tmp_path, correct_new=lwf, seed=seed, method="lwf")
    assert main(["compare", "--protocol", "voc-19-1", "lwf", "ft", str(tmp_path),
                 "--metric", "new"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("1 "))
    assert "0,1,2" in line and "+16.67" in line and "0.038" in line and "lwf > ft" in line
    # the interval: 16.67 +- 4.3027 * 5.7735 / sqrt(3) = [2.3, 31.0]
    assert "[2.3, 31.0]" in line
    assert main(["compare", "--protocol", "voc-19-1", "lwf", "mib", str(tmp_path)]) == 2
    assert "no complete, current run of mib" in capsys.readouterr().err
