from __future__ import annotations

import threading
import time

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


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"rows": [[1, 2, NaN, 4]]}', "body.rows.0.2"),
    (b'{"rows": [[1, 2, 3, Infinity]]}', "body.rows.0.3"),
    (b'{"rows": [[1e39, 2, 3, 4]]}', "body.rows.0.0"),  # inf as float32
    (b"", "body"),
    (b"[1, 2]", "body"),
    (b'{"rows": [[1, 2, 3, 4]], "rows2": 1, "rows": "x"}', "body.rows"),
])
def test_bodies_the_model_cannot_take_get_422_naming_the_field(model_server, raw, field) -> None:
    response = httpx.post(model_server.url + "/predict", content=raw,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert field in [d["field"] for d in response.json()["detail"]]


def test_answer_carries_the_models_probabilities_and_both_timings(model_server,
                                                                  iris_model) -> None:
    data = models.iris()
    response = httpx.post(model_server.url + "/predict", json={"rows": data.X_test[:5].tolist()})
    body = response.json()
    expected = models.OnnxModel(iris_model).predict_proba(data.X_test[:5])
    assert np.allclose(body["probabilities"], expected, atol=1e-6)
    assert (body["model"], body["version"]) == ("iris-svc", "3")
    assert response.headers["content-type"] == "application/json"
    model_ms = float(response.headers["x-model-time-ms"])
    assert 0 < model_ms <= float(response.headers["x-app-time-ms"])


def test_openapi_documents_predict_with_its_request_and_response(model_server) -> None:
    spec = httpx.get(model_server.url + "/openapi.json").json()
    post = spec["paths"]["/predict"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictRequest")
    assert post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictResponse")
    assert "rows" in spec["components"]["schemas"]["PredictRequest"]["properties"]


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("AnyIO worker")}


def test_a_cheap_model_runs_on_the_event_loop(iris_model) -> None:
    with serve(create_model_app(str(iris_model)), name="inline-model") as srv:
        before = _worker_threads()
        with httpx.Client(base_url=srv.url) as client:
            for row in models.iris().X_test[:20]:
                assert client.post("/predict", json={"rows": [row.tolist()]}).is_success
        assert not _worker_threads() - before


@pytest.fixture(scope="module")
def heavy_model(tmp_path_factory) -> tuple[str, np.ndarray]:
    data = models.synth3(n_train=6000, n_test=1024)
    path = tmp_path_factory.mktemp("heavy") / "knn.onnx"
    models.export_model(models.heavy_knn(6000, data), path, data=data, name="knn")
    return str(path), data.X_test


def test_a_heavy_call_runs_in_a_worker_thread_and_the_loop_stays_free(heavy_model) -> None:
    path, rows = heavy_model
    with serve(create_model_app(path), name="heavy-model") as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.get("/health").is_success  # the connection is open before timing
        before = _worker_threads()
        answers: list[httpx.Response] = []
        caller = threading.Thread(target=lambda: answers.append(
            httpx.post(srv.url + "/predict", json={"rows": rows.tolist()}, timeout=30)))
        caller.start()
        time.sleep(0.1)  # the big request is sent and its model call under way
        started = time.perf_counter()
        assert client.get("/health").is_success
        health_ms = (time.perf_counter() - started) * 1e3
        caller.join(timeout=30)
        assert _worker_threads() - before, "the heavy call did not go to a worker thread"
    model_ms = float(answers[0].headers["x-model-time-ms"])
    # /health did not wait for the model: it answered in a fraction of the model's time
    assert model_ms > 100 and health_ms < model_ms / 4, (health_ms, model_ms)
