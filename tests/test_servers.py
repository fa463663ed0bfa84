from __future__ import annotations

import socket
import sys
import textwrap

import httpx
import pytest
from fastapi import FastAPI

from labsupport import servers
from labsupport.servers import PortInUseError, ServerStartError, serve, start_process, stop_all


def tiny_app() -> FastAPI:
    app = FastAPI(title="tiny")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.TransportError:
        return True
    return False


def test_thread_server_answers_then_stops() -> None:
    with serve(tiny_app(), name="tiny") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
        assert "tiny" in servers.running()
    assert refused(srv.url + "/health")
    assert "tiny" not in servers.running()


def test_same_name_replaces_the_previous_server() -> None:
    first = serve(tiny_app(), name="again")
    second = serve(tiny_app(), name="again")
    try:
        assert refused(first.url + "/health"), "re-running a cell must stop the old server"
        assert httpx.get(second.url + "/health").status_code == 200
    finally:
        stop_all()


def test_busy_port_gives_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} .* already in use"):
            serve(tiny_app(), name="busy", port=port)


def test_process_server_crosses_a_process_boundary(tmp_path) -> None:
    (tmp_path / "pidapp.py").write_text(textwrap.dedent("""
        import os
        from fastapi import FastAPI
        app = FastAPI()

        @app.get("/health")
        def health():
            return {"pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS")}
    """))
    with serve("pidapp:app", mode="process", app_dir=tmp_path, name="pidapp") as srv:
        body = httpx.get(srv.url + "/health").json()
        assert body["pid"] == srv.pid != servers.os.getpid()
        assert body["omp"] == "1"
        proc = srv.process
    assert proc is not None and not proc.alive and proc.returncode is not None


def test_child_that_dies_at_start_shows_its_stderr(tmp_path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('model file is corrupt')\napp = None\n")
    with pytest.raises(ServerStartError, match="model file is corrupt"):
        serve("broken:app", mode="process", app_dir=tmp_path, name="broken", timeout=20)
    assert "broken" not in servers.running()


def test_process_mode_needs_an_import_string() -> None:
    with pytest.raises(TypeError, match="import string"):
        serve(tiny_app(), mode="process")


def test_kill_and_stop_all_leave_nothing_running() -> None:
    sleeper = start_process([sys.executable, "-c", "import time; time.sleep(60)"], name="sleeper")
    other = start_process([sys.executable, "-c", "import time; time.sleep(60)"], name="other")
    assert sleeper.alive and other.alive
    sleeper.kill()
    assert not sleeper.alive and sleeper.returncode == -9
    assert set(stop_all()) >= {"sleeper", "other"}
    assert not other.alive and servers.running() == {}


def test_process_log_is_readable() -> None:
    proc = start_process([sys.executable, "-c", "print('hello from the child')"], name="hello")
    proc.popen.wait(timeout=10)
    assert "hello from the child" in proc.log()
    proc.stop()


def test_wait_for_reports_a_dead_process() -> None:
    proc = start_process([sys.executable, "-c", "print('about to fail'); raise SystemExit(3)"],
                         name="dies")
    with pytest.raises(ServerStartError, match="(?s)exited with code 3.*about to fail"):
        servers.wait_for(lambda: False, timeout=10, process=proc, what="readiness")
    proc.stop()
    with pytest.raises(TimeoutError, match="never did not hold"):
        servers.wait_for(lambda: False, timeout=0.1, what="never")


def test_nice_lowers_the_child_priority() -> None:
    import os

    proc = start_process([sys.executable, "-c", "import os; print(os.nice(0))"], name="nice",
                         nice=7)
    proc.popen.wait(timeout=10)
    assert proc.log().strip() == str(os.nice(0) + 7)
    proc.stop()


def test_a_stopped_server_port_can_be_reused_at_once() -> None:
    first = serve(tiny_app(), name="reuse")
    port = first.port
    httpx.get(first.url + "/health")  # leaves a connection to close (TIME_WAIT)
    first.stop()
    with serve(tiny_app(), name="reuse", port=port) as again:
        assert again.port == port and httpx.get(again.url + "/health").status_code == 200


def test_server_children_do_not_import_the_plotting_stack() -> None:
    import subprocess

    code = ("import sys, labsupport.apps; "
            "print(sorted(m for m in ('matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=servers.child_env(), timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_children_carry_this_run_id() -> None:
    import os

    proc = start_process([sys.executable, "-c", "import os; print(os.environ['MLSDP_LAB'])"],
                         name="run-id")
    proc.popen.wait(timeout=10)
    assert proc.log().strip() == os.environ["MLSDP_LAB_RUN"]
    proc.stop()


def test_a_foreign_server_on_the_chosen_port_is_not_taken_for_ours(monkeypatch, tmp_path) -> None:
    # Another process grabs the port we picked and even answers /health: serve() must
    # notice the server is not its child and try another port.
    foreign = serve(tiny_app(), name="foreign")
    ports = iter([foreign.port])
    real_free_port = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: next(ports, None) or real_free_port())
    (tmp_path / "mine.py").write_text(
        "import os\nfrom fastapi import FastAPI\napp = FastAPI()\n"
        "@app.get('/health')\ndef health():\n    return {'pid': os.getpid()}\n")
    try:
        with serve("mine:app", mode="process", app_dir=tmp_path, name="mine") as mine:
            assert mine.port != foreign.port
            assert httpx.get(mine.url + "/health").json()["pid"] == mine.pid
            assert servers.listens_on(mine.pid, mine.port) is True
    finally:
        foreign.stop()


def test_workdir_is_per_kernel_and_cleans_up_after_dead_ones(tmp_path, monkeypatch) -> None:
    import os
    import tempfile

    import labsupport

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    dead = tmp_path / "mlsdp-lab" / "serving-x-pid999999999"
    dead.mkdir(parents=True)
    path = labsupport.workdir("serving/x")
    assert path.name == f"serving-x-pid{os.getpid()}" and path.is_dir()
    assert not dead.exists()
    assert labsupport.workdir("serving/x") == path
