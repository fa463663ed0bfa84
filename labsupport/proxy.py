"""The plumbing every proxy in the book shares, so that a chapter's app module shows the
pattern (the breaker, the cache key, the fan-out, the routing decision) and little else.

* :func:`client`: a pooled ``httpx.AsyncClient`` whose idle connections expire before the
  servers' do (:data:`labsupport.servers.KEEP_ALIVE_S`);
* :func:`new_app`: a FastAPI app with ``/health``, the book's 422 handler, the
  ``X-App-Time-Ms`` header, a 502/504 for a failed upstream, and a lifespan that runs
  background tasks and closes the clients it is given;
* :func:`forward`: one call upstream within a deadline for the whole call; no answer
  becomes :class:`UpstreamError`, which the app answers with a 502 (504 after the
  deadline) whose body names the upstream and the reason;
* :func:`timed`: an ``X-<Name>-Time-Ms`` header for a block that succeeded.

Introduced in *serving/prep-pred*, the book's first proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import Any, Protocol

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .apps import AppTimeMiddleware, validation_error_handler
from .servers import KEEP_ALIVE_S

# Idle pooled connections are dropped well before a lab server closes them (30 s): a proxy
# never reuses a connection at the moment the server closes it.
KEEPALIVE_EXPIRY_S = min(5.0, KEEP_ALIVE_S / 2)


class Closable(Protocol):
    """What :func:`new_app` can close at shutdown: an httpx or redis.asyncio client."""

    async def aclose(self) -> None: ...


class UpstreamError(Exception):
    """An upstream gave no usable answer. A :func:`new_app` app answers it with ``status``
    (502, or 504 when the deadline passed) and a body that names the upstream::

        {"detail": [{"field": "upstream.<name>", "message": "<reason>",
                     "upstream_status": 409, "upstream_detail": ...}]}

    The last two only when the upstream did answer (``answer``). Introduced in
    *serving/prep-pred*.
    """

    def __init__(self, upstream: str, reason: str = "", *, status: int = 502,
                 answer: httpx.Response | None = None):
        if not reason and answer is not None:
            reason = f"answered HTTP {answer.status_code}"
        super().__init__(f"{upstream}: {reason}")
        self.upstream, self.reason, self.status, self.answer = upstream, reason, status, answer

    def body(self) -> dict:
        """The JSON body of the 502/504, in the shape of the book's 422 answers."""
        item: dict[str, Any] = {"field": f"upstream.{self.upstream}", "message": self.reason}
        if self.answer is not None:
            item["upstream_status"] = self.answer.status_code
            try:
                item["upstream_detail"] = self.answer.json()
            except ValueError:
                item["upstream_detail"] = self.answer.text[:500]
        return {"detail": [item]}


def upstream_error_handler(request: Request, error: UpstreamError) -> JSONResponse:
    """The answer of a :func:`new_app` app to an :class:`UpstreamError` raised by a handler
    (*serving/prep-pred*)."""
    return JSONResponse(status_code=error.status, content=error.body())


def client(base_url: str = "", *, timeout: float | None = 10.0, max_connections: int = 100,
           retries: int = 0) -> httpx.AsyncClient:
    """A shared async client for a proxy's calls upstream: up to ``max_connections`` at
    once, all kept alive for reuse, idle ones closed after :data:`KEEPALIVE_EXPIRY_S`.

    ``timeout`` bounds each phase of a call (connect, send, every read: httpx's rule), a
    backstop; :func:`forward`'s ``deadline_s`` bounds the whole call. ``retries`` repeats a
    failed *connection* attempt (a restarting server), never a sent request. Create it in
    the app factory, give it to :func:`new_app` to be closed. Introduced in
    *serving/prep-pred*.
    """
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, not {max_connections}")
    limits = httpx.Limits(max_connections=max_connections,
                          max_keepalive_connections=max_connections,
                          keepalive_expiry=KEEPALIVE_EXPIRY_S)
    # limits go to the transport: httpx ignores a client's limits once it has a transport
    transport = httpx.AsyncHTTPTransport(limits=limits, retries=retries)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)


def new_app(title: str, *, close: Sequence[Closable] = (),
            background: Sequence[Callable[[], Awaitable[None]]] = (),
            health: bool = True) -> FastAPI:
    """A FastAPI app with the book's scaffold: a bad body gets a 422 naming the field
    (:func:`labsupport.apps.validation_error_handler`), an :class:`UpstreamError` a 502 or
    504 naming the upstream, every answer an ``X-App-Time-Ms`` header, and ``GET /health``
    answers ``{"status": "ok"}`` (``health=False``: the chapter defines its own).

    While the app runs, each of ``background`` runs as a task (a poller, a monitor); on
    shutdown they are cancelled and everything in ``close`` (clients, Redis connections)
    is closed. Introduced in *serving/prep-pred*.
    """
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(job()) for job in background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for item in close:
                await item.aclose()

    app = FastAPI(title=title, lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(UpstreamError, upstream_error_handler)
    app.add_middleware(AppTimeMiddleware)
    if health:
        app.get("/health")(_health)
    return app


def _health() -> dict:
    return {"status": "ok"}


async def forward(client: httpx.AsyncClient, method: str, url: str, *, upstream: str,
                  deadline_s: float | None = None, raise_for_status: bool = False,
                  **request: Any) -> httpx.Response:
    """Send one request upstream (``request``: httpx's ``json=``, ``content=``,
    ``headers=``...) and return its answer, whatever its status.

    ``deadline_s`` bounds the whole call, however the time is spent (None: the client's
    per-phase timeout only). No answer raises :class:`UpstreamError` naming ``upstream``:
    status 504 when the deadline or a timeout passed, 502 when the connection failed. With
    ``raise_for_status=True`` an answer that is not a 2xx raises a 502 too, carrying the
    upstream's status and detail. Introduced in *serving/prep-pred*.
    """
    if deadline_s is not None and deadline_s <= 0:
        raise ValueError(f"deadline_s must be > 0 or None, not {deadline_s}")
    try:
        async with asyncio.timeout(deadline_s):
            answer = await client.request(method, url, **request)
    except TimeoutError as error:
        within = f" within {deadline_s * 1e3:.0f} ms" if deadline_s else ""
        raise UpstreamError(upstream, f"no answer{within}", status=504) from error
    except httpx.TimeoutException as error:
        raise UpstreamError(upstream, _describe(error), status=504) from error
    except httpx.HTTPError as error:
        raise UpstreamError(upstream, _describe(error)) from error
    if raise_for_status and not answer.is_success:
        raise UpstreamError(upstream, answer=answer)
    return answer


def _describe(error: Exception) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextlib.contextmanager
def timed(headers: MutableMapping[str, str], name: str) -> Iterator[None]:
    """Set ``X-<name>-Time-Ms`` in ``headers`` to the block's time, if the block succeeds:
    a missing header then says the step failed or was skipped, and
    :func:`labsupport.load.server_timings` reads it back as ``timings[name.lower()]``.
    Introduced in *serving/microservice-vertical*.
    """
    started = time.perf_counter()
    yield
    headers[f"X-{name.title()}-Time-Ms"] = f"{(time.perf_counter() - started) * 1e3:.3f}"
