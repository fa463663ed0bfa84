"""lifecycle/train-then-serve in a cluster: a training CronJob that can only register, two
model-load servers that load only approved versions, and the 90/10 split in the mesh.

The lab's training job becomes a CronJob writing to the MLflow registry; the reviewer
tags versions there. The two model-load servers (``gated_server.py``) differ only in the
alias they load (``champion``, ``candidate``); their readiness probe is ``/ready``, so a
server without an approved model gets no traffic. The lab's A/B proxy becomes an Istio
VirtualService with the chapter's weights (the lab's proxy also logged every prediction:
in the mesh, that moves into the servers or the mesh's access log).
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "lifecycle/train-then-serve"
REGISTRY_PORT = 5000
MODEL_NAME = "iris-reviewed"


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    registry_url = f"{k8s.url(SLUG, 'registry')}:{REGISTRY_PORT}"
    store = [{"name": "store", "persistentVolumeClaim": {
        "claimName": k8s.name_of(SLUG, "registry-store")}}]
    mlflow = k8s.mlflow_server(SLUG, "registry", REGISTRY_PORT, volume="store")
    dwh = [{"name": "dwh", "persistentVolumeClaim": {"claimName": k8s.name_of(SLUG, "dwh")}}]
    train = k8s.container(
        "train", k8s.image(SLUG, "train"),
        ["python", "train_job.py", "/data/dwh.sqlite", "--batches", str(len(p["BATCH_ROWS"]))],
        health=None, cpu="1", memory="1Gi", env={"MLFLOW_TRACKING_URI": registry_url},
        mounts=[{"name": "dwh", "mountPath": "/data"}])
    host = k8s.name_of(SLUG, "model")
    objs = [
        k8s.pvc(SLUG, "registry-store", "5Gi", lab="lab.tracking.tracking_server(WORK)'s folder",
                does="The registry's database and model files (in production: a managed "
                     "database and object storage)."),
        k8s.deployment(SLUG, "registry", [mlflow], replicas=1, volumes=store,
                       lab='lab.tracking.tracking_server(WORK, name="registry")',
                       does="MLflow's registry: versions, their state and review tags, the "
                            "champion and candidate aliases."),
        k8s.service(SLUG, "registry", port="tcp", number=REGISTRY_PORT, lab="registry.url",
                    does="Where jobs register, reviewers tag and servers load."),
        k8s.pvc(SLUG, "dwh", "1Gi", lab="dwh.sqlite (rows, golden, jobs)",
                does="Stands in for the warehouse the training job reads."),
        k8s.cronjob(SLUG, "train", train, schedule="0 3 * * 1", retries=1, deadline_s=2 * 3600,
                    volumes=dwh, lab="train(batches=...) starting train_job.py",
                    does="Retrains weekly and registers a version tagged state=trained; it "
                         "has no way to release it."),
    ]
    for alias in ("champion", "candidate"):
        box = k8s.container("model", k8s.image(SLUG, "model"),
                            k8s.uvicorn("gated_server:create_app"), cpu="250m", memory="512Mi",
                            env={"MLFLOW_TRACKING_URI": registry_url, "MODEL_NAME": MODEL_NAME,
                                 "MODEL_ALIAS": alias, "MODEL_CACHE": "/models"},
                            mounts=[{"name": "models", "mountPath": "/models"}])
        # alive at once; ready only with an approved model loaded
        box["readinessProbe"]["httpGet"]["path"] = "/ready"
        box["startupProbe"] = {"httpGet": {"path": "/health", "port": "http"},
                               "periodSeconds": 2, "failureThreshold": 30}
        objs.append(k8s.deployment(
            SLUG, f"model-{alias}", [box], volumes=[{"name": "models", "emptyDir": {}}],
            labels={"mlsdp.book/service": host, "version": alias},
            lab=f'lab.serve("gated_server:create_app", name="model-{alias}")',
            does=f"Loads {MODEL_NAME}@{alias} only if its review tag says approved."))
    service = k8s.service(SLUG, "model", lab="CHAMPION_URL and CANDIDATE_URL of the ab-proxy",
                          does="One address for both slots; Istio picks the slot by subset.")
    service["spec"]["selector"] = {"mlsdp.book/service": host}
    weight = int(p["CANDIDATE_PERCENT"])
    objs += [
        service,
        k8s.destination_rule(SLUG, "model", host, lab="the two model-load servers",
                             does="Names the champion and candidate Deployments as subsets.",
                             subsets={"champion": {"version": "champion"},
                                      "candidate": {"version": "candidate"}}),
        k8s.virtual_service(SLUG, "split", host, routes=[("champion", 100 - weight),
                                                         ("candidate", weight)],
                            lab=f'PUT /split {{"candidate_percent": {weight}}}',
                            does=f"The canary: {100 - weight}% to the champion, {weight}% to "
                                 "the approved candidate; promotion sets 100/0."),
    ]
    return objs
