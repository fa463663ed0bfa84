"""Prediction monitoring: a window of traffic against a reference, rule by rule, and the
alerts it raises, in SQLite.

A *window* is what a monitor saw between two looks at a model server: how many requests
came, how many predictions of each class, how many inputs the outlier detector flagged
(all three from the server's Prometheus counters), and the logged inputs themselves
(features and input hashes, from the prediction log). A :class:`Reference` is what normal
looks like: the training features, the class shares and outlier rate the model gives on
them, and the usual number of requests per window. :func:`evaluate` applies the
:class:`Rules` to a window and returns its statistics and :class:`Alert` s:

==================  ====================================================  ====================
kind                test (scipy)                                          floor
==================  ====================================================  ====================
``class_mix``       chi-squared of class counts vs the reference shares   ``mix_min_shift``
``outlier_rate``    one-sided binomial test of the outlier count          ``outlier_min_rise``
``feature_drift``   two-sample Kolmogorov-Smirnov per feature             ``ks_min_d``
``rate_high``       Poisson upper tail of the request count               ``rate_factor`` x
``rate_low``        Poisson lower tail of the request count               1 / ``rate_factor``
``repeated_input``  the most frequent input hash in the window            ``repeat_min``
==================  ====================================================  ====================

Every statistical rule needs both a small p-value (``alpha`` per rule and window) and an
effect above its floor: on a large window a p-value alone flags shifts too small to act on.
:func:`psi` (population stability index) is here too, for a drift score that does not grow
with the window's size. :func:`firing_rates` replays many windows through the rules to
measure how often each rule fires, when nothing is wrong and when something is.

Introduced in *operation/prediction-monitoring*; the lifecycle chapters reuse it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("class_mix", "outlier_rate", "feature_drift", "rate_high", "rate_low",
         "repeated_input")

SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    window INTEGER PRIMARY KEY,
    closed REAL NOT NULL,
    requests INTEGER NOT NULL,
    stats TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    window INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    threshold REAL,
    message TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_window ON alerts (window);
"""


