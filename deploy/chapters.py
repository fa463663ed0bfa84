"""What each chapter deploys: one function per chapter, from the chapter's parameters.

Each function gets the chapter's parameters (its ``parameters`` cell, or a run's own values
when a notebook calls ``lab.manifests.show(slug, globals())``) and returns the Kubernetes
objects that stand for its lab. Module names, routes, queue and stream names come from the
chapter's ``%%writefile`` modules (``manifests.writefile``, ``manifests.module_constants``);
``tests/test_manifests.py`` starts every app and calls every probe path.

``MEASURED`` holds the values a lab *measures* rather than sets (the circuit break's limit
is sized from the capacity it measured): the committed files use these reference values,
a chapter's own run shows its own. Generate with ``make manifests``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from labsupport import manifests as k8s

Obj = dict[str, Any]
Params = dict[str, Any]

# Reference values for what the labs measure, from a book build on the 2-core machine
# (synchronous: 3 x the fast backend's p50) or from the chapter's own sizing rule
# (circuit break: one CPU at 25-40 ms per prediction is ~30 requests/s; SLO = 5 x p50).
# The worker's name is its pod's name (stable in a StatefulSet).
POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}

MEASURED: dict[str, Params] = {
    "serving/circuit-break": {"MAX_IN_FLIGHT": 4, "DEADLINE_MS": 300, "FAIL_MAX": 3,
                              "OPEN_S": 0.5, "FALLBACK_LABEL": 0},
    "serving/synchronous": {"timeout_s": 0.022},
    # loading-test: CPU per request at C, the last step below the knee, the knee, and the
    # server's resident memory, from a book build on the 2-core machine
    "qa/loading-test": {"cpu_ms": 12.0, "SAFE": 0.75, "KNEE": 1.0, "SERVER_RSS_MB": 120.0},
    # anti-offline-only: the variant the KPI picked (B, the lower threshold, in every build)
    "qa/anti-offline-only": {"winner": "B"},
}


def server(slug: str, component: str, app: str, *, lab: str, does: str,
           env: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
           cpu: str = "250m", memory: str = "256Mi", replicas: int = 2, scale: int | None = None,
           mounts: Sequence[Obj] = (), volumes: Sequence[Obj] = (), init: Sequence[Obj] = (),
           labels: dict[str, str] | None = None, health: str = "/health",
           data: str | None = None) -> list[Obj]:
    """A lab server: its ConfigMap (when ``config``), Deployment, Service, and an HPA up to
    ``scale`` replicas where the chapter's production notes talk about scaling it."""
    objs = []
    name = k8s.name_of(slug, component)
    if data:  # a disk for the lab's SQLite file, kept across pod restarts
        objs.append(k8s.pvc(slug, f"{component}-data", "1Gi", lab=data,
                            does=f"The disk that holds {data} for {name}."))
        volumes = [*volumes, {"name": "data", "persistentVolumeClaim": {
            "claimName": k8s.name_of(slug, f"{component}-data")}}]
        mounts = [*mounts, {"name": "data", "mountPath": "/data"}]
    if config:
        objs.append(k8s.configmap(slug, component, config, lab=f"env of {lab}",
                                  does=f"The parameters of {name}, as environment variables."))
    box = k8s.container(component or "app", k8s.image(slug, component or "app"),
                        k8s.uvicorn(app), env=env, config=name if config else None,
                        cpu=cpu, memory=memory, mounts=mounts, health=health)
    objs.append(k8s.deployment(slug, component, [box], lab=lab, does=does, replicas=replicas,
                               volumes=volumes, init=init, labels=labels))
    objs.append(k8s.service(slug, component, lab=f"{lab}: server.url",
                            does=f"The stable address of {name}, spread over its ready pods."))
    if scale:
        objs.append(k8s.hpa(slug, component, lab="(one process: cannot scale)", high=scale,
                            low=replicas, does=f"Adds {name} replicas when CPU passes 70%."))
    return objs


