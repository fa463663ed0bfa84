"""labsupport.tracking: MLflow stores in a scratch folder, and a real tracking server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from labsupport import servers, tracking


def test_use_store_keeps_runs_and_artifacts_in_the_folder(tmp_path: Path) -> None:
    import mlflow

    experiment_id = tracking.use_store(tmp_path, "unit")
    assert tracking.use_store(tmp_path, "unit") == experiment_id  # reused, not duplicated
    (tmp_path / "report.txt").write_text("accuracy 0.9\n")
    with mlflow.start_run() as run:
        mlflow.log_param("seed", 7)
        mlflow.log_metric("accuracy", 0.9)
        mlflow.log_artifact(str(tmp_path / "report.txt"))
    stored = mlflow.MlflowClient().get_run(run.info.run_id)
    assert stored.data.params == {"seed": "7"} and stored.data.metrics == {"accuracy": 0.9}
    written = list(tracking.artifact_root(tmp_path).rglob("report.txt"))
    assert len(written) == 1 and written[0].read_text() == "accuracy 0.9\n"
    assert not Path("mlruns").exists()  # MLflow's default folder was never used


def test_tracking_server_shares_runs_and_stops_cleanly(tmp_path: Path) -> None:
    import mlflow

    with tracking.tracking_server(tmp_path, name="unit-mlflow") as server:
        client = mlflow.MlflowClient(tracking_uri=server.url)
        experiment_id = client.create_experiment("shared")
        run = client.create_run(experiment_id)
        client.log_metric(run.info.run_id, "loss", 0.25)
        client.set_terminated(run.info.run_id)
        pid = server.pid
    assert not servers.listens_on(pid, server.port)
    # what went through the server is in the folder's store, readable without it
    direct = mlflow.MlflowClient(tracking_uri=tracking.store_uri(tmp_path))
    assert direct.get_run(run.info.run_id).data.metrics == {"loss": 0.25}


def test_tracking_server_names_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(servers.PortInUseError, match=str(port)):
            tracking.tracking_server(tmp_path, port=port)
