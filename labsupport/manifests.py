"""The path to production: each chapter's Kubernetes objects, rendered from the lab.

A chapter's lab runs its servers with ``lab.serve("module:create_app", env=...)`` on
127.0.0.1. In a cluster the same module runs in a container, and what ``lab.serve``,
the kernel and the one machine did for it becomes Kubernetes objects: a Deployment and
a Service for each server, a ConfigMap for its parameters, a CronJob or a Job for a
batch run, Istio and KEDA objects where the pattern manages traffic or drains a queue.

The builders here are plain functions returning plain dicts (one Kubernetes object
each). What each serving chapter deploys is described in ``deploy/chapters.py``, from
the chapter's own parameters cell and ``%%writefile`` modules, so the objects follow
the lab. ``python -m labsupport.manifests deploy`` (``make manifests``) writes them to
``deploy/<category>/<slug>/``; a chapter shows its own with :func:`show`.

The book does not build images: every object names an image built from
``deploy/Dockerfile`` (one recipe, the chapter's module and model as build arguments).
Introduced in *serving/web-single*; the book page is ``book/production.md``.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NOTEBOOKS = ROOT / "notebooks"
SCHEMAS = DEPLOY / "schemas"

# The Kubernetes version the core objects are validated against (kubernetes-validate
# ships its OpenAPI schemas offline); the CRD versions the project's own schemas cover.
KUBERNETES_VERSION = "1.35"
ISTIO_API = "networking.istio.io/v1"
KEDA_API = "keda.sh/v1alpha1"

PORT = 8000  # every app container listens here; Services expose it on port 80 as "http"
REGISTRY = "registry.example.com/mlsdp"  # a placeholder: push the images where you like
LAB = "mlsdp.book/lab"    # annotation: the lab component this object stands for
DOES = "mlsdp.book/does"  # annotation: one sentence on what the object does

Obj = dict[str, Any]
Params = Mapping[str, Any]


# --- reading the chapter ------------------------------------------------------------------

def notebook(slug: str) -> Path:
    """The chapter's notebook, e.g. ``notebook("serving/web-single")``. Introduced in
    *serving/web-single*."""
    path = NOTEBOOKS / f"{slug}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"no chapter {slug!r} ({path})")
    return path


def _cells(slug: str) -> list[dict]:
    return [c for c in json.loads(notebook(slug).read_text())["cells"] if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def parameters(slug: str) -> dict[str, Any]:
    """The values of the chapter's ``parameters`` cell (the sizes papermill and readers
    change), read without running the rest of the notebook. Introduced in *serving/web-single*."""
    for cell in _cells(slug):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            values = {}
            for node in ast.parse(_source(cell)).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                        and isinstance(node.targets[0], ast.Name):
                    # literals, or arithmetic on them and on earlier parameters (1 / 3)
                    expression = ast.Expression(node.value)
                    values[node.targets[0].id] = eval(compile(expression, slug, "eval"),
                                                      {"__builtins__": {}}, dict(values))
            return values
    raise LookupError(f"{slug} has no cell tagged 'parameters'")


def writefile(slug: str, filename: str) -> str:
    """The body of the chapter's ``%%writefile {WORK}/<filename>`` cell: the module (or
    spec) exactly as the chapter wrote it. Introduced in *serving/template*."""
    for cell in _cells(slug):
        first, _, body = _source(cell).partition("\n")
        if re.fullmatch(r"%%writefile\s+\{WORK\}/" + re.escape(filename) + r"\s*", first):
            return body.rstrip("\n") + "\n"
    raise LookupError(f"{slug} writes no {filename!r} with %%writefile")


def module_constants(slug: str, module: str) -> dict[str, Any]:
    """Module-level literal constants of a chapter's ``%%writefile`` module (queue and
    stream names, say), so the cluster objects use the names the code uses. Introduced
    in *serving/asynchronous*."""
    values: dict[str, Any] = {}
    for node in ast.parse(writefile(slug, f"{module}.py")).body:
        if isinstance(node, ast.Assign):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = value
                elif isinstance(target, ast.Tuple) and isinstance(value, tuple):
                    for element, item in zip(target.elts, value, strict=True):
                        if isinstance(element, ast.Name):
                            values[element.id] = item
    return values


# --- the objects --------------------------------------------------------------------------

def name_of(slug: str, component: str = "") -> str:
    """A DNS-1123 object name: the chapter's slug, then the component (``web-single``,
    ``circuit-break-proxy``). Introduced in *serving/web-single*."""
    base = slug.rsplit("/", 1)[-1]
    name = f"{base}-{component}" if component else base
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def image(slug: str, component: str, tag: str = "1") -> str:
    """The image a component runs: built from ``deploy/Dockerfile`` (the book never builds
    it). Introduced in *serving/web-single*."""
    return f"{REGISTRY}/{name_of(slug, component)}:{tag}"


def _meta(name: str, slug: str, lab: str, does: str, extra: Mapping[str, str] | None = None) -> Obj:
    return {"name": name,
            "labels": {"app.kubernetes.io/name": name,
                       "app.kubernetes.io/part-of": name_of(slug), **(extra or {})},
            "annotations": {LAB: lab, DOES: does}}


def _env(env: Mapping[str, Any]) -> list[Obj]:
    return [{"name": key, "value": str(value)} for key, value in env.items()]


def _resources(cpu: str, memory: str) -> Obj:
    # Requests are what the scheduler reserves; the memory limit stops a leak taking the node.
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def uvicorn(app: str) -> list[str]:
    """The container command for ``lab.serve("module:create_app", factory=True)``.
    Introduced in *serving/web-single*."""
    return ["uvicorn", "--factory", app, "--host", "0.0.0.0", "--port", str(PORT),
            "--timeout-keep-alive", "30"]


def container(name: str, image_ref: str, command: Sequence[str], *,
              env: Mapping[str, Any] | None = None, config: str | None = None,
              health: str | None = "/health", cpu: str = "250m", memory: str = "256Mi",
              mounts: Sequence[Obj] = (), tcp_port: int | None = None) -> Obj:
    """One container. ``health`` is the HTTP route the lab's ``lab.serve`` waited for:
    it becomes the readiness and liveness probes; ``tcp_port`` probes a non-HTTP server
    (Redis). ``config`` names a ConfigMap whose keys become environment variables.
    Introduced in *serving/web-single*."""
    spec: Obj = {"name": name, "image": image_ref, "command": list(command),
                 "resources": _resources(cpu, memory)}
    if env:
        spec["env"] = _env(env)
    if config:
        spec["envFrom"] = [{"configMapRef": {"name": config}}]
    if health is not None:
        spec["ports"] = [{"name": "http", "containerPort": PORT}]
        # Ready once the model is loaded and the route answers; restarted if it stops answering.
        spec["readinessProbe"] = {"httpGet": {"path": health, "port": "http"},
                                  "periodSeconds": 5, "failureThreshold": 2}
        spec["livenessProbe"] = {"httpGet": {"path": health, "port": "http"},
                                 "initialDelaySeconds": 10, "periodSeconds": 10,
                                 "failureThreshold": 3}
    elif tcp_port is not None:
        spec["ports"] = [{"name": "tcp", "containerPort": tcp_port}]
        spec["readinessProbe"] = {"tcpSocket": {"port": "tcp"}, "periodSeconds": 5}
        spec["livenessProbe"] = {"tcpSocket": {"port": "tcp"}, "periodSeconds": 10}
    if mounts:
        spec["volumeMounts"] = list(mounts)
    return spec


MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.2"  # the version requirements.txt pins


def mlflow_server(slug: str, component: str, port: int, *, volume: str = "store",
                  cpu: str = "250m", memory: str = "512Mi") -> Obj:
    """The MLflow tracking server and model registry, as a container (the labs'
    ``lab.tracking.tracking_server``): its SQLite store and artifacts on ``volume`` at
    /store, one worker, MLflow's job runner off, and the Service's own name among the
    Host headers it accepts (MLflow 3 refuses every host but localhost and private IPs
    unless told). A TCP probe: ``/health`` would need the allowed host too. Introduced in
    *training/batch-training*."""
    host = name_of(slug, component)
    return container(
        "mlflow", MLFLOW_IMAGE,
        ["mlflow", "server", "--host", "0.0.0.0", "--port", str(port),
         "--backend-store-uri", "sqlite:////store/mlflow.db",
         "--artifacts-destination", "/store/artifacts", "--workers", "1",
         "--allowed-hosts", f"{host},{host}:*"],
        health=None, tcp_port=port, cpu=cpu, memory=memory,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        mounts=[{"name": volume, "mountPath": "/store"}])


def _pod(name: str, containers: Sequence[Obj], *, volumes: Sequence[Obj] = (),
         init: Sequence[Obj] = (), restart: str | None = None, grace: int = 30) -> Obj:
    spec: Obj = {"containers": list(containers), "terminationGracePeriodSeconds": grace}
    if volumes:
        spec["volumes"] = list(volumes)
    if init:
        spec["initContainers"] = list(init)
    if restart:
        spec["restartPolicy"] = restart
    return {"metadata": {"labels": {"app.kubernetes.io/name": name}}, "spec": spec}


def deployment(slug: str, component: str, containers: Sequence[Obj], *, lab: str, does: str,
               replicas: int = 2, volumes: Sequence[Obj] = (), init: Sequence[Obj] = (),
               labels: Mapping[str, str] | None = None) -> Obj:
    """A Deployment: the lab's server process, run as ``replicas`` identical pods with a
    rolling update that never drops below the ready count (``maxUnavailable: 0``: a
    release whose pods never become ready stalls instead of taking the service down).
    Introduced in *serving/web-single*."""
    name = name_of(slug, component)
    pod = _pod(name, containers, volumes=volumes, init=init)
    pod["metadata"]["labels"].update(labels or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(name, slug, lab, does, labels),
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": dict(pod["metadata"]["labels"])},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": pod}}


def statefulset(slug: str, component: str, containers: Sequence[Obj], *, lab: str, does: str,
                replicas: int) -> Obj:
    """A StatefulSet: workers with stable names (``worker-0``, ``worker-1``) so a restarted
    worker finds the jobs its previous life left half done. Introduced in
    *serving/asynchronous*."""
    name = name_of(slug, component)
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": _meta(name, slug, lab, does),
            "spec": {"replicas": replicas, "serviceName": name,
                     "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                     "template": _pod(name, containers)}}


def service(slug: str, component: str, *, lab: str, does: str, headless: bool = False,
            port: str = "http", number: int = 80) -> Obj:
    """A Service: the stable address that ``server.url`` was in the lab. Selects the pods
    of the workload with the same name. Introduced in *serving/web-single*."""
    name = name_of(slug, component)
    spec: Obj = {"selector": {"app.kubernetes.io/name": name}}
    if headless:  # no load balancing, no ports: only DNS names for the pods
        spec["clusterIP"] = "None"
    else:
        spec["ports"] = [{"name": port, "port": number, "targetPort": port}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, slug, lab, does),
            "spec": spec}


def url(slug: str, component: str) -> str:
    """The in-cluster URL of a component's Service (what the lab passed as ``server.url``).
    Introduced in *serving/circuit-break*."""
    return f"http://{name_of(slug, component)}"


def hpa(slug: str, component: str, *, lab: str, does: str, low: int = 2, high: int = 10,
        cpu_percent: int = 70, kind: str = "Deployment") -> Obj:
    """A HorizontalPodAutoscaler on CPU: more replicas add throughput, not speed per call
    (*anti-online-bigsize*). Introduced in *serving/web-single*."""
    name = name_of(slug, component)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(name, slug, lab, does),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
                     "minReplicas": low, "maxReplicas": high,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu",
                         "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}]}}


def configmap(slug: str, component: str, data: Mapping[str, Any], *, lab: str, does: str) -> Obj:
    """A ConfigMap: the environment the lab passed to ``lab.serve(env=...)`` (or a file it
    wrote, mounted as a volume). Introduced in *serving/web-single*."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(name_of(slug, component), slug, lab, does),
            "data": {key: str(value) for key, value in data.items()}}