@dataclass(frozen=True)
class Reference:
    """What normal looks like. ``features``: the training rows (n x d); ``class_shares``:
    the share of each class the model predicts on them; ``outlier_rate``: the share its
    outlier detector flags; ``requests_per_window``: the usual request count of a window."""

    feature_names: list[str]
    features: np.ndarray
    class_shares: dict[str, float]
    outlier_rate: float
    requests_per_window: float

    def __post_init__(self) -> None:
        features = np.asarray(self.features, dtype=float)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ValueError(f"features must be rows of {len(self.feature_names)} values "
                             f"(one per feature name), not shape {features.shape}")
        if len(features) < 2:
            raise ValueError("features must hold at least 2 reference rows")
        object.__setattr__(self, "features", features)
        total = sum(self.class_shares.values())
        if not self.class_shares or any(s < 0 for s in self.class_shares.values()) \
                or not abs(total - 1) < 0.01:
            raise ValueError(f"class_shares must be non-negative and sum to 1, not {total}")
        # rounded shares (as a JSON file keeps them) sum to 1 again
        object.__setattr__(self, "class_shares",
                           {k: float(v) / total for k, v in self.class_shares.items()})
        if not 0 <= self.outlier_rate < 1:
            raise ValueError(f"outlier_rate must be in [0, 1), not {self.outlier_rate}")
        if not self.requests_per_window > 0:
            raise ValueError("requests_per_window must be > 0, "
                             f"not {self.requests_per_window}")

    def save(self, path: str | PathLike[str]) -> Path:
        """Write the reference as JSON (what a monitor process loads)."""
        path = Path(path)
        data = {**asdict(self), "features": self.features.round(6).tolist()}
        path.write_text(json.dumps(data))
        return path

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Reference:
        return cls(**json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class Rules:
    """Thresholds. ``alpha``: the p-value below which a statistical rule may fire, per
    rule and window (the KS rule splits it over the features). The floors keep a rule
    quiet on shifts too small to act on, whatever the window's size."""

    alpha: float = 1e-3
    min_rows: int = 20            # fewer rows in a window: no distribution test
    mix_min_shift: float = 0.10   # some class share moved by at least this much
    outlier_min_rise: float = 0.10  # outlier rate at least this much above the reference
    ks_min_d: float = 0.10        # KS distance at least this
    rate_factor: float = 2.0      # requests at least x2 (or at most /2) the usual count
    repeat_min: int = 10          # one input at least this many times...
    repeat_share: float = 0.10    # ...and at least this share of the window

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.rate_factor <= 1:
            raise ValueError(f"rate_factor must be > 1, not {self.rate_factor}")
        if self.min_rows < 2 or self.repeat_min < 2:
            raise ValueError("min_rows and repeat_min must be >= 2")

    def table(self) -> list[dict[str, str]]:
        """The rules as rows (kind, statistic, fires when), for a chapter to show."""
        a = f"{self.alpha:g}"
        return [
            {"kind": "class_mix", "statistic": "chi-squared, class counts vs reference shares",
             "fires when": f"p < {a} and a share moved >= {self.mix_min_shift:g}"},
            {"kind": "outlier_rate", "statistic": "binomial test, outliers vs reference rate",
             "fires when": f"p < {a} and rate >= reference + {self.outlier_min_rise:g}"},
            {"kind": "feature_drift", "statistic": "KS two-sample, each feature vs training",
             "fires when": f"p < {a} / features and D >= {self.ks_min_d:g}"},
            {"kind": "rate_high", "statistic": "Poisson upper tail of the request count",
             "fires when": f"p < {a} and count >= {self.rate_factor:g} x usual"},
            {"kind": "rate_low", "statistic": "Poisson lower tail of the request count",
             "fires when": f"p < {a} and count <= usual / {self.rate_factor:g}"},
            {"kind": "repeated_input", "statistic": "count of the most frequent input hash",
             "fires when": f">= {self.repeat_min} copies and >= {self.repeat_share:.0%} "
                           "of the window"},
        ]


@dataclass
class Window:
    """What a monitor saw in one window. ``class_counts`` and ``outliers`` come from the
    server's counters; ``features`` (rows x features) and ``input_hashes`` from the log."""

    index: int
    requests: int
    class_counts: dict[str, int]
    outliers: int
    features: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    input_hashes: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.requests < 0 or self.outliers < 0 or any(c < 0 for c in self.class_counts.values()):
            raise ValueError("requests, outliers and class counts must be >= 0")
        self.features = np.asarray(self.features, dtype=float)


@dataclass(frozen=True)
class Alert:
    """One rule that fired on one window."""

    window: int
    kind: str
    value: float
    threshold: float
    message: str


def class_mix(counts: Mapping[str, int], shares: Mapping[str, float]) -> tuple[float, float, float]:
    """Chi-squared test of observed class ``counts`` against the reference ``shares``:
    (statistic, p-value, largest absolute change of a share). A class the reference never
    predicts gets a tiny expected share, so its appearance counts instead of dividing by 0."""
    from scipy import stats

    names = sorted(set(shares) | set(counts))
    observed = np.array([counts.get(n, 0) for n in names], dtype=float)
    total = observed.sum()
    if total == 0:
        return 0.0, 1.0, 0.0
    expected = np.array([max(shares.get(n, 0.0), 1e-6) for n in names])
    expected = expected / expected.sum()
    statistic, p = stats.chisquare(observed, expected * total)
    shift = float(np.abs(observed / total - expected).max())
    return float(statistic), float(p), shift


def outlier_test(outliers: int, requests: int, rate: float) -> float:
    """One-sided binomial p-value: at least ``outliers`` of ``requests`` when the usual
    outlier rate is ``rate``."""
    from scipy import stats

    if requests == 0:
        return 1.0
    return float(stats.binomtest(outliers, requests, rate, alternative="greater").pvalue)


def rate_limits(usual: float, alpha: float, factor: float) -> tuple[int, int]:
    """(low, high): a window with at most ``low`` or at least ``high`` requests is far from
    the ``usual`` count: past the Poisson ``alpha / 2`` tail *and* a factor away."""
    from scipy import stats

    high = max(int(stats.poisson.isf(alpha / 2, usual)) + 1, int(np.ceil(factor * usual)))
    low = min(int(stats.poisson.ppf(alpha / 2, usual)) - 1, int(np.floor(usual / factor)))
    return max(low, 0), high


def ks_drift(features: np.ndarray, reference: np.ndarray) -> list[tuple[float, float]]:
    """Two-sample KS test of each feature column against the reference's:
    [(D, p-value), ...]."""
    from scipy import stats

    features, reference = np.asarray(features, float), np.asarray(reference, float)
    if features.ndim != 2 or features.shape[1] != reference.shape[1]:
        raise ValueError(f"features must have {reference.shape[1]} columns, "
                         f"not shape {features.shape}")
    out = []
    for j in range(reference.shape[1]):
        result = stats.ks_2samp(features[:, j], reference[:, j])
        out.append((float(result.statistic), float(result.pvalue)))
    return out


def psi(values: Sequence[float], reference: Sequence[float], bins: int = 10) -> float:
    """Population stability index of ``values`` against ``reference``, on the reference's
    deciles (``bins`` quantile bins; empty bins get a small share). Rules of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 large shift."""
    values, reference = np.asarray(values, float), np.asarray(reference, float)
    if len(values) == 0 or len(reference) == 0:
        raise ValueError("values and reference must not be empty")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"),
                           minlength=len(edges) + 1) / len(reference)
    actual = np.bincount(np.searchsorted(edges, values, side="right"),
                         minlength=len(edges) + 1) / len(values)
    expected, actual = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def evaluate(window: Window, reference: Reference,
             rules: Rules | None = None) -> tuple[dict[str, Any], list[Alert]]:
    """Apply every rule to one window: (statistics, alerts). Distribution tests need
    ``rules.min_rows`` rows; the rate rules always run (an empty window is news)."""
    rules = rules or Rules()
    alerts: list[Alert] = []
    n = window.requests
    stats_: dict[str, Any] = {"requests": n, "outliers": window.outliers,
                              "outlier_rate": window.outliers / n if n else None,
                              "class_counts": dict(window.class_counts)}

    low, high = rate_limits(reference.requests_per_window, rules.alpha, rules.rate_factor)
    if n >= high:
        alerts.append(Alert(window.index, "rate_high", n, high,
                            f"{n} requests in the window, usual {reference.requests_per_window:g}"))
    if n <= low:
        alerts.append(Alert(window.index, "rate_low", n, low,
                            f"{n} requests in the window, usual {reference.requests_per_window:g}"))

    counted = sum(window.class_counts.values())
    if counted >= rules.min_rows:
        chi2, p, shift = class_mix(window.class_counts, reference.class_shares)
        stats_.update(mix_chi2=chi2, mix_p=p, mix_shift=shift)
        if p < rules.alpha and shift >= rules.mix_min_shift:
            alerts.append(Alert(window.index, "class_mix", shift, rules.mix_min_shift,
                                f"class shares moved by up to {shift:.2f} (chi2 p={p:.1e})"))
    if n >= rules.min_rows:
        p = outlier_test(window.outliers, n, reference.outlier_rate)
        rise = window.outliers / n - reference.outlier_rate
        stats_.update(outlier_p=p)
        if p < rules.alpha and rise >= rules.outlier_min_rise:
            alerts.append(Alert(window.index, "outlier_rate", window.outliers / n,
                                reference.outlier_rate + rules.outlier_min_rise,
                                f"outlier rate {window.outliers / n:.2f}, reference "
                                f"{reference.outlier_rate:.2f} (binomial p={p:.1e})"))
    if len(window.features) >= rules.min_rows:
        tests = ks_drift(window.features, reference.features)
        worst = int(np.argmin([p for _, p in tests]))
        d, p = tests[worst]
        stats_.update(ks_d=max(d for d, _ in tests), ks_p=p,
                      ks_feature=reference.feature_names[worst])
        limit = rules.alpha / len(tests)
        fired = [(name, d, p) for name, (d, p) in zip(reference.feature_names, tests, strict=True)
                 if p < limit and d >= rules.ks_min_d]
        if fired:
            name, d, p = max(fired, key=lambda item: item[1])
            alerts.append(Alert(window.index, "feature_drift", d, rules.ks_min_d,
                                f"{len(fired)} feature(s) drifted, most {name} "
                                f"(KS D={d:.2f}, p={p:.1e})"))
    if len(window.input_hashes):
        top, copies = Counter(window.input_hashes).most_common(1)[0]
        stats_.update(top_input_copies=copies)
        if copies >= rules.repeat_min and copies >= rules.repeat_share * len(window.input_hashes):
            alerts.append(Alert(window.index, "repeated_input", copies, rules.repeat_min,
                                f"input {top} sent {copies} times in the window"))
    return stats_, alerts