def model_server(slug: str, component: str, model: str, *, lab: str, does: str,
                 cpu: str = "250m", replicas: int = 2, scale: int | None = None,
                 init_image: str | None = None) -> list[Obj]:
    """The book's generic model server (``labsupport.apps:create_model_app``) for one model;
    with ``init_image``, the model comes from a model-only image at start."""
    path = f"/models/{model}"
    if init_image is None:
        return server(slug, component, "labsupport.apps:create_model_app", lab=lab, does=does,
                      config={"MODEL_PATH": path}, cpu=cpu, replicas=replicas, scale=scale)
    init, volume = k8s.model_init(init_image)
    return server(slug, component, "labsupport.apps:create_model_app", lab=lab, does=does,
                  config={"MODEL_PATH": path}, cpu=cpu, replicas=replicas, scale=scale,
                  init=[init], volumes=[volume],
                  mounts=[{"name": "models", "mountPath": "/models"}])


def web_single(p: Params) -> list[Obj]:
    slug = "serving/web-single"
    return server(slug, "", "web_single_app:create_app", scale=10,
                  lab='lab.serve("web_single_app:create_app", mode="process")',
                  does="The model server: replicas of the same pod, model and server together.",
                  config={"MODEL_PATH": "/models/iris_svc.onnx"})


def circuit_break(p: Params) -> list[Obj]:
    slug = "serving/circuit-break"
    model = k8s.name_of(slug, "model")
    objs = server(slug, "model", "one_cpu_model:create_app", cpu="1", memory="512Mi",
                  lab='lab.serve("one_cpu_model:create_app")',
                  does="The slow model, one CPU per pod: what the breaker protects.",
                  config={"MODEL_PATH": "/models/knn.onnx"})
    objs += server(slug, "proxy", "breaker_proxy:create_app",
                   lab='lab.serve("breaker_proxy:create_app", env={"BREAKER": "on", ...})',
                   does="The breaker proxy: sheds above the in-flight limit, answers the fallback.",
                   config={"BACKEND_URL": k8s.url(slug, "model"), "BREAKER": "on",
                           "MAX_IN_FLIGHT": p["MAX_IN_FLIGHT"], "DEADLINE_MS": p["DEADLINE_MS"],
                           "FAIL_MAX": p["FAIL_MAX"], "OPEN_S": p["OPEN_S"],
                           "FALLBACK_LABEL": p["FALLBACK_LABEL"]})
    objs.append(k8s.destination_rule(
        slug, "model", model, max_in_flight=p["MAX_IN_FLIGHT"], consecutive_5xx=p["FAIL_MAX"],
        ejection_s=max(1.0, p["OPEN_S"]), interval_s=1.0,
        lab="MAX_IN_FLIGHT and FAIL_MAX of the breaker proxy",
        does="The mesh's version of the limit (each calling pod's Envoy) and outlier ejection."))
    objs.append(k8s.virtual_service(
        slug, "model", model, timeout_s=p["DEADLINE_MS"] / 1e3, attempts=0,
        lab="DEADLINE_MS of the breaker proxy",
        does="A deadline on every call to the model, and no retries into an overloaded model."))
    return objs


def synchronous(p: Params) -> list[Obj]:
    slug = "serving/synchronous"
    fast = min(p["REFERENCE_ROWS"])
    objs = model_server(slug, "model", f"knn_{fast}.onnx", scale=10,
                        lab=f'lab.serve("labsupport.apps:create_model_app") of knn_{fast}',
                        does="The model server the workflow calls and waits for.")
    objs.append(k8s.virtual_service(
        slug, "model", k8s.name_of(slug, "model"), timeout_s=p["timeout_s"], attempts=0,
        lab="timeout_s of handle_order (3 x the fast p50)",
        does="The caller's timeout, enforced by the mesh: late answers become the fallback."))
    return objs


