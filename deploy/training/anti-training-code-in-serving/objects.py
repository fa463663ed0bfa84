"""training/anti-training-code-in-serving in a cluster: the lean server only, sized from
its measured memory, and the training job on its own, the only one that reaches the
warehouse."""

from __future__ import annotations

import math
from typing import Any

from labsupport import manifests as k8s

SLUG = "training/anti-training-code-in-serving"

# The lean server's resident memory after one prediction, from a run on the 2-core machine
MEASURED = {"LEAN_RSS_MB": 90.0}


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    memory_mi = int(64 * math.ceil(1.5 * float(p["LEAN_RSS_MB"]) / 64))
    model = "/models/model.onnx"
    lean = k8s.container("lean", k8s.image(SLUG, "lean"), k8s.uvicorn("lean_server:create_app"),
                         config=k8s.name_of(SLUG, "lean"), cpu="100m", memory=f"{memory_mi}Mi")
    training = k8s.container(
        "train", k8s.image(SLUG, "train"),
        ["python", "training_code.py", "/config/training.json"], health=None, cpu="2",
        memory="2Gi", mounts=[{"name": "config", "mountPath": "/config"}])
    # the warehouse's credentials: a Secret only this Job mounts (created by the platform)
    training["env"] = [{"name": "DWH_PASSWORD", "valueFrom": {"secretKeyRef": {
        "name": k8s.name_of(SLUG, "dwh"), "key": "password"}}}]
    config_volume = {"name": "config", "configMap": {"name": k8s.name_of(SLUG, "train")}}
    return [
        k8s.configmap(SLUG, "lean", {"MODEL_PATH": model},
                      lab='env={"MODEL_PATH": ...} of the lean server',
                      does="The one setting serving needs: where the model file is."),
        k8s.deployment(SLUG, "lean", [lean], replicas=2,
                       lab='lab.serve("lean_server:create_app")',
                       does=f"The lean server: onnxruntime, numpy, FastAPI; {memory_mi}Mi for "
                            f"{p['LEAN_RSS_MB']:.0f} MB measured."),
        k8s.service(SLUG, "lean", lab="servers['lean'].url",
                    does="The address clients call; no route trains, nothing reaches the DWH."),
        k8s.configmap(SLUG, "train", {"training.json": (
            '{"model_path": "/models/model.onnx", "dwh_path": "/dwh/training_dwh.sqlite", '
            '"dwh_user": "trainer", "train_threads": 8}')},
            lab="config.json (the training half of it)",
            does="The training job's settings, warehouse included: never mounted by serving."),
        k8s.job(SLUG, "train", training, retries=1, deadline_s=3600, volumes=[config_volume],
                lab="training_code.py (python training_code.py config.json)",
                does="Reads the warehouse, fits, exports model.onnx to the model store: the only "
                     "reader of the DWH."),
    ]
