"""The figures that several chapters share. Each function draws on ``ax`` (or a new
figure) and returns the axes, so a chapter can add its own touches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

STATUS_COLOURS = {200: "tab:green", 202: "tab:blue", 429: "tab:orange", 503: "tab:orange",
                  504: "tab:purple", 500: "tab:red", 0: "tab:red"}


def _axes(ax: Any, figsize: tuple[float, float] = (6.4, 3.6)) -> Any:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def latency_cdf(groups: Mapping[str, Sequence[float]], *, ax: Any = None,
                title: str = "Latency CDF", log: bool = True,
                marks: Sequence[float] = (50, 95)) -> Any:
    """Empirical CDF of latencies (ms) per group, with the p50/p95 of each marked.

    Introduced in *serving/web-single*.
    """
    ax = _axes(ax)
    for name, values in groups.items():
        values = np.sort(np.asarray(values, dtype=float))
        if not len(values):
            continue
        y = np.arange(1, len(values) + 1) / len(values)
        (line,) = ax.step(values, y, where="post", label=f"{name} (n={len(values)})")
        for q in marks:
            ax.plot(np.percentile(values, q), q / 100, "o", color=line.get_color(), ms=4)
    if log:
        ax.set_xscale("log")
        # plain numbers (1, 10, 100) instead of 10^0 and crowded minor labels
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return ax


def percentile_bars(summaries: Mapping[str, Mapping[str, float]], *, ax: Any = None,
                    keys: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms"),
                    title: str = "Latency percentiles", log: bool = False) -> Any:
    """Grouped bars of percentiles (the ``summarize`` keys) per arm."""
    ax = _axes(ax)
    names = list(summaries)
    width = 0.8 / len(keys)
    x = np.arange(len(names))
    for j, key in enumerate(keys):
        values = [summaries[n].get(key, np.nan) for n in names]
        bars = ax.bar(x + (j - (len(keys) - 1) / 2) * width, values, width,
                      label=key.replace("_ms", ""))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylabel("ms")
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return ax


def timeline(records: Sequence[Any], *, ax: Any = None, title: str = "Requests over time",
             slo_ms: float | None = None, log: bool = True) -> Any:
    """Latency of each request against its scheduled time, coloured by HTTP status
    (0 = no answer). Introduced in *serving/asynchronous*."""
    ax = _axes(ax)
    if not records:
        return ax
    t0 = min(r.scheduled for r in records)
    for status in sorted({r.status for r in records}):
        chosen = [r for r in records if r.status == status]
        ax.scatter([r.scheduled - t0 for r in chosen], [max(r.latency_ms, 1e-3) for r in chosen],
                   s=6, alpha=0.7, color=STATUS_COLOURS.get(status, "tab:gray"),
                   label=f"{status or 'no answer'} ({len(chosen)})")
    if slo_ms:
        ax.axhline(slo_ms, color="k", ls="--", lw=1, label=f"SLO {slo_ms:g} ms")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("scheduled time (s)")
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize=8, markerscale=2)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return ax


def stacked_bars(parts: Mapping[str, Mapping[str, float]], *, ax: Any = None,
                 title: str = "", unit: str = "ms") -> Any:
    """Horizontal stacked bars: one bar per row of ``parts``, one segment per inner key."""
    ax = _axes(ax, (6.4, 1.2 + 0.6 * len(parts)))
    rows = list(parts)
    segments = list(dict.fromkeys(k for row in parts.values() for k in row))
    left = np.zeros(len(rows))
    for seg in segments:
        values = np.array([parts[r].get(seg, 0.0) for r in rows])
        bars = ax.barh(rows, values, left=left, label=seg)
        ax.bar_label(bars, labels=[f"{v:.2f}" if v > 0 else "" for v in values],
                     label_type="center", fontsize=7)
        left += values
    ax.set_xlabel(unit)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    return ax