def asynchronous(p: Params) -> list[Obj]:
    slug = "serving/asynchronous"
    consts = k8s.module_constants(slug, "async_worker")
    env = {"REDIS_URL": k8s.redis_url(slug), "MODEL_PATH": "/models/knn.onnx"}
    objs = k8s.redis(slug, lab='redis_server(name="async-redis")',
                     does="The queue (a list) and the job results (hashes).")
    objs += server(slug, "front", "async_front:create_app", scale=5,
                   lab='lab.serve("async_front:create_app")',
                   does="Accepts jobs (202 + id) and answers polls; never runs the model.",
                   config=env)
    worker = k8s.container(
        "worker", k8s.image(slug, "worker"), ["python", "async_worker.py", "$(POD_NAME)"],
        health=None, cpu="500m", memory="512Mi", config=k8s.name_of(slug, "front"))
    # The pod's stable name is the worker's name, so a restarted worker recovers its own jobs.
    worker["env"] = [POD_NAME]
    objs.append(k8s.statefulset(slug, "worker", [worker], replicas=p["N_WORKERS"],
                                lab=f"start_worker(name) x {p['N_WORKERS']}: async_worker.py",
                                does="The workers, with stable names for the recovery step."))
    objs.append(k8s.service(slug, "worker", headless=True, lab="(the workers' names)",
                            does="Headless: gives the StatefulSet's pods their stable names."))
    objs.append(k8s.scaled_object(
        slug, "worker", kind="StatefulSet", low=p["N_WORKERS"], high=10,
        trigger={"type": "redis", "metadata": {"address": f"{k8s.name_of(slug, 'redis')}:6379",
                                               "listName": consts["QUEUE"], "listLength": "20"}},
        lab=f"the queue depth plotted in the chapter (LLEN {consts['QUEUE']})",
        does="KEDA adds workers while the queue is longer than 20 jobs per worker."))
    return objs


def multi_stage(p: Params) -> list[Obj]:
    slug = "serving/multi-stage"
    consts = k8s.module_constants(slug, "multistage_worker")
    env = {"REDIS_URL": k8s.redis_url(slug), "LIGHT_MODEL": "/models/light_logreg.onnx",
           "HEAVY_MODEL": "/models/heavy_knn.onnx"}
    objs = k8s.redis(slug, lab='redis_server(name="multistage-redis")',
                     does=f"The stream {consts['STREAM']!r} and the job hashes.")
    objs += server(slug, "front", "multistage_front:create_app", scale=10,
                   lab='lab.serve("multistage_front:create_app")',
                   does="Stage 1: answers with the light model at once, queues stage 2.",
                   config=env)
    worker = k8s.container(
        "worker", k8s.image(slug, "worker"), ["python", "multistage_worker.py", "$(POD_NAME)"],
        health=None, cpu="1", memory="512Mi", config=k8s.name_of(slug, "front"))
    worker["env"] = [POD_NAME]
    objs.append(k8s.deployment(slug, "worker", [worker], replicas=1,
                               lab='lab.start_process(["multistage_worker.py", "worker-1"])',
                               does="Stage 2: reads batches from the stream, the heavy model."))
    objs.append(k8s.scaled_object(
        slug, "worker", low=1, high=10,
        trigger={"type": "redis-streams", "metadata": {
            "address": f"{k8s.name_of(slug, 'redis')}:6379", "stream": consts["STREAM"],
            "consumerGroup": consts["GROUP"], "lagCount": str(4 * consts["BATCH"])}},
        lab=f"the backlog of group {consts['GROUP']!r} (its lag)",
        does=f"KEDA adds stage-2 workers while the group lags by more than {4 * consts['BATCH']}."))
    return objs


def batch(p: Params) -> list[Obj]:
    slug = "serving/batch"
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": k8s.name_of(slug, "data")}}]

    def run(select: str) -> Obj:
        # A run id per run: the start time in seconds stands in for the scheduler's counter.
        line = (f"exec python batch_job.py /data/predictions.sqlite /models/knn.onnx "
                f'--run-id "$(date +%s)" --select {select} --chunk {p["CHUNK"]}')
        return k8s.container("job", k8s.image(slug, "job"), ["sh", "-c", line], health=None,
                             cpu="1", memory="512Mi",
                             mounts=[{"name": "data", "mountPath": "/data"}])

    scheduled, backfill = run("pending"), run("all")
    return [
        k8s.pvc(slug, "data", "1Gi", lab="the SQLite file the lab's jobs share",
                does="The table of rows to predict; SQLite wants one writer at a time."),
        k8s.cronjob(slug, "nightly", scheduled, schedule="0 2 * * *", retries=1,
                    deadline_s=3600, volumes=volumes,
                    lab=f"Scheduler(policy='partial', chunk={p['CHUNK']}) firing batch_job.py",
                    does="Predicts the pending rows nightly; never two runs at once; one retry."),
        k8s.job(slug, "backfill", backfill, retries=0, deadline_s=6 * 3600, volumes=volumes,
                lab="the retry-all policy (batch_job.py --select all)",
                does="One-off: re-predicts every row, e.g. after a model release."),
    ]


