"""training/anti-only-me in a cluster: the rebuild check as a Job, the ONNX file served.

The lab's clean-process rebuild (``train_model.py --rebuild MANIFEST``) becomes a Job run
from the same image as training, so the manifest's package versions are the image's; it
exits 2, 3 or 4 when the versions, the data or the code no longer match the manifest.
The served model is the book's generic ONNX server, its file copied from a model-only
image: no scikit-learn and no training code in serving.
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "training/anti-only-me"


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    model_image = k8s.image(SLUG, "model-iris-forest", tag="1")
    init, volume = k8s.model_init(model_image)
    models = [{"name": "models", "mountPath": "/models"}]
    rebuild = k8s.container(
        "rebuild", k8s.image(SLUG, "train"),
        ["python", "train_model.py", "--rebuild", "/models/model.onnx.json",
         "--out", "/tmp/proba.npy"],
        health=None, cpu="500m", memory="512Mi", mounts=models)
    server = k8s.container(
        "model", k8s.image(SLUG, "model"), k8s.uvicorn("labsupport.apps:create_model_app"),
        env={"MODEL_PATH": "/models/model.onnx"}, cpu="250m", memory="256Mi", mounts=models)
    check = k8s.job(SLUG, "rebuild", rebuild, retries=0, deadline_s=1800, volumes=[volume],
                    lab=f"rebuild(MANIFEST): train_model.py --rebuild in a clean process "
                        f"(seed {p['SEED']})",
                    does="Rebuilds the model from its manifest in the pinned image; fails "
                         "if versions, data or code changed. Run it in CI and before a release.")
    # the manifest comes from the model image, as the server's file does
    check["spec"]["template"]["spec"]["initContainers"] = [init]
    return [
        check,
        k8s.deployment(SLUG, "model", [server], init=[init], volumes=[volume],
                       lab='lab.serve("labsupport.apps:create_model_app"), the file from MLflow',
                       does="Serves the ONNX file with onnxruntime only; the model image "
                            "carries the file and its manifest."),
        k8s.service(SLUG, "model", lab="server.url",
                    does="The stable address of the ONNX model server."),
    ]
