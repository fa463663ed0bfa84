"""labsupport.modelload against a real MLflow registry (an SQLite store in a temp folder)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from labsupport import modelload, models


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two iris versions (logistic regression, then SVC) registered under one name, with
    ``champion`` on the first, and a wine model under another name."""
    tmp = tmp_path_factory.mktemp("modelload")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    where = (tmp / "artifacts").as_uri()
    iris, wine = models.iris(), models.wine()
    paths = {"v1": tmp / "m" / "logreg.onnx", "v2": tmp / "m" / "svc.onnx",
             "wine": tmp / "m" / "wine.onnx"}
    models.export_model(models.fast_logreg(iris), paths["v1"], data=iris, name="iris", version="1")
    models.export_model(models.iris_svc(iris), paths["v2"], data=iris, name="iris", version="2")
    models.export_model(models.fast_logreg(wine), paths["wine"], data=wine, name="wine")
    versions = [modelload.register(paths[v], "iris", tracking_uri=uri, artifact_location=where,
                                   alias="champion" if v == "v1" else None)
                for v in ("v1", "v2")]
    modelload.register(paths["wine"], "wine", tracking_uri=uri, artifact_location=where,
                       alias="champion")
    return {"uri": uri, "tmp": tmp, "paths": paths, "versions": versions,
            "fields": iris.feature_names}


def test_versions_are_numbered_in_order(registry):
    assert registry["versions"] == ["1", "2"]


def test_fetch_follows_the_alias_and_downloads_the_registered_bytes(registry, tmp_path):
    from mlflow import MlflowClient

    first = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    assert first.version == "1"
    assert first.path.read_bytes() == registry["paths"]["v1"].read_bytes()
    assert first.manifest["sha256"] == hashlib.sha256(first.path.read_bytes()).hexdigest()
    MlflowClient(registry["uri"]).set_registered_model_alias("iris", "champion", "2")
    try:
        second = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    finally:
        MlflowClient(registry["uri"]).set_registered_model_alias("iris", "champion", "1")
    assert second.version == "2" and second.manifest["version"] == "2"
    assert second.path.read_bytes() == registry["paths"]["v2"].read_bytes()


def test_a_fetched_version_is_not_downloaded_again(registry, tmp_path):
    first = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    marker = first.path.parent / "marker"
    marker.write_text("kept")
    again = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    assert again.path == first.path and marker.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1"]  # no partial folder left


@pytest.mark.parametrize("name, alias", [("iris", "no-such-alias"), ("no-such-model", "champion")])
def test_a_missing_model_or_alias_is_a_registry_error(registry, tmp_path, name, alias):
    with pytest.raises(modelload.RegistryError) as caught:
        modelload.fetch(name, alias, tmp_path, tracking_uri=registry["uri"])
    assert caught.value.missing and name in str(caught.value)


def test_an_unreachable_registry_is_not_called_missing(tmp_path):
    with pytest.raises(modelload.RegistryError) as caught:
        modelload.fetch("iris", "champion", tmp_path, tracking_uri="http://127.0.0.1:9")
    assert not caught.value.missing


def test_the_registered_manifest_declares_the_file_s_opsets(registry, tmp_path):
    fetched = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    assert fetched.manifest["opsets"] == modelload.model_opsets(fetched.path.read_bytes())
    assert fetched.manifest["opsets"]["ai.onnx"] >= 1


def test_a_model_this_runtime_exported_is_compatible(registry, tmp_path):
    fetched = modelload.fetch("iris", "champion", tmp_path, tracking_uri=registry["uri"])
    assert modelload.compatibility(fetched.manifest, registry["fields"]) == []


def test_an_opset_newer_than_the_runtime_is_refused():
    runtime = modelload.runtime_opsets()
    manifest = {"opsets": {"ai.onnx": runtime["ai.onnx"] + 1},
                "inputs": [{"name": "a"}, {"name": "b"}]}
    problems = modelload.compatibility(manifest, ["a", "b"])
    assert len(problems) == 1 and "newer than this runtime" in problems[0]


def test_an_unknown_domain_and_a_missing_opset_list_are_refused():
    fields = ["a"]
    unknown = modelload.compatibility({"opsets": {"example.custom": 1}, "inputs": [{"name": "a"}]},
                                      fields)
    assert unknown and "unknown to this runtime" in unknown[0]
    assert modelload.compatibility({"inputs": [{"name": "a"}]}, fields) == [
        "the manifest declares no opsets"]


def test_another_input_schema_is_refused(registry, tmp_path):
    wine = modelload.fetch("wine", "champion", tmp_path, tracking_uri=registry["uri"])
    problems = modelload.compatibility(wine.manifest, registry["fields"])
    assert len(problems) == 1 and "input schema" in problems[0]


def test_field_order_does_not_matter():
    manifest = {"opsets": {"ai.onnx": 1}, "inputs": [{"name": "b"}, {"name": "a"}]}
    assert modelload.compatibility(manifest, ["a", "b"]) == []


def test_register_leaves_no_mlruns_folder(registry):
    assert not (Path.cwd() / "mlruns").exists()
    assert json.loads(models.manifest_path(registry["paths"]["v1"]).read_text())["version"] == "1"