def data_cache(p: Params) -> list[Obj]:
    slug = "serving/data-cache"
    objs = k8s.redis(slug, maxmemory=p["ROOMY"], policy="allkeys-lru",
                     lab=f'redis_server(maxmemory="{p["ROOMY"]}", policy="allkeys-lru")',
                     does="The feature cache, with a memory limit and LRU eviction.")
    objs += server(slug, "dwh", "dwh_app:create_app", replicas=1,
                   lab='lab.serve("dwh_app:create_app")',
                   does="The warehouse's query API (in production: the warehouse itself).",
                   config={"DWH_PATH": "/data/dwh.sqlite", "FEATURES_VERSION": "1"},
                   data="the warehouse's SQLite file")
    objs += server(slug, "predictor", "data_cache_predictor:create_app",
                   lab='lab.serve("data_cache_predictor:create_app", env={"CACHE": "on"})',
                   does="Predicts from cached features, reading through to the DWH on a miss.",
                   config={"MODEL_PATH": "/models/segment.onnx", "REDIS_URL": k8s.redis_url(slug),
                           "DWH_URL": k8s.url(slug, "dwh"), "CACHE": "on",
                           "CACHE_FORMAT": "raw", "CACHE_TTL_S": 3600})
    return objs


def prediction_cache(p: Params) -> list[Obj]:
    slug = "serving/prediction-cache"
    objs = k8s.redis(slug, maxmemory=p["ROOMY"], policy="allkeys-lru",
                     lab=f'redis_server(maxmemory="{p["ROOMY"]}", policy="allkeys-lru")',
                     does="The prediction cache, with a memory limit and LRU eviction.")
    objs += model_server(slug, "model", "knn-v1.onnx",
                         init_image=k8s.image(slug, "model-knn", tag="v1"),
                         lab="lab.serve(create_model_app) of knn v1 (later v2)",
                         does="The model; a release swaps the model image, keys change with it.")
    objs += server(slug, "proxy", "prediction_cache_proxy:create_app",
                   lab='lab.serve("prediction_cache_proxy:create_app", KEY_HAS_VERSION=1)',
                   does="Answers hits from Redis, calls the model on a miss, keys by version.",
                   config={"REDIS_URL": k8s.redis_url(slug), "BACKEND_URL": k8s.url(slug, "model"),
                           "KEY_HAS_VERSION": "1", "VERSION_POLL_S": 0.25})
    return objs


def microservice_horizontal(p: Params) -> list[Obj]:
    slug = "serving/microservice-horizontal"
    objs = []
    sizes = {"setosa": "logistic regression", "versicolor": f"kNN {p['VERSICOLOR_ROWS']} rows",
             "virginica": f"kNN {p['VIRGINICA_ROWS']} rows"}
    for species, model in sizes.items():
        # CPU request in proportion to each detector's cost: the big kNN needs more.
        cpu = "100m" if species == "setosa" else "500m"
        objs += model_server(slug, species, f"{species}.onnx", cpu=cpu, scale=10,
                             lab=f"lab.serve(create_model_app) of the {species} detector",
                             does=f"The {species} detector ({model}), scaled on its own.")
    detectors = ",".join(f"{s}={k8s.url(slug, s)}" for s in sizes)
    objs += server(slug, "fanout", "fanout_proxy:create_app", scale=10,
                   lab='lab.serve("fanout_proxy:create_app", env={"DETECTORS": ...})',
                   does="Calls the three detectors at once, answers within the timeout.",
                   config={"DETECTORS": detectors})
    return objs


def microservice_vertical(p: Params) -> list[Obj]:
    slug = "serving/microservice-vertical"
    objs = []
    stages = {"gate": "flower or unit error", "router": "setosa or other",
              "specialist": f"kNN {p['SPECIALIST_ROWS']} rows"}
    for stage, what in stages.items():
        objs += model_server(slug, stage, f"{stage}.onnx", scale=10,
                             cpu="500m" if stage == "specialist" else "100m",
                             lab=f"lab.serve(create_model_app) of the {stage} stage",
                             does=f"Stage {stage} ({what}), with its own resources and scaling.")
    objs += server(slug, "chain", "chain_proxy:create_app", scale=10,
                   lab='lab.serve("chain_proxy:create_app", env=urls)',
                   does="Calls the stages in order and stops at the first that decides.",
                   config={**{f"{s.upper()}_URL": k8s.url(slug, s) for s in stages},
                           "STAGE_TIMEOUT_S": 5})
    return objs


