"""labsupport.timeline: the sampler's grid and bounds, the clock conversion, drain."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi import FastAPI

from labsupport import timeline
from labsupport.servers import serve
from labsupport.timeline import Sampler


def test_sampler_samples_on_a_fixed_grid_while_the_block_runs() -> None:
    counter = itertools.count()
    with Sampler(lambda: next(counter), period_s=0.02) as sampler:
        time.sleep(0.3)
    samples = sampler.samples
    assert sampler.started is not None
    assert 5 <= len(samples) <= 0.3 / 0.02 + 2
    assert [v for _, v in samples] == list(range(len(samples)))
    for i, (t, _) in enumerate(samples):  # never early: sample i at or after tick i
        assert t >= sampler.started + i * 0.02 - 1e-3
    stopped = len(samples)
    time.sleep(0.05)
    assert len(sampler.samples) == stopped  # stopped with the block


def test_sampler_frame_has_one_column_per_key() -> None:
    with Sampler(lambda: {"keys": 3, "used": 100}, period_s=0.01) as sampler:
        time.sleep(0.05)
    frame = sampler.frame()
    assert list(frame.columns) == ["t", "keys", "used"]
    assert frame["t"].iloc[0] >= 0 and frame["t"].is_monotonic_increasing
    assert (frame["keys"] == 3).all()
    plain = Sampler(lambda: 1.5, period_s=0.01).start()
    time.sleep(0.03)
    plain.stop()
    shifted = plain.frame(t0=plain.started - 10)
    assert list(shifted.columns) == ["t", "value"] and shifted["t"].min() >= 10


def test_sampler_is_bounded_in_samples_and_time() -> None:
    with Sampler(lambda: 0, period_s=0.001, max_samples=3) as few:
        time.sleep(0.1)
    assert len(few.samples) == 3
    with Sampler(lambda: 0, period_s=0.02, max_seconds=0.1) as short:
        time.sleep(0.3)
    assert len(short.samples) <= 0.1 / 0.02 + 1
    assert short.samples[-1][0] - short.started <= 0.1 + 0.05


def test_sampler_raises_the_probe_error_on_stop() -> None:
    def probe() -> int:
        raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError, match="redis went away"), Sampler(probe, period_s=0.01):
        time.sleep(0.05)


@pytest.mark.parametrize("kwargs, name", [({"period_s": 0}, "period_s"),
                                          ({"max_seconds": -1}, "max_seconds"),
                                          ({"max_samples": 0}, "max_samples")])
def test_sampler_rejects_bad_bounds(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Sampler(lambda: 0, **kwargs)


def test_sampler_starts_once() -> None:
    sampler = Sampler(lambda: 0, period_s=0.01).start()
    with pytest.raises(RuntimeError, match="started already"):
        sampler.start()
    sampler.stop()


def test_wall_and_perf_clocks_convert_both_ways() -> None:
    now_wall, now_perf = time.time(), time.perf_counter()
    assert abs(timeline.to_wall(now_perf) - now_wall) < 0.01
    assert abs(timeline.from_wall(now_wall) - now_perf) < 0.01
    perf = np.array([now_perf, now_perf + 1.5])
    back = timeline.from_wall(timeline.to_wall(perf))
    assert np.allclose(back, perf, atol=1e-3) and back[1] - back[0] == pytest.approx(1.5)


def slow_then_fast_app(slow_calls: int) -> tuple[FastAPI, list[int]]:
    calls = [0]
    app = FastAPI(title="backlogged")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict() -> dict:
        calls[0] += 1
        if calls[0] <= slow_calls:
            await asyncio.sleep(0.2)  # a backlog still in front of this request
        return {"call": calls[0]}

    return app, calls


@pytest.fixture
def backlogged() -> Iterator[tuple[str, list[int]]]:
    app, calls = slow_then_fast_app(slow_calls=3)
    with serve(app, name="test-timeline-backlogged") as server:
        yield server.url + "/predict", calls


def test_drain_waits_until_an_answer_is_fast_again(backlogged: tuple[str, list[int]]) -> None:
    url, calls = backlogged
    waited = timeline.drain(url, {}, fast_ms=100, max_s=5, period_s=0.01)
    assert calls[0] == 4  # three slow answers, then the first fast one
    assert 0.6 <= waited < 5


def test_drain_gives_up_after_max_s(backlogged: tuple[str, list[int]]) -> None:
    url, calls = backlogged
    waited = timeline.drain(url, {}, fast_ms=1e-3, max_s=0.3, period_s=0.01)
    assert waited >= 0.3 and calls[0] >= 1


def test_drain_rejects_a_non_positive_threshold() -> None:
    with pytest.raises(ValueError, match="fast_ms"):
        timeline.drain("http://127.0.0.1:9/predict", {}, fast_ms=0)
