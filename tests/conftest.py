"""Shared fixtures, and the check that a test run leaves no server of ours behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    # One id per test run, inherited by xdist workers, kernels and their children: the
    # leftover check below then sees this run's processes only, not another run's.
    if not hasattr(config, "workerinput"):
        os.environ.setdefault("MLSDP_LAB_RUN", f"test-{uuid.uuid4().hex[:12]}")


def leftover_lab_processes() -> list[psutil.Process]:
    """Processes that labsupport started during this test run (MLSDP_LAB=<run id>)."""
    run_id = os.environ.get("MLSDP_LAB_RUN", "1")
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "status"]):
        if proc.info["pid"] == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get("MLSDP_LAB") == run_id:
                found.append(proc)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller checks once everything has finished
    if os.environ.get("MLSDP_LAB"):
        return  # pytest itself runs inside a lab process (tests of the tests)
    leftovers = leftover_lab_processes()
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"  pid {p.pid}: {' '.join(p.cmdline())[:160]}" for p in leftovers]
        message = "Lab processes still running after the tests:\n" + "\n".join(lines)
        if reporter:
            reporter.write_line(message, red=True)
        for proc in leftovers:
            proc.kill()
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported iris SVC with its manifest."""
    from labsupport import models

    data = models.iris()
    path = tmp_path_factory.mktemp("models") / "iris.onnx"
    models.export_model(models.iris_svc(data), path, data=data, name="iris-svc", version="3")
    return path