def prep_pred(p: Params) -> list[Obj]:
    slug = "serving/prep-pred"
    pred = k8s.name_of(slug, "pred")
    version = {"prep-version": "standard-v1"}
    objs = server(slug, "pred", "prep_pred_apps:create_pred_app", scale=10, labels=version,
                  lab='lab.serve("prep_pred_apps:create_pred_app")',
                  does="The model only, fed tensors; refuses tensors from another preprocessing.",
                  config={"MODEL_PATH": "/models/patch-rf-v1.onnx", "CHECK_PREP_VERSION": "1"})
    objs += server(slug, "prep", "prep_pred_apps:create_prep_app", scale=10,
                   lab='lab.serve("prep_pred_apps:create_prep_app")',
                   does=f"Decodes and resizes to {p['SIZE']}x{p['SIZE']}, sends binary tensors.",
                   config={"PREP_PATH": "/models/prep-standard-v1.json",
                           "PRED_URL": k8s.url(slug, "pred")})
    objs.append(k8s.destination_rule(
        slug, "pred", pred, subsets={"standard-v1": version},
        lab="the X-Prep-Version contract",
        does="Names the pred pods by the preprocessing they expect."))
    objs.append(k8s.virtual_service(
        slug, "pred", pred, routes=[("standard-v1", 100)], timeout_s=1.0,
        match_header=("x-prep-version", "standard-v1"),
        lab="prep's X-Prep-Version header",
        does="Routes each tensor to the pred pods trained on its preprocessing version."))
    return objs


def template(p: Params) -> list[Obj]:
    slug = "serving/template"
    objs = []
    for spec_file in ("iris.yaml", "wine.yaml", "breast_cancer.yaml"):
        service_name = spec_file.removesuffix(".yaml").replace("_", "-")
        spec = k8s.writefile(slug, spec_file)
        objs.append(k8s.configmap(slug, f"{service_name}-spec", {"spec.yaml": spec},
                                  lab=f"%%writefile {spec_file}",
                                  does=f"The {service_name} spec, mounted where the "
                                       "template reads it."))
        objs += server(slug, service_name, "service_template:create_app",
                       lab=f'lab.serve("service_template:create_app"), SPEC_PATH={spec_file}',
                       does=f"The {service_name} service: the template plus its spec and model.",
                       env={"SPEC_PATH": "/models/spec.yaml"},
                       mounts=[{"name": "spec", "mountPath": "/models/spec.yaml",
                                "subPath": "spec.yaml"}],
                       volumes=[{"name": "spec", "configMap": {
                           "name": k8s.name_of(slug, f"{service_name}-spec")}}])
    return objs


def anti_all_in_one(p: Params) -> list[Obj]:
    slug = "serving/anti-all-in-one"
    objs = []
    for model, cpu, path in (("iris", "100m", "iris.onnx"), ("wine", "100m", "wine.onnx"),
                             ("heavy", "500m", "heavy_v1.onnx")):
        objs += server(slug, model, "model_server:create_app", scale=10, cpu=cpu,
                       lab=f'deploy("{model}", ...): lab.serve("model_server:create_app")',
                       does=f"Model {model} alone: its releases and crashes touch no other model.",
                       config={"MODELS": f"{model}=/models/{path}"})
    return objs


def anti_online_bigsize(p: Params) -> list[Obj]:
    slug = "serving/anti-online-bigsize"
    objs = model_server(slug, "prototypes", "knn_prototypes.onnx", scale=10,
                        lab=f"the shrunk model ({3 * p['PROTOTYPES_PER_CLASS']} prototypes)",
                        does="The fast online model that meets the SLO, for unseen items.")
    objs += server(slug, "lookup", "lookup_app:create_app", scale=10,
                   lab='lab.serve("lookup_app:create_app")',
                   does="Serves the big model's answers, precomputed by a batch job.",
                   config={"PREDICTIONS_DB": "/data/predictions.db"},
                   data="the batch job's predictions table")
    return objs


# --- qa ---------------------------------------------------------------------------------------

