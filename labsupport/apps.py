"""A reusable model server: the predictor that many chapters put behind their pattern.

``create_model_app()`` serves one ONNX model (with its manifest) over HTTP:

* ``GET /health``: liveness; ``GET /metadata``: the manifest;
* ``POST /predict`` with ``{"rows": [[...], ...]}``: labels and probabilities, the
  model's own compute time in the ``X-Model-Time-Ms`` header and the whole time in the
  app in ``X-App-Time-Ms``.

A body that does not fit gets a 422 naming the field (pydantic), never a 500.
Introduced in *serving/synchronous*, where it plays the backend with a dialable cost.
Run it in process mode with::

    serve("labsupport.apps:create_model_app", factory=True, mode="process",
          env={"MODEL_PATH": "/path/model.onnx"})

Why ``/predict`` is not a plain FastAPI route: on a small model, FastAPI's per-request
machinery (dependency solving, response validation and encoding) costs more CPU than
parsing, validating and running the model together, so the server only reached a third
of the speed of a minimal endpoint with the same model (``make bench``). ``/predict`` is
therefore a Starlette route inside the FastAPI app: pydantic parses and validates the raw
body in one pass (``model_validate_json``), the answer is serialised once with
``json.dumps`` of plain lists, and a cheap model runs on the event loop instead of
hopping to a worker thread. ``/docs`` still documents it with the same models.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from .models import OnnxModel

MAX_ROWS = 1024
# A model call predicted to take longer than this runs in a worker thread, so that it
# does not hold the event loop (other requests, /health) for its whole duration; a
# cheaper one runs on the loop, where the thread hop would cost more than the model.
INLINE_BUDGET_MS = 0.5
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
NO_TELEMETRY: Any = {"tracing": False, "metrics": False, "logs": False}

# Finite and within float32: NaN, inf or 1e39 would reach the model as NaN/inf and come
# back as probabilities that are not valid JSON.
Feature = Annotated[float, Field(allow_inf_nan=False, ge=-_FLOAT32_MAX, le=_FLOAT32_MAX)]


class PredictRequest(BaseModel):
    rows: list[list[Feature]] = Field(min_length=1, max_length=MAX_ROWS,
                                      description="feature rows, one list of floats per row")


class PredictResponse(BaseModel):
    labels: list[int]
    classes: list[str]
    probabilities: list[list[float]]
    model: str
    version: str


class AppTimeMiddleware:
    """Pure ASGI middleware adding ``X-App-Time-Ms``: the time a request spent inside the
    app (routing, validation, handler, serialisation), up to its response headers.

    Cheaper than ``@app.middleware("http")``, which wraps every request in extra tasks
    and streams. Introduced in *serving/web-single*.
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_time(message: dict) -> None:
            if message["type"] == "http.response.start":
                elapsed = f"{(time.perf_counter() - started) * 1e3:.4f}".encode()
                message["headers"] = [*message.get("headers", []), (b"x-app-time-ms", elapsed)]
            await send(message)

        await self.app(scope, receive, send_with_time)


def field_errors(errors: Iterable[dict], prefix: tuple = ()) -> list[dict]:
    """pydantic errors as ``[{"field": "body.rows.0", "message": ...}]``: the book's 422
    ``detail``, one entry per bad field, the field as a dotted path."""
    return [{"field": ".".join(str(part) for part in (*prefix, *item["loc"])),
             "message": item["msg"]} for item in errors]


def validation_error_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 whose ``detail`` names each bad field as a dotted path, e.g. ``body.rows.0``."""
    return JSONResponse(status_code=422, content={"detail": field_errors(error.errors())})


def _unprocessable(detail: list[dict]) -> Response:
    return Response(json.dumps({"detail": detail}), status_code=422,
                    media_type="application/json")


def create_model_app(model_path: str | None = None) -> FastAPI:
    """Build the model server for ``model_path`` (default: ``$MODEL_PATH``)."""
    model_path = model_path or os.environ.get("MODEL_PATH")
    if not model_path:
        raise RuntimeError("set MODEL_PATH to the .onnx file this server should load")
    model = OnnxModel(model_path)
    # No OpenTelemetry provider is configured in the lab; FastAPI would otherwise look for
    # one on every request (a tenth of this server's CPU per request on a small model).
    app = FastAPI(title=f"model-{model.name}", telemetry=NO_TELEMETRY)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(AppTimeMiddleware)
    # The parts of every answer that never change, serialised once.
    classes = _compact_json(model.classes)
    tail = _compact_json({"model": model.name, "version": model.version})

    # The model's cost per row, measured on every call (moving average), decides where
    # the next call runs. The start-up call also takes onnxruntime's first-call cost.
    started = time.perf_counter()
    model.run(np.zeros((1, model.n_features), dtype=np.float32))
    cost = {"ms_per_row": (time.perf_counter() - started) * 1e3}

    def run(rows: list[list[float]]) -> tuple[Any, Any, float]:
        started = time.perf_counter()
        labels, probabilities = model.run(rows)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        cost["ms_per_row"] += 0.1 * (elapsed_ms / len(rows) - cost["ms_per_row"])
        return labels, probabilities, elapsed_ms

    # async: nothing here blocks, so skip the hop to a worker thread
    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict:
        return model.manifest

    async def predict(request: Request) -> Response:
        try:
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as error:
            return _unprocessable(field_errors(error.errors(), prefix=("body",)))
        rows = body.rows
        bad = next((i for i, row in enumerate(rows) if len(row) != model.n_features), None)
        if bad is not None:
            return _unprocessable([{"field": f"body.rows.{bad}", "message":
                                    f"expected {model.n_features} features, "
                                    f"got {len(rows[bad])}"}])
        if len(rows) * cost["ms_per_row"] <= INLINE_BUDGET_MS:
            labels, probabilities, model_ms = run(rows)
        else:
            labels, probabilities, model_ms = await run_in_threadpool(run, rows)
        if not np.isfinite(probabilities).all():
            # rows the model cannot score (finite, but so extreme that it overflows)
            bad = int(np.flatnonzero(~np.isfinite(probabilities).all(axis=1))[0])
            return _unprocessable([{"field": f"body.rows.{bad}", "message":
                                    "the model gives no probabilities for this row: its "
                                    "values are too extreme for it"}])
        probabilities = probabilities.astype(float).round(6).tolist()
        content = (f'{{"labels":{_compact_json(labels.tolist())},"classes":{classes},'
                   f'"probabilities":{_compact_json(probabilities)},{tail[1:]}')
        return Response(content, media_type="application/json",
                        headers={"X-Model-Time-Ms": f"{model_ms:.4f}"})

    # first in the routing table: the hot path skips matching the docs' and other routes
    app.router.routes.insert(0, Route("/predict", predict, methods=["POST"]))

    def documented_predict(body: PredictRequest) -> PredictResponse:
        """Predict labels and probabilities for rows of features."""
        raise NotImplementedError("documentation only: the Starlette route answers")

    def openapi() -> dict:
        # /docs lists FastAPI routes only: describe /predict with its real models.
        if app.openapi_schema is None:
            doc = APIRoute("/predict", documented_predict, methods=["POST"],
                           response_model=PredictResponse, name="predict")
            app.openapi_schema = get_openapi(title=app.title, version=app.version,
                                             routes=[*app.routes, doc])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
