"""What happens over time during a run: a background sampler, one clock, and a drain wait.

* :class:`Sampler`: call a probe (queue depth, Redis INFO, a breaker's state) at a fixed
  period in a thread while a ``with`` block runs; get ``(t, value)`` pairs or a frame;
* :func:`wall_offset`, :func:`to_wall`, :func:`from_wall`: the kernel records times with
  ``time.perf_counter()`` (:class:`labsupport.load.Record`), servers in other processes
  with ``time.time()``; these put both on one axis;
* :func:`drain`: wait until a server that was overloaded answers at its normal speed.

To wait for a condition (a worker's "ready" line, all jobs final), use
:func:`labsupport.servers.wait_for`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

Times = TypeVar("Times", float, np.ndarray)


def wall_offset() -> float:
    """``time.time() - time.perf_counter()``, read now: add it to a perf_counter time to
    get wall-clock time. Read at each conversion, so a clock adjustment between two runs
    of a chapter does not leak into the second. Introduced in *serving/asynchronous*.
    """
    return time.time() - time.perf_counter()


def to_wall(t: Times) -> Times:
    """A ``time.perf_counter()`` time (or array of them) as ``time.time()``, to compare with
    a time another process wrote. Introduced in *serving/asynchronous*."""
    return t + wall_offset()


def from_wall(t: Times) -> Times:
    """A ``time.time()`` time (or array, Series) from another process, on this process's
    ``time.perf_counter()`` axis, where the load generators' records are. Introduced in
    *serving/asynchronous*."""
    return t - wall_offset()


class Sampler:
    """Call ``probe()`` every ``period_s`` seconds in a background thread.

    Use it as a context manager around the run to watch::

        with Sampler(lambda: r.llen("jobs:queue"), period_s=0.02) as depth:
            ...  # the load
        depth.frame()  # columns t (seconds since the start) and value

    ``probe`` returns a value or a dict of values (one column each). Samples are
    ``(time.perf_counter(), value)`` pairs, taken on a fixed grid (a slow probe skips
    ticks rather than drifting). Bounded: the thread stops by itself after
    ``max_seconds`` or ``max_samples``. An exception in ``probe`` stops sampling and is
    raised again by :meth:`stop`. Introduced in *serving/asynchronous*.
    """

    def __init__(self, probe: Callable[[], Any], *, period_s: float = 0.05,
                 max_seconds: float = 120.0, max_samples: int = 10_000):
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, not {period_s}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, not {max_seconds}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, not {max_samples}")
        self.probe, self.period_s = probe, period_s
        self.max_seconds, self.max_samples = max_seconds, max_samples
        self.samples: list[tuple[float, Any]] = []
        self.started: float | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        """Take the first sample now, then one per period, in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("this Sampler was started already; make a new one")
        self.started = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="lab-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.started is not None
        tick = 0
        while len(self.samples) < self.max_samples:
            try:
                value = self.probe()
            except BaseException as error:  # kept, and raised again in the caller's thread
                self.error = error
                return
            self.samples.append((time.perf_counter(), value))
            elapsed = time.perf_counter() - self.started
            tick = max(tick + 1, int(elapsed / self.period_s) + 1)
            if tick * self.period_s > self.max_seconds:
                return
            if self._done.wait(self.started + tick * self.period_s - time.perf_counter()):
                return

    def stop(self) -> list[tuple[float, Any]]:
        """Stop sampling (waits for a probe in progress) and return the samples."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return self.samples

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def frame(self, t0: float | None = None) -> pd.DataFrame:
        """The samples as a frame: ``t`` in seconds since ``t0`` (a perf_counter time;
        default: the sampler's start), then ``value``, or one column per key when the
        probe returns dicts."""
        import pandas as pd

        origin = self.started if t0 is None else t0
        times = [t - (origin or 0.0) for t, _ in self.samples]
        values = [v for _, v in self.samples]
        if values and all(isinstance(v, dict) for v in values):
            frame = pd.DataFrame(values)
        else:
            frame = pd.DataFrame({"value": values})
        frame.insert(0, "t", times)
        return frame


def drain(url: str, payload: Any, *, fast_ms: float, max_s: float = 10.0,
          period_s: float = 0.05) -> float:
    """POST ``payload`` to ``url`` until one answer comes back within ``fast_ms``: the
    backlog a load run left in the server is gone, and the next run starts on an idle
    server. Returns the seconds it waited; ``max_s`` or more means the server did not
    drain in time (the caller decides whether that spoils its next measurement).
    Introduced in *serving/circuit-break*.
    """
    if not fast_ms > 0:
        raise ValueError(f"fast_ms must be > 0, not {fast_ms}")
    started = time.perf_counter()
    with httpx.Client(timeout=max_s) as client:
        while time.perf_counter() - started < max_s:
            sent = time.perf_counter()
            try:
                answered = client.post(url, json=payload).is_success
            except httpx.HTTPError:  # busy enough to time out: still draining
                answered = False
            if answered and (time.perf_counter() - sent) * 1e3 < fast_ms:
                break
            time.sleep(period_s)
    return time.perf_counter() - started