def versions(slug: str, host: str, app: str, pods: dict[str, tuple[dict[str, Any], str, str]],
             *, cpu: str = "250m", memory: str = "256Mi") -> list[Obj]:
    """One Deployment per model version (label ``version``), then one Service over all of
    them: Istio picks the version by subset, so the Service selects every version's pods.
    ``pods``: version -> (env, lab component, what it does)."""
    objs = []
    for version, (env, lab, does) in pods.items():
        box = k8s.container("model", k8s.image(slug, f"model-{version}"), k8s.uvicorn(app),
                            cpu=cpu, memory=memory, env=env)
        objs.append(k8s.deployment(slug, f"model-{version}", [box], lab=lab, does=does,
                                   labels={"mlsdp.book/service": host, "version": version}))
    return objs


def shared_service(slug: str, host: str, *, lab: str, does: str) -> Obj:
    svc = k8s.service(slug, "model", lab=lab, does=does)
    svc["spec"]["selector"] = {"mlsdp.book/service": host}  # every version's pods
    return svc


def shadow_ab(p: Params) -> list[Obj]:
    slug = "qa/shadow-ab"
    host = k8s.name_of(slug, "model")
    candidate = f"knn-{p['CANDIDATE_ROWS'] // 1000}k"
    objs = versions(slug, host, "labsupport.apps:create_model_app", cpu="1", memory="512Mi", pods={
        "v1": ({"MODEL_PATH": "/models/primary.onnx"}, 'lab.serve(..., name="primary")',
               "The primary model: every client answer comes from these pods."),
        "v2": ({"MODEL_PATH": "/models/candidate.onnx"},
               f'lab.serve("candidate_app:create_app", name="{candidate}")',
               "The candidate: gets a copy of the traffic, answers nobody.")})
    return [*objs,
            shared_service(slug, host, lab="PRIMARY_URL and CANDIDATES of the shadow proxy",
                           does="One address for both versions; Istio picks the pods by subset."),
            k8s.destination_rule(slug, "model", host, subsets={"v1": {"version": "v1"},
                                                               "v2": {"version": "v2"}},
                                 lab="the names in CANDIDATES",
                                 does="Names the two versions as subsets, by pod label."),
            k8s.virtual_service(slug, "model", host, routes=[("v1", 100)], mirror="v2",
                                mirror_percent=100.0,
                                lab='PUT /mirror {"mode": "mirror", "percent": 100}',
                                does="Sends every request to v1 and a copy to v2, without "
                                     "waiting for it.")]


def online_ab(p: Params) -> list[Obj]:
    slug = "qa/online-ab"
    host = k8s.name_of(slug, "model")
    objs = versions(slug, host, "labsupport.apps:create_model_app", pods={
        v: ({"MODEL_PATH": f"/models/{v}.onnx"}, f"servers['{v.upper()}']",
            f"Variant {v.upper()}'s model server.") for v in ("a", "b")})
    objs.append(shared_service(slug, host, lab="A_URL and B_URL of the ab-proxy",
                               does="One address for both variants; Istio picks by subset."))
    objs.append(k8s.destination_rule(
        slug, "model", host, lab="servers['A'] and servers['B']",
        does="Names the two Deployments (label version: a or b) as subsets.",
        subsets={"a": {"version": "a"}, "b": {"version": "b"}}))
    objs.append(k8s.virtual_service(
        slug, "split", host, lab="ab-proxy, SPLIT_MODE=random",
        does="Sends each request to a or b by weight: the ramp edits these.",
        routes=[("a", 100 - p["RAMP"][1]), ("b", p["RAMP"][1])]))
    sticky = k8s.virtual_service(
        slug, "sticky", host, lab="ab-proxy, SPLIT_MODE=sticky",
        does="Routes on the variant header an assignment service set from the user id's "
             "bucket; no header: a.",
        match_header=("x-ab-variant", "b"), routes=[("b", 100)])
    sticky["spec"]["http"].append({"route": [{"destination": {"host": host, "subset": "a"}}]})
    return [*objs, sticky]


