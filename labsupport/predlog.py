"""The prediction log: one row per prediction a model server or proxy made, in SQLite.

The QA chapters compare models from what they logged (*qa/shadow-ab* logs the primary and
the mirrored candidate, *qa/online-ab* the variant each user was sent to), and the
operation chapters watch a model from the same rows. One table, ``predictions``:

==============  =====================================================================
``id``          row number (insertion order)
``request_id``  the id that ties the rows of one request together (primary + candidate)
``ts``          Unix time in seconds when the prediction was made
``variant``     the role in the experiment: ``"primary"``, ``"candidate"``, ``"A"``...
``model``       model name; ``version`` its version
``user_id``     who asked (sticky assignment), or NULL
``input_hash``  :func:`input_hash` of the features, to match requests without storing them
``features``    the features as JSON, or NULL (they can be large)
``prediction``  the answer (an int or a str stays one; lists and dicts are stored as JSON)
``latency_ms``  the time the call took, as the caller measured it
``status``      HTTP status of the answer; 0 when there was none (timeout, refused)
``error``       why there was no usable answer, or NULL
``label``       the true label when known at logging time (else see ``labels``)
``outcome``     a business outcome (a KPI value such as 1.0 for a click), or NULL
``extra``       any other fields, as a JSON object
``logged_at``   Unix time when the writer committed the row (its freshness: ``logged_at
                - ts``); stamped by :class:`PredictionLog`, :func:`write` and
                ``labsupport.logqueue``'s consumer, just before the transaction
==============  =====================================================================

Labels often arrive later than predictions; :func:`add_labels` writes them to a second
table, ``labels(request_id, label, outcome, ts)``, and :func:`paired` joins both.

Writing never blocks the caller: :class:`PredictionLog` queues rows and a background
thread writes them in batches (``executemany``, one transaction per batch) on its own
connection, so a FastAPI handler can call :meth:`PredictionLog.log` on the event loop.
The database is in WAL mode: a notebook reads while a server process writes.
Introduced in *qa/shadow-ab*.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ("request_id", "ts", "variant", "model", "version", "user_id", "input_hash",
           "features", "prediction", "latency_ms", "status", "error", "label", "outcome",
           "extra")

# "prediction" and "label" have no declared type: SQLite then keeps 1 as an integer and
# "setosa" as text, so a frame read back compares them without any parsing.
SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    ts REAL NOT NULL,
    variant TEXT NOT NULL,
    model TEXT,
    version TEXT,
    user_id TEXT,
    input_hash TEXT,
    features TEXT,
    prediction,
    latency_ms REAL,
    status INTEGER,
    error TEXT,
    label,
    outcome REAL,
    extra TEXT,
    logged_at REAL
);
CREATE INDEX IF NOT EXISTS predictions_request ON predictions (request_id);
CREATE INDEX IF NOT EXISTS predictions_variant_ts ON predictions (variant, ts);
CREATE TABLE IF NOT EXISTS labels (
    request_id TEXT PRIMARY KEY,
    label,
    outcome REAL,
    ts REAL NOT NULL
);
"""

_INSERT = (f"INSERT INTO predictions ({', '.join(COLUMNS)}, logged_at) "
           f"VALUES ({', '.join('?' for _ in COLUMNS)}, ?)")


def stamped(rows: Iterable[tuple]) -> list[tuple]:
    """Rows built by :func:`make_row` with the current time appended as ``logged_at``, for
    an ``INSERT`` of :data:`COLUMNS` plus ``logged_at``. Introduced in
    *operation/prediction-log*."""
    now = time.time()
    return [(*row, now) for row in rows]


def connect(path: str | PathLike[str], *, timeout: float = 10.0) -> sqlite3.Connection:
    """Open (and create if needed) a prediction log database: WAL mode, so readers and one
    writer at a time never block each other, and a busy timeout of ``timeout`` seconds for
    writers in other processes. Introduced in *qa/shadow-ab*."""
    con = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across a process crash in WAL mode; only a power cut can lose the
    # last transactions, which a lab's log can afford for the write speed it gives.
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    return con


