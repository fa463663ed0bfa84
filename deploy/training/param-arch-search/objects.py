"""training/param-arch-search in a cluster: the search as an Indexed Job whose pods are
the workers, the study's journal in Redis, and the MLflow tracking server they log to."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "training/param-arch-search"
MLFLOW_PORT = 5000


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    # the budget is the grid's size, as in the chapter
    trials = len(p["GRID_C"]) * len(p["GRID_GAMMA"]) + len(p["GRID_LAYERS"]) * len(p["GRID_WIDTH"])
    workers = int(p["WORKERS"])
    share = -(-trials // workers)  # the last pods may run one trial fewer in the lab
    data = {"name": "data", "mountPath": "/data"}

    def disk(component: str) -> dict[str, Any]:
        claim = {"claimName": k8s.name_of(SLUG, component)}
        return {"name": "data", "persistentVolumeClaim": claim}

    # the study storage: Redis with its append-only file on a disk, so the study outlives a restart
    redis_box = k8s.container("redis", "redis:7.4",
                              ["redis-server", "--appendonly", "yes", "--dir", "/data"],
                              health=None, tcp_port=6379, cpu="100m", memory="256Mi",
                              mounts=[data])
    mlflow_box = k8s.mlflow_server(SLUG, "mlflow", MLFLOW_PORT, volume="data", memory="1Gi")
    # worker-0, worker-1...: the pod's index names the worker and offsets its seed
    line = ("exec python search_worker.py --storage \"$STUDY_STORAGE\" --study \"$STUDY\" "
            f"--trials {share} --worker \"worker-$JOB_COMPLETION_INDEX\" "
            f"--seed \"$(( {p['SEED']} + JOB_COMPLETION_INDEX ))\" "
            f"--startup-trials {p['STARTUP_TRIALS']}")
    worker = k8s.container(
        "worker", k8s.image(SLUG, "worker"), ["sh", "-c", line], health=None, cpu="1",
        memory="1Gi", config=k8s.name_of(SLUG, "search"),
        env={"MLFLOW_TRACKING_URI": f"{k8s.url(SLUG, 'mlflow')}:{MLFLOW_PORT}"})
    job = k8s.job(SLUG, "search", worker, retries=2, deadline_s=3600,
                  lab=f"optuna_search(name, {workers}): {workers} x search_worker.py",
                  does=f"The search: {workers} worker pods at once, {share} trials each, "
                       "one study.")
    job["spec"].update({"parallelism": workers, "completions": workers,
                        "completionMode": "Indexed"})
    return [
        k8s.pvc(SLUG, "study", "1Gi", lab="study.journal in the chapter's folder",
                does="The disk under Redis's append-only file: the study survives a restart."),
        k8s.deployment(SLUG, "study", [redis_box], replicas=1, volumes=[disk("study")],
                       lab='JournalStorage(JournalFileBackend("study.journal"))',
                       does="The study storage: a journal in Redis that every worker replays."),
        k8s.service(SLUG, "study", port="tcp", number=6379, lab="--storage of each worker",
                    does="The address in STUDY_STORAGE (redis://...)."),
        k8s.pvc(SLUG, "mlflow", "5Gi", lab="mlflow.db and mlartifacts/ in the chapter's folder",
                does="The tracking server's database and artifacts (runs, ONNX models)."),
        k8s.deployment(SLUG, "mlflow", [mlflow_box], replicas=1, volumes=[disk("mlflow")],
                       lab='lab.tracking.use_store(WORK, "param-arch-search")',
                       does="MLflow tracking and registry: one writer to its database."),
        k8s.service(SLUG, "mlflow", port="tcp", number=MLFLOW_PORT,
                    lab="MLFLOW_TRACKING_URI of the workers",
                    does="The tracking server's address for the workers and the registry."),
        k8s.configmap(SLUG, "search", {
            "STUDY_STORAGE": f"redis://{k8s.name_of(SLUG, 'study')}:6379/0",
            "STUDY": "tpe"},
            lab="the arguments optuna_search passes",
            does="Which study the workers join, and where."),
        job,
    ]
