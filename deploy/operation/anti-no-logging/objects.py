"""operation/anti-no-logging: the work-around, deployed: the model server with its prediction
log switched on, the Redis stream, and the consumer that writes the log."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/anti-no-logging"
POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    redis_url = k8s.redis_url(SLUG)
    objs = k8s.redis(SLUG, lab='redis_server(name="nolog-redis")',
                     does="The stream of prediction events (make it replicated and persistent).")
    config = {"MODEL_PATH": "/models/iris_svc.onnx", "PREDICTION_LOG": "on",
              "REDIS_URL": redis_url}
    box = k8s.container("app", k8s.image(SLUG, "app"), k8s.uvicorn("incident_app:create_app"),
                        config=k8s.name_of(SLUG, "app"))
    # Prometheus scrapes the counters the antipattern had; the log is what it lacked.
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                   "prometheus.io/port": str(k8s.PORT)}
    app = k8s.deployment(SLUG, "app", [box], replicas=2,
                         lab='servers["on"]: lab.serve("incident_app:create_app")',
                         does="The model server with PREDICTION_LOG=on: one event per answer.")
    app["spec"]["template"]["metadata"]["annotations"] = annotations
    consumer = k8s.container(
        "consumer", k8s.image(SLUG, "consumer"),
        ["sh", "-c", f'exec python -m labsupport.logqueue --redis "{redis_url}" '
                     '--db /data/predictions.sqlite --name "$POD_NAME" --claim-idle-ms 30000'],
        health=None, mounts=[{"name": "data", "mountPath": "/data"}])
    consumer["env"] = [POD_NAME]
    store = k8s.deployment(
        SLUG, "consumer", [consumer], replicas=1,
        volumes=[{"name": "data", "persistentVolumeClaim": {
            "claimName": k8s.name_of(SLUG, "log")}}],
        lab='lab.start_process(["-m", "labsupport.logqueue", ...], name="nolog-consumer")',
        does="Writes the prediction log: the rows the incident's query reads.")
    store["spec"]["strategy"] = {"type": "Recreate"}  # one SQLite writer, even in a rollout
    return [
        *objs,
        k8s.configmap(SLUG, "app", config, lab='env of servers["on"]',
                      does="PREDICTION_LOG=on: the one setting between the antipattern and "
                           "the fix."),
        app,
        k8s.service(SLUG, "app", lab='servers["on"].url',
                    does="The model server's address, for every client version."),
        k8s.pvc(SLUG, "log", "10Gi", lab="LOG_DB (prediction_log.sqlite)",
                does="The prediction log's disk: what the investigation queries."),
        store,
    ]
