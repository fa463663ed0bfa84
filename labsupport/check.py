"""Small helpers for claims that hold on a noisy 2-core machine: interleaved arms and
ratios with the numbers shown. Introduced in *serving/synchronous*."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def interleave(arms: Mapping[str, Callable[[], Any]], rounds: int = 3) -> dict[str, list[Any]]:
    """Run each arm once per round, in A B C, A B C... order, and collect the results.

    Interleaving spreads any slow spell of the machine over all arms instead of
    charging it to whichever arm happened to run then.
    """
    results: dict[str, list[Any]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, arm in arms.items():
            results[name].append(arm())
    return results


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``inf`` when the denominator is 0."""
    return float("inf") if denominator == 0 else numerator / denominator


def claim(condition: bool, statement: str, **measured: float) -> None:
    """Assert ``condition`` and print the statement with the measured values.

    On failure, the assertion message carries the same values, so a failing CI run
    says what was measured, not just that something was false.
    """
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in measured.items())
    line = f"{'PASS' if condition else 'FAIL'}: {statement} ({shown})"
    assert condition, line
    print(line)
