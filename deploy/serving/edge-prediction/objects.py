"""What serving/edge-prediction deploys: the cluster's side of an edge pattern.

The predictions happen on the devices, outside the cluster. What runs inside is the
publisher of model files (the lab's ``publish()``: versioned files and their sha256,
served read-only to devices; behind a CDN in practice) and, for clients without the
runtime, the same model behind HTTP (the lab's server arm).
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "serving/edge-prediction"
PUBLISHER_PORT = 8000


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    publisher = k8s.container(
        "publisher", k8s.image(SLUG, "publisher"),
        ["python", "-m", "http.server", str(PUBLISHER_PORT), "--directory", "/models"],
        health=None, tcp_port=PUBLISHER_PORT, cpu="100m", memory="64Mi")
    model = k8s.container("model", k8s.image(SLUG, "model"),
                          k8s.uvicorn("labsupport.apps:create_model_app"),
                          env={"MODEL_PATH": "/models/digits_fp32.onnx"})
    return [
        k8s.deployment(SLUG, "publisher", [publisher],
                       lab="publish() and the UPDATES folder",
                       does="Serves model-vN.onnx and model-vN.json (version, sha256) to "
                            "devices; its image carries the files, one tag per release."),
        k8s.service(SLUG, "publisher", port="tcp", lab="the folder the device reads",
                    does="The address devices poll for updates (a CDN's origin)."),
        k8s.deployment(SLUG, "model", [model],
                       lab='lab.serve("labsupport.apps:create_model_app") on the fp32 file',
                       does=f"The server arm: the same model over HTTP, {p['HIDDEN']} hidden "
                            "units, for clients that cannot run it themselves."),
        k8s.service(SLUG, "model", lab="server.url",
                    does="The address of the server arm."),
    ]
