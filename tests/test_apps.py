from __future__ import annotations

import httpx
import numpy as np
import pytest

from labsupport import models
from labsupport.apps import create_model_app
from labsupport.servers import ServerStartError, serve


@pytest.fixture(scope="module")
def model_server(iris_model):
    with serve(create_model_app(str(iris_model)), name="model-app-test") as srv:
        yield srv


def test_predictions_match_the_model(model_server, iris_model) -> None:
    data = models.iris()
    response = httpx.post(model_server.url + "/predict", json={"rows": data.X_test.tolist()})
    assert response.status_code == 200
    body = response.json()
    assert body["labels"] == models.OnnxModel(iris_model).predict(data.X_test).tolist()
    assert body["classes"] == ["setosa", "versicolor", "virginica"]
    assert np.allclose(np.sum(body["probabilities"], axis=1), 1, atol=1e-4)
    assert float(response.headers["x-model-time-ms"]) > 0
    assert httpx.get(model_server.url + "/metadata").json()["version"] == "3"


@pytest.mark.parametrize(("body", "field"), [
    ({"rowz": [[1, 2, 3, 4]]}, "body.rows"),
    ({"rows": []}, "body.rows"),
    ({"rows": [[1, 2, 3, 4], [1, 2]]}, "body.rows.1"),
    ({"rows": [[1, 2, "x", 4]]}, "body.rows.0.2"),
])
def test_bad_bodies_get_422_naming_the_field(model_server, body, field) -> None:
    response = httpx.post(model_server.url + "/predict", json=body)
    assert response.status_code == 422
    assert field in [d["field"] for d in response.json()["detail"]]


def test_malformed_json_is_422_not_500(model_server) -> None:
    response = httpx.post(model_server.url + "/predict", content=b"{not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_missing_model_file_fails_at_start_with_the_reason(tmp_path) -> None:
    with pytest.raises(ServerStartError, match="does not exist"):
        serve("labsupport.apps:create_model_app", factory=True, mode="process",
              env={"MODEL_PATH": str(tmp_path / "missing.onnx")}, name="no-model")


def test_app_time_header_is_added_by_the_middleware() -> None:
    from fastapi import FastAPI

    from labsupport.apps import AppTimeMiddleware

    app = FastAPI()
    app.add_middleware(AppTimeMiddleware)

    @app.get("/health")
    def health() -> dict:
        return {}

    with serve(app, name="timed") as srv:
        response = httpx.get(srv.url + "/health")
    assert 0 < float(response.headers["x-app-time-ms"]) < 1000
