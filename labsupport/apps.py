"""A reusable model server: the predictor that many chapters put behind their pattern.

``create_model_app()`` serves one ONNX model (with its manifest) over HTTP:

* ``GET /health``: liveness; ``GET /metadata``: the manifest;
* ``POST /predict`` with ``{"rows": [[...], ...]}``: labels and probabilities, and the
  model's own compute time in the ``X-Model-Time-Ms`` header.

A body that does not fit gets a 422 naming the field (FastAPI/pydantic), never a 500.
Introduced in *serving/synchronous*, where it plays the backend with a dialable cost.
Run it in process mode with::

    serve("labsupport.apps:create_model_app", factory=True, mode="process",
          env={"MODEL_PATH": "/path/model.onnx"})
"""

from __future__ import annotations

import os
import time

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
