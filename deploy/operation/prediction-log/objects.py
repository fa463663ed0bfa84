"""operation/prediction-log: model servers publish events to a persistent Redis stream; one
consumer pod writes them into the SQLite log on its own disk."""

from __future__ import annotations

from typing import Any

from labsupport import manifests as k8s

SLUG = "operation/prediction-log"
# The consumer's name is its pod's name: new on every restart, hence XAUTOCLAIM.
POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
# In the cluster, a batch that takes longer than this is written twice (harmlessly):
# far above a batch's normal time, unlike the lab's short value.
CLAIM_IDLE_MS = 30_000


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    consts = k8s.module_constants(SLUG, "predlog_app")
    assert "none" in consts["MODES"] and "queue" in consts["MODES"]
    redis_url = k8s.redis_url(SLUG)
    objs = k8s.redis(SLUG, lab='redis_server(name="predlog-redis")',
                     does="The stream predlog:events and its consumer group; persistent.")
    # The lab's Redis keeps nothing on disk; a log queue must survive a Redis restart.
    redis_pod = objs[0]["spec"]["template"]["spec"]
    redis_pod["containers"][0]["command"] = ["redis-server", "--appendonly", "yes",
                                            "--appendfsync", "everysec", "--dir", "/data"]
    redis_pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    redis_pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {
        "claimName": k8s.name_of(SLUG, "redis-data")}}]
    objs[0]["spec"]["strategy"] = {"type": "Recreate"}  # one pod on the disk at a time
    objs.insert(0, k8s.pvc(SLUG, "redis-data", "2Gi", lab="(the lab's Redis keeps no file)",
                           does="Redis's append-only file: queued events survive a restart."))

    config = {"MODEL_PATH": "/models/iris_svc.onnx", "LOG_MODE": "queue", "REDIS_URL": redis_url}
    box = k8s.container("app", k8s.image(SLUG, "app"), k8s.uvicorn("predlog_app:create_app"),
                        config=k8s.name_of(SLUG, "app"))
    objs += [
        k8s.configmap(SLUG, "app", config, lab='env of servers["queue"]',
                      does="The model server's settings: queue mode, the stream's Redis."),
        k8s.deployment(SLUG, "app", [box], replicas=2,
                       lab='lab.serve("predlog_app:create_app", LOG_MODE="queue")',
                       does="The model server: answers, then XADDs one event per prediction."),
        k8s.service(SLUG, "app", lab='servers["queue"].url',
                    does="The model server's stable address."),
        k8s.hpa(SLUG, "app", low=2, high=10, lab="(one process: cannot scale)",
                does="Adds model servers on CPU; the queue absorbs their extra events."),
    ]

    command = ["sh", "-c", f'exec python -m labsupport.logqueue --redis "{redis_url}" '
               f'--db /data/predictions.sqlite --name "$POD_NAME" --batch {p["BATCH"]} '
               f'--flush-s {p["FLUSH_S"]} --claim-idle-ms {CLAIM_IDLE_MS}']
    consumer = k8s.container("consumer", k8s.image(SLUG, "consumer"), command, health=None,
                             cpu="250m", memory="256Mi",
                             mounts=[{"name": "data", "mountPath": "/data"}])
    consumer["env"] = [POD_NAME]
    store = k8s.deployment(
        SLUG, "consumer", [consumer], replicas=1,
        volumes=[{"name": "data", "persistentVolumeClaim": {
            "claimName": k8s.name_of(SLUG, "store")}}],
        lab="start_consumer(name): python -m labsupport.logqueue",
        does="Writes events to the log in batches, acks after the commit, takes over a dead "
             "pod's batch.")
    # SQLite on a ReadWriteOnce disk: never two writers, not even during a rollout.
    store["spec"]["strategy"] = {"type": "Recreate"}
    objs += [
        k8s.pvc(SLUG, "store", "10Gi", lab="QUEUE_DB (queue_log.sqlite)",
                does="The prediction log's disk: the store the analysis queries."),
        store,
    ]
    return objs
