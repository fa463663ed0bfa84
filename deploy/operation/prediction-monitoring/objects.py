"""operation/prediction-monitoring: the monitored model server with its prediction log, the
monitor as a Deployment on the wall clock, and the rules Prometheus can evaluate from the
server's counters, as a Prometheus rule file in a ConfigMap."""

from __future__ import annotations

from typing import Any

import yaml

from labsupport import manifests as k8s
from labsupport.monitor import Rules

SLUG = "operation/prediction-monitoring"
WINDOW_S = 60  # a production window: a minute of wall time (the lab's: a window of traffic)
# What the lab measures on the training data (a book build's values; a run shows its own).
MEASURED = {"ref_outlier_rate": 0.1071,
            "ref_shares": {"setosa": 0.3304, "versicolor": 0.3393, "virginica": 0.3304}}

PROMETHEUS_SCRAPE = {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                     "prometheus.io/port": str(k8s.PORT)}


def alert_rules(p: dict[str, Any]) -> dict[str, Any]:
    """The counter rules of labsupport.monitor in Prometheus' rule-file format: thresholds
    with a ``for:`` duration where the lab uses a p-value and a floor."""
    rules = Rules(alpha=p["ALPHA"])
    usual = p["RATE"] / WINDOW_S  # requests per second
    served = 'sum(rate(predict_requests_total{status="200"}[1m]))'
    total = "sum(rate(predictions_total[5m]))"
    out = [
        {"alert": "PredictionRateHigh", "expr": f"{served} > {rules.rate_factor * usual:.4g}",
         "for": "2m", "labels": {"severity": "warning", "rule": "rate_high"},
         "annotations": {"summary": f"more than {rules.rate_factor:g}x the usual request rate"}},
        {"alert": "PredictionRateLow",
         "expr": f'{served} < {usual / rules.rate_factor:.4g} or absent(predict_requests_total)',
         "for": "2m", "labels": {"severity": "warning", "rule": "rate_low"},
         "annotations": {"summary": f"under 1/{rules.rate_factor:g} of the usual request rate"}},
        {"alert": "OutlierRateHigh",
         "expr": f"sum(rate(prediction_outliers_total[5m])) / {total} > "
                 f"{p['ref_outlier_rate'] + rules.outlier_min_rise:.4g}",
         "for": "5m", "labels": {"severity": "page", "rule": "outlier_rate"},
         "annotations": {"summary": "inputs unlike the training data: check units and clients"}},
    ]
    for label, share in p["ref_shares"].items():
        share_expr = f'sum(rate(predictions_total{{label="{label}"}}[5m])) / {total}'
        out.append({"alert": "ClassShareShift",
                    "expr": f"abs({share_expr} - {share:.4g}) > {rules.mix_min_shift:g}",
                    "for": "5m", "labels": {"severity": "warning", "rule": "class_mix",
                                            "class": label},
                    "annotations": {"summary": f"the share of {label} moved from {share:.2f}"}})
    return {"groups": [{"name": "prediction-monitoring", "rules": out}]}


def objects(p: dict[str, Any]) -> list[dict[str, Any]]:
    consts = k8s.module_constants(SLUG, "prediction_monitor")
    assert "TRAFFIC_SCHEMA" in consts  # the lab's monitor, whose wall clock runs here
    data = [{"name": "data", "persistentVolumeClaim": {"claimName": k8s.name_of(SLUG, "data")}}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    objs = [k8s.pvc(SLUG, "data", "10Gi", lab="LOG_PATH and MONITOR_DB (SQLite files)",
                    does="The prediction log and the monitor's windows and alerts; "
                         "ReadWriteOnce: both pods on one node.")]

    config = {"MODEL_PATH": "/models/iris_svc.onnx", "OUTLIER_PATH": "/models/outlier.onnx",
              "LOG_PATH": "/data/predictions.sqlite"}
    box = k8s.container("model", k8s.image(SLUG, "model"),
                        k8s.uvicorn("monitored_app:create_app"),
                        config=k8s.name_of(SLUG, "model"), mounts=mounts)
    server = k8s.deployment(SLUG, "model", [box], replicas=1, volumes=data,
                            lab='lab.serve("monitored_app:create_app")',
                            does="The model server: predicts, counts in Prometheus metrics, "
                                 "logs every prediction.")
    server["spec"]["strategy"] = {"type": "Recreate"}  # one SQLite writer, even in a rollout
    server["spec"]["template"]["metadata"]["annotations"] = dict(PROMETHEUS_SCRAPE)
    objs += [
        k8s.configmap(SLUG, "model", config, lab="env of monitored-model",
                      does="The model server's files: the model, the outlier detector, the log."),
        server,
        k8s.service(SLUG, "model", lab="server.url",
                    does="The model server's address; Prometheus and the monitor scrape it."),
    ]

    monitor_config = {"METRICS_URL": f"{k8s.url(SLUG, 'model')}/metrics",
                      "LOG_PATH": "/data/predictions.sqlite",
                      "MONITOR_DB": "/data/monitor.sqlite",
                      "REFERENCE_PATH": "/models/reference.json", "ALPHA": p["ALPHA"]}
    watcher = k8s.container("monitor", k8s.image(SLUG, "monitor"),
                            ["python", "prediction_monitor.py", "--clock", "wall",
                             "--window-s", str(WINDOW_S)],
                            health=None, cpu="100m", memory="256Mi",
                            config=k8s.name_of(SLUG, "monitor"), mounts=mounts)
    monitor = k8s.deployment(SLUG, "monitor", [watcher], replicas=1, volumes=data,
                             lab='lab.start_process(["prediction_monitor.py", "--clock", '
                                 '"traffic"])',
                             does=f"Closes a window every {WINDOW_S} s: scrapes /metrics, "
                                  "reads the log, tests, writes alerts.")
    monitor["spec"]["strategy"] = {"type": "Recreate"}  # one monitor, or every alert twice
    objs += [
        k8s.configmap(SLUG, "monitor", monitor_config, lab="monitor_env",
                      does="The monitor's inputs: the metrics URL, the log, the reference."),
        monitor,
        k8s.configmap(SLUG, "alert-rules",
                      {"prediction-monitoring.rules.yaml":
                       yaml.safe_dump(alert_rules(p), sort_keys=False, width=1000)},
                      lab="Rules(alpha=ALPHA): rate_high, rate_low, outlier_rate, class_mix",
                      does="The counter rules as a Prometheus rule file (what a PrometheusRule "
                           "would hold), for Alertmanager to route."),
    ]
    return objs
