"""operation/model-load: a server image without a model, the model fetched from the registry."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/model-load"
REGISTRY_PORT = 5000
# What the init container runs: the server's own fetch, into the cache folder the server
# reads, so the server's fetch at start finds the champion's files already there.
PREFETCH = ("import os; from labsupport import modelload; "
            "v = modelload.fetch(os.environ['MODEL_NAME'], os.environ['MODEL_ALIAS'], "
            "os.environ['MODEL_CACHE'], tracking_uri=os.environ['MLFLOW_TRACKING_URI']); "
            "print('fetched version', v.version)")


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    registry = k8s.name_of(SLUG, "registry")
    config = k8s.name_of(SLUG)
    cache = {"name": "models", "mountPath": "/models"}
    claim = k8s.name_of(SLUG, "registry-data")
    store = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    mlflow = k8s.mlflow_server(SLUG, "registry", REGISTRY_PORT, volume="data")
    fetch = k8s.container("fetch-model", k8s.image(SLUG, ""), ["python", "-c", PREFETCH],
                          health=None, config=config, cpu="100m", memory="256Mi", mounts=[cache])
    server = k8s.container("app", k8s.image(SLUG, ""), k8s.uvicorn("model_load_app:create_app"),
                           config=config, mounts=[cache])
    # alive at once, ready once the model is loaded; a slow first load gets its time
    server["readinessProbe"]["httpGet"]["path"] = "/ready"
    server["startupProbe"] = {"httpGet": {"path": "/health", "port": "http"},
                              "periodSeconds": 2, "failureThreshold": 30}
    return [
        k8s.pvc(SLUG, "registry-data", "5Gi", lab="the registry's folder in WORK",
                does="The registry's store and model files (in production: a database and "
                     "object storage)."),
        k8s.deployment(SLUG, "registry", [mlflow], replicas=1, volumes=store,
                       lab="lab.tracking.tracking_server(WORK)",
                       does="MLflow's tracking and model registry: versions, the champion "
                            "alias."),
        k8s.service(SLUG, "registry", port="tcp", number=REGISTRY_PORT,
                    lab="registry.url",
                    does="The registry's address for servers and training jobs."),
        k8s.configmap(SLUG, "", {"MLFLOW_TRACKING_URI": f"http://{registry}:{REGISTRY_PORT}",
                                 "MODEL_NAME": "iris", "MODEL_ALIAS": "champion",
                                 "MODEL_CACHE": "/models"},
                      lab="env of lab.serve(\"model_load_app:create_app\")",
                      does="Which model the servers load: the registry, the name and the alias."),
        k8s.deployment(SLUG, "", [server], replicas=2, init=[fetch],
                       volumes=[{"name": "models", "emptyDir": {}}],
                       lab='lab.serve("model_load_app:create_app")',
                       does="The server image without a model: the init container fetches the "
                            "champion, the server loads it, /ready gates traffic."),
        k8s.service(SLUG, "", lab="server.url",
                    does="The stable address of the model servers, over their ready pods only."),
    ]
