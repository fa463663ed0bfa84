"""labsupport.monitor: the rules stay quiet on clean windows and fire on each anomaly."""

from __future__ import annotations

import numpy as np
import pytest

from labsupport import monitor

NAMES = ["a", "b", "c"]
CLASSES = ["low", "mid", "high"]


def _label(X: np.ndarray) -> np.ndarray:
    """A stand-in model: the class is the tercile of the first feature (normal data)."""
    return np.digitize(X[:, 0], [-0.4307, 0.4307])


def _outlier(X: np.ndarray) -> np.ndarray:
    """A stand-in outlier detector: any feature beyond 1.8 standard deviations."""
    return (np.abs(X) > 1.8).any(axis=1)


@pytest.fixture(scope="module")
def reference() -> monitor.Reference:
    X = np.random.default_rng(0).normal(size=(2000, 3))
    labels = _label(X)
    shares = {name: float(np.mean(labels == i)) for i, name in enumerate(CLASSES)}
    return monitor.Reference(NAMES, X, shares, float(np.mean(_outlier(X))), 100)


def _window(index: int, X: np.ndarray, hashes: list[str] | None = None) -> monitor.Window:
    labels = _label(X)
    counts = {name: int(np.sum(labels == i)) for i, name in enumerate(CLASSES)}
    hashes = hashes if hashes is not None else [f"h{index}-{i}" for i in range(len(X))]
    return monitor.Window(index, len(X), counts, int(_outlier(X).sum()), X, hashes)


def _clean(rng: np.random.Generator, index: int, rate: float = 100) -> monitor.Window:
    return _window(index, rng.normal(size=(rng.poisson(rate), 3)))


def _kinds(window: monitor.Window, reference: monitor.Reference) -> set[str]:
    return {a.kind for a in monitor.evaluate(window, reference)[1]}


# --- false alarms and detection ---------------------------------------------------------------

def test_clean_windows_rarely_raise_an_alert(reference):
    rng = np.random.default_rng(1)
    rates = monitor.firing_rates((_clean(rng, i) for i in range(400)), reference)
    # alpha 1e-3 per rule: a handful of 400 at most; a rule that fires on noise fails here
    assert rates["any"] <= 0.02, rates


def test_a_scale_drift_raises_feature_drift_in_most_windows(reference):
    rng = np.random.default_rng(2)
    drifted = [_window(i, rng.normal(size=(100, 3)) * 1.5 + 0.8) for i in range(50)]
    rates = monitor.firing_rates(drifted, reference)
    assert rates["feature_drift"] >= 0.95 and rates["outlier_rate"] >= 0.9, rates


def test_each_anomaly_raises_its_own_kind(reference):
    rng = np.random.default_rng(3)
    assert "rate_high" in _kinds(_clean(rng, 0, rate=500), reference)
    assert _kinds(_window(1, np.empty((0, 3))), reference) == {"rate_low"}
    X = rng.normal(size=(100, 3))
    assert "repeated_input" in _kinds(_window(2, X, ["same"] * 50 + [f"x{i}" for i in range(50)]),
                                      reference)
    no_low = rng.normal(size=(400, 3))
    no_low = no_low[_label(no_low) != 0][:100]  # an expected output vanishes
    assert "class_mix" in _kinds(_window(3, no_low), reference)


def test_a_spike_is_not_a_retry_storm_and_a_retry_storm_is_not_a_spike(reference):
    rng = np.random.default_rng(4)
    assert "repeated_input" not in _kinds(_clean(rng, 0, rate=500), reference)
    X = rng.normal(size=(100, 3))
    storm = _window(1, X, ["same"] * 40 + [f"x{i}" for i in range(60)])
    assert not _kinds(storm, reference) & {"rate_high", "rate_low"}


def test_floors_keep_tiny_shifts_quiet_on_huge_windows(reference):
    shares = reference.class_shares
    n = 200_000  # the p-value of a 3-point shift is tiny here; the 0.1 floor is not met
    counts = {"low": int(n * (shares["low"] + 0.03)), "mid": int(n * (shares["mid"] - 0.03)),
              "high": int(n * shares["high"])}
    chi2, p, shift = monitor.class_mix(counts, shares)
    assert p < 1e-6 and shift < 0.1
    window = monitor.Window(0, sum(counts.values()), counts,
                            int(sum(counts.values()) * reference.outlier_rate))
    stats, alerts = monitor.evaluate(window, reference, monitor.Rules(rate_factor=1e6))
    assert stats["mix_p"] < 1e-6 and not alerts


