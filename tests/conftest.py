"""Shared fixtures, and the check that a test run leaves no server of ours behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--book-run", default=os.environ.get("MLSDP_BOOK_RUN"),
                     help="a folder written by `tools/book.py run`: check that run "
                          "(its notebooks, claims, pages); `make test` passes it")


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


@pytest.fixture(scope="session")
def book_run(request: pytest.FixtureRequest) -> Path:
    """The book run this test session checks (``--book-run``). Without one, the tests of
    a run are skipped: `make unit` runs the rest, `make test` runs everything."""
    folder = request.config.getoption("--book-run")
    if not folder:
        pytest.skip("no --book-run given: `make test` executes the book and checks it")
    path = Path(folder).resolve()
    assert (path / "report.json").exists(), (
        f"{path}/report.json is missing: the book run did not finish (see its output above)")
    return path


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Say how many pages the browser check opened, or why it did not run."""
    pages = {"passed": 0, "failed": 0}
    skipped_because = ""
    for outcome in ("passed", "failed", "skipped"):
        for rep in terminalreporter.stats.get(outcome, []):
            if "test_browser.py::test_page" not in getattr(rep, "nodeid", ""):
                continue
            if outcome == "skipped":
                skipped_because = str(rep.longrepr[-1]) if isinstance(rep.longrepr, tuple) else ""
            elif rep.when == "call" or outcome == "failed":
                pages[outcome] += 1
    if pages["passed"] or pages["failed"]:
        terminalreporter.write_line(
            f"browser check: opened {pages['passed'] + pages['failed']} pages of the book in "
            f"headless Chromium; {pages['failed']} with problems")
    elif skipped_because:
        terminalreporter.write_line(skipped_because.removeprefix("Skipped: "), yellow=True)