def new_request_id() -> str:
    """A fresh request id (32 hex characters, uuid4), for a proxy that was not given one
    by its client. Introduced in *qa/shadow-ab*."""
    return uuid.uuid4().hex


def input_hash(features: Any) -> str:
    """A short, stable hash (16 hex characters) of a request's features: the same rows give
    the same hash in every process, so requests can be matched without storing their
    features. Introduced in *qa/shadow-ab*."""
    text = json.dumps(features, sort_keys=True, separators=(",", ":"), default=float)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _stored(value: Any) -> Any:
    """A value SQLite keeps as it is (int, float, str, None) or its JSON text."""
    if value is None or isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        value = value.tolist()
    return json.dumps(value, default=float)


def make_row(*, request_id: str, variant: str, prediction: Any = None,
             latency_ms: float | None = None, status: int = 200, model: str | None = None,
             version: str | None = None, user_id: str | None = None,
             features: Any = None, store_features: bool = False, error: str | None = None,
             label: Any = None, outcome: float | None = None, ts: float | None = None,
             extra: Mapping[str, Any] | None = None) -> tuple:
    """Check one prediction's fields and return the row :data:`COLUMNS` describes. A bad
    field raises ``ValueError`` naming it, in the caller, not later in the writer thread.
    ``features`` are hashed (``input_hash``) and stored only with ``store_features=True``.
    Introduced in *qa/shadow-ab*."""
    if not isinstance(request_id, str) or not request_id:
        raise ValueError(f"request_id must be a non-empty string, not {request_id!r}")
    if not isinstance(variant, str) or not variant:
        raise ValueError(f"variant must be a non-empty string, not {variant!r}")
    if latency_ms is not None:
        latency_ms = float(latency_ms)
        if not latency_ms >= 0:  # also rejects NaN
            raise ValueError(f"latency_ms must be >= 0 or None, not {latency_ms!r}")
    if isinstance(status, bool) or not isinstance(status, numbers.Integral) \
            or not 0 <= status <= 999:
        raise ValueError(f"status must be an HTTP status (0 for no answer), not {status!r}")
    status = int(status)  # a numpy integer too
    if outcome is not None:
        outcome = float(outcome)
    return (
        request_id, time.time() if ts is None else float(ts), variant, model, version,
        None if user_id is None else str(user_id),
        None if features is None else input_hash(features),
        json.dumps(features, default=float) if store_features and features is not None
        else None,
        _stored(prediction), latency_ms, status, error, _stored(label), outcome,
        json.dumps(dict(extra), default=str) if extra else None,
    )


