"""The Kubernetes objects of every chapter: valid offline, consistent with the lab, committed.

Core objects are checked against the Kubernetes OpenAPI schema in strict mode (the
kubernetes-validate package ships it; the version is pinned in labsupport.manifests), Istio
and KEDA objects against the project's own schemas in deploy/schemas/. Probes are checked
against the real apps: each app is built as its chapter serves it (tests/labapps.py, with
its real dependencies), served on 127.0.0.1, and the probe's path is called.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from labapps import REGISTRY, Context, ModelShop
from patternmodules import extract

import labsupport as lab
from labsupport import manifests

ROOT = Path(__file__).resolve().parent.parent
SLUGS = sorted(manifests.chapters())
ALL = [(slug, obj) for slug in SLUGS for obj in manifests.render(slug)]


def _id(pair: tuple[str, dict]) -> str:
    slug, obj = pair
    return f"{slug}:{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("category", ["serving", "qa", "training", "operation", "lifecycle"])
def test_every_chapter_of_a_category_deploys_something(category):
    chapters = {p.relative_to(ROOT / "notebooks").with_suffix("").as_posix()
                for p in (ROOT / "notebooks" / category).glob("*.ipynb")}
    assert chapters == {s for s in SLUGS if s.startswith(f"{category}/")}


@pytest.mark.parametrize("slug", SLUGS)
def test_committed_files_are_what_the_generator_writes(slug):
    folder = ROOT / "deploy" / slug
    wanted = manifests.files(slug)
    committed = {f"{slug}/{p.name}": p.read_text() for p in folder.glob("*.yaml")}
    assert sorted(committed) == sorted(wanted), "run `make manifests`"
    stale = [rel for rel, text in wanted.items() if committed[rel] != text]
    assert not stale, f"out of date, run `make manifests`: {stale}"


@pytest.mark.parametrize("pair", ALL, ids=_id)
def test_every_object_validates_offline(pair):
    _, obj = pair
    against = manifests.validate(obj)
    custom = obj["kind"] in ("VirtualService", "DestinationRule", "ScaledObject")
    assert against.startswith("project schema" if custom else "Kubernetes 1.35")


@pytest.mark.parametrize("slug", SLUGS)
def test_cross_checks_hold(slug):
    assert manifests.crosscheck(manifests.render(slug)) == []


def test_a_run_s_own_values_reach_the_objects():
    # the notebook shows its run's objects: a parameter changed there changes them
    objs = {(o["kind"], o["metadata"]["name"]): o
            for o in manifests.render("serving/asynchronous", {"N_WORKERS": 5, "unrelated": 1})}
    assert objs[("StatefulSet", "asynchronous-worker")]["spec"]["replicas"] == 5
    assert objs[("ScaledObject", "asynchronous-worker")]["spec"]["minReplicaCount"] == 5
    breaker = {(o["kind"], o["metadata"]["name"]): o
               for o in manifests.render("serving/circuit-break", {"MAX_IN_FLIGHT": 7})}
    pool = breaker[("DestinationRule", "circuit-break-model")]["spec"]["trafficPolicy"]
    assert pool["connectionPool"]["http"]["http2MaxRequests"] == 7
    assert breaker[("ConfigMap", "circuit-break-proxy")]["data"]["MAX_IN_FLIGHT"] == "7"


def test_measured_numpy_values_render_as_plain_numbers():
    # in the notebook, measured values are numpy scalars (a p50 from a DataFrame)
    objs = manifests.render("serving/synchronous", {"timeout_s": np.float64(0.0314)})
    vs = [o for o in objs if o["kind"] == "VirtualService"][0]
    assert vs["spec"]["http"][0]["timeout"] == "31ms"
    assert "31ms" in manifests.to_yaml(vs)


def test_weights_mirror_and_subsets_validate_and_cross_check():
    # no serving chapter splits or mirrors traffic; the QA chapters will: the builders,
    # the project's schema and the subset check must already agree on it
    slug = "serving/web-single"
    v1, v2 = (manifests.deployment(slug, version, [manifests.container("app", f"img:{version}",
                                                                       ["x"])],
                                   lab=version, does=version,
                                   labels={"app": "web-single", "version": version})
              for version in ("v1", "v2"))
    svc = manifests.service(slug, "", lab="url", does="address")
    svc["spec"]["selector"] = {"app": "web-single"}  # both versions behind one Service
    vs = manifests.virtual_service(slug, "", "web-single", routes=[("v1", 90), ("v2", 10)],
                                   mirror="v2", mirror_percent=50.0, timeout_s=0.5,
                                   attempts=2, per_try_s=0.2, lab="split", does="split")
    dr = manifests.destination_rule(slug, "", "web-single", lab="subsets", does="subsets",
                                    subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}})
    for obj in (vs, dr, v1, v2, svc):
        manifests.validate(obj)
    assert vs["spec"]["http"][0]["retries"] == {"attempts": 2, "perTryTimeout": "200ms",
                                                "retryOn": "5xx,reset"}
    assert manifests.crosscheck([v1, v2, svc, vs, dr]) == []
    dr["spec"]["subsets"][1]["labels"] = {"version": "v3"}
    assert manifests.crosscheck([v1, v2, svc, vs, dr]) == [
        "DestinationRule web-single: subset v2 matches no pod"]
    vs["spec"]["http"][0]["route"][0]["weight"] = 190
    with pytest.raises(jsonschema.ValidationError, match="190"):
        manifests.validate(vs)


def test_queue_names_come_from_the_workers_code():
    consts = manifests.module_constants("serving/asynchronous", "async_worker")
    so = [o for o in manifests.render("serving/asynchronous") if o["kind"] == "ScaledObject"][0]
    assert so["spec"]["triggers"][0]["metadata"]["listName"] == consts["QUEUE"]
    consts = manifests.module_constants("serving/multi-stage", "multistage_worker")
    so = [o for o in manifests.render("serving/multi-stage") if o["kind"] == "ScaledObject"][0]
    meta = so["spec"]["triggers"][0]["metadata"]
    assert (meta["stream"], meta["consumerGroup"]) == (consts["STREAM"], consts["GROUP"])


def test_a_qa_run_s_measured_values_reach_the_objects():
    # loading-test sizes its pods from what it measured; anti-offline-only kills the loser
    objs = {o["kind"]: o for o in manifests.render(
        "qa/loading-test", {"cpu_ms": 20.0, "SAFE": 0.5, "PEAK_RPS": 1000})}
    autoscaler = objs["HorizontalPodAutoscaler"]["spec"]
    # 50 requests/s per CPU at 50 %: 25 requests/s a pod, 40 pods for 1000 requests/s
    assert autoscaler["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
    assert autoscaler["minReplicas"] == objs["Deployment"]["spec"]["replicas"] == 40
    switch = [o for o in manifests.render("qa/anti-offline-only", {"winner": "A"})
              if o["kind"] == "VirtualService"][0]
    weights = {r["destination"]["subset"]: r["weight"] for r in switch["spec"]["http"][0]["route"]}
    assert weights == {"a": 100, "b": 0}


@pytest.mark.parametrize("slug", SLUGS)
def test_the_chapter_shows_its_objects(slug):
    text = manifests.notebook(slug).read_text()
    assert f'lab.manifests.show(\\"{slug}\\", globals())' in text
    shown = manifests.show(slug).data
    assert "<details>" in shown and all(o["metadata"]["name"] in shown
                                        for o in manifests.render(slug))


# --- probes against the real apps ---------------------------------------------------------

@pytest.fixture(scope="module")
def context(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("manifests")
    extract(tmp / "modules")
    ctx = Context(tmp / "modules", tmp, ModelShop(tmp_path_factory.mktemp("models")))
    yield ctx
    ctx.close()


def _app_key(slug: str, command: str) -> str:
    words = command.split()
    module, factory = words[words.index("--factory") + 1].split(":")
    return f"labsupport:{module}:{factory}" if module.startswith("labsupport.") \
        else f"{slug}:{module}:{factory}"


def probe_problems(slug: str, objs: list[dict], ctx: Context) -> list[str]:
    """Start every app that a probe targets, as its chapter serves it, and call the probe's
    path: anything but a 200 is a problem. Also: the probe's port is the port uvicorn binds."""
    problems = []
    for workload, pod in manifests._workloads(objs):
        for c in pod["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                get = c.get(kind, {}).get("httpGet")
                if get is None:
                    continue
                command = c["command"]
                if ports.get(get["port"]) != int(command[command.index("--port") + 1]):
                    problems.append(f"{workload['metadata']['name']}: {kind} port {get['port']} "
                                    "is not the port uvicorn binds")
                app = ctx.build(REGISTRY[_app_key(slug, " ".join(command))])
                probe = c[kind]
                # as the kubelet does: a probe may fail until failureThreshold x periodSeconds
                # have passed (a model-load server is not ready until its model is loaded)
                patience = probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
                if kind == "livenessProbe":
                    patience += probe.get("initialDelaySeconds", 0)
                with lab.serve(app, mode="thread", health=None) as server:
                    deadline = time.monotonic() + patience
                    while True:
                        status = httpx.get(server.url + get["path"], timeout=10).status_code
                        if status != 503 or time.monotonic() > deadline:  # 503: not yet
                            break
                        time.sleep(0.2)
                if status != 200:
                    problems.append(f"{workload['metadata']['name']}: {kind} GET {get['path']} "
                                    f"answers {status}")
    return problems


@pytest.mark.parametrize("slug", SLUGS)
def test_every_probe_is_served_by_the_chapter_s_app(slug, context):
    objs = manifests.render(slug)
    if not manifests.probes(objs):
        pytest.skip("no HTTP probe (batch runs to completion)")
    assert probe_problems(slug, objs, context) == []


# --- a broken manifest fails ----------------------------------------------------------------

def _web_single() -> dict[str, dict]:
    return {o["kind"]: o for o in manifests.render("serving/web-single")}


def test_a_probe_on_a_route_the_app_does_not_serve_fails(context):
    objs = _web_single()
    box = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    box["readinessProbe"]["httpGet"]["path"] = "/healthz"
    problems = probe_problems("serving/web-single", list(objs.values()), context)
    assert problems == ["web-single: readinessProbe GET /healthz answers 404"]


def test_a_probe_on_the_wrong_port_fails(context):
    objs = _web_single()
    box = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    box["ports"][0]["containerPort"] = 80
    problems = probe_problems("serving/web-single", list(objs.values()), context)
    assert len(problems) == 2 and all("not the port uvicorn binds" in p for p in problems)


def test_an_unknown_field_fails_strict_validation():
    deployment = _web_single()["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(jsonschema.ValidationError, match="readinesProbe"):
        manifests.validate(deployment)


@pytest.mark.parametrize("kind, path, field", [
    ("VirtualService", ("spec", "http", 0), "timout"),
    ("DestinationRule", ("spec", "trafficPolicy", "connectionPool", "http"), "http2MaxRequest"),
])
def test_an_unknown_istio_field_fails_the_project_schema(kind, path, field):
    obj = [o for o in manifests.render("serving/circuit-break") if o["kind"] == kind][0]
    node = obj
    for step in path:
        node = node[step]
    node[field] = 1
    with pytest.raises(jsonschema.ValidationError, match=field):
        manifests.validate(obj)


def test_a_keda_trigger_without_its_list_fails_the_project_schema():
    obj = [o for o in manifests.render("serving/asynchronous") if o["kind"] == "ScaledObject"][0]
    del obj["spec"]["triggers"][0]["metadata"]["listName"]
    with pytest.raises(jsonschema.ValidationError, match="listName"):
        manifests.validate(obj)


def test_a_service_selecting_nothing_fails():
    objs = _web_single()
    objs["Service"]["spec"]["selector"] = {"app.kubernetes.io/name": "web-singel"}
    assert "Service web-single selects no Deployment or StatefulSet" in \
        manifests.crosscheck(list(objs.values()))


def test_an_istio_host_naming_no_service_fails():
    objs = manifests.render("serving/circuit-break")
    vs = [o for o in objs if o["kind"] == "VirtualService"][0]
    vs["spec"]["hosts"] = ["circuit-break-modle"]
    assert any("host circuit-break-modle names no Service" in p
               for p in manifests.crosscheck(objs))


def test_a_deployment_whose_selector_misses_its_pods_fails():
    objs = _web_single()
    objs["Deployment"]["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": "x"}
    assert "Deployment web-single: its selector does not match its own pods" in \
        manifests.crosscheck(list(objs.values()))


def test_missing_resource_requests_fail():
    objs = _web_single()
    del objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert manifests.crosscheck(list(objs.values())) == [
        "Deployment web-single: container app sets no cpu and memory requests"]


def test_a_url_to_a_missing_service_fails():
    objs = manifests.render("serving/circuit-break")
    config = [o for o in objs if o["kind"] == "ConfigMap" and "BACKEND_URL" in o["data"]][0]
    proxy = [o for o in objs if o["metadata"]["name"] == "circuit-break-proxy"
             and o["kind"] == "Deployment"][0]
    box = proxy["spec"]["template"]["spec"]["containers"][0]
    box["env"] = [{"name": "BACKEND_URL", "value": "http://circuit-break-backend"}]
    assert config  # the proxy's ConfigMap exists; the env above names a Service that does not
    assert any("calls circuit-break-backend, which is no Service" in p
               for p in manifests.crosscheck(objs))


def test_broken_objects_do_not_leak_into_the_registry():
    before = copy.deepcopy(manifests.render("serving/web-single"))
    _web_single()["Deployment"]["spec"]["replicas"] = 99
    assert manifests.render("serving/web-single") == before


def test_every_mlflow_server_accepts_its_own_service_name():
    # MLflow 3 answers 403 to a Host header other than localhost or a private IP: a client
    # reaching the registry through its Service must be allowed by name
    found = 0
    for slug in SLUGS:
        objs = manifests.render(slug)
        services = [o for o in objs if o["kind"] == "Service"]
        for _, pod in manifests._workloads(objs):
            for c in pod["spec"]["containers"]:
                if c["command"][:2] != ["mlflow", "server"]:
                    continue
                found += 1
                allowed = c["command"][c["command"].index("--allowed-hosts") + 1].split(",")
                names = [s["metadata"]["name"] for s in services
                         if s["spec"]["selector"].items() <= pod["metadata"]["labels"].items()]
                assert names and all(n in allowed for n in names), (slug, allowed, names)
    assert found >= 6
