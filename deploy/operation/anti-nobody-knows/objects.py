"""Nobody knows, fixed in a cluster: the model card as a ConfigMap mounted into the model
server, which serves it at /metadata and enforces its unit on every request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/anti-nobody-knows"

# The card a book build wrote (a run shows its own): features, units, training ranges,
# version, owner, the outlier detector's reference rate, the contract.
MEASURED = {"card": {
    "name": "iris-species", "version": "1.0.0", "owner": "flora-ml team <flora-ml@example.com>",
    "intended_use": "the species of an iris flower from four lengths measured by hand",
    "inputs": [
        {"name": "sepal_length", "dtype": "float32", "unit": "cm", "min": 4.3, "max": 7.9},
        {"name": "sepal_width", "dtype": "float32", "unit": "cm", "min": 2.0, "max": 4.4},
        {"name": "petal_length", "dtype": "float32", "unit": "cm", "min": 1.0, "max": 6.9},
        {"name": "petal_width", "dtype": "float32", "unit": "cm", "min": 0.1, "max": 2.5}],
    "classes": ["setosa", "versicolor", "virginica"],
    "training_data": {"name": "iris", "rows": 112, "sha256":
                      "9c89a99f5d2eeb47cc83f5ecc5d91ae6aaf938c302d5e5ad394b8bba00b3d767"},
    "model_sha256": "ae3e0ec5b94f9800ea3ee8d27120e12aa10511a662eb5882459eb1ce419ca911",
    "outlier_detector": {"method": "StandardScaler + OneClassSVM(nu=0.1)",
                         "reference_rate": 0.105},
    "contract": "every request names the unit of its lengths, and it is the inputs' unit"}}


def objects(p: dict[str, Any]) -> list[dict]:
    server = k8s.name_of(SLUG, "server")
    card = k8s.configmap(SLUG, "card", {"card.json": json.dumps(p["card"], indent=1)},
                         lab="model_card.json (CARD_PATH)",
                         does="The model card, mounted into the server as a file.")
    env = k8s.configmap(SLUG, "server", {
        "MODEL_PATH": "/models/iris_svc.onnx", "DETECTOR_PATH": "/models/outlier_detector.onnx",
        "CARD_PATH": "/etc/model-card/card.json", "CONTRACT": "on"},
        lab='env of lab.serve("card_server:create_app", env={..., "CONTRACT": "on"})',
        does="The server's settings: the contract is on.")
    box = k8s.container("server", k8s.image(SLUG, "server"), k8s.uvicorn("card_server:create_app"),
                        config=server, mounts=[{"name": "card", "mountPath": "/etc/model-card",
                                                "readOnly": True}])
    deployment = k8s.deployment(
        SLUG, "server", [box], volumes=[{"name": "card", "configMap": {
            "name": k8s.name_of(SLUG, "card")}}],
        lab='lab.serve("card_server:create_app", name="card-server-contract")',
        does="The model server: card at /metadata, unit contract, outlier counters at /metrics.")
    # a new card is a new rollout: the pods restart when the card's text changes
    digest = hashlib.sha256(card["data"]["card.json"].encode()).hexdigest()
    deployment["spec"]["template"]["metadata"].setdefault("annotations", {})[
        "mlsdp.book/card-sha256"] = digest
    return [card, env, deployment,
            k8s.service(SLUG, "server", lab="server.url",
                        does="The address clients call; /metadata is the card, for anyone.")]