class PredictionLog:
    """A non-blocking writer to the prediction log at ``path``.

    :meth:`log` checks a row and puts it on a bounded queue (a few microseconds, safe to
    call on an event loop or from many threads); a daemon thread writes what is queued in
    batches of up to ``batch_size`` rows, at least every ``flush_s`` seconds. When the
    queue is full (the disk cannot keep up), a row is dropped and counted in ``dropped``
    rather than slowing the caller; rows whose batch failed to write are counted in
    ``failed`` (the error in ``last_error``). ``written`` counts rows committed.

    In a FastAPI app, create it in the app factory and pass it to
    ``labsupport.proxy.new_app(close=[log])``: its :meth:`aclose` writes what is left at
    shutdown. Introduced in *qa/shadow-ab*.
    """

    def __init__(self, path: str | PathLike[str], *, batch_size: int = 256,
                 flush_s: float = 0.05, max_queue: int = 100_000):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if not flush_s > 0:
            raise ValueError(f"flush_s must be > 0, not {flush_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, not {max_queue}")
        self.path = Path(path)
        self.batch_size, self.flush_s = batch_size, flush_s
        self.written = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[tuple | None] = queue.Queue(maxsize=max_queue)
        self._accepted = 0
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._closed = False
        connect(self.path).close()  # create the file and tables now: a bad path fails here
        self._thread = threading.Thread(target=self._run, name=f"predlog-{self.path.name}",
                                        daemon=True)
        self._thread.start()

    def log(self, **fields: Any) -> bool:
        """Queue one prediction (the keyword arguments of :func:`make_row`). Returns False
        when the row was dropped because the queue is full; raises ``ValueError`` for a
        bad field and ``RuntimeError`` after :meth:`close`."""
        row = make_row(**fields)
        return self.log_row(row)

    def log_row(self, row: tuple) -> bool:
        """Queue a row already built by :func:`make_row`."""
        if len(row) != len(COLUMNS):
            raise ValueError(f"row must have {len(COLUMNS)} fields, not {len(row)}")
        with self._lock:
            if self._closed:
                raise RuntimeError("this PredictionLog is closed")
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self.dropped += 1
                return False
            self._accepted += 1
        return True

    @property
    def pending(self) -> int:
        """Rows accepted but not yet written (or failed)."""
        with self._lock:
            return self._accepted - self.written - self.failed

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row accepted so far is written (or failed); False on timeout.
        Blocking: from async code, ``await asyncio.to_thread(log.flush)``."""
        deadline = time.monotonic() + timeout
        with self._done:
            target = self._accepted
            while self.written + self.failed < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._done.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    async def aclose(self) -> None:
        """:meth:`close` off the event loop (what ``proxy.new_app(close=...)`` calls)."""
        import asyncio

        await asyncio.to_thread(self.close)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        con = connect(self.path)
        try:
            stop = False
            while not stop:
                try:
                    first = self._queue.get(timeout=self.flush_s)
                except queue.Empty:
                    continue
                batch: list[tuple] = []
                if first is None:
                    stop = True
                else:
                    batch.append(first)
                # take what is already queued, up to a batch: one transaction for many rows
                while len(batch) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        continue
                    batch.append(item)
                if batch:
                    self._write(con, batch)
        finally:
            con.close()

    def _write(self, con: sqlite3.Connection, batch: list[tuple]) -> None:
        try:
            with con:
                con.executemany(_INSERT, stamped(batch))
        except sqlite3.Error as error:
            with self._done:
                self.failed += len(batch)
                self.last_error = f"{type(error).__name__}: {error}"
                self._done.notify_all()
            return
        with self._done:
            self.written += len(batch)
            self._done.notify_all()


def write(path: str | PathLike[str], rows: Iterable[Mapping[str, Any]]) -> int:
    """Write predictions synchronously (each a mapping of :func:`make_row`'s arguments) in
    one transaction; returns the number written. For batch jobs and tests; a server uses
    :class:`PredictionLog`. Introduced in *qa/shadow-ab*."""
    built = [make_row(**row) for row in rows]
    con = connect(path)
    try:
        with con:
            con.executemany(_INSERT, stamped(built))
    finally:
        con.close()
    return len(built)


def add_labels(path: str | PathLike[str], labels: Mapping[str, Any] | Iterable[tuple],
               *, outcomes: Mapping[str, float] | None = None) -> int:
    """Record ground truth that arrived after the predictions: ``labels`` maps request id
    to label (or is an iterable of ``(request_id, label)`` pairs); ``outcomes`` optionally
    maps request id to an outcome. A later label for the same request replaces the
    earlier one. Returns the number of requests written. Introduced in *qa/shadow-ab*."""
    pairs = dict(labels.items() if isinstance(labels, Mapping) else labels)
    outcomes = dict(outcomes or {})
    ids = list(pairs) + [key for key in outcomes if key not in pairs]
    now = time.time()
    rows = [(str(key), _stored(pairs.get(key)),
             None if outcomes.get(key) is None else float(outcomes[key]), now) for key in ids]
    con = connect(path)
    try:
        with con:
            con.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?)", rows)
    finally:
        con.close()
    return len(rows)


def count(path: str | PathLike[str], variant: str | None = None) -> int:
    """Rows in the log (of one ``variant``): cheap, for waiting until a log has drained.
    Introduced in *qa/shadow-ab*."""
    con = connect(path)
    try:
        if variant is None:
            return con.execute("SELECT count(*) FROM predictions").fetchone()[0]
        return con.execute("SELECT count(*) FROM predictions WHERE variant = ?",
                           (variant,)).fetchone()[0]
    finally:
        con.close()


def wait_for_rows(path: str | PathLike[str], n: int, *, variant: str | None = None,
                  timeout: float = 10.0, poll_s: float = 0.05) -> int:
    """Poll until the log holds at least ``n`` rows (of ``variant``) or ``timeout`` passes;
    returns the count reached. For a log written by another process (a proxy's mirror
    calls finish after the client's answers). Introduced in *qa/shadow-ab*."""
    deadline = time.monotonic() + timeout
    while True:
        found = count(path, variant)
        if found >= n or time.monotonic() >= deadline:
            return found
        time.sleep(poll_s)


def read(path: str | PathLike[str], *, variant: str | Sequence[str] | None = None,
         since: float | None = None) -> pd.DataFrame:
    """The log as a frame (columns :data:`COLUMNS` plus ``id``), in insertion order;
    optionally one ``variant`` (or several) and rows with ``ts >= since``. ``ts`` stays in
    Unix seconds (``pd.to_datetime(frame.ts, unit="s")`` for dates). Introduced in
    *qa/shadow-ab*."""
    where, params = [], []
    if variant is not None:
        names = [variant] if isinstance(variant, str) else list(variant)
        where.append(f"variant IN ({', '.join('?' for _ in names)})")
        params += names
    if since is not None:
        where.append("ts >= ?")
        params.append(float(since))
    sql = "SELECT * FROM predictions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    con = connect(path)
    try:
        return pd.read_sql_query(sql + " ORDER BY id", con, params=params)
    finally:
        con.close()


def read_labels(path: str | PathLike[str]) -> pd.DataFrame:
    """The ``labels`` table as a frame (request_id, label, outcome, ts). Introduced in
    *qa/shadow-ab*."""
    con = connect(path)
    try:
        return pd.read_sql_query("SELECT * FROM labels", con)
    finally:
        con.close()


def paired(source: str | PathLike[str] | pd.DataFrame, variants: Sequence[str],
           *, fields: Sequence[str] = ("prediction", "latency_ms", "status"),
           how: str = "inner", labels: bool = True) -> pd.DataFrame:
    """One row per request id, with each variant's ``fields`` side by side
    (``prediction_primary``, ``latency_ms_candidate``...). ``how="inner"`` keeps requests
    every variant answered (logged, whatever the status); ``"left"`` keeps every request
    of the first variant, with NaN where another has no row. If a variant logged a request
    twice, its first row counts.

    With ``labels=True`` (and ``source`` a path), a ``label`` column comes from the
    ``labels`` table, else from the first variant's own ``label`` field. Introduced in
    *qa/shadow-ab*; *qa/online-ab* and the operation chapters join the same way.
    """
    if len(variants) < 1:
        raise ValueError("variants must name at least one variant")
    if how not in ("inner", "left", "outer"):
        raise ValueError(f"how must be 'inner', 'left' or 'outer', not {how!r}")
    frame = source if isinstance(source, pd.DataFrame) else read(source, variant=variants)
    joined: pd.DataFrame | None = None
    for name in variants:
        part = (frame[frame["variant"] == name].drop_duplicates("request_id")
                .set_index("request_id")[list(fields)].add_suffix(f"_{name}"))
        joined = part if joined is None else joined.join(part, how=how)
    assert joined is not None
    first = frame[frame["variant"] == variants[0]].drop_duplicates("request_id")
    own = first.set_index("request_id")["label"]
    joined["label"] = own.reindex(joined.index)
    if labels and not isinstance(source, pd.DataFrame):
        late = read_labels(source).set_index("request_id")
        if len(late):
            joined["label"] = late["label"].reindex(joined.index).combine_first(joined["label"])
            joined["outcome"] = late["outcome"].reindex(joined.index)
    return joined.reset_index()
