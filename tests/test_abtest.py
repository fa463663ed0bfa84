"""labsupport.abtest: each formula checked against an independent computation (scipy, or a
simulation), and each interval or error rate against what it promises."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.stats import chi2_contingency

from labsupport import abtest


@pytest.mark.parametrize(("p_base", "mde"), [(0.65, 0.05), (0.2, 0.03), (0.5, -0.1)])
def test_sample_size_gives_the_power_it_promises(p_base: float, mde: float) -> None:
    n = abtest.sample_size(p_base, mde, alpha=0.05, power=0.8)
    measured = abtest.simulated_power(p_base, p_base + mde, n, sims=20_000, seed=1)
    assert abs(measured - 0.8) < 0.02, (n, measured)
    # half the sample is clearly underpowered
    assert abtest.simulated_power(p_base, p_base + mde, n // 2, sims=20_000, seed=1) < 0.6


def test_sample_size_grows_with_a_smaller_effect_and_a_stricter_test() -> None:
    base = abtest.sample_size(0.3, 0.05)
    assert abtest.sample_size(0.3, 0.025) > 3.5 * base  # ~1/mde^2
    assert abtest.sample_size(0.3, 0.05, alpha=0.01) > base
    assert abtest.sample_size(0.3, 0.05, power=0.9) > base


@pytest.mark.parametrize("bad", [dict(p_base=0.0, mde=0.1), dict(p_base=0.95, mde=0.1),
                                 dict(p_base=0.5, mde=0.0), dict(p_base=0.5, mde=0.1, alpha=1.0)])
def test_sample_size_rejects_impossible_inputs(bad: dict) -> None:
    with pytest.raises(ValueError):
        abtest.sample_size(**bad)


def test_z_test_matches_scipy_chi_square() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_a, n_b = rng.integers(50, 3000, 2)
        x_a, x_b = rng.integers(1, n_a), rng.integers(1, n_b)
        diff, z, p = abtest.two_proportion_test(x_a, n_a, x_b, n_b)
        table = [[x_a, n_a - x_a], [x_b, n_b - x_b]]
        chi2, p_scipy, _, _ = chi2_contingency(table, correction=False)
        assert p == pytest.approx(p_scipy, rel=1e-6, abs=1e-12)
        assert z ** 2 == pytest.approx(chi2, rel=1e-6)
        assert diff == pytest.approx(x_b / n_b - x_a / n_a)


def test_z_test_vectorised_and_degenerate_cases() -> None:
    diff, z, p = abtest.two_proportion_test([10, 0, 5], [100, 0, 5], [20, 3, 5], [100, 10, 5])
    assert diff.shape == z.shape == p.shape == (3,)
    assert p[0] < 0.1
    assert p[1] == 1.0 and z[1] == 0.0  # A has no trials: no evidence either way
    assert p[2] == 1.0  # both arms converted every time: pooled rate 1
    with pytest.raises(ValueError):
        abtest.two_proportion_test(11, 10, 5, 10)


def test_bootstrap_interval_covers_the_true_difference_about_95_percent() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    trials = 300
    for i in range(trials):
        a, b = rng.random(400) < 0.6, rng.random(400) < 0.65
        ci = abtest.bootstrap_diff(a, b, n_boot=400, seed=i)
        hits += ci["low"] <= 0.05 <= ci["high"]
    assert 0.9 <= hits / trials <= 0.99, hits / trials


def test_bootstrap_interval_agrees_with_scipy() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 500), rng.normal(0.3, 2, 700)
    ours = abtest.bootstrap_diff(a, b, n_boot=4000, seed=0)
    theirs = stats.bootstrap((a, b), lambda x, y: np.mean(y) - np.mean(x), n_resamples=4000,
                             method="percentile", vectorized=False, rng=0).confidence_interval
    assert ours["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert ours["low"] == pytest.approx(theirs.low, abs=0.03)
    assert ours["high"] == pytest.approx(theirs.high, abs=0.03)


def test_grouped_bootstrap_is_wider_when_users_differ() -> None:
    rng = np.random.default_rng(5)
    # 100 users per arm, 20 requests each, every user with their own conversion rate
    def arm(mean: float) -> tuple[np.ndarray, np.ndarray]:
        rates = np.clip(rng.normal(mean, 0.3, 100), 0, 1)
        users = np.repeat(np.arange(100), 20)
        return (rng.random(users.size) < rates[users]).astype(float), users

    (a, users_a), (b, users_b) = arm(0.5), arm(0.5)
    plain = abtest.bootstrap_diff(a, b, seed=0)
    grouped = abtest.bootstrap_diff(a, b, groups_a=users_a, groups_b=users_b, seed=0)
    assert grouped["diff"] == plain["diff"]
    assert (grouped["high"] - grouped["low"]) > 1.8 * (plain["high"] - plain["low"])


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        abtest.bootstrap_diff([], [1.0])
    with pytest.raises(ValueError):
        abtest.bootstrap_diff([1.0, 0.0], [1.0], groups_a=[1])
    with pytest.raises(ValueError):
        abtest.bootstrap_diff([1.0], [1.0], n_boot=10)


def test_peeking_inflates_the_false_positive_rate_and_the_fixed_rules_do_not() -> None:
    rng = np.random.default_rng(6)
    outcomes = (rng.random(3000) < 0.4).astype(float)
    result = abtest.peeking_replays(outcomes, looks=20, replays=2000, seed=1)
    assert 0.035 <= result["fixed"] <= 0.065, result["fixed"]
    assert result["bonferroni"] <= 0.05
    assert result["peeking"] >= 2.5 * result["fixed"]
    by_look = result["declared_by_look"]
    assert np.all(np.diff(by_look) >= 0) and by_look[-1] == pytest.approx(result["peeking"])
    assert result["p"].shape == (2000, 20)
    assert result["look_sizes"][-1] == 3000


def test_peeking_replays_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        abtest.peeking_replays([0.0, 1.0, 0.5, 1.0], looks=2, replays=10)
    with pytest.raises(ValueError):
        abtest.peeking_replays([0.0, 1.0], looks=5, replays=10)
