"""The model registry as a model-load server sees it: MLflow's, models found by alias.

Introduced in *operation/model-load*. A training side registers an exported ONNX model
(the file and its manifest, see :func:`labsupport.models.export_model`) as a new version
of a registered model, with the opsets the file declares added to its manifest
(:func:`register`). A serving side resolves an alias such as ``champion`` to a version,
downloads that version's files (:func:`fetch`) and checks, before loading anything,
that the model fits the runtime and the API it will serve (:func:`compatibility`).

MLflow is imported on first use, not with this module: a server that imports
``labsupport.modelload`` answers its liveness probe before MLflow has loaded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labsupport import models, tracking  # tracking: MLflow's quiet environment, set first

# MLflow's download progress bars would land in a server's log and a chapter's page; and
# its HTTP client retries a dead registry for minutes by default, while a server asked to
# reload must answer within a request's time (its old model keeps serving meanwhile)
for _key, _value in {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                     "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                     "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}.items():
    os.environ.setdefault(_key, _value)

__all__ = ["Fetched", "RegistryError", "compatibility", "fetch", "model_opsets", "register",
           "runtime_opsets"]

ONNX_DOMAIN = "ai.onnx"  # the default domain, written "" inside an ONNX file


class RegistryError(LookupError):
    """The registry has no such model or alias (``missing=True``), or could not be asked."""

    def __init__(self, message: str, *, missing: bool):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class Fetched:
    """One registered version, downloaded: ``path`` is its ONNX file, ``manifest`` the
    manifest registered with it."""

    name: str
    version: str
    path: Path
    manifest: dict


def _client(tracking_uri: str) -> Any:
    import mlflow

    tracking.quiet()
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def model_opsets(blob: bytes) -> dict[str, int]:
    """The opset of each domain an ONNX model declares (``{"ai.onnx": 22, ...}``); needs
    the ``onnx`` package, which a training environment has and a server need not."""
    import onnx

    declared = onnx.load_from_string(blob).opset_import
    return {(o.domain or ONNX_DOMAIN): int(o.version) for o in declared}


def runtime_opsets() -> dict[str, int]:
    """The highest opset of each domain this onnxruntime has kernels for: the runtime's
    side of the support matrix."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    found: dict[str, int] = {}
    for kernel in ort_state.get_all_opkernel_def():
        domain = kernel.domain or ONNX_DOMAIN
        found[domain] = max(found.get(domain, 0), int(kernel.version_range[0]))
    return found


def register(model_path: str | os.PathLike[str], name: str, *, tracking_uri: str,
             alias: str | None = None, experiment: str = "model-load",
             artifact_location: str | None = None) -> str:
    """Register the ONNX file at ``model_path`` (and its manifest) as a new version of
    ``name``; point ``alias`` at it if given. Returns the new version number.

    The files are logged as the artifacts of a run in ``experiment`` (created if needed,
    at ``artifact_location`` when given: pass a folder's URI for a local store), with
    the model's declared opsets added to the registered manifest.
    """
    path = Path(model_path)
    manifest = json.loads(models.manifest_path(path).read_text())
    manifest["opsets"] = model_opsets(path.read_bytes())
    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (found.experiment_id if found else
                     client.create_experiment(experiment, artifact_location=artifact_location))
    staging = Path(tempfile.mkdtemp(prefix="register-"))
    try:
        shutil.copy(path, staging / "model.onnx")
        (staging / "model.onnx.json").write_text(json.dumps({**manifest, "file": "model.onnx"}))
        run = client.create_run(experiment_id, run_name=f"{name}-{manifest.get('version')}")
        client.log_artifacts(run.info.run_id, str(staging), artifact_path="model")
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints the run's URL
            client.set_terminated(run.info.run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id,
                                          tags={"manifest_version": str(manifest.get("version"))})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def fetch(name: str, alias: str, dest: str | os.PathLike[str], *,
          tracking_uri: str) -> Fetched:
    """Resolve ``name@alias`` to a version and download its files into
    ``dest/<version>/`` (kept: a version's files never change, so a second fetch of the
    same version downloads nothing). Raises :class:`RegistryError`."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        missing = error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        raise RegistryError(f"{name}@{alias}: {error.message}", missing=missing) from error
    except OSError as error:  # the registry is down or unreachable
        raise RegistryError(f"{name}@{alias}: registry unreachable ({error})",
                            missing=False) from error
    version = str(found.version)
    folder = Path(dest) / version
    if not (folder / "model.onnx.json").is_file():
        import mlflow

        partial = Path(tempfile.mkdtemp(prefix=f"v{version}-", dir=dest))
        uri = client.get_model_version_download_uri(name, version)
        mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(partial),
                                            tracking_uri=tracking_uri)
        # all files or none: a reader of dest never sees half a download
        shutil.rmtree(folder, ignore_errors=True)
        (partial / "model").rename(folder)
        shutil.rmtree(partial, ignore_errors=True)
    manifest = json.loads((folder / "model.onnx.json").read_text())
    return Fetched(name, version, folder / "model.onnx", manifest)


def compatibility(manifest: dict, fields: Sequence[str],
                  runtime: dict[str, int] | None = None) -> list[str]:
    """What stops this runtime and API from serving the model, as sentences (empty: none).

    Checks each opset the model declares against what the runtime has kernels for, and
    the model's input schema (its feature names, in any order) against the API's
    ``fields``.
    """
    runtime = runtime_opsets() if runtime is None else runtime
    problems = []
    declared = manifest.get("opsets")
    if not isinstance(declared, dict) or not declared:
        problems.append("the manifest declares no opsets")
    else:
        for domain, version in sorted(declared.items()):
            if domain not in runtime:
                problems.append(f"opset domain {domain} is unknown to this runtime")
            elif int(version) > runtime[domain]:
                problems.append(f"opset {domain} {version} is newer than this runtime's "
                                f"{runtime[domain]}")
    inputs = [item.get("name") for item in manifest.get("inputs", [])]
    if sorted(inputs) != sorted(fields):
        problems.append(f"input schema {inputs} does not match the API's fields {list(fields)}")
    return problems