def pvc(slug: str, component: str, size: str, *, lab: str, does: str) -> Obj:
    """A PersistentVolumeClaim: a disk that outlives the pods (the lab's SQLite file).
    Introduced in *serving/batch*."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(name_of(slug, component), slug, lab, does),
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}}}


def model_init(model_image: str, *, volume: str = "models",
               path: str = "/models") -> tuple[Obj, Obj]:
    """The model loaded at start: an init container copies the model files out of a
    model-only image into a shared ``emptyDir`` before the server starts, so a new model
    version is a new model image, not a new server image. Returns (init container,
    volume); mount the volume at ``path`` in the server. Introduced in
    *serving/prediction-cache*."""
    init = {"name": "model", "image": model_image,
            "command": ["sh", "-c", f"cp -r /models/. {path}-shared/"],
            "resources": _resources("50m", "64Mi"),
            "volumeMounts": [{"name": volume, "mountPath": f"{path}-shared"}]}
    return init, {"name": volume, "emptyDir": {}}


def redis(slug: str, *, maxmemory: str | None = None, policy: str | None = None,
          lab: str, does: str) -> list[Obj]:
    """Redis as a Deployment and Service (one replica, no persistence, like the lab's
    ``redis_server``); in production prefer a managed, replicated Redis. Introduced in
    *serving/asynchronous*."""
    command = ["redis-server", "--save", "", "--appendonly", "no"]
    if maxmemory:
        command += ["--maxmemory", maxmemory]
    if policy:
        command += ["--maxmemory-policy", policy]
    box = container("redis", "redis:7.4", command, health=None, tcp_port=6379,
                    cpu="100m", memory="256Mi")
    return [deployment(slug, "redis", [box], lab=lab, does=does, replicas=1),
            service(slug, "redis", port="tcp", number=6379, lab=lab,
                    does="The address the apps' REDIS_URL names.")]


def redis_url(slug: str) -> str:
    """The in-cluster URL of the chapter's Redis. Introduced in *serving/asynchronous*."""
    return f"redis://{name_of(slug, 'redis')}:6379/0"


