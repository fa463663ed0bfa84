"""Load generators that record every request, and a percentile summary.

* ``closed_loop``: ``concurrency`` virtual users, each sending its next request when
  the previous answer arrives. Measures service time and throughput at a fixed
  concurrency; the server's slowness slows the senders down.
* ``open_loop``: requests are *scheduled* at a fixed rate whatever happens; latency is
  counted from the scheduled time, so a server that falls behind is charged for the
  queue it builds (no "coordinated omission").

Both are bounded in count and time, target 127.0.0.1 only, and return a list of
:class:`Record`. Each has an ``a...`` coroutine for code already inside an event loop
and a plain function that works in a notebook cell, a script or a test.
Introduced in *serving/web-single*.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import numpy as np

Payload = Any  # a JSON-able body, or None for a GET


@dataclass
class Record:
    """One request: times are ``time.perf_counter()`` seconds; ``status`` 0 = no answer."""

    index: int
    tag: str
    scheduled: float
    start: float
    end: float
    status: int
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # from X-<Name>-Time-Ms headers
    body: Any = None  # the decoded JSON answer, when asked for with keep_body=True

    @property
    def latency_ms(self) -> float:
        """From the scheduled time (open loop) or the send time (closed loop) to the end."""
        return (self.end - self.scheduled) * 1e3

    @property
    def server_ms(self) -> float | None:
        """The model's own compute time, if the server reported ``X-Model-Time-Ms``."""
        return self.timings.get("model")

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def server_timings(headers: Mapping[str, str]) -> dict[str, float]:
    """``X-Model-Time-Ms: 0.8`` and the like, as ``{"model": 0.8}``: how servers in the
    book report where their time went."""
    out = {}
    for key, value in headers.items():
        key = key.lower()
        if key.startswith("x-") and key.endswith("-time-ms"):
            try:
                out[key[2:-8]] = float(value)
            except ValueError:
                continue
    return out


def _loopback_only(url: str) -> None:
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ValueError(f"the lab's load generators only target loopback, not {host!r}")


def _payload_at(payloads: Sequence[Payload] | Callable[[int], Payload] | None, i: int) -> Payload:
    if payloads is None:
        return None
    if callable(payloads):
        return payloads(i)
    return payloads[i % len(payloads)]


async def _send(client: httpx.AsyncClient, url: str, body: Payload, index: int, tag: str,
                scheduled: float | None = None, keep_body: bool = False) -> Record:
    start = time.perf_counter()
    scheduled = start if scheduled is None else scheduled
    try:
        if body is None:
            response = await client.get(url)
        else:
            response = await client.post(url, json=body)
        end = time.perf_counter()
        kept = None
        if keep_body:
            try:
                kept = response.json()
            except ValueError:
                kept = response.text
        return Record(index, tag, scheduled, start, end, response.status_code,
                      timings=server_timings(response.headers), body=kept)
    except httpx.HTTPError as error:
        return Record(index, tag, scheduled, start, time.perf_counter(), 0,
                      error=type(error).__name__)


async def aclosed_loop(url: str, payloads: Sequence[Payload] | Callable[[int], Payload] | None,
                       *, n: int, concurrency: int = 1, timeout: float = 10.0,
                       tag: str = "", max_seconds: float = 120.0,
                       keep_body: bool = False) -> list[Record]:
    """Send ``n`` requests from ``concurrency`` workers, each waiting for its answer.
    ``keep_body=True`` keeps each decoded answer in ``Record.body``."""
    _loopback_only(url)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    records: list[Record] = []
    counter = iter(range(n))
    deadline = time.perf_counter() + max_seconds
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        async def user() -> None:
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                records.append(await _send(client, url, _payload_at(payloads, i), i, tag,
                                           keep_body=keep_body))

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return sorted(records, key=lambda r: r.index)


async def aopen_loop(url: str, payloads: Sequence[Payload] | Callable[[int], Payload] | None,
                     *, rate: float, duration: float, timeout: float = 5.0, tag: str = "",
                     poisson: bool = False, seed: int = 0,
                     max_in_flight: int = 512, keep_body: bool = False) -> list[Record]:
    """Schedule ``rate`` requests per second for ``duration`` seconds, answered or not.

    ``poisson=True`` draws exponential gaps (seeded) instead of even spacing. Requests
    that would exceed ``max_in_flight`` open connections are recorded as status 0,
    ``error="client-overload"``, instead of silently waiting. ``keep_body=True`` keeps
    each decoded answer in ``Record.body``.
    """
    _loopback_only(url)
    count = int(rate * duration)
    if poisson:
        gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=count)
        offsets = np.cumsum(gaps) - gaps[0]
    else:
        offsets = np.arange(count) / rate
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=64)
    records: list[Record] = []
    in_flight = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            records.append(await _send(client, url, _payload_at(payloads, i), i, tag, scheduled,
                                       keep_body))
        finally:
            in_flight -= 1

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter() + 0.01
        tasks = []
        for i, offset in enumerate(offsets):
            scheduled = t0 + float(offset)
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                now = time.perf_counter()
                records.append(Record(i, tag, scheduled, now, now, 0, error="client-overload"))
                continue
            tasks.append(asyncio.create_task(one(i, scheduled)))
        if tasks:
            await asyncio.wait(tasks, timeout=timeout + 5)
    return sorted(records, key=lambda r: r.index)


