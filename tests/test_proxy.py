"""labsupport.proxy against a real upstream server on 127.0.0.1 (thread mode)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import BaseModel

from labsupport import proxy, servers
from labsupport.servers import free_port, serve


def upstream_app() -> FastAPI:
    app = FastAPI(title="upstream")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {"got": await request.json()}

    @app.get("/peer")
    def peer(request: Request) -> dict:
        assert request.client is not None
        return {"port": request.client.port}  # the proxy side's port: same port, same conn

    @app.get("/slow")
    async def slow(s: float = 1.0) -> dict:
        await asyncio.sleep(s)
        return {"slept": s}

    @app.get("/teapot")
    def teapot() -> JSONResponse:
        return JSONResponse(status_code=418, content={"detail": "short and stout"})

    @app.get("/text500")
    def text500() -> JSONResponse:
        return JSONResponse(status_code=500, content="not json either", media_type="text/plain")

    return app


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve(upstream_app(), name="test-proxy-upstream") as server:
        yield server.url


class Rows(BaseModel):
    rows: list[list[float]]


def proxy_app(upstream_url: str, **forward_options: float | bool) -> tuple[FastAPI, dict]:
    """A small proxy built the way the chapters build theirs."""
    seen: dict = {"ticks": 0}
    client = proxy.client(upstream_url)
    down = proxy.client(f"http://127.0.0.1:{free_port()}")  # nobody listens there

    async def ticker() -> None:
        while True:
            seen["ticks"] += 1
            await asyncio.sleep(0.01)

    app = proxy.new_app("test-proxy", close=[client, down], background=[ticker])
    seen["client"], seen["down"] = client, down

    @app.post("/predict")
    async def predict(body: Rows, request: Request) -> JSONResponse:
        headers: dict[str, str] = {}
        with proxy.timed(headers, "up"):
            answer = await proxy.forward(client, "POST", "/echo", upstream="up",
                                         json=body.model_dump(), **forward_options)
        return JSONResponse(answer.json(), headers=headers)

    @app.get("/via/{path}")
    async def via(path: str, s: float = 1.0) -> JSONResponse:
        answer = await proxy.forward(client, "GET", f"/{path}", upstream="up",
                                     params={"s": s}, **forward_options)
        return JSONResponse({"status": answer.status_code}, status_code=200)

    @app.get("/down")
    async def to_down() -> dict:
        await proxy.forward(down, "GET", "/anything", upstream="down")
        return {}

    return app, seen


def test_forwards_and_reports_time(upstream: str) -> None:
    app, _ = proxy_app(upstream)
    with TestClient(app) as http:
        answer = http.post("/predict", json={"rows": [[1.0, 2.0]]})
        assert answer.status_code == 200
        assert answer.json() == {"got": {"rows": [[1.0, 2.0]]}}
        assert float(answer.headers["x-up-time-ms"]) > 0
        assert float(answer.headers["x-app-time-ms"]) >= float(answer.headers["x-up-time-ms"])
        assert http.get("/health").json() == {"status": "ok"}


def test_bad_body_is_a_422_naming_the_field(upstream: str) -> None:
    app, _ = proxy_app(upstream)
    with TestClient(app) as http:
        for body in ({"rows": "abc"}, {"rows": [["x"]]}, {}):
            answer = http.post("/predict", json=body)
            assert answer.status_code == 422, body
            assert answer.json()["detail"][0]["field"].startswith("body")
        answer = http.post("/predict", content=b"{not json", headers={
            "content-type": "application/json"})
        assert answer.status_code == 422


def test_deadline_is_a_504_naming_the_upstream(upstream: str) -> None:
    app, _ = proxy_app(upstream, deadline_s=0.1)
    with TestClient(app) as http:
        started = time.perf_counter()
        answer = http.get("/via/slow", params={"s": 2.0})
        took = time.perf_counter() - started
    assert answer.status_code == 504
    detail = answer.json()["detail"][0]
    assert detail == {"field": "upstream.up", "message": "no answer within 100 ms"}
    assert took < 1.5  # the deadline, not the upstream's 2 s, ended the call


def test_client_timeout_is_a_504_too(upstream: str) -> None:
    app = proxy.new_app("timeouts")
    client = proxy.client(upstream, timeout=0.1)

    @app.get("/")
    async def call() -> dict:
        await proxy.forward(client, "GET", "/slow", upstream="up", params={"s": 2.0})
        return {}

    with TestClient(app) as http:
        answer = http.get("/")
    asyncio.run(client.aclose())
    assert answer.status_code == 504
    assert answer.json()["detail"][0]["message"].startswith("ReadTimeout")


def test_no_connection_is_a_502_naming_the_upstream(upstream: str) -> None:
    app, _ = proxy_app(upstream)
    with TestClient(app) as http:
        answer = http.get("/down")
    assert answer.status_code == 502
    detail = answer.json()["detail"][0]
    assert detail["field"] == "upstream.down"
    assert detail["message"].startswith("ConnectError")


def test_status_passes_unless_raise_for_status(upstream: str) -> None:
    app, _ = proxy_app(upstream)
    with TestClient(app) as http:
        assert http.get("/via/teapot").json() == {"status": 418}
    app, _ = proxy_app(upstream, raise_for_status=True)
    with TestClient(app) as http:
        answer = http.get("/via/teapot")
        assert answer.status_code == 502
        assert answer.json()["detail"] == [{
            "field": "upstream.up", "message": "answered HTTP 418", "upstream_status": 418,
            "upstream_detail": {"detail": "short and stout"}}]
        text = http.get("/via/text500").json()["detail"][0]
        assert (text["upstream_status"], text["upstream_detail"]) == (500, "not json either")


def test_lifespan_runs_background_and_closes_clients(upstream: str) -> None:
    app, seen = proxy_app(upstream)
    with TestClient(app) as http:
        http.get("/health")
        time.sleep(0.1)
        assert seen["ticks"] >= 2
        assert not seen["client"].is_closed
    ticks = seen["ticks"]
    time.sleep(0.05)
    assert seen["ticks"] == ticks  # cancelled at shutdown
    assert seen["client"].is_closed and seen["down"].is_closed


def test_client_keepalive_is_shorter_than_the_servers_and_limits_are_checked() -> None:
    assert proxy.KEEPALIVE_EXPIRY_S < servers.KEEP_ALIVE_S
    with pytest.raises(ValueError, match="max_connections"):
        proxy.client(max_connections=0)


def test_pooled_client_keeps_one_connection_for_sequential_calls(upstream: str) -> None:
    async def ports() -> set[int]:
        async with proxy.client(upstream) as client:
            return {(await client.get("/peer")).json()["port"] for _ in range(5)}

    assert len(asyncio.run(ports())) == 1


def test_forward_rejects_a_non_positive_deadline(upstream: str) -> None:
    async def call() -> None:
        async with proxy.client(upstream) as client:
            await proxy.forward(client, "GET", "/health", upstream="up", deadline_s=0)

    with pytest.raises(ValueError, match="deadline_s"):
        asyncio.run(call())


def test_timed_sets_its_header_only_when_the_block_succeeds() -> None:
    headers: dict[str, str] = {}
    with proxy.timed(headers, "fine"):
        time.sleep(0.01)
    assert float(headers["X-Fine-Time-Ms"]) >= 10
    with pytest.raises(httpx.ConnectError), proxy.timed(headers, "broken"):
        raise httpx.ConnectError("refused")
    assert "X-Broken-Time-Ms" not in headers


def test_upstream_error_without_answer_has_no_upstream_fields() -> None:
    error = proxy.UpstreamError("dwh", "sent features v2")
    assert error.status == 502
    assert error.body() == {"detail": [{"field": "upstream.dwh", "message": "sent features v2"}]}