def anti_offline_only(p: Params) -> list[Obj]:
    slug = "qa/anti-offline-only"
    host = k8s.name_of(slug, "model")
    winner = p["winner"]
    objs = versions(slug, host, "threshold_server:create_app", pods={
        v.lower(): ({"MODEL_PATH": "/models/fraud.onnx", "THRESHOLD": str(t)},
                    f"servers['{v}'] (THRESHOLD={t})",
                    f"Variant {v}: the same model, flagging at P(fraud) >= {t}.")
        for v, t in p["THRESHOLDS"].items()})
    return [*objs,
            shared_service(slug, host, lab="A_URL and B_URL of the ab-proxy",
                           does="One address for both variants; Istio picks by subset."),
            k8s.destination_rule(slug, "model", host, lab="servers['A'] and servers['B']",
                                 does="Names the two variants (label version: a or b) as subsets.",
                                 subsets={"a": {"version": "a"}, "b": {"version": "b"}}),
            k8s.virtual_service(
                slug, "split", host, lab=f"PUT /split (the kill switch: all to {winner})",
                does=f"All traffic to the winner {winner}; the loser's weight 0 is the kill "
                     "switch.",
                routes=[("a", 0 if winner == "B" else 100), ("b", 100 if winner == "B" else 0)])]


def loading_test(p: Params) -> list[Obj]:
    slug = "qa/loading-test"
    cpu_ms = float(p["cpu_ms"])
    target, low = capacity_plan(cpu_ms, p["SAFE"], p["PEAK_RPS"])
    memory_mi = int(64 * math.ceil(1.5 * p["SERVER_RSS_MB"] / 64))
    box = k8s.container("model", k8s.image(slug, "model"),
                        k8s.uvicorn("labsupport.apps:create_model_app"),
                        env={"MODEL_PATH": "/models/knn.onnx"}, cpu="1", memory=f"{memory_mi}Mi")
    return [
        k8s.deployment(slug, "model", [box], replicas=low,
                       lab='lab.serve("labsupport.apps:create_model_app") of the kNN',
                       does="The model server: one CPU per pod, as sized by the capacity test."),
        k8s.service(slug, "model", lab="server.url",
                    does="The address the load test targets in the cluster."),
        k8s.hpa(slug, "model", low=low, high=2 * low, cpu_percent=target,
                lab=f"the knee at {p['KNEE']:g} x C and PEAK_RPS",
                does=f"Keeps each pod near {target}% of its CPU request: below the knee."),
    ]


def capacity_plan(cpu_ms: float, safe: float, peak_rps: float) -> tuple[int, int]:
    """The HPA's target utilisation (the share of capacity below the knee, within 50-80 %)
    and the replicas that serve ``peak_rps`` at it, one requested CPU per pod."""
    per_pod_rps = 1000 / cpu_ms
    target = int(min(80, max(50, 100 * safe)))
    return target, math.ceil(peak_rps / (per_pod_rps * target / 100))


CHAPTERS: dict[str, Callable[[Params], list[Obj]]] = {
    "serving/web-single": web_single,
    "serving/synchronous": synchronous,
    "serving/asynchronous": asynchronous,
    "serving/batch": batch,
    "serving/prep-pred": prep_pred,
    "serving/microservice-vertical": microservice_vertical,
    "serving/microservice-horizontal": microservice_horizontal,
    "serving/prediction-cache": prediction_cache,
    "serving/data-cache": data_cache,
    "serving/circuit-break": circuit_break,
    "serving/multi-stage": multi_stage,
    "serving/template": template,
    "serving/anti-all-in-one": anti_all_in_one,
    "serving/anti-online-bigsize": anti_online_bigsize,
    "qa/shadow-ab": shadow_ab,
    "qa/online-ab": online_ab,
    "qa/loading-test": loading_test,
    "qa/anti-offline-only": anti_offline_only,
}


def _chapter_modules() -> None:
    """Register the chapters that keep their objects beside their files, in
    ``deploy/<category>/<slug>/objects.py`` (a function ``objects(p)``, and ``MEASURED``
    when the lab measures what the objects need): one file per chapter, so chapters
    written side by side never edit the same file."""
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*/*/objects.py")):
        slug = path.parent.relative_to(here).as_posix()
        spec = importlib.util.spec_from_file_location(
            "mlsdp_deploy_" + slug.replace("/", "_").replace("-", "_"), path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if slug in CHAPTERS:
            raise ValueError(f"{slug} is registered twice: in deploy/chapters.py and {path}")
        CHAPTERS[slug] = module.objects
        if hasattr(module, "MEASURED"):
            MEASURED[slug] = dict(module.MEASURED)


_chapter_modules()
