"""The prediction log through a queue: services publish one event per prediction to a Redis
stream, and a consumer process writes them into the SQLite prediction log
(:mod:`labsupport.predlog`'s ``predictions`` table) in batches.

The request path pays one ``XADD`` (a round trip to Redis), or only an append to an
in-process buffer with :class:`Publisher`, whatever the store costs; the store gets few
large transactions instead of one per request. Nothing is lost when the consumer dies:

* the consumer reads through a **consumer group** (``XREADGROUP``): an event it has read
  stays in the group's pending-entries list until it is **acknowledged** (``XACK``), which
  happens only after the transaction that wrote it has committed;
* a consumer that starts (or a live one, every ``claim_idle_ms``) takes over events that
  another consumer read and never acknowledged for ``claim_idle_ms`` (``XAUTOCLAIM``): a
  killed pod's batch is written by its replacement, whatever its name;
* delivery is therefore *at least once*, and the insert is idempotent: a unique index on
  ``(request_id, variant)`` and ``INSERT OR IGNORE`` turn a second delivery into a no-op;
* an event that cannot be decoded goes to a dead-letter stream (``<stream>:dead``), so one
  bad event cannot stop the log.

Acknowledged events are deleted from the stream, so its length (``XLEN``) is the backlog:
events not yet written. Counters (written, duplicates, claimed, dead) are kept in the hash
``<stream>:stats``. Run a consumer with ``python -m labsupport.logqueue --redis URL --db
PATH --name NAME``. Introduced in *operation/prediction-log*; *operation/anti-no-logging*
and the lifecycle chapters log through it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import redis

from . import predlog

STREAM = "predlog:events"
GROUP = "predlog-writers"

_INSERT_ONCE = (f"INSERT OR IGNORE INTO predictions ({', '.join(predlog.COLUMNS)}, logged_at) "
                f"VALUES ({', '.join('?' for _ in predlog.COLUMNS)}, ?)")


def dead_letters(stream: str = STREAM) -> str:
    """The stream where undecodable events of ``stream`` are parked."""
    return f"{stream}:dead"


def stats_key(stream: str = STREAM) -> str:
    """The hash that counts what the consumers of ``stream`` did."""
    return f"{stream}:stats"


# --- the producer side ---------------------------------------------------------------------

def encode(row: Sequence[Any]) -> dict[str, str]:
    """The stream fields of one row built by :func:`labsupport.predlog.make_row`."""
    if len(row) != len(predlog.COLUMNS):
        raise ValueError(f"row must have {len(predlog.COLUMNS)} fields, not {len(row)}")
    return {"row": json.dumps(dict(zip(predlog.COLUMNS, row, strict=True)), default=str)}


def event(**fields: Any) -> dict[str, str]:
    """Check one prediction's fields (:func:`labsupport.predlog.make_row`'s keywords; a bad
    field raises ``ValueError`` naming it) and return its stream fields."""
    return encode(predlog.make_row(**fields))


def publish(client: redis.Redis, *, stream: str = STREAM, **fields: Any) -> str:
    """``XADD`` one prediction to ``stream``; returns the event's id."""
    return client.xadd(stream, event(**fields))


async def apublish(client: Any, *, stream: str = STREAM, **fields: Any) -> str:
    """:func:`publish` on a ``redis.asyncio`` client (in an ``async def`` handler)."""
    return await client.xadd(stream, event(**fields))


