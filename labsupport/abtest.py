"""The statistics of an online A/B test, shared by the QA chapters and the operation ones.

* :func:`sample_size`: how many observations per arm a test needs to detect a given lift
  of a conversion rate (a power calculation, done *before* the test);
* :func:`simulated_power`: the same question answered by simulation, to check the formula;
* :func:`two_proportion_test`: the two-sided z-test of two conversion rates (vectorised,
  so that thousands of replays cost milliseconds);
* :func:`bootstrap_diff`: a percentile bootstrap interval for the difference of a KPI's
  mean between two arms, resampling requests or whole users (the unit that was randomised);
* :func:`peeking_replays`: an A/A test replayed with many seeds and checked after every
  batch, under three stopping rules, to measure each rule's false-positive rate.

The splitting proxy itself stays in the chapters: it *is* the pattern. Introduced in
*qa/online-ab*; *qa/anti-offline-only* reuses the bootstrap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0 and 1, not {value!r}")
    return value


def sample_size(p_base: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm for a two-sided two-proportion z-test at level ``alpha`` to
    detect a rise from ``p_base`` to ``p_base + mde`` with probability ``power``.

    The classic normal-approximation formula: the rates' pooled variance under the null,
    their own variances under the alternative. Introduced in *qa/online-ab*.
    """
    p1 = _check_rate("p_base", p_base)
    p2 = _check_rate("p_base + mde", p_base + mde)
    _check_rate("alpha", alpha)
    _check_rate("power", power)
    if mde == 0:
        raise ValueError("mde must not be 0: no test can detect a zero lift")
    pooled = (p1 + p2) / 2
    z_alpha, z_power = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    root = (z_alpha * np.sqrt(2 * pooled * (1 - pooled))
            + z_power * np.sqrt(p1 * (1 - p1) + p2 * (1 - p2)))
    return int(np.ceil(root ** 2 / mde ** 2))


def two_proportion_test(x_a: Any, n_a: Any, x_b: Any, n_b: Any) -> tuple[Any, Any, Any]:
    """Two-sided z-test that arms A and B convert at the same rate, from their successes
    ``x`` and trials ``n`` (scalars or arrays of equal shape). Returns ``(diff, z, p)``
    with ``diff = rate_B - rate_A``; where an arm has no trials or the pooled rate is 0 or
    1, ``z`` is 0 and ``p`` is 1 (no evidence). Introduced in *qa/online-ab*.
    """
    x_a, n_a, x_b, n_b = (np.asarray(v, dtype=float) for v in (x_a, n_a, x_b, n_b))
    if np.any((x_a < 0) | (x_b < 0) | (x_a > n_a) | (x_b > n_b)):
        raise ValueError("successes must be between 0 and the number of trials")
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_a, rate_b = x_a / n_a, x_b / n_b
        pooled = (x_a + x_b) / (n_a + n_b)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        z = (rate_b - rate_a) / se
    usable = np.isfinite(z)
    z = np.where(usable, z, 0.0)
    diff = np.where((n_a > 0) & (n_b > 0), np.nan_to_num(rate_b - rate_a), 0.0)
    p = np.where(usable, 2 * stats.norm.sf(np.abs(z)), 1.0)
    if np.ndim(z) == 0:
        return float(diff), float(z), float(p)
    return diff, z, p


def simulated_power(p_a: float, p_b: float, n: int, *, alpha: float = 0.05,
                    sims: int = 2000, seed: int = 0) -> float:
    """The share of ``sims`` simulated tests, ``n`` Bernoulli trials per arm at rates
    ``p_a`` and ``p_b``, in which :func:`two_proportion_test` rejects at ``alpha``: the
    test's power, measured instead of computed. Introduced in *qa/online-ab*."""
    if n < 1 or sims < 1:
        raise ValueError(f"n and sims must be >= 1, not n={n}, sims={sims}")
    rng = np.random.default_rng(seed)
    x_a = rng.binomial(n, _check_rate("p_a", p_a), sims)
    x_b = rng.binomial(n, _check_rate("p_b", p_b), sims)
    return float(np.mean(two_proportion_test(x_a, n, x_b, n)[2] < alpha))


