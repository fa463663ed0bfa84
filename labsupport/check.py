"""Small helpers for claims that hold on a noisy 2-core machine: interleaved arms and
ratios with the numbers shown. Introduced in *serving/synchronous*."""

from __future__ import annotations

import json
import numbers
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

_chapter: str | None = None


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


def claim(condition: bool, statement: str, **measured: float) -> bool:
    """Assert ``condition``, print the statement with the measured values, record it for
    the summary pages, and return True.

    On failure, the assertion message carries the same values, so a failing CI run
    says what was measured, not just that something was false. Chapters write
    ``assert lab.claim(...)`` so that a reader sees the assertion where it is made.
    """
    shown = ", ".join(f"{k}={_plain(v):.3g}" if _is_measure(v) else f"{k}={_plain(v)}"
                      for k, v in measured.items())
    line = f"{'PASS' if condition else 'FAIL'}: {statement} ({shown})"
    _record(statement, bool(condition), measured)
    assert condition, line
    print(line)
    return True


def glue(name: str, value: Any) -> Any:
    """Make a measured ``value`` quotable in the chapter's prose as
    ``{glue:text}`name:.2f``` (myst-nb), and return it.

    numpy numbers are turned into plain Python ones first: myst-nb formats the value's
    text form, and ``np.float64(0.5)`` is not a number to it. Introduced in
    *serving/web-single*."""
    from myst_nb import glue as myst_glue

    plain = _plain(value) if isinstance(value, numbers.Number) else value
    myst_glue(name, plain, display=False)
    return value


def results_dir() -> Path:
    """Where chapters leave their claims and measured values for the summary pages:
    ``$MLSDP_LAB_RESULTS`` (one folder per book build or test run, so two runs at once
    never mix their results), else one folder per machine for a reader's own runs."""
    configured = os.environ.get("MLSDP_LAB_RESULTS")
    path = Path(configured) if configured else Path(tempfile.gettempdir()) / "mlsdp-lab" / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def start_chapter(chapter: str) -> None:
    """Forget the chapter's earlier claims; :func:`claim` records the new ones."""
    global _chapter
    _chapter = chapter
    path = results_dir() / (chapter.replace("/", "-") + ".json")
    path.unlink(missing_ok=True)


def _record(statement: str, passed: bool, measured: Mapping[str, Any]) -> None:
    if _chapter is None:
        return
    path = results_dir() / (_chapter.replace("/", "-") + ".json")
    data = json.loads(path.read_text()) if path.exists() else {"chapter": _chapter, "claims": []}
    data["claims"].append({
        "statement": statement, "passed": passed, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run": os.environ.get("MLSDP_LAB_RUN", ""),  # which test run or book build
        "measured": {k: _plain(v) for k, v in measured.items()},
    })
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)  # atomic: a summary page reading now sees the old or the new file


def _is_measure(value: Any) -> bool:
    """A real number that is not a count or a flag (those print as they are)."""
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a measured value: counts stay integers."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def chapter_results() -> dict[str, dict]:
    """Every chapter's recorded claims, by chapter (e.g. ``"serving/web-single"``)."""
    out = {}
    for path in sorted(results_dir().glob("*.json")):
        data = json.loads(path.read_text())
        out[data["chapter"]] = data
    return out
