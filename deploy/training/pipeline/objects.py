"""training/pipeline: each step of the lab's pipeline as a Kubernetes Job, and the volume
that holds the artifacts the steps hand each other.

A Job has no order: an orchestrator (Argo Workflows, Kubeflow Pipelines, Airflow) creates
each step's Job once the artifacts it needs exist, and skips a step whose artifact key is
already stored. The chapter shows the same DAG as an Argo Workflow.
"""

from __future__ import annotations

import json
from typing import Any

from labsupport import manifests as k8s

SLUG = "training/pipeline"

# step: (its inputs, the parameters it reads, cpu, memory, what it does): as the chapter's STEPS
STEPS = {
    "preprocess": ((), ("seed", "test_size"), "250m", "256Mi",
                   "Splits the raw table and learns the scaling (numpy only)."),
    "train": (("preprocess",), ("hidden", "alpha", "lr", "epochs", "seed"), "1", "512Mi",
              "Trains the network, after preprocess (scikit-learn)."),
    "export": (("preprocess", "train"), ("opset",), "500m", "512Mi",
               "Builds the ONNX model from the scaling and the network (skl2onnx)."),
    "evaluate": (("preprocess", "export"), ("gate",), "250m", "256Mi",
                 "Scores the built model on the held-out rows (onnxruntime)."),
}


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    volume = {"name": "artifacts",
              "persistentVolumeClaim": {"claimName": k8s.name_of(SLUG, "artifacts")}}
    objs = [k8s.pvc(SLUG, "artifacts", "5Gi", lab="WORK / 'store' (the artifact store)",
                    does="The artifacts the steps hand each other, one folder per step.")]
    for step, (needs, reads, cpu, memory, does) in STEPS.items():
        script = f"step_{step}.py"
        k8s.writefile(SLUG, script)  # the chapter writes this module: fails if renamed
        command = ["python", script, "--out", f"/artifacts/{step}",
                   "--params", json.dumps({name: p["PARAMS"][name] for name in reads})]
        if not needs:
            command += ["--input", "raw=/artifacts/raw"]
        for need in needs:
            command += ["--input", f"{need}=/artifacts/{need}"]
        box = k8s.container(step, k8s.image(SLUG, step), command, health=None, cpu=cpu,
                            memory=memory, mounts=[{"name": "artifacts",
                                                    "mountPath": "/artifacts"}])
        objs.append(k8s.job(SLUG, step, box, retries=1, deadline_s=3600, volumes=[volume],
                            lab=f'Step("{step}", ...) run by pipeline.run', does=does))
    return objs