def cronjob(slug: str, component: str, box: Obj, *, schedule: str, lab: str, does: str,
            retries: int = 1, deadline_s: int = 3600, volumes: Sequence[Obj] = ()) -> Obj:
    """A CronJob: the lab's scheduler. ``concurrencyPolicy: Forbid`` never overlaps two
    runs, ``backoffLimit`` is the retry count, ``activeDeadlineSeconds`` bounds a run.
    Introduced in *serving/batch*."""
    name = name_of(slug, component)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(name, slug, lab, does),
            "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid",
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": _job_spec(name, box, retries, deadline_s, volumes)}}}


def job(slug: str, component: str, box: Obj, *, lab: str, does: str, retries: int = 1,
        deadline_s: int = 3600, volumes: Sequence[Obj] = ()) -> Obj:
    """A Job: one-off work that runs to completion (a backfill, a retry by hand).
    Introduced in *serving/batch*."""
    name = name_of(slug, component)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(name, slug, lab, does),
            "spec": _job_spec(name, box, retries, deadline_s, volumes)}


def _job_spec(name: str, box: Obj, retries: int, deadline_s: int, volumes: Sequence[Obj]) -> Obj:
    return {"backoffLimit": retries, "activeDeadlineSeconds": deadline_s,
            "ttlSecondsAfterFinished": 86400,
            "template": _pod(name, [box], volumes=volumes, restart="Never")}


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def virtual_service(slug: str, component: str, host: str, *, lab: str, does: str,
                    routes: Sequence[tuple[str, int]] | None = None,
                    match_header: tuple[str, str] | None = None,
                    timeout_s: float | None = None, attempts: int | None = None,
                    per_try_s: float | None = None, mirror: str | None = None,
                    mirror_percent: float = 100.0) -> Obj:
    """An Istio VirtualService for the Service ``host``: ``routes`` are (subset, weight)
    pairs (a split), ``match_header`` routes only requests with that header value,
    ``timeout_s`` and ``attempts`` are the route's deadline and retries, ``mirror`` copies
    traffic to a subset without waiting for it. Introduced in *serving/circuit-break*."""
    destinations = [{"destination": {"host": host, "subset": subset}, "weight": weight}
                    for subset, weight in (routes or [])] or [{"destination": {"host": host}}]
    route: Obj = {"route": destinations}
    if match_header:
        route["match"] = [{"headers": {match_header[0]: {"exact": match_header[1]}}}]
    if timeout_s is not None:
        route["timeout"] = _seconds(timeout_s)
    if attempts is not None:
        route["retries"] = {"attempts": attempts}
        if attempts and per_try_s:
            route["retries"].update(perTryTimeout=_seconds(per_try_s), retryOn="5xx,reset")
    if mirror:
        route["mirror"] = {"host": host, "subset": mirror}
        route["mirrorPercentage"] = {"value": mirror_percent}
    return {"apiVersion": ISTIO_API, "kind": "VirtualService",
            "metadata": _meta(name_of(slug, component), slug, lab, does),
            "spec": {"hosts": [host], "http": [route]}}