def test_small_windows_skip_distribution_tests(reference):
    X = np.full((5, 3), 3.0)  # five outliers of one class: too few rows to test
    stats, alerts = monitor.evaluate(_window(0, X, ["h"] * 5), reference)
    assert "mix_p" not in stats and "ks_p" not in stats
    assert {a.kind for a in alerts} == {"rate_low"}


# --- the statistics -------------------------------------------------------------------------

def test_rate_limits_take_the_wider_of_tail_and_factor():
    assert monitor.rate_limits(100, 1e-3, 2.0) == (50, 200)
    low, high = monitor.rate_limits(4, 1e-3, 2.0)  # few requests: the Poisson tail is wider
    assert low == 0 and high > 8


def test_class_mix_counts_an_unknown_class():
    chi2, p, shift = monitor.class_mix({"a": 50, "b": 40, "new": 10}, {"a": 0.5, "b": 0.5})
    assert p < 1e-6 and shift == pytest.approx(0.1, abs=1e-4)
    assert monitor.class_mix({}, {"a": 1.0}) == (0.0, 1.0, 0.0)


def test_ks_drift_and_psi_see_a_shift_and_not_its_absence():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(1000, 2))
    same, shifted = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + [0, 1]
    assert all(p > 1e-3 for _, p in monitor.ks_drift(same, ref))
    (_, p0), (d1, p1) = monitor.ks_drift(shifted, ref)
    assert p0 > 1e-3 and p1 < 1e-10 and d1 > 0.3
    assert monitor.psi(same[:, 0], ref[:, 0]) < 0.1 < 0.25 < monitor.psi(shifted[:, 1], ref[:, 1])
    with pytest.raises(ValueError, match="columns"):
        monitor.ks_drift(rng.normal(size=(10, 3)), ref)
    with pytest.raises(ValueError, match="empty"):
        monitor.psi([], ref[:, 0])


def test_outlier_test_is_one_sided():
    assert monitor.outlier_test(30, 100, 0.1) < 1e-6
    assert monitor.outlier_test(0, 100, 0.1) == pytest.approx(1.0)
    assert monitor.outlier_test(0, 0, 0.1) == 1.0


# --- inputs, files --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"features": np.zeros((5, 2))}, "one per feature name"),
    ({"class_shares": {"low": 0.5, "mid": 0.1}}, "sum to 1"),
    ({"outlier_rate": 1.5}, "outlier_rate"),
    ({"requests_per_window": 0}, "requests_per_window"),
])
def test_a_bad_reference_is_refused(kwargs, message):
    good = {"feature_names": NAMES, "features": np.zeros((5, 3)),
            "class_shares": {"low": 0.5, "high": 0.5}, "outlier_rate": 0.1,
            "requests_per_window": 10}
    with pytest.raises(ValueError, match=message):
        monitor.Reference(**{**good, **kwargs})


def test_bad_rules_and_windows_are_refused():
    with pytest.raises(ValueError, match="alpha"):
        monitor.Rules(alpha=0)
    with pytest.raises(ValueError, match="rate_factor"):
        monitor.Rules(rate_factor=1)
    with pytest.raises(ValueError, match=">= 0"):
        monitor.Window(0, -1, {}, 0)


def test_reference_and_alerts_survive_their_files(reference, tmp_path):
    loaded = monitor.Reference.load(reference.save(tmp_path / "reference.json"))
    assert loaded.class_shares == pytest.approx(reference.class_shares)
    assert np.allclose(loaded.features, reference.features, atol=1e-6)
    con = monitor.connect(tmp_path / "monitor.sqlite")
    window = _window(7, np.empty((0, 3)))
    stats, alerts = monitor.evaluate(window, reference)
    monitor.record(con, window, stats, alerts, closed=1.0)
    con.close()
    windows, read_alerts = monitor.read(tmp_path / "monitor.sqlite")
    assert windows["window"].tolist() == [7] and windows["requests"].tolist() == [0]
    assert read_alerts["kind"].tolist() == ["rate_low"] and read_alerts["window"].tolist() == [7]