async def aopen_loops(streams: Mapping[str, tuple[str, Any, float]], *, duration: float,
                      **kwargs: Any) -> dict[str, list[Record]]:
    """Several open-loop streams at once, ``{tag: (url, payloads, rate)}``: e.g. traffic
    to two models sharing a server. Each stream's records carry its tag; with
    ``poisson=True`` stream ``i`` uses ``seed + i``, so streams do not arrive in lockstep."""
    tags = list(streams)
    seed = kwargs.pop("seed", 0)
    runs = [aopen_loop(url, payloads, rate=rate, duration=duration, tag=tag, seed=seed + i,
                       **kwargs)
            for i, (tag, (url, payloads, rate)) in enumerate(streams.items())]
    return dict(zip(tags, await asyncio.gather(*runs), strict=True))


def run_async(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from sync code, even inside Jupyter's running loop
    (it then runs in a helper thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_fn())
    result: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro_fn()))
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="lab-load")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def closed_loop(url: str, payloads: Sequence[Payload] | Callable[[int], Payload] | None,
                **kwargs: Any) -> list[Record]:
    """Blocking :func:`aclosed_loop`."""
    return run_async(lambda: aclosed_loop(url, payloads, **kwargs))


def open_loop(url: str, payloads: Sequence[Payload] | Callable[[int], Payload] | None,
              **kwargs: Any) -> list[Record]:
    """Blocking :func:`aopen_loop`."""
    return run_async(lambda: aopen_loop(url, payloads, **kwargs))


def zipf_indices(n_items: int, s: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` item indices in ``[0, n_items)`` where rank ``k`` is drawn with probability
    proportional to ``1 / k**s``: a few popular items and a long tail, as real traffic
    often has. Larger ``s`` means more skew. Seeded. Introduced in
    *serving/prediction-cache*."""
    weights = 1.0 / np.arange(1, n_items + 1) ** s
    return np.random.default_rng(seed).choice(n_items, size=n, p=weights / weights.sum())


def open_loops(streams: Mapping[str, tuple[str, Any, float]], *, duration: float,
               **kwargs: Any) -> dict[str, list[Record]]:
    """Blocking :func:`aopen_loops`. Introduced in *serving/microservice-horizontal*."""
    return run_async(lambda: aopen_loops(streams, duration=duration, **kwargs))


def latencies_ms(records: Sequence[Record], *, ok_only: bool = True) -> np.ndarray:
    """Latencies in milliseconds, of the successful requests by default."""
    return np.array([r.latency_ms for r in records if r.ok or not ok_only], dtype=float)


def summarize(records: Sequence[Record], *, slo_ms: float | None = None) -> dict[str, float]:
    """Count, error rate, throughput and p50/p90/p95/p99 (ms) of successful requests.

    ``goodput`` is the rate of successful answers within ``slo_ms`` (if given).
    """
    if not records:
        return {"requests": 0}
    ok = [r for r in records if r.ok]
    span = max(r.end for r in records) - min(r.scheduled for r in records)
    lat = latencies_ms(ok)
    out: dict[str, float] = {
        "requests": len(records),
        "ok": len(ok),
        "error_rate": 1 - len(ok) / len(records),
        "throughput_rps": len(ok) / span if span > 0 else float("nan"),
    }
    for q in (50, 90, 95, 99):
        out[f"p{q}_ms"] = float(np.percentile(lat, q)) if len(lat) else float("nan")
    if slo_ms is not None:
        good = int((lat <= slo_ms).sum())
        out["within_slo"] = good
        out["goodput_rps"] = good / span if span > 0 else float("nan")
    return out


def to_frame(records: Sequence[Record]) -> Any:
    """The records as a pandas DataFrame, one ``<name>_ms`` column per server timing, with
    ``latency_ms`` and ``t`` (seconds since the first scheduled request) added."""
    import pandas as pd

    rows = []
    for record in records:
        row = asdict(record)
        row.pop("body")
        for name, value in row.pop("timings").items():
            row[f"{name}_ms"] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["latency_ms"] = (frame["end"] - frame["scheduled"]) * 1e3
        frame["t"] = frame["scheduled"] - frame["scheduled"].min()
    return frame
