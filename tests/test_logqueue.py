"""labsupport.logqueue against a real redis-server and a real SQLite file: events published to
a stream end up as log rows exactly once, through a consumer killed with SIGKILL mid-batch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labsupport import logqueue, predlog
from labsupport.redis import RedisServer, redis_server


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server(name="test-logqueue") as running:
        yield running


def _publish(client, n: int, prefix: str = "r") -> None:
    for i in range(n):
        logqueue.publish(client, request_id=f"{prefix}{i}", variant="served", model="iris",
                         version="3", prediction=i % 3, latency_ms=0.5 + i,
                         features=[float(i), 1.0], store_features=True)


def test_events_become_rows_with_their_fields(server: RedisServer, tmp_path: Path) -> None:
    client = server.client()
    db = tmp_path / "log.db"
    consumer = logqueue.Consumer(client, db, name="c1", batch=10, flush_s=0.05)
    _publish(client, 25)
    assert logqueue.backlog(client) == 25
    while consumer.step():
        pass
    consumer.close()
    frame = predlog.read(db)
    assert list(frame["request_id"]) == [f"r{i}" for i in range(25)]
    assert set(frame["version"]) == {"3"} and frame["latency_ms"].tolist()[3] == 3.5
    assert json.loads(frame["features"][4]) == [4.0, 1.0]
    assert (frame["logged_at"] >= frame["ts"]).all()
    assert logqueue.backlog(client) == 0 and logqueue.pending(client) == 0
    assert logqueue.stats(client) == {"written": 25, "duplicates": 0, "claimed": 0, "dead": 0}


def test_write_once_keeps_one_row_per_request(tmp_path: Path) -> None:
    con = logqueue.connect_store(tmp_path / "log.db")
    rows = [predlog.make_row(request_id=f"r{i}", variant="served", prediction=i)
            for i in range(5)]
    assert logqueue.write_once(con, rows) == 5
    assert logqueue.write_once(con, rows[2:] + [predlog.make_row(request_id="r9",
                                                                   variant="served")]) == 1
    # another variant of the same request is another row (a shadow's candidate, say)
    assert logqueue.write_once(con, [predlog.make_row(request_id="r0", variant="shadow")]) == 1
    con.close()
    assert predlog.count(tmp_path / "log.db") == 7


def test_a_batch_committed_but_not_acknowledged_is_written_once(server: RedisServer,
                                                                 tmp_path: Path) -> None:
    # a consumer that died between its commit and its XACK: the events are delivered again
    client = server.client()
    db = tmp_path / "log.db"
    logqueue.ensure_group(client)
    _publish(client, 40)
    got = client.xreadgroup(logqueue.GROUP, "dies-after-commit", {logqueue.STREAM: ">"},
                            count=100)[0][1]
    con = logqueue.connect_store(db)
    assert logqueue.write_once(con, [logqueue.decode(fields) for _, fields in got]) == 40
    con.close()
    heir = logqueue.Consumer(client, db, name="heir", claim_idle_ms=0)
    assert heir.recover() == 40
    heir.close()
    assert heir.claimed == 40 and heir.duplicates == 40 and heir.written == 0
    assert predlog.count(db) == 40 and logqueue.pending(client) == 0


def test_consumer_killed_mid_batch_loses_nothing(server: RedisServer, tmp_path: Path) -> None:
    client = server.client()
    db = tmp_path / "log.db"
    logqueue.ensure_group(client)

    def start(name: str) -> subprocess.Popen:
        # a long flush: the batch it holds stays unacknowledged while it fills
        return subprocess.Popen(
            [sys.executable, "-m", "labsupport.logqueue", "--redis", server.url, "--db",
             str(db), "--name", name, "--batch", "1000", "--flush-s", "2",
             "--claim-idle-ms", "200"], stdout=subprocess.PIPE, text=True)

    first = start("first")
    try:
        assert "ready" in first.stdout.readline()
        _publish(client, 300)
        deadline = time.monotonic() + 10
        while logqueue.pending(client) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        held = logqueue.pending(client)
        first.kill()
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert held == 300 and predlog.count(db) == 0
    _publish(client, 50, prefix="late")
    time.sleep(0.25)  # the dead consumer's batch is now idle for longer than claim-idle-ms
    second = start("second")
    try:
        line = second.stdout.readline()
        assert "recovered 300 events" in line, line
        deadline = time.monotonic() + 20
        while predlog.count(db) < 350 and time.monotonic() < deadline:
            time.sleep(0.02)
        second.terminate()
        assert second.wait(timeout=10) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    frame = predlog.read(db)
    assert len(frame) == 350 and frame["request_id"].is_unique
    assert logqueue.backlog(client) == 0 and logqueue.pending(client) == 0
    assert logqueue.stats(client)["claimed"] == 300


def test_undecodable_event_is_dead_lettered_and_the_rest_written(server: RedisServer,
                                                                  tmp_path: Path) -> None:
    client = server.client()
    consumer = logqueue.Consumer(client, tmp_path / "log.db", name="c1", flush_s=0.05)
    _publish(client, 2)
    client.xadd(logqueue.STREAM, {"row": "{not json"})
    client.xadd(logqueue.STREAM, {"row": json.dumps({"request_id": "x", "variant": ""})})
    client.xadd(logqueue.STREAM, {"something": "else"})
    _publish(client, 2, prefix="after")
    while consumer.step():
        pass
    consumer.close()
    assert predlog.count(tmp_path / "log.db") == 4 and consumer.dead == 3
    dead = client.xrange(logqueue.dead_letters())
    assert [entry["error"].split(":")[0] for _, entry in dead] == [
        "row is not JSON", "row.variant must be a non-empty string", "event has no 'row' field"]
    assert logqueue.backlog(client) == 0


def test_bad_fields_and_settings_are_named(server: RedisServer, tmp_path: Path) -> None:
    client = server.client()
    with pytest.raises(ValueError, match="latency_ms"):
        logqueue.publish(client, request_id="r", variant="a", latency_ms=-1)
    with pytest.raises(ValueError, match="fields"):
        logqueue.encode(("too", "short"))
    assert logqueue.backlog(client) == 0
    for kwargs in ({"batch": 0}, {"flush_s": 0}, {"claim_idle_ms": -1}, {"name": ""}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            logqueue.Consumer(client, tmp_path / "log.db", **{"name": "c", **kwargs})


async def _apublish(url: str) -> str:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return await logqueue.apublish(client, request_id="async-1", variant="served")
    finally:
        await client.aclose()


def test_async_publish(server: RedisServer) -> None:
    import asyncio

    entry_id = asyncio.run(_apublish(server.url))
    [(got_id, fields)] = server.client().xrange(logqueue.STREAM)
    assert got_id == entry_id and logqueue.decode(fields)[0] == "async-1"


async def _buffered(url: str, n: int) -> tuple[int, int, float]:
    import asyncio

    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, decode_responses=True)
    publisher = logqueue.Publisher(client, linger_s=0.05, batch=64)
    rows = [predlog.make_row(request_id=f"b{i}", variant="served") for i in range(n)]
    for row in rows[:10]:  # less than a batch: sent once linger_s has passed
        publisher.put(row)
    await asyncio.sleep(0.01)
    length_before_linger = await client.xlen(logqueue.STREAM)
    started = time.perf_counter()
    for row in rows[10:]:  # full batches go at once
        assert publisher.put(row)
    put_s = time.perf_counter() - started
    assert await publisher.flush(timeout=10)
    await publisher.aclose()
    await client.aclose()
    return length_before_linger, publisher.sent, put_s


def test_publisher_buffers_then_sends_everything_in_batches(server: RedisServer) -> None:
    import asyncio

    before, sent, put_s = asyncio.run(_buffered(server.url, 500))
    assert before == 0 and sent == 500
    assert put_s < 0.5, f"500 puts took {put_s:.3f} s"
    ids = [logqueue.decode(fields)[0] for _, fields in server.client().xrange(logqueue.STREAM)]
    assert ids == [f"b{i}" for i in range(500)]


async def _outage(url: str) -> tuple[int, int, int, str | None]:
    import asyncio

    import redis.asyncio as aioredis

    from labsupport.servers import free_port

    # nothing listens on this port: every send fails, nothing blocks, the buffer is bounded
    dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    publisher = logqueue.Publisher(dead, linger_s=0.01, max_buffer=20)
    accepted = sum(publisher.put(predlog.make_row(request_id=f"o{i}", variant="a"))
                   for i in range(30))
    await asyncio.sleep(0.3)
    failed, error = publisher.failed, publisher.last_error
    await publisher.aclose(timeout=0.3)
    await dead.aclose()
    return accepted, publisher.dropped, failed, error


def test_publisher_survives_a_redis_outage_without_blocking(server: RedisServer) -> None:
    import asyncio

    accepted, dropped, failed, error = asyncio.run(_outage(server.url))
    assert accepted == 20 and failed >= 1 and error
    assert dropped == 30  # 10 refused by the full buffer, 20 never sent before closing


def test_publisher_bad_settings_and_rows() -> None:
    for kwargs in ({"linger_s": -1}, {"batch": 0}, {"max_buffer": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            logqueue.Publisher(None, **kwargs)
    with pytest.raises(ValueError, match="fields"):
        logqueue.Publisher(None).put(("short",))