def firing_rates(windows: Iterable[Window], reference: Reference,
                 rules: Rules | None = None) -> dict[str, float]:
    """Replay ``windows`` through the rules: the share of windows on which each alert kind
    fired, and ``"any"``. On clean windows, the false-alarm rate of each rule; on windows
    of an anomaly, the chance that one window catches it. Introduced in
    *operation/prediction-monitoring*."""
    fired: Counter[str] = Counter()
    total = 0
    for window in windows:
        _, alerts = evaluate(window, reference, rules)
        kinds = {a.kind for a in alerts}
        fired.update(kinds)
        fired["any"] += bool(kinds)
        total += 1
    if total == 0:
        raise ValueError("no windows to replay")
    return {kind: fired[kind] / total for kind in (*KINDS, "any")}


def connect(path: str | PathLike[str]) -> sqlite3.Connection:
    """Open (and create) a monitor's database: tables ``windows`` (one row per closed
    window, its statistics as JSON) and ``alerts``; WAL mode, so a notebook reads while
    the monitor writes."""
    con = sqlite3.connect(str(path), timeout=10, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(SCHEMA)
    return con


def record(con: sqlite3.Connection, window: Window, stats: Mapping[str, Any],
           alerts: Sequence[Alert], closed: float) -> None:
    """Write one closed window and its alerts in one transaction."""
    with con:
        con.execute("INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                    (window.index, closed, window.requests, json.dumps(stats, default=float)))
        con.executemany("INSERT INTO alerts (window, kind, value, threshold, message, ts) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(a.window, a.kind, float(a.value), float(a.threshold), a.message, closed)
                         for a in alerts])


def read(path: str | PathLike[str]) -> tuple[Any, Any]:
    """(windows, alerts) as pandas frames; the windows' statistics as columns."""
    import pandas as pd

    con = connect(path)
    try:
        rows = con.execute("SELECT window, closed, stats FROM windows ORDER BY window").fetchall()
        alerts = pd.read_sql_query("SELECT * FROM alerts ORDER BY id", con)
    finally:
        con.close()
    windows = pd.DataFrame([{"window": w, "closed": c, **json.loads(s)} for w, c, s in rows])
    return windows, alerts
