"""operation/parameter-based-serving in a cluster: the model server, the parameter proxy,
the Redis that holds the live overrides, and the defaults as a ConfigMap volume."""

from __future__ import annotations

import json
from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/parameter-based-serving"
PARAMS_DIR = "/etc/mlsdp-params"  # the volume's folder: the whole folder updates in place


def objects(p: dict[str, Any]) -> list[dict]:
    consts = k8s.module_constants(SLUG, "param_proxy")
    model_box = k8s.container("model", k8s.image(SLUG, "model"),
                              k8s.uvicorn("labsupport.apps:create_model_app"),
                              config=k8s.name_of(SLUG, "model"))
    objs = [
        k8s.configmap(SLUG, "model", {"MODEL_PATH": "/models/qc_logreg.onnx"},
                      lab='env of lab.serve("labsupport.apps:create_model_app")',
                      does="The model server's model file."),
        k8s.deployment(SLUG, "model", [model_box], lab='lab.serve(..., name="model-server")',
                       does="The model server: scores rows, knows nothing of the rules."),
        k8s.service(SLUG, "model", lab="model_server.url",
                    does="The address the proxy's MODEL_URL names."),
        *k8s.redis(SLUG, lab='lab.redis.redis_server(name="params-redis")',
                   does=f"Holds the live overrides: the hash {consts['KEY']}, read on every "
                        "request by every proxy replica."),
        k8s.configmap(SLUG, "params", {"params.json": json.dumps(p["DEFAULTS"])},
                      lab="PARAMS_FILE (DEFAULTS)",
                      does="The reviewed defaults, mounted as a file: an edit reaches running "
                           "pods at the kubelet's next sync, within a minute or two."),
        k8s.configmap(SLUG, "proxy", {"MODEL_URL": k8s.url(SLUG, "model"),
                                      "REDIS_URL": k8s.redis_url(SLUG),
                                      "PARAMS_FILE": f"{PARAMS_DIR}/params.json"},
                      lab='env of lab.serve("param_proxy:create_app")',
                      does="Where the proxy finds the model, the store and the defaults "
                           "(read once, at start)."),
    ]
    proxy_box = k8s.container("proxy", k8s.image(SLUG, "proxy"),
                              k8s.uvicorn("param_proxy:create_app"),
                              config=k8s.name_of(SLUG, "proxy"),
                              mounts=[{"name": "params", "mountPath": PARAMS_DIR,
                                       "readOnly": True}])
    objs.append(k8s.deployment(
        SLUG, "proxy", [proxy_box], lab='lab.serve("param_proxy:create_app")',
        does="The parameter proxy: every replica reads the same hash, so a change reaches "
             "all of them from their next request.",
        volumes=[{"name": "params", "configMap": {"name": k8s.name_of(SLUG, "params")}}]))
    objs.append(k8s.service(SLUG, "proxy", lab="proxy_server.url",
                            does="The address clients call for predictions."))
    return objs