def destination_rule(slug: str, component: str, host: str, *, lab: str, does: str,
                     max_in_flight: int | None = None, max_pending: int = 1,
                     consecutive_5xx: int | None = None, ejection_s: float = 30.0,
                     interval_s: float = 10.0, max_ejection_percent: int = 50,
                     subsets: Mapping[str, Mapping[str, str]] | None = None) -> Obj:
    """An Istio DestinationRule for the Service ``host``: a connection pool that caps the
    requests in flight (the breaker's limit, enforced by each *calling* pod's Envoy),
    outlier detection that ejects a pod after ``consecutive_5xx`` errors, and subsets by
    pod label. Introduced in *serving/circuit-break*."""
    policy: Obj = {}
    if max_in_flight is not None:
        policy["connectionPool"] = {
            "tcp": {"maxConnections": max_in_flight},
            "http": {"http1MaxPendingRequests": max_pending, "http2MaxRequests": max_in_flight,
                     "maxRetries": 0}}
    if consecutive_5xx is not None:
        policy["outlierDetection"] = {"consecutive5xxErrors": consecutive_5xx,
                                      "interval": _seconds(interval_s),
                                      "baseEjectionTime": _seconds(ejection_s),
                                      "maxEjectionPercent": max_ejection_percent}
    spec: Obj = {"host": host}
    if policy:
        spec["trafficPolicy"] = policy
    if subsets:
        spec["subsets"] = [{"name": key, "labels": dict(labels)} for key, labels in subsets.items()]
    return {"apiVersion": ISTIO_API, "kind": "DestinationRule",
            "metadata": _meta(name_of(slug, component), slug, lab, does), "spec": spec}