class Publisher:
    """Ships events to ``stream`` off the request path, for an ``async def`` handler.

    :meth:`put` appends a row (built by :func:`labsupport.predlog.make_row`) to a bounded
    in-process buffer, a few microseconds; a background task on the same event loop waits
    ``linger_s`` after the first event, then sends up to ``batch`` events in one pipeline
    (one round trip to Redis for all of them). When Redis fails, the events stay buffered
    and are sent again later (``failed`` counts the attempts, ``last_error`` says why);
    when the buffer is full, new events are dropped and counted in ``dropped``, so a Redis
    outage never blocks or fails a request. The price: a server process killed before
    a flush loses the events of its last ``linger_s``. Call :meth:`aclose` at shutdown (a
    FastAPI lifespan) to send what is left. ``client`` is a ``redis.asyncio`` client.
    Introduced in *operation/prediction-log*.
    """

    def __init__(self, client: Any, *, stream: str = STREAM, linger_s: float = 0.02,
                 batch: int = 256, max_buffer: int = 100_000):
        if not linger_s >= 0:
            raise ValueError(f"linger_s must be >= 0, not {linger_s}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        if max_buffer < 1:
            raise ValueError(f"max_buffer must be >= 1, not {max_buffer}")
        self.client, self.stream = client, stream
        self.linger_s, self.batch, self.max_buffer = linger_s, batch, max_buffer
        self.sent = self.dropped = self.failed = 0
        self.last_error: str | None = None
        self._buffer: deque[tuple] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False

    @property
    def buffered(self) -> int:
        """Events put and not yet sent."""
        return len(self._buffer)

    def put(self, row: Sequence[Any]) -> bool:
        """Buffer one row for sending; False (and ``dropped`` + 1) when the buffer is
        full. Call it on the event loop that serves the requests."""
        if len(row) != len(predlog.COLUMNS):
            raise ValueError(f"row must have {len(predlog.COLUMNS)} fields, not {len(row)}")
        if self._closing:
            raise RuntimeError("this Publisher is closed")
        if len(self._buffer) >= self.max_buffer:
            self.dropped += 1
            return False
        self._buffer.append(tuple(row))
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        assert self._wake is not None
        self._wake.set()
        return True

    async def _send(self) -> None:
        batch = [self._buffer.popleft() for _ in range(min(self.batch, len(self._buffer)))]
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for row in batch:
                    pipe.xadd(self.stream, encode(row))
                await pipe.execute()
        except (redis.RedisError, OSError) as error:
            # back in front, in order: sent again later (a partial send repeats some
            # events, which the consumer's idempotent insert absorbs)
            self._buffer.extendleft(reversed(batch))
            self.failed += 1
            self.last_error = f"{type(error).__name__}: {error}"
            raise
        self.sent += len(batch)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger_s and not self._closing and len(self._buffer) < self.batch:
                await asyncio.sleep(self.linger_s)  # let a batch gather
            while self._buffer:
                try:
                    await self._send()
                except (redis.RedisError, OSError):
                    if self._closing:
                        return
                    await asyncio.sleep(max(self.linger_s, 0.1))

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event put so far is sent; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._buffer and time.monotonic() < deadline:
            if self._wake is not None:
                self._wake.set()
            await asyncio.sleep(0.005)
        return not self._buffer

    async def aclose(self, timeout: float = 5.0) -> None:
        """Send what is buffered (trying for up to ``timeout`` seconds), then stop; what
        could not be sent is counted in ``dropped``. Idempotent."""
        if self._closing:
            return
        await self.flush(timeout)
        self._closing = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(self._task, timeout=1.0)
            except (redis.RedisError, OSError):  # OSError covers TimeoutError
                self._task.cancel()
        self.dropped += len(self._buffer)
        self._buffer.clear()


def decode(fields: Mapping[str, Any]) -> tuple:
    """The row of one event (in :data:`labsupport.predlog.COLUMNS` order); ``ValueError``
    naming what is wrong when the event is not a prediction."""
    text = fields.get("row") if fields else None
    if not isinstance(text, str):
        raise ValueError("event has no 'row' field")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"row is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("row is not a JSON object")
    for name in ("request_id", "variant"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ValueError(f"row.{name} must be a non-empty string")
    if not isinstance(data.get("ts"), (int, float)):
        raise ValueError("row.ts must be a number")
    return tuple(data.get(name) for name in predlog.COLUMNS)


# --- the store ------------------------------------------------------------------------------

def connect_store(path: str | PathLike[str], *, durable: bool = True) -> sqlite3.Connection:
    """The prediction log at ``path`` (:func:`labsupport.predlog.connect`), with a unique
    index on ``(request_id, variant)`` so that writing an event twice keeps one row.
    ``durable=True`` syncs every commit to disk (``synchronous=FULL``), as a store of record
    does: a committed row survives a power cut, and the commit costs an fsync."""
    con = predlog.connect(path)
    con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    con.execute("CREATE UNIQUE INDEX IF NOT EXISTS predictions_once "
                "ON predictions (request_id, variant)")
    return con


def write_once(con: sqlite3.Connection, rows: Iterable[tuple]) -> int:
    """Insert ``rows`` in one transaction, each at most once per ``(request_id, variant)``,
    stamped with ``logged_at``; returns how many were new."""
    before = con.total_changes
    with con:
        con.executemany(_INSERT_ONCE, predlog.stamped(rows))
    return con.total_changes - before


# --- the consumer ---------------------------------------------------------------------------

def ensure_group(client: redis.Redis, stream: str = STREAM, group: str = GROUP) -> None:
    """Create the consumer group (and the stream) if missing; a new group starts at the
    stream's first event, so events published before any consumer ran are written too."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class Consumer:
    """Moves events from ``stream`` into the log at ``db_path``, ``batch`` at a time.

    :meth:`step` reads up to ``batch`` new events, waiting at most ``flush_s`` for a batch to
    fill (micro-batching: one transaction per batch), writes them with :func:`write_once`,
    then acknowledges and deletes them. :meth:`recover` takes over events that some consumer
    read but did not acknowledge for ``claim_idle_ms``. ``client`` must decode responses.
    """

    def __init__(self, client: redis.Redis, db_path: str | PathLike[str], *, name: str,
                 stream: str = STREAM, group: str = GROUP, batch: int = 256,
                 flush_s: float = 0.1, claim_idle_ms: int = 30_000, durable: bool = True):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        if not flush_s > 0:
            raise ValueError(f"flush_s must be > 0, not {flush_s}")
        if claim_idle_ms < 0:
            raise ValueError(f"claim_idle_ms must be >= 0, not {claim_idle_ms}")
        if not name:
            raise ValueError("name must be a non-empty string")
        self.client, self.name, self.stream, self.group = client, name, stream, group
        self.batch, self.flush_s, self.claim_idle_ms = batch, flush_s, claim_idle_ms
        self.con = connect_store(db_path, durable=durable)
        self.written = self.duplicates = self.claimed = self.dead = 0
        ensure_group(client, stream, group)

    def _settle(self, entries: list[tuple[str, Mapping[str, Any] | None]],
                claimed: int = 0) -> int:
        """Write ``entries``, then acknowledge them: only a committed event is acked."""
        rows, bad = [], []
        for entry_id, fields in entries:
            try:
                rows.append(decode(fields or {}))
            except ValueError as error:
                bad.append((entry_id, fields or {}, str(error)))
        new = write_once(self.con, rows) if rows else 0
        ids = [entry_id for entry_id, _ in entries]
        with self.client.pipeline(transaction=True) as tx:
            for entry_id, fields, why in bad:
                tx.xadd(dead_letters(self.stream), {**fields, "id": entry_id, "error": why})
            tx.xack(self.stream, self.group, *ids)
            tx.xdel(self.stream, *ids)
            tx.hincrby(stats_key(self.stream), "written", new)
            tx.hincrby(stats_key(self.stream), "duplicates", len(rows) - new)
            tx.hincrby(stats_key(self.stream), "claimed", claimed)
            tx.hincrby(stats_key(self.stream), "dead", len(bad))
            tx.execute()
        self.written += new
        self.duplicates += len(rows) - new
        self.claimed += claimed
        self.dead += len(bad)
        return len(entries)

    def recover(self) -> int:
        """Take over and write every event idle for ``claim_idle_ms`` in some consumer's
        pending list (a killed consumer's batch); returns how many."""
        done, cursor = 0, "0-0"
        while True:
            answer = self.client.xautoclaim(self.stream, self.group, self.name,
                                            min_idle_time=self.claim_idle_ms, start_id=cursor,
                                            count=self.batch)
            cursor, entries = answer[0], answer[1]
            if entries:
                done += self._settle(entries, claimed=len(entries))
            if cursor in ("0-0", b"0-0"):
                return done

    def step(self) -> int:
        """Read, write and acknowledge up to one batch; returns how many events."""
        entries: list = []
        deadline = time.monotonic() + self.flush_s
        while len(entries) < self.batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            answer = self.client.xreadgroup(self.group, self.name, {self.stream: ">"},
                                            count=self.batch - len(entries),
                                            block=max(1, int(left * 1000)))
            for _stream, got in answer or []:
                entries.extend(got)
        return self._settle(entries) if entries else 0

    def run(self, stop: Callable[[], bool] = lambda: False, *, recover: bool = True) -> None:
        """Recover (unless told not to), then :meth:`step` until ``stop()``; recovers again
        every ``claim_idle_ms`` (at least every second) for consumers that died meanwhile."""
        if recover:
            self.recover()
        every = max(1.0, self.claim_idle_ms / 1000)
        next_claim = time.monotonic() + every
        while not stop():
            self.step()
            if time.monotonic() >= next_claim:
                self.recover()
                next_claim = time.monotonic() + every

    def close(self) -> None:
        self.con.close()


# --- reading the queue's state --------------------------------------------------------------

def backlog(client: redis.Redis, stream: str = STREAM) -> int:
    """Events published and not yet written (acknowledged events are deleted)."""
    return int(client.xlen(stream))


def pending(client: redis.Redis, stream: str = STREAM, group: str = GROUP) -> int:
    """Events read by some consumer and not yet acknowledged (0 when there is no group)."""
    try:
        return int(client.xpending(stream, group)["pending"])
    except redis.ResponseError:
        return 0


def stats(client: redis.Redis, stream: str = STREAM) -> dict[str, int]:
    """What the consumers of ``stream`` did: written, duplicates, claimed, dead."""
    raw = {(k.decode() if isinstance(k, bytes) else k): int(v)
           for k, v in client.hgetall(stats_key(stream)).items()}
    return {key: raw.get(key, 0) for key in ("written", "duplicates", "claimed", "dead")}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labsupport.logqueue --redis URL --db PATH --name NAME``: one consumer,
    until SIGTERM (it finishes its batch) or SIGKILL (its batch stays pending)."""
    parser = argparse.ArgumentParser(prog="python -m labsupport.logqueue",
                                     description="Write prediction events into the log.")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    parser.add_argument("--db", required=True, help="the SQLite prediction log")
    parser.add_argument("--name", required=True, help="this consumer's name in the group")
    parser.add_argument("--stream", default=STREAM)
    parser.add_argument("--group", default=GROUP)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--flush-s", type=float, default=0.1)
    parser.add_argument("--claim-idle-ms", type=int, default=30_000)
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    consumer = Consumer(client, args.db, name=args.name, stream=args.stream, group=args.group,
                        batch=args.batch, flush_s=args.flush_s,
                        claim_idle_ms=args.claim_idle_ms)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    recovered = consumer.recover()
    print(f"{args.name}: recovered {recovered} events; ready", flush=True)
    consumer.run(lambda: bool(stopping), recover=False)
    consumer.close()
    print(f"{args.name}: stopped after writing {consumer.written} rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
