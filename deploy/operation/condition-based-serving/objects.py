"""operation/condition-based-serving in a cluster: one Deployment per condition behind one
Service, and the router proxy of the lab as an Istio VirtualService on the header."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/condition-based-serving"


def objects(p: dict[str, Any]) -> list[dict]:
    header = k8s.module_constants(SLUG, "router_proxy")["HEADER"].lower()  # Istio: lowercase
    host = k8s.name_of(SLUG, "model")
    objs = []
    for region in p["REGIONS"]:
        box = k8s.container("model", k8s.image(SLUG, f"model-{region}"),
                            k8s.uvicorn("labsupport.apps:create_model_app"),
                            env={"MODEL_PATH": f"/models/region_{region}.onnx"})
        objs.append(k8s.deployment(
            SLUG, f"model-{region}", [box], lab=f'servers["{region}"] (model-{region})',
            does=f"The specialist for region {region}, trained on that region's data only.",
            labels={"mlsdp.book/service": host, "condition": region}))
    svc = k8s.service(SLUG, "model", lab="the ROUTES table's addresses",
                      does="One address for every region's model; Istio picks the pods.")
    svc["spec"]["selector"] = {"mlsdp.book/service": host}
    objs.append(svc)
    objs.append(k8s.destination_rule(
        SLUG, "model", host, lab="the regions in ROUTES",
        does="Names each region's pods (label condition) as a subset.",
        subsets={region: {"condition": region} for region in p["REGIONS"]}))
    router = k8s.virtual_service(
        SLUG, "router", host, lab='lab.serve("router_proxy:create_app", env={"ROUTES": ...})',
        does=f"Routes on the {header} header: each region to its model; no route matches "
             "any other value, and Envoy answers 404.",
        match_header=(header, p["REGIONS"][0]))
    router["spec"]["http"] = [  # one route per region, in the table's order
        {"match": [{"headers": {header: {"exact": region}}}],
         "route": [{"destination": {"host": host, "subset": region}}]}
        for region in p["REGIONS"]]
    return [*objs, router]
