"""Data and model versioning in a cluster: the version registry on its own disk, an MLflow
tracking server beside it, and the rebuild as a Job a release waits for."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/data-model-versioning"
MODEL = "iris-species"


def _disk(component: str, size: str, *, lab: str, does: str) -> tuple[dict, dict]:
    claim = k8s.pvc(SLUG, f"{component}-data", size, lab=lab, does=does)
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    return claim, volume


def objects(p: dict[str, Any]) -> list[dict]:
    registry = k8s.name_of(SLUG, "registry")
    data = [{"name": "data", "mountPath": "/data"}]

    registry_disk, registry_volume = _disk(
        "registry", "5Gi", lab="REGISTRY_DIR (the run's registry folder)",
        does="The registry's SQLite file and its store of .npy splits and ONNX files, "
             "named by sha256.")
    box = k8s.container("registry", k8s.image(SLUG, "registry"),
                        k8s.uvicorn("version_registry:create_app"), config=registry,
                        mounts=data)
    deployment = k8s.deployment(
        SLUG, "registry", [box], replicas=1, volumes=[registry_volume],
        lab='lab.serve("version_registry:create_app", env={"REGISTRY_DIR": ...})',
        does="The version registry: computes each version from the rule and refuses others.")
    # SQLite has one writer, and a ReadWriteOnce disk one node: stop the old pod first
    deployment["spec"]["strategy"] = {"type": "Recreate"}

    mlflow_disk, mlflow_volume = _disk(
        "mlflow", "10Gi", lab="lab.tracking.use_store(RUN, ...): mlflow.db and mlartifacts",
        does="MLflow's run and model-version database and its artifacts.")
    server = k8s.mlflow_server(SLUG, "mlflow", k8s.PORT, volume="data")
    tracking = k8s.deployment(
        SLUG, "mlflow", [server], replicas=1, volumes=[mlflow_volume],
        lab="the MLflow store the chapter logs runs and model versions to",
        does="The MLflow tracking server: runs, model versions, the champion alias.")
    tracking["spec"]["strategy"] = {"type": "Recreate"}

    rebuild = k8s.container(
        "rebuild", k8s.image(SLUG, "rebuild"),
        ["python", "rebuild.py", k8s.url(SLUG, "registry"), MODEL, "/tmp/rebuilt"],
        health=None, cpu="1", memory="512Mi")
    return [
        registry_disk,
        k8s.configmap(SLUG, "registry", {"REGISTRY_DIR": "/data"},
                      lab="env of version-registry", does="Where the registry keeps its files."),
        deployment,
        k8s.service(SLUG, "registry", lab="registry.url",
                    does="The address training jobs and the rebuild job call."),
        mlflow_disk,
        tracking,
        k8s.service(SLUG, "mlflow", port="tcp", number=80,
                    lab="MLFLOW_TRACKING_URI of the training jobs",
                    does="The address of the tracking server (mlflow.set_tracking_uri)."),
        k8s.job(SLUG, "rebuild", rebuild, retries=0, deadline_s=1800,
                lab='subprocess.run([sys.executable, "rebuild.py", registry.url, NAME, out])',
                does="Rebuilds every version from its record; a release waits for it."),
    ]
