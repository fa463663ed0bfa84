"""labsupport.predlog against a real SQLite file (WAL), written from threads, an event loop
and another process."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labsupport import predlog


def test_rows_round_trip_with_types(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    with predlog.PredictionLog(db) as log:
        assert log.log(request_id="r1", variant="primary", prediction=np.int64(2),
                       latency_ms=1.5, model="svc", version="v1", features=[[1.0, 2.0]],
                       store_features=True, label=2, extra={"shard": 3})
        assert log.log(request_id="r1", variant="candidate", prediction="setosa",
                       latency_ms=7.25, status=0, error="timeout")
        assert log.log(request_id="r2", variant="primary", prediction=[0.1, 0.9],
                       user_id=17, outcome=True)
    frame = predlog.read(db)
    assert list(frame["request_id"]) == ["r1", "r1", "r2"]
    first, second, third = frame.to_dict("records")
    assert first["prediction"] == 2 and isinstance(first["prediction"], int)
    assert second["prediction"] == "setosa"
    assert json.loads(third["prediction"]) == [0.1, 0.9]
    assert first["input_hash"] == predlog.input_hash([[1.0, 2.0]])
    assert json.loads(first["features"]) == [[1.0, 2.0]]
    assert pd.isna(second["features"]) and pd.isna(second["input_hash"])
    assert second["status"] == 0 and second["error"] == "timeout"
    assert third["user_id"] == "17" and third["outcome"] == 1.0
    assert json.loads(first["extra"]) == {"shard": 3}
    assert predlog.count(db) == 3 and predlog.count(db, "primary") == 2
    assert list(predlog.read(db, variant="candidate")["request_id"]) == ["r1"]
    assert len(predlog.read(db, variant=["primary", "candidate"])) == 3
    predlog.write(db, [{"request_id": "r3", "variant": "primary", "status": np.int64(503)}])
    assert predlog.read(db, variant="primary")["status"].tolist() == [200, 200, 503]


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    predlog.connect(db).close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.parametrize("fields, name", [
    ({"request_id": "", "variant": "a"}, "request_id"),
    ({"request_id": 5, "variant": "a"}, "request_id"),
    ({"request_id": "r", "variant": ""}, "variant"),
    ({"request_id": "r", "variant": "a", "latency_ms": -1}, "latency_ms"),
    ({"request_id": "r", "variant": "a", "latency_ms": float("nan")}, "latency_ms"),
    ({"request_id": "r", "variant": "a", "status": 1000}, "status"),
    ({"request_id": "r", "variant": "a", "status": "200"}, "status"),
])
def test_bad_field_is_named_in_the_caller(tmp_path: Path, fields: dict, name: str) -> None:
    with predlog.PredictionLog(tmp_path / "log.db") as log:
        with pytest.raises(ValueError, match=name):
            log.log(**fields)
    assert predlog.count(tmp_path / "log.db") == 0


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    with predlog.PredictionLog(tmp_path / "log.db") as log, pytest.raises(TypeError):
        log.log(request_id="r", variant="a", colour="blue")


def test_many_threads_lose_no_row_and_batch_writes(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = predlog.PredictionLog(db, batch_size=64)

    def writer(k: int) -> None:
        for i in range(500):
            log.log(request_id=f"{k}-{i}", variant=f"v{k}", prediction=i, latency_ms=0.1)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.flush(timeout=20)
    assert log.written == 2000 and log.failed == 0 and log.dropped == 0 and log.pending == 0
    log.close()
    assert predlog.count(db) == 2000
    frame = predlog.read(db)
    assert frame["request_id"].is_unique
    assert sorted(frame[frame.variant == "v3"]["prediction"]) == list(range(500))


def test_log_does_not_block_an_event_loop_while_the_database_is_locked(tmp_path: Path) -> None:
    async def handler_loop(log: predlog.PredictionLog) -> float:
        started = time.perf_counter()
        for i in range(200):
            log.log(request_id=f"r{i}", variant="a", prediction=i)
            await asyncio.sleep(0)
        return time.perf_counter() - started

    free = predlog.PredictionLog(tmp_path / "free.db", flush_s=0.01)
    unlocked = asyncio.run(handler_loop(free))
    free.close()
    db = tmp_path / "log.db"
    log = predlog.PredictionLog(db, flush_s=0.01)
    # another connection holds the write lock: the writer thread waits on it, the caller not
    blocker = sqlite3.connect(db, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")
    took = asyncio.run(handler_loop(log))
    # the same calls with the database free, in this run; a floor for a busy machine
    assert took < max(0.5, 10 * unlocked), \
        f"200 log calls took {took:.3f} s locked, {unlocked:.3f} s unlocked"
    assert log.written == 0
    blocker.rollback()
    blocker.close()
    assert log.flush(timeout=20)
    assert log.written == 200
    log.close()


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    blocker = sqlite3.connect(db, timeout=0)
    predlog.connect(db).close()
    blocker.execute("BEGIN IMMEDIATE")
    log = predlog.PredictionLog(db, max_queue=10, batch_size=5)
    accepted = sum(log.log(request_id=f"r{i}", variant="a") for i in range(100))
    assert log.dropped == 100 - accepted
    assert 10 <= accepted < 100  # the writer may hold one batch besides the full queue
    blocker.rollback()
    blocker.close()
    assert log.flush(timeout=20)
    log.close()
    assert predlog.count(db) == accepted


def test_failed_batch_is_counted_and_the_writer_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = predlog.PredictionLog(db, flush_s=0.01)
    # one row written first: the writer thread has opened its connection (which creates
    # the tables) before the table is dropped under it
    log.log(request_id="before", variant="a")
    assert log.flush(timeout=10) and log.written == 1
    con = sqlite3.connect(db)
    con.execute("DROP TABLE predictions")
    con.commit()
    log.log(request_id="lost", variant="a")
    assert log.flush(timeout=10)
    assert log.failed == 1 and "predictions" in (log.last_error or "")
    predlog.connect(db).close()  # the table comes back
    log.log(request_id="kept", variant="a")
    assert log.flush(timeout=10)
    log.close()
    assert list(predlog.read(db)["request_id"]) == ["kept"]


def test_close_writes_what_is_queued_and_refuses_more(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    log = predlog.PredictionLog(db, flush_s=5.0, batch_size=1000)
    for i in range(300):
        log.log(request_id=f"r{i}", variant="a")
    asyncio.run(log.aclose())
    assert predlog.count(db) == 300
    log.close()  # idempotent
    with pytest.raises(RuntimeError):
        log.log(request_id="late", variant="a")


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    for kwargs in ({"batch_size": 0}, {"flush_s": 0}, {"max_queue": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            predlog.PredictionLog(tmp_path / "log.db", **kwargs)


def test_paired_joins_by_request_id_with_late_labels(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    rows = []
    for i in range(6):
        rows.append({"request_id": f"r{i}", "variant": "primary", "prediction": i % 3,
                     "latency_ms": 1.0})
        if i != 5:  # the candidate never logged r5
            rows.append({"request_id": f"r{i}", "variant": "candidate",
                         "prediction": (i % 3) if i < 3 else 0, "latency_ms": 9.0 + i,
                         "status": 200 if i else 500})
    rows.append({"request_id": "r0", "variant": "candidate", "prediction": 99})  # duplicate
    assert predlog.write(db, rows) == len(rows)
    assert predlog.add_labels(db, {"r0": 0, "r1": 1, "r4": 2}, outcomes={"r2": 1.0}) == 4
    inner = predlog.paired(db, ["primary", "candidate"])
    assert list(inner["request_id"]) == [f"r{i}" for i in range(5)]
    assert list(inner["prediction_candidate"]) == [0, 1, 2, 0, 0]  # first row of r0 counts
    assert list(inner["status_candidate"]) == [500, 200, 200, 200, 200]
    agree = (inner["prediction_primary"] == inner["prediction_candidate"]).tolist()
    assert agree == [True, True, True, True, False]
    labelled = inner.dropna(subset=["label"])
    assert list(labelled["request_id"]) == ["r0", "r1", "r4"]
    assert inner.set_index("request_id").loc["r2", "outcome"] == 1.0
    left = predlog.paired(db, ["primary", "candidate"], how="left")
    assert len(left) == 6 and np.isnan(left.iloc[-1]["latency_ms_candidate"])
    labels = predlog.read_labels(db)
    assert set(labels["request_id"]) == {"r0", "r1", "r2", "r4"}
    with pytest.raises(ValueError, match="how"):
        predlog.paired(db, ["primary"], how="cross")


def test_paired_uses_the_rows_own_label_from_a_frame(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    predlog.write(db, [{"request_id": "a", "variant": "A", "prediction": 1, "label": 1},
                       {"request_id": "a", "variant": "B", "prediction": 0}])
    joined = predlog.paired(predlog.read(db), ["A", "B"])
    record = joined.to_dict("records")[0]
    assert pd.isna(record.pop("latency_ms_A")) and pd.isna(record.pop("latency_ms_B"))
    assert record == {"request_id": "a", "prediction_A": 1, "status_A": 200,
                      "prediction_B": 0, "status_B": 200, "label": 1}


def test_reader_in_this_process_sees_a_writer_in_another(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    script = (
        "import sys, time\n"
        "from labsupport import predlog\n"
        "log = predlog.PredictionLog(sys.argv[1], flush_s=0.01)\n"
        "for i in range(50):\n"
        "    log.log(request_id=f'r{i}', variant='child', prediction=i)\n"
        "    time.sleep(0.002)\n"
        "log.close()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(db)])
    try:
        predlog.connect(db).close()
        seen = predlog.wait_for_rows(db, 50, timeout=30)
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert seen == 50
    assert predlog.wait_for_rows(db, 51, timeout=0.1) == 50  # times out with what it has


def test_input_hash_is_stable_and_discriminating() -> None:
    assert predlog.input_hash({"b": 1, "a": 2}) == predlog.input_hash({"a": 2, "b": 1})
    assert predlog.input_hash([[1.0, 2.0]]) != predlog.input_hash([[2.0, 1.0]])
    assert len(predlog.input_hash([1])) == 16
    assert predlog.new_request_id() != predlog.new_request_id()
