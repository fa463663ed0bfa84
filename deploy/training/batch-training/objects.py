"""training/batch-training in a cluster: the scheduler becomes a CronJob, MLflow a server.

The lab's scheduler loop (one job per tick, never two at once, a rekick, a deadline) is
what a CronJob does with ``concurrencyPolicy: Forbid``, ``backoffLimit`` and
``activeDeadlineSeconds``. The job is the chapter's ``train_job.py``; it records every run
in an MLflow tracking server (the lab's SQLite store), whose registry holds the versions
and the ``champion`` alias that serving loads.
"""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "training/batch-training"
MLFLOW_PORT = 5000


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    mlflow_url = f"{k8s.url(SLUG, 'mlflow')}:{MLFLOW_PORT}"
    store = [{"name": "store", "persistentVolumeClaim": {
        "claimName": k8s.name_of(SLUG, "mlflow-store")}}]
    server = k8s.mlflow_server(SLUG, "mlflow", MLFLOW_PORT, volume="store")
    dwh = [{"name": "dwh", "persistentVolumeClaim": {"claimName": k8s.name_of(SLUG, "dwh")}}]
    # The day's partition is yesterday's date; in the lab it was the tick's day number.
    line = ('exec python train_job.py /data/dwh.sqlite --day "$(date -d yesterday +%Y%m%d)" '
            f'--gate {p["GATE"]}')
    job = k8s.container(
        "train", k8s.image(SLUG, "train"), ["sh", "-c", line], health=None, cpu="1",
        memory="1Gi", env={"MLFLOW_TRACKING_URI": mlflow_url,
                           "MLFLOW_EXPERIMENT_NAME": "batch-training"},
        mounts=[{"name": "dwh", "mountPath": "/data"}])
    return [
        k8s.pvc(SLUG, "mlflow-store", "5Gi", lab="lab.tracking.use_store(WORK, ...): mlflow.db",
                does="The tracking server's database and artifacts (in production: a "
                     "managed database and an object store)."),
        k8s.deployment(SLUG, "mlflow", [server], replicas=1, volumes=store,
                       lab="MLflow's store and registry (the lab's SQLite file)",
                       does="Records runs, metrics and model files; its registry holds the "
                            "versions and the champion alias."),
        k8s.service(SLUG, "mlflow", port="tcp", number=MLFLOW_PORT,
                    lab="MLFLOW_TRACKING_URI of the jobs",
                    does="The address the training jobs and serving reach MLflow at."),
        k8s.pvc(SLUG, "dwh", "1Gi", lab="dwh.sqlite (flowers, golden, quarantine, runs)",
                does="Stands in for the warehouse: the job reads the day's partition and "
                     "writes its quarantine and run record."),
        k8s.cronjob(SLUG, "train", job, schedule="0 3 * * *", retries=p["REKICKS"],
                    deadline_s=2 * 3600, volumes=dwh,
                    lab=f"Scheduler(rekicks={p['REKICKS']}, deadline_s={p['JOB_DEADLINE_S']}) "
                        "firing train_job.py (a lab night is seconds; a real one, hours)",
                    does="Trains nightly on yesterday's rows; never two runs at once; "
                         "a failed pod is rekicked; a run past the deadline is killed."),
    ]
