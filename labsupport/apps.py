"""A reusable model server: the predictor that many chapters put behind their pattern.

``create_model_app()`` serves one ONNX model (with its manifest) over HTTP:

* ``GET /health``: liveness; ``GET /metadata``: the manifest;
* ``POST /predict`` with ``{"rows": [[...], ...]}``: labels and probabilities, the
  model's own compute time in the ``X-Model-Time-Ms`` header and the whole time in the
  app in ``X-App-Time-Ms``. The handler is a plain ``def``: FastAPI runs it in a worker
  thread, so a model that takes milliseconds does not block the event loop.

A body that does not fit gets a 422 naming the field (FastAPI/pydantic), never a 500.
Introduced in *serving/synchronous*, where it plays the backend with a dialable cost.
Run it in process mode with::

    serve("labsupport.apps:create_model_app", factory=True, mode="process",
          env={"MODEL_PATH": "/path/model.onnx"})
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .models import OnnxModel

MAX_ROWS = 1024


class PredictRequest(BaseModel):
    rows: list[list[float]] = Field(min_length=1, max_length=MAX_ROWS,
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


def validation_error_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 whose ``detail`` names each bad field as a dotted path, e.g. ``body.rows.0``."""
    detail = [
        {"field": ".".join(str(part) for part in item["loc"]), "message": item["msg"]}
        for item in error.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def create_model_app(model_path: str | None = None) -> FastAPI:
    """Build the model server for ``model_path`` (default: ``$MODEL_PATH``)."""
    model_path = model_path or os.environ.get("MODEL_PATH")
    if not model_path:
        raise RuntimeError("set MODEL_PATH to the .onnx file this server should load")
    model = OnnxModel(model_path)
    app = FastAPI(title=f"model-{model.name}")
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(AppTimeMiddleware)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/metadata")
    def metadata() -> dict:
        return model.manifest

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest, response: Response) -> dict | JSONResponse:
        widths = {len(row) for row in body.rows}
        if widths != {model.n_features}:
            bad = next(i for i, row in enumerate(body.rows) if len(row) != model.n_features)
            return JSONResponse(status_code=422, content={"detail": [{
                "field": f"body.rows.{bad}",
                "message": f"expected {model.n_features} features, got {len(body.rows[bad])}"}]})
        started = time.perf_counter()
        labels, probabilities = model.run(body.rows)
        response.headers["X-Model-Time-Ms"] = f"{(time.perf_counter() - started) * 1e3:.4f}"
        return {"labels": labels.tolist(), "classes": model.classes,
                "probabilities": probabilities.astype(float).round(6).tolist(),
                "model": model.name, "version": model.version}

    return app