def scaled_object(slug: str, component: str, trigger: Obj, *, lab: str, does: str,
                  kind: str = "Deployment", low: int = 1, high: int = 10) -> Obj:
    """A KEDA ScaledObject: scale the workers on the queue, the signal the lab plotted.
    ``trigger`` is one KEDA trigger (``redis`` on a list's length, ``redis-streams`` on a
    consumer group's lag). Introduced in *serving/asynchronous*."""
    name = name_of(slug, component)
    return {"apiVersion": KEDA_API, "kind": "ScaledObject",
            "metadata": _meta(name, slug, lab, does),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
                     "minReplicaCount": low, "maxReplicaCount": high,
                     "pollingInterval": 5, "cooldownPeriod": 120, "triggers": [trigger]}}


# --- rendering, writing, showing -----------------------------------------------------------

@cache
def _registry() -> Any:
    path = DEPLOY / "chapters.py"
    spec = importlib.util.spec_from_file_location("mlsdp_deploy_chapters", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chapters() -> dict[str, Callable[[Params], list[Obj]]]:
    """Every chapter that deploys something: slug -> function(parameters) -> objects,
    from ``deploy/chapters.py``. Introduced in *serving/web-single*."""
    return dict(_registry().CHAPTERS)


def render(slug: str, values: Params | None = None) -> list[Obj]:
    """The chapter's objects: from ``values`` (a run's own, e.g. ``globals()`` in the
    notebook) over the parameters cell and the chapter's reference values for what the
    lab measures. Introduced in *serving/web-single*."""
    registry = _registry()
    params = {**registry.MEASURED.get(slug, {}), **parameters(slug)}
    if values:  # a run's own values; numpy scalars become plain numbers for YAML
        params.update({k: v.item() if hasattr(v, "item") else v
                       for k, v in values.items() if k in params})
    return registry.CHAPTERS[slug](params)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # a reader sees every probe in full, never an &id001 anchor


def to_yaml(obj: Obj) -> str:
    """One object as YAML, keys in the order they were built. Introduced in
    *serving/web-single*."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=100, default_flow_style=False)


def filename(obj: Obj) -> str:
    """``<kind>-<name>.yaml``. Introduced in *serving/web-single*."""
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


HEADER = ("# Generated by `make manifests` (python -m labsupport.manifests deploy) from {nb}.\n"
          "# Do not edit: change the chapter or its objects in deploy/ and regenerate.\n")


def files(slug: str) -> dict[str, str]:
    """The committed files of one chapter: relative path -> text. Introduced in
    *serving/web-single*."""
    header = HEADER.format(nb=notebook(slug).relative_to(ROOT).as_posix())
    return {f"{slug}/{filename(obj)}": header + to_yaml(obj) for obj in render(slug)}


def write(out: Path = DEPLOY) -> list[Path]:
    """Write every chapter's objects under ``out/<category>/<slug>/``, removing files of
    objects that no longer exist. Introduced in *serving/web-single*."""
    written = []
    for slug in chapters():
        folder = out / slug
        folder.mkdir(parents=True, exist_ok=True)
        wanted = files(slug)
        for old in folder.glob("*.yaml"):
            if f"{slug}/{old.name}" not in wanted:
                old.unlink()
        for rel, text in wanted.items():
            path = out / rel
            path.write_text(text)
            written.append(path)
    return written


def mapping(objs: Sequence[Obj]) -> list[tuple[str, str, str]]:
    """(lab component, object, what it does) rows, from the objects' annotations.
    Introduced in *serving/web-single*."""
    return [(o["metadata"]["annotations"][LAB], f"{o['kind']} {o['metadata']['name']}",
             o["metadata"]["annotations"][DOES]) for o in objs]


def show(slug: str, values: Params | None = None) -> Any:
    """Display a chapter's objects in the notebook: a table from lab component to object,
    then the YAML, collapsed. Pass ``globals()`` to see this run's values. Introduced in
    *serving/web-single*."""
    from IPython.display import HTML

    objs = render(slug, values)
    rows = "".join(f"<tr><td>{html.escape(lab)}</td><td><code>{html.escape(obj)}</code></td>"
                   f"<td>{html.escape(does)}</td></tr>" for lab, obj, does in mapping(objs))
    text = "---\n".join(to_yaml(o) for o in objs)
    return HTML(f"<table><thead><tr><th>In the lab</th><th>In the cluster</th>"
                f"<th>What it does</th></tr></thead><tbody>{rows}</tbody></table>"
                f"<details><summary>The {len(objs)} objects as YAML (<code>deploy/{slug}/</code>)"
                f"</summary><pre>{html.escape(text)}</pre></details>")


# --- validation -----------------------------------------------------------------------------

CUSTOM = {("networking.istio.io", "VirtualService"): "istio-virtualservice.json",
          ("networking.istio.io", "DestinationRule"): "istio-destinationrule.json",
          ("keda.sh", "ScaledObject"): "keda-scaledobject.json"}


def _custom_schema(obj: Obj) -> Path | None:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    name = CUSTOM.get((group, obj["kind"]))
    return SCHEMAS / name if name else None


def validate(obj: Obj) -> str:
    """Validate one object offline and return what it was checked against: a core object
    against the Kubernetes OpenAPI schema in strict mode (unknown fields fail), an Istio or
    KEDA object against the project's own schema in ``deploy/schemas/``. Raises
    ``jsonschema.ValidationError``. Introduced in *serving/web-single*."""
    import jsonschema

    custom = _custom_schema(obj)
    if custom is not None:
        jsonschema.validate(obj, json.loads(custom.read_text()))
        return f"project schema {custom.name}"
    import kubernetes_validate

    version = kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    return f"Kubernetes {version} OpenAPI (strict)"


def _workloads(objs: Sequence[Obj]) -> list[tuple[Obj, Obj]]:
    """(object, pod template) of every Deployment, StatefulSet, Job and CronJob."""
    found = []
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            found.append((o, o["spec"]["template"]))
        elif o["kind"] == "CronJob":
            found.append((o, o["spec"]["jobTemplate"]["spec"]["template"]))
    return found


def crosscheck(objs: Sequence[Obj]) -> list[str]:
    """What the schemas cannot see, as a list of problems (empty when all is well): every
    workload's selector matches its own pods; every Service selects a Deployment or
    StatefulSet and targets a port its pods name; every probe names a port of its
    container; every container requests CPU and memory; every Istio host names a Service
    and every subset a label of its pods; every autoscaler targets a workload; every
    ConfigMap, volume claim and Service URL used exists. Introduced in
    *serving/web-single*."""
    problems = []
    by_kind: dict[str, dict[str, Obj]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    services = by_kind.get("Service", {})
    serving = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
    for name, svc in services.items():
        selector = svc["spec"]["selector"]
        pods = [o for o in serving
                if selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()]
        if not pods:
            problems.append(f"Service {name} selects no Deployment or StatefulSet")
        for port in svc["spec"].get("ports", []):
            for o in pods:
                names = {p.get("name") for c in o["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}
                if port["targetPort"] not in names:
                    problems.append(f"Service {name} targets port {port['targetPort']!r}, "
                                    f"which {o['kind']} {o['metadata']['name']} does not name")
    for o, pod in _workloads(objs):
        where = f"{o['kind']} {o['metadata']['name']}"
        selector = o["spec"].get("selector", {}).get("matchLabels", {})
        if not selector.items() <= pod["metadata"]["labels"].items():
            problems.append(f"{where}: its selector does not match its own pods")
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            requests = c.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= requests.keys():
                problems.append(f"{where}: container {c['name']} sets no cpu and memory requests")
            ports = {p.get("name") for p in c.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe"):
                probe = c.get(kind, {})
                for handler in ("httpGet", "tcpSocket"):
                    if handler in probe and probe[handler]["port"] not in ports:
                        problems.append(f"{where}: {kind} port {probe[handler]['port']!r} "
                                        f"is not a port of container {c['name']}")
            for ref in c.get("envFrom", []):
                if ref["configMapRef"]["name"] not in by_kind.get("ConfigMap", {}):
                    problems.append(f"{where}: ConfigMap {ref['configMapRef']['name']} is missing")
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    problems.append(f"{where}: mounts an undeclared volume {mount['name']}")
            for var in c.get("env", []):
                for host in re.findall(r"https?://([a-z0-9-]+)", str(var.get("value", ""))):
                    if host not in services:
                        problems.append(f"{where}: {var['name']} calls {host}, which is no Service")
        for vol in volumes.values():
            ref = (vol.get("configMap") or {}).get("name")
            if ref and ref not in by_kind.get("ConfigMap", {}):
                problems.append(f"{where}: volume {vol['name']} names a missing ConfigMap {ref}")
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in by_kind.get("PersistentVolumeClaim", {}):
                problems.append(f"{where}: volume {vol['name']} names a missing claim {claim}")
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, o in by_kind.get(kind, {}).items():
            ref = o["spec"]["scaleTargetRef"]
            if ref["name"] not in by_kind.get(ref.get("kind", "Deployment"), {}):
                problems.append(f"{kind} {name} scales a missing {ref.get('kind')} {ref['name']}")
    for kind in ("VirtualService", "DestinationRule"):
        for name, o in by_kind.get(kind, {}).items():
            hosts = o["spec"].get("hosts") or [o["spec"]["host"]]
            routes = [d["destination"] for r in o["spec"].get("http", []) for d in r["route"]]
            routes += [r["mirror"] for r in o["spec"].get("http", []) if "mirror" in r]
            for host in hosts + [d["host"] for d in routes]:
                if host not in services:
                    problems.append(f"{kind} {name}: host {host} names no Service")
            for subset in o["spec"].get("subsets", []):
                svc = services.get(o["spec"]["host"])
                pods = [w for w in serving if svc and svc["spec"]["selector"].items()
                        <= w["spec"]["template"]["metadata"]["labels"].items()]
                if not any(subset["labels"].items()
                           <= w["spec"]["template"]["metadata"]["labels"].items() for w in pods):
                    problems.append(f"{kind} {name}: subset {subset['name']} matches no pod")
    return problems


def probes(objs: Sequence[Obj]) -> list[tuple[str, str, str]]:
    """(workload, command the container runs, HTTP probe path) for every HTTP probe, so a
    test can start that app and call the path. Introduced in *serving/web-single*."""
    found = []
    for o, pod in _workloads(objs):
        for c in pod["spec"]["containers"]:
            paths = {c[k]["httpGet"]["path"] for k in ("readinessProbe", "livenessProbe")
                     if "httpGet" in c.get(k, {})}
            found += [(o["metadata"]["name"], " ".join(c["command"]), p) for p in sorted(paths)]
    return found


def main(argv: Sequence[str]) -> int:
    """``python -m labsupport.manifests DIR``: write every chapter's objects under DIR,
    validate them, and print one line per chapter."""
    if len(argv) != 1:
        print("usage: python -m labsupport.manifests DIR   (the book's is deploy)", file=sys.stderr)
        return 2
    out = Path(argv[0])
    failed = 0
    for slug in chapters():
        objs = render(slug)
        problems = crosscheck(objs)
        for o in objs:
            try:
                validate(o)
            except Exception as error:  # report every broken object, not just the first
                problems.append(f"{o['kind']} {o['metadata']['name']}: {error}".split("\n")[0])
        failed += bool(problems)
        kinds = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objs)
        print(f"{slug}: {len(objs)} objects ({kinds})" + "".join(f"\n  ! {p}" for p in problems))
    write(out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