def bootstrap_diff(values_a: Sequence[float], values_b: Sequence[float], *,
                   groups_a: Sequence[Any] | None = None, groups_b: Sequence[Any] | None = None,
                   n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """A percentile bootstrap interval for ``mean(values_b) - mean(values_a)``.

    Each arm is resampled on its own, with replacement. With ``groups_a``/``groups_b``
    (a user id per value), whole groups are resampled: when users were randomised, their
    requests are not independent, and the interval must say so. Returns the observed
    difference, the interval's ``low`` and ``high``, and the bootstrap differences
    themselves (``draws``). Introduced in *qa/online-ab*.
    """
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100 for a usable interval, not {n_boot}")
    _check_rate("level", level)
    rng = np.random.default_rng(seed)
    means = [_bootstrap_means(np.asarray(values, dtype=float), groups, n_boot, rng)
             for values, groups in ((values_a, groups_a), (values_b, groups_b))]
    draws = means[1] - means[0]
    observed = float(np.mean(values_b) - np.mean(values_a))
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return {"diff": observed, "low": float(low), "high": float(high), "draws": draws}


def _bootstrap_means(values: np.ndarray, groups: Sequence[Any] | None, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    if values.size == 0:
        raise ValueError("each arm needs at least one value")
    if groups is None:
        picks = rng.integers(0, values.size, (n_boot, values.size))
        return values[picks].mean(axis=1)
    if len(groups) != values.size:
        raise ValueError(f"groups has {len(groups)} entries for {values.size} values")
    # per group: its sum and its count; a resample of groups is then two matrix sums
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(float)
    picks = rng.integers(0, sums.size, (n_boot, sums.size))
    return sums[picks].sum(axis=1) / counts[picks].sum(axis=1)


def peeking_replays(outcomes: Sequence[float], *, looks: int, replays: int,
                    alpha: float = 0.05, share_b: float = 0.5,
                    seed: int = 0) -> dict[str, Any]:
    """Replay an A/A test ``replays`` times and count false winners.

    ``outcomes`` are logged 0/1 KPI values of traffic whose two arms ran the same model,
    in arrival order. Each replay draws a new seeded split (B with probability
    ``share_b``), cuts the traffic into ``looks`` equal batches, and runs
    :func:`two_proportion_test` on the data so far after every batch. Three rules:

    * ``"peeking"``: stop at the first look with ``p < alpha`` and declare a winner;
    * ``"fixed"``: test once, at the planned end (the last look), at ``alpha``;
    * ``"bonferroni"``: look every batch but at ``alpha / looks``: a simple sequential
      rule whose error rate cannot exceed ``alpha`` (the union bound).

    Returns each rule's false-positive rate, the per-look p-values (``p``, replays x
    looks), and the share of replays that had declared a winner by each look
    (``declared_by_look``). Introduced in *qa/online-ab*.
    """
    values = np.asarray(outcomes, dtype=float)
    if looks < 1 or replays < 1:
        raise ValueError(f"looks and replays must be >= 1, not {looks}, {replays}")
    if values.size < 2 * looks:
        raise ValueError(f"{values.size} outcomes are too few for {looks} looks")
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError("outcomes must be 0 or 1 (a conversion)")
    rng = np.random.default_rng(seed)
    in_b = rng.random((replays, values.size)) < share_b
    # cumulative successes and trials per arm at the end of each batch
    ends = np.linspace(0, values.size, looks + 1).astype(int)[1:] - 1
    x_b = np.cumsum(in_b * values, axis=1)[:, ends]
    n_b = np.cumsum(in_b, axis=1)[:, ends]
    x_a = np.cumsum(values)[ends] - x_b
    n_a = (ends + 1) - n_b
    _, _, p = two_proportion_test(x_a, n_a, x_b, n_b)
    declared = np.maximum.accumulate(p < alpha, axis=1)
    return {
        "peeking": float(declared[:, -1].mean()),
        "fixed": float(np.mean(p[:, -1] < alpha)),
        "bonferroni": float(np.mean((p < alpha / looks).any(axis=1))),
        "declared_by_look": declared.mean(axis=0),
        "p": p,
        "look_sizes": ends + 1,
    }
