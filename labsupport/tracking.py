"""MLflow as the labs run it: a store in the chapter's scratch folder, or a tracking server.

Introduced in *training/batch-training*: every run of a training job is recorded (its
parameters, metrics and artifacts) in an SQLite-backed MLflow store inside the chapter's
``WORK`` folder, never in the repository and never on the network. Chapters about
sharing records (the registry, several processes writing to one place) start
:func:`tracking_server`, a real ``mlflow server`` process on a free loopback port.

MLflow's telemetry, its job runner (a fleet of background consumers) and its chatty
start-up logging are switched off for every process started from here.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from labsupport import servers

# MLflow reads these at import time: set them before anything imports mlflow
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # the job runner starts half a dozen consumer processes that outlive a SIGTERM
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    # a progress bar per artifact download is noise in a page
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
for _key, _value in QUIET_ENV.items():
    os.environ.setdefault(_key, _value)
# tqdm, imported by MLflow, warns in a kernel without ipywidgets; the labs show no bars
warnings.filterwarnings("ignore", message="IProgress not found")

__all__ = ["QUIET_ENV", "artifact_root", "quiet", "store_uri", "tracking_server", "use_store"]


def store_uri(work: str | os.PathLike[str]) -> str:
    """The SQLite store of runs and registered models in ``work`` (``sqlite:///...``)."""
    return f"sqlite:///{Path(work).resolve() / 'mlflow.db'}"


def artifact_root(work: str | os.PathLike[str]) -> Path:
    """Where the runs' artifacts (models, reports) are written, inside ``work``."""
    return Path(work).resolve() / "mlartifacts"


def quiet() -> None:
    """Keep MLflow's and Alembic's INFO lines (table creation, migrations) and MLflow's
    own deprecation warnings out of the page."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")
    for name in ("mlflow", "alembic", "sqlalchemy", "huey"):
        logging.getLogger(name).setLevel(logging.WARNING)


def use_store(work: str | os.PathLike[str], experiment: str, *, uri: str | None = None) -> str:
    """Point MLflow's tracking and registry at ``uri`` (default: :func:`store_uri` of
    ``work``), select ``experiment`` (created with its artifacts under ``work``), and
    return the experiment's id.

    The artifact location is set explicitly: MLflow's default is ``./mlruns`` in the
    current folder, which for a notebook is the repository.
    """
    import mlflow

    quiet()
    uri = uri or store_uri(work)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = (artifact_root(work) / experiment).as_uri()
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    quiet()
    return experiment_id


def tracking_server(work: str | os.PathLike[str], *, name: str = "mlflow", port: int = 0,
                    timeout: float = 90.0) -> servers.Server:
    """Start ``mlflow server`` on 127.0.0.1 with its store and artifacts in ``work``.

    Clients reach it at ``server.url`` (``mlflow.set_tracking_uri(server.url)``); artifacts
    are proxied through it (``mlflow-artifacts:``), so a client needs no access to the
    folder. It takes a few seconds to start (it creates its tables on first use).
    Raises :class:`~labsupport.servers.PortInUseError` if ``port`` is taken, and
    :class:`~labsupport.servers.ServerStartError`, with the server's output, if it exits.
    """
    if port:
        servers._check_port(port)
    port = port or servers.free_port()
    root = artifact_root(work)
    root.mkdir(parents=True, exist_ok=True)
    process = servers.start_process(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri(work),
         "--artifacts-destination", str(root), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        name=name, env=QUIET_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        servers.wait_http(f"{url}/health", timeout=timeout, process=process)
    except BaseException:
        process.stop()
        raise
    server = servers.Server(name, url, "process", process=process)
    servers._RUNNING[name] = server
    return server
