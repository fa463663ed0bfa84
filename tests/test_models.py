from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from labsupport import models


def test_datasets_are_seeded() -> None:
    a, b = models.synth3(n_train=500, n_test=100), models.synth3(n_train=500, n_test=100)
    assert np.array_equal(a.X_train, b.X_train) and a.sha256() == b.sha256()
    assert a.X_train.dtype == np.float32 and a.n_features == 32
    assert models.iris().units["petal_length"] == "cm"


def test_onnx_matches_sklearn_on_iris(iris_model) -> None:
    data = models.iris()
    sk = models.iris_svc(data)
    onnx = models.OnnxModel(iris_model)
    X = np.vstack([data.X_train, data.X_test])
    assert np.array_equal(onnx.predict(X), sk.predict(X))
    assert np.abs(onnx.predict_proba(X) - sk.predict_proba(X)).max() < 1e-5


def test_manifest_describes_the_file(iris_model) -> None:
    manifest = json.loads(models.manifest_path(iris_model).read_text())
    assert manifest["sha256"] == hashlib.sha256(iris_model.read_bytes()).hexdigest()
    assert manifest["version"] == "3" and manifest["classes"][0] == "setosa"
    assert [i["name"] for i in manifest["inputs"]][:2] == ["sepal_length", "sepal_width"]
    assert manifest["inputs"][0]["unit"] == "cm"
    assert manifest["inputs"][0]["min"] < manifest["inputs"][0]["max"]
    assert {"scikit-learn", "onnxruntime", "skl2onnx"} <= set(manifest["packages"])
    assert manifest["training_data"]["sha256"] == models.iris().sha256()


def test_missing_model_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(models.ModelFileNotFoundError, match="does not exist"):
        models.OnnxModel(tmp_path / "nope.onnx")


def test_tampered_model_is_rejected(iris_model, tmp_path) -> None:
    copy = tmp_path / "iris.onnx"
    copy.write_bytes(iris_model.read_bytes() + b"\0")
    models.manifest_path(copy).write_text(models.manifest_path(iris_model).read_text())
    with pytest.raises(ValueError, match="does not match its manifest"):
        models.OnnxModel(copy)


def test_wrong_width_is_refused(iris_model) -> None:
    with pytest.raises(ValueError, match="expected 4 features"):
        models.OnnxModel(iris_model).predict([[1.0, 2.0]])


def test_heavy_knn_cost_and_quality_grow_with_reference_rows() -> None:
    data = models.synth3(n_train=5000, n_test=1000)
    small = models.OnnxModel(models.to_onnx_bytes(models.heavy_knn(500, data), 32))
    large = models.OnnxModel(models.to_onnx_bytes(models.heavy_knn(5000, data), 32))
    acc_small = (small.predict(data.X_test) == data.y_test).mean()
    acc_large = (large.predict(data.X_test) == data.y_test).mean()
    logreg = (models.fast_logreg(data).predict(data.X_test) == data.y_test).mean()
    assert acc_large > acc_small > logreg
    with pytest.raises(ValueError, match="exceeds"):
        models.heavy_knn(10_000, data)


def test_resample_and_train_only_datasets() -> None:
    data = models.iris()
    X, y = models.resample(data.X_train, data.y_train, 500, noise=0.1, seed=1)
    X2, _ = models.resample(data.X_train, data.y_train, 500, noise=0.1, seed=1)
    assert X.shape == (500, 4) and X.dtype == np.float32 and np.array_equal(X, X2)
    assert set(np.unique(y)) <= set(np.unique(data.y_train))
    assert np.abs(X - data.X_train.mean(axis=0)).max() < 10
    dense = models.Dataset.train_only("dense-iris", X, y, data.feature_names,
                                      data.target_names, data.units)
    assert len(dense.X_test) == 0 and dense.n_features == 4
    wine = models.wine()
    assert wine.n_features == 13 and len(wine.target_names) == 3
