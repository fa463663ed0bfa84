"""lifecycle/training-to-serving in a cluster: training on a schedule, release as a Job.

The lab's pieces map onto Kubernetes objects:

* the training job (``train_job.py``, one batch per run, never two at once) is a CronJob
  with ``concurrencyPolicy: Forbid``; its ``backoffLimit`` is the lab's retry of the
  killed job;
* the release step (fetch the champion, check it, start a new server) is a Job, created
  by the pipeline for each released version, that applies a versioned Deployment from a
  template; it runs under a ServiceAccount allowed to manage Deployments and nothing else;
* the Redis discovery hash with leases is what a Service over a label gives for free: every
  versioned Deployment carries ``model-role: member``, the Service ``members`` selects it,
  and the readiness probe is the heartbeat (a pod that stops answering leaves the
  endpoints); a Service per version (``model-version``) lets the evaluator score each;
* the horizontal proxy's round robin is the Service's own load balancing.
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "lifecycle/training-to-serving"
REGISTRY_PORT = 5000
MEMBER_LABELS = {"model-role": "member"}
# the version number in the release Job's template, replaced by the Job: a number survives
# the object-name rules (lower case, digits, dashes) that a word like VERSION would not
PLACEHOLDER = "999999"


def _member(version: str) -> dict[str, Any]:
    """The Deployment the release Job creates for one released version."""
    server = k8s.container(
        "app", k8s.image(SLUG, "member"), k8s.uvicorn("member_app:create_app"),
        env={"MODEL_PATH": "/models/model.onnx", "MEMBER_ID": f"model-v{version}"},
        config=k8s.name_of(SLUG), mounts=[{"name": "models", "mountPath": "/models"}])
    fetch = k8s.container(
        "fetch-model", k8s.image(SLUG, "member"),
        ["python", "-c", "import os, shutil; from labsupport import modelload; "
         "f = modelload.fetch(os.environ['MODEL_NAME'], 'champion', '/tmp/cache', "
         "tracking_uri=os.environ['REGISTRY_URI']); "
         "shutil.copytree(f.path.parent, '/models', dirs_exist_ok=True)"],
        health=None, config=k8s.name_of(SLUG), cpu="100m", memory="256Mi",
        mounts=[{"name": "models", "mountPath": "/models"}])
    return k8s.deployment(
        SLUG, f"v{version}", [server], replicas=2, init=[fetch],
        volumes=[{"name": "models", "emptyDir": {}}],
        labels={**MEMBER_LABELS, "model-version": version},
        lab=f'release("{version}"): lab.serve("member_app:create_app") on a free port',
        does=f"Model version {version}, created by the release Job; its pods join the "
             "members Service when ready.")


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    registry = k8s.name_of(SLUG, "registry")
    config = k8s.name_of(SLUG)
    account = k8s.name_of(SLUG, "release")
    data = [{"name": "data", "persistentVolumeClaim": {"claimName": k8s.name_of(SLUG, "data")}}]
    mlflow = k8s.mlflow_server(SLUG, "registry", REGISTRY_PORT, volume="data")
    train = k8s.container(
        "train", k8s.image(SLUG, "train"),
        ["sh", "-c", "exec python train_job.py --job \"$(date +%s)\""],
        health=None, config=config, cpu="1", memory="1Gi",
        env={"JOB_DIR": "/tmp/job", "DATA_DB": "/batches/lifecycle.sqlite"},
        mounts=[{"name": "batches", "mountPath": "/batches"}])
    member = _member("1")
    template = k8s.configmap(
        SLUG, "member-template", {"member.yaml": k8s.to_yaml(_member(PLACEHOLDER))},
        lab="release(): the server the release step starts",
        does=f"The versioned Deployment the release Job applies ({PLACEHOLDER}: the version).")
    release = k8s.container(
        "release", "registry.k8s.io/kubectl:v1.35.0",
        ["sh", "-c", f'sed "s/{PLACEHOLDER}/$MODEL_VERSION/g" /templates/member.yaml '
                     "| kubectl apply -f -"],
        health=None, cpu="100m", memory="128Mi", env={"MODEL_VERSION": "1"},
        mounts=[{"name": "templates", "mountPath": "/templates"}])
    release_job = k8s.job(
        SLUG, "release-v1", release, retries=2, deadline_s=600,
        volumes=[{"name": "templates",
                  "configMap": {"name": k8s.name_of(SLUG, "member-template")}}],
        lab='release("1") after the gate passed',
        does="Creates the Deployment of a released version (here version 1); the "
             "pipeline creates one such Job per release.")
    release_job["spec"]["template"]["spec"]["serviceAccountName"] = account
    members = k8s.service(SLUG, "members", lab="the Redis discovery hash + the proxy",
                          does="Every ready pod of every released version: the membership, "
                               "load balanced.")
    members["spec"]["selector"] = dict(MEMBER_LABELS)
    v1 = k8s.service(SLUG, "v1", lab="the proxy's POST /fanout, one member",
                     does="One version alone, for the evaluator's scores.")
    v1["spec"]["selector"] = {**MEMBER_LABELS, "model-version": "1"}
    lab = "(the lab's notebook starts servers itself)"
    rbac = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": k8s._meta(account, SLUG, lab, "The identity the release Job runs as.")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": k8s._meta(account, SLUG, lab, "May manage Deployments in this "
                               "namespace, and nothing else."),
         "rules": [{"apiGroups": ["apps"], "resources": ["deployments"],
                    "verbs": ["get", "list", "create", "patch", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": k8s._meta(account, SLUG, lab, "Gives the release Job's account its Role."),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
         "subjects": [{"kind": "ServiceAccount", "name": account}]},
    ]
    return [
        k8s.pvc(SLUG, "data", "5Gi", lab="STATE: mlflow.db and the artifacts",
                does="The registry's store and model files (in production: a database and "
                     "object storage)."),
        k8s.deployment(SLUG, "registry", [mlflow], replicas=1, volumes=data,
                       lab="lab.tracking.store_uri(STATE)",
                       does="MLflow's registry: model versions and the champion alias."),
        k8s.service(SLUG, "registry", port="tcp", number=REGISTRY_PORT, lab="STORE",
                    does="The registry's address for training jobs and releases."),
        k8s.pvc(SLUG, "batches", "1Gi", lab="lifecycle.sqlite (rows, batches, jobs)",
                does="Stands in for the data store where batches arrive."),
        k8s.configmap(SLUG, "", {"MODEL_NAME": "stream-classifier",
                                 "REGISTRY_URI": f"http://{registry}:{REGISTRY_PORT}",
                                 "GATE_FLOOR": p["GATE_FLOOR"], "GATE_EPS": p["GATE_EPS"]},
                      lab="JOB_ENV", does="The model's name, the registry and the gate."),
        k8s.cronjob(SLUG, "train", train, schedule="0 * * * *", retries=1, deadline_s=1800,
                    volumes=[{"name": "batches", "persistentVolumeClaim": {
                        "claimName": k8s.name_of(SLUG, "batches")}}],
                    lab="train(batch, attempt): one job per batch, a killed one retried",
                    does="Trains on the newest batch, gates, registers a passing model; "
                         "never two runs at once; a failed pod is retried once."),
        *rbac,
        template,
        release_job,
        member,
        members,
        v1,
    ]
