from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi import FastAPI

from labsupport import load
from labsupport.servers import serve


def one_at_a_time_app(service_s: float) -> FastAPI:
    """A server that can only work on one request at a time (a single busy worker)."""
    app = FastAPI()
    lock = asyncio.Lock()

    @app.get("/health")
    async def health() -> dict:
        return {}

    @app.post("/work")
    async def work(body: dict) -> dict:
        async with lock:
            await asyncio.sleep(service_s)
        return {"echo": body.get("i")}

    return app


@pytest.fixture(scope="module")
def slow_server():
    with serve(one_at_a_time_app(0.02), name="slow-one-at-a-time") as srv:
        yield srv


def test_closed_loop_sends_exactly_n(slow_server) -> None:
    records = load.closed_loop(slow_server.url + "/work", lambda i: {"i": i}, n=20,
                               concurrency=2, tag="c")
    assert [r.index for r in records] == list(range(20))
    assert all(r.ok and r.tag == "c" for r in records)
    assert all(r.scheduled == r.start for r in records)


def test_open_loop_charges_the_queue_to_latency(slow_server) -> None:
    # 100 requests/s against a server that completes 50/s: a queue builds, and since
    # latency counts from the scheduled time, the late requests show it.
    records = load.open_loop(slow_server.url + "/work", [{"i": 0}], rate=100, duration=0.6)
    assert len(records) == 60
    gaps = np.diff([r.scheduled for r in records])
    assert np.allclose(gaps, 0.01, atol=1e-6)
    summary = load.summarize(records)
    closed = load.summarize(load.closed_loop(slow_server.url + "/work", [{"i": 0}], n=10))
    assert summary["p95_ms"] > 5 * closed["p50_ms"]
    assert summary["p95_ms"] > 300  # the last ones wait for ~30 requests ahead of them


def test_errors_are_recorded_not_raised() -> None:
    records = load.closed_loop("http://127.0.0.1:9/nothing", None, n=3, timeout=0.5)
    assert [r.status for r in records] == [0, 0, 0]
    assert all(r.error for r in records)
    assert load.summarize(records)["error_rate"] == 1.0


def test_only_loopback_is_allowed() -> None:
    with pytest.raises(ValueError, match="loopback"):
        load.closed_loop("http://10.0.0.1/predict", None, n=1)


def test_summarize_percentiles_and_goodput() -> None:
    records = [load.Record(i, "", 0.0, 0.0, (i + 1) / 1000, 200) for i in range(100)]
    records.append(load.Record(100, "", 0.0, 0.0, 0.05, 503))
    summary = load.summarize(records, slo_ms=50)
    assert summary["requests"] == 101 and summary["ok"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["within_slo"] == 50
    frame = load.to_frame(records)
    assert list(frame["latency_ms"][:2]) == pytest.approx([1.0, 2.0])


def test_server_timing_headers_are_parsed() -> None:
    timings = load.server_timings({"X-Model-Time-Ms": "0.25", "x-app-time-ms": "1.5",
                                   "x-bad-time-ms": "n/a", "content-type": "json"})
    assert timings == {"model": 0.25, "app": 1.5}


def test_bodies_are_kept_on_request(slow_server) -> None:
    records = load.closed_loop(slow_server.url + "/work", lambda i: {"i": i}, n=3,
                               keep_body=True)
    assert [r.body for r in records] == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
    assert load.closed_loop(slow_server.url + "/work", [{"i": 0}], n=1)[0].body is None


def test_zipf_indices_are_seeded_and_skewed() -> None:
    a = load.zipf_indices(100, 1.1, 2000, seed=3)
    assert np.array_equal(a, load.zipf_indices(100, 1.1, 2000, seed=3))
    assert a.min() >= 0 and a.max() < 100
    counts = np.bincount(a, minlength=100)
    assert counts[0] > counts[9] > counts[99]
    flat = load.zipf_indices(100, 0.0, 2000, seed=3)
    assert len(set(flat.tolist())) > len(set(a.tolist()))


def test_open_loops_run_streams_side_by_side(slow_server) -> None:
    runs = load.open_loops({"a": (slow_server.url + "/work", [{"i": 1}], 20),
                            "b": (slow_server.url + "/work", [{"i": 2}], 10)}, duration=0.5)
    assert {k: len(v) for k, v in runs.items()} == {"a": 10, "b": 5}
    assert all(r.tag == "a" for r in runs["a"]) and all(r.ok for r in runs["b"])
    starts = [min(r.scheduled for r in v) for v in runs.values()]
    assert abs(starts[0] - starts[1]) < 0.1  # concurrently, not one after the other
