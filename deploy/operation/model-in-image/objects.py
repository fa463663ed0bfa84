"""operation/model-in-image: the Deployment runs the image whose tag is its digest."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/model-in-image"
# A reference build's image digest (its first 12 hex digits) and model version; a run of
# the chapter shows its own (the digest covers the model manifest's export time).
MEASURED = {"IMAGE_TAG": "0123456789ab", "MODEL_VERSION": "1"}


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    tag = str(p["IMAGE_TAG"])
    box = k8s.container("app", k8s.image(SLUG, "", tag=tag), k8s.uvicorn("image_app:create_app"),
                        env={"IMAGE_DIGEST": f"sha256:{tag}",
                             # deploy/Dockerfile copies the model to /models/
                             "MODEL_PATH": "/models/model.onnx"})
    return [
        k8s.deployment(SLUG, "", [box], replicas=4,
                       lab=f'deploy(image) of digest {tag}: lab.serve("image_app:create_app")',
                       does=f"Runs the image built after training (model version "
                            f"{p['MODEL_VERSION']}): its tag is its digest, so the pods run "
                            f"exactly one (code, model) pair."),
        k8s.service(SLUG, "", lab="server.url",
                    does="The stable address of the model server, over its ready pods."),
        k8s.hpa(SLUG, "", low=3, high=10, lab="(one process per image: cannot scale)",
                does="3 to 10 replicas on CPU; each new pod pulls the whole image first."),
    ]
