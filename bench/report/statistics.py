"""Statistics over seeds: means, sample standard deviations, Student-t intervals and paired tests.

A leaderboard cell is a mean over seeds; its 95 % confidence interval is the Student-t interval
mean +- t(0.975, n - 1) * s / sqrt(n) (s: the sample standard deviation). Methods of one seed
share their step 0 (the same data order and initial model up to step 0), so two methods are
compared on their paired differences over the seeds both ran: the paired t-test, whose 95 %
interval of the mean difference excludes 0 exactly when the two-sided p-value is below 0.05.

The t distribution is computed here (regularised incomplete beta function by its continued
fraction, Numerical Recipes' form of Lentz's method) so that no statistics package is needed;
tests check it against printed t tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


def _incomplete_beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    tiny, epsilon = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        m2 = 2 * m
        numerator = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / (c if abs(c) > tiny else tiny)
        result *= d * c
        numerator = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / (c if abs(c) > tiny else tiny)
        step = d * c
        result *= step
        if abs(step - 1.0) < epsilon:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                 + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _incomplete_beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _incomplete_beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for Student's t with `dof` degrees of freedom."""
    tail = 0.5 * regularized_incomplete_beta(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(probability: float, dof: float) -> float:
    """The `probability` quantile of Student's t (bisection on the CDF, to 1e-12)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability {probability} is not in (0, 1)")
    low, high = -1e6, 1e6
    for _ in range(200):
        middle = 0.5 * (low + high)
        if t_cdf(middle, dof) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation, n and the Student-t confidence interval of the mean
    (NaN bounds with fewer than two values: one seed has no spread)."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    n = len(finite)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan, math.nan)
    mean = math.fsum(finite) / n
    if n < 2:
        return Interval(mean, math.nan, n, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, std, n, mean - half, mean + half)


@dataclass(frozen=True)
class PairedComparison:
    """A - B over the seeds both ran: the mean difference, its interval, the paired t-test."""

    difference: Interval
    seeds: tuple[int, ...]
    t: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (two-sided p < 1 - confidence)."""
        low, high = self.difference.low, self.difference.high
        return not math.isnan(low) and (low > 0 or high < 0)


def paired(a: dict[int, float], b: dict[int, float],
           confidence: float = CONFIDENCE) -> PairedComparison:
    """Paired t-test of A - B over the seeds present (and finite) in both."""
    seeds = tuple(sorted(s for s in set(a) & set(b)
                         if not (math.isnan(a[s]) or math.isnan(b[s]))))
    differences = [a[s] - b[s] for s in seeds]
    summary = interval(differences, confidence)
    if summary.n < 2:
        return PairedComparison(summary, seeds, math.nan, math.nan)
    if summary.std == 0:
        t = math.inf if summary.mean else 0.0
        p_value = 0.0 if summary.mean else 1.0
    else:
        t = summary.mean / (summary.std / math.sqrt(summary.n))
        p_value = 2.0 * (1.0 - t_cdf(abs(t), summary.n - 1))
    return PairedComparison(summary, seeds, t, p_value)
