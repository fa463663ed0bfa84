from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from labsupport import load, plots  # noqa: E402
from labsupport.diagrams import Diagram  # noqa: E402


def test_diagram_draws_every_node_and_edge() -> None:
    d = Diagram("t").node("a", "A", 0, 0, kind="client").node("b", "B", 2, 0)
    d.node("q", "Q", 2, -1.5, kind="queue").edge("a", "b", "call").edge("b", "q", dashed=True)
    d.group("host", ["b", "q"])
    fig = d.draw()
    ax = fig.axes[0]
    assert len(ax.patches) == 4  # three boxes and the group frame
    assert len([t for t in ax.texts if t.get_text() == "call"]) == 1
    assert {t.get_text() for t in ax.texts} >= {"A", "B", "Q", "host"}


def test_diagram_rejects_unknown_nodes_and_kinds() -> None:
    d = Diagram().node("a", "A", 0, 0)
    with pytest.raises(KeyError, match="no node 'b'"):
        d.edge("a", "b")
    with pytest.raises(ValueError, match="kind must be one of"):
        d.node("c", "C", 1, 1, kind="cloud")


def test_shared_plots_draw_the_data() -> None:
    records = [load.Record(i, "", i * 0.01, i * 0.01, i * 0.01 + 0.002, 200 if i % 3 else 503)
               for i in range(30)]
    ax = plots.timeline(records, slo_ms=5)
    assert len(ax.collections) == 2  # one scatter per status
    ax = plots.latency_cdf({"a": [1, 2, 3], "b": [2, 3, 4]})
    assert len(ax.get_legend().get_texts()) == 2
    ax = plots.percentile_bars({"a": load.summarize(records)})
    assert len(ax.patches) == 3
    ax = plots.stacked_bars({"req": {"model": 0.1, "http": 0.9}})
    assert len(ax.patches) == 2


def test_claim_shows_the_numbers_either_way(capsys) -> None:
    from labsupport import claim

    assert claim(2 > 1, "two beats one", a=2.0, b=1) is True
    assert "PASS: two beats one (a=2, b=1)" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=r"FAIL: one beats two \(a=1\)"):
        claim(1 > 2, "one beats two", a=1)


def test_claims_are_recorded_per_chapter() -> None:
    from labsupport import check, claim

    check.start_chapter("test/recording")
    claim(True, "recorded", ratio=3.5)
    with pytest.raises(AssertionError):
        claim(False, "also recorded when it fails", ratio=0.5)
    data = check.chapter_results()["test/recording"]
    assert [(c["statement"], c["passed"]) for c in data["claims"]] == [
        ("recorded", True), ("also recorded when it fails", False)]
    assert data["claims"][0]["measured"] == {"ratio": 3.5}
    assert data["claims"][0]["run"] == os.environ.get("MLSDP_LAB_RUN", "")
    claim(True, "counts stay integers", rows=np.int64(3), ok=True, note="x")
    assert check.chapter_results()["test/recording"]["claims"][2]["measured"] == {
        "rows": 3, "ok": True, "note": "x"}
    check.start_chapter("test/recording")
    assert "test/recording" not in check.chapter_results()
    check._chapter = None
