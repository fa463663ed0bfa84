"""Run real servers on 127.0.0.1 and stop them for sure.

Two ways to run an ASGI app (introduced in *serving/web-single*):

* ``mode="thread"``: ``uvicorn.Server`` in a daemon thread of this process. Cheap to
  start, but it shares the GIL with whatever else the kernel does (the load
  generator, for one), so use it for functional checks.
* ``mode="process"``: a ``python -m uvicorn`` child process. Use it for latency,
  crash and start-up experiments: the measurement then crosses a real process
  boundary, as it would between two pods.

Every server and child process is recorded by name. Starting one with a name that is
already running stops the old one first, so re-running a notebook cell just works;
``stop_all()`` in a chapter's last cell stops whatever is left. Children stay in the
kernel's process group, so a killed kernel takes them along.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
# Idle keep-alive connections live longer on our servers (uvicorn's default: 5 s) than in
# httpx's client pools (5 s): otherwise a proxy can reuse a connection at the very moment
# the server closes it, and a request fails for no reason of the pattern's.
KEEP_ALIVE_S = 30
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class ServerStartError(RuntimeError):
    """A server or child process did not become ready; the message carries its log."""


class PortInUseError(ServerStartError):
    """The requested port is already taken by another process."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on ``127.0.0.1:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as uvicorn does: connections of a stopped server lingering in TIME_WAIT must not
        # count as "in use", while a listening socket still does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _check_port(port: int) -> None:
    if port and not port_is_free(port):
        raise PortInUseError(
            f"port {port} on {HOST} is already in use (another server, or this notebook's "
            f"previous run?). Pass port=0 to get a free port, or stop the other process "
            f"(`lsof -i :{port}` shows it)."
        )


def listens_on(pid: int, port: int) -> bool | None:
    """True if process ``pid`` holds the listening socket on ``port``; None if the system
    will not say (then nobody can tell, and the caller trusts the health check)."""
    try:
        import psutil

        connections = psutil.Process(pid).net_connections(kind="tcp")
    except Exception:
        return None
    return any(c.status == "LISTEN" and c.laddr and c.laddr.port == port for c in connections)


def child_env(extra: Mapping[str, str] | None = None, app_dir: str | Path | None = None) -> dict:
    """Environment for a child process: one BLAS/ONNX thread, unbuffered output, and
    ``labsupport`` (plus ``app_dir``) importable even from a plain clone."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    # marks our children, so a test run can prove it left none behind (its own run id)
    env["MLSDP_LAB"] = os.environ.get("MLSDP_LAB_RUN", "1")
    paths = [str(app_dir)] if app_dir else []
    paths.append(_PACKAGE_PARENT)
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


class Process:
    """A child process started by :func:`start_process`, with its output in a log file."""

    def __init__(self, name: str, args: Sequence[str], popen: subprocess.Popen, log_path: Path):
        self.name = name
        self.args = list(args)
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        """True while the process runs (a reaped or zombie child is not alive)."""
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self, tail: int | None = None) -> str:
        """The process's stdout and stderr so far (the last ``tail`` lines if given)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def kill(self) -> None:
        """SIGKILL, as a crashed node or an OOM kill would: no clean-up runs."""
        if self.alive:
            self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps the child."""
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.popen.wait(timeout=10)
        if _RUNNING.get(self.name) is self:
            del _RUNNING[self.name]

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"<Process {self.name} pid={self.pid} {state}>"


class Server:
    """A running ASGI app: ``url`` to call it, ``stop()`` (or ``with``) to end it."""

    def __init__(self, name: str, url: str, mode: str, *, process: Process | None = None,
                 uvicorn_server: Any = None, thread: threading.Thread | None = None):
        self.name = name
        self.url = url
        self.mode = mode
        self.process = process
        self._uvicorn = uvicorn_server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else os.getpid()

    @property
    def alive(self) -> bool:
        if self.process:
            return self.process.alive
        return bool(self._thread and self._thread.is_alive())

    def log(self, tail: int | None = None) -> str:
        """The child's output (process mode only)."""
        return self.process.log(tail) if self.process else ""

    def stop(self) -> None:
        """Stop the server; waits for in-flight requests at most a couple of seconds."""
        if self.process:
            self.process.stop()
        elif self._uvicorn is not None and self._thread is not None:
            self._uvicorn.should_exit = True
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._uvicorn.force_exit = True
                self._thread.join(timeout=5)
        if _RUNNING.get(self.name) is self:
            del _RUNNING[self.name]

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Server {self.name} {self.url} mode={self.mode} pid={self.pid}>"


_RUNNING: dict[str, Server | Process] = {}


def _replace(name: str) -> None:
    old = _RUNNING.pop(name, None)
    if old is not None:
        old.stop()


def running() -> dict[str, Server | Process]:
    """What this kernel has started and not stopped yet, by name."""
    return dict(_RUNNING)


def stop_all() -> list[str]:
    """Stop every server and child process started here; returns their names."""
    names = list(_RUNNING)
    for name in reversed(names):
        item = _RUNNING.get(name)
        if item is not None:
            item.stop()
    _RUNNING.clear()
    return names


atexit.register(stop_all)


def start_process(args: Sequence[str], *, name: str | None = None,
                  env: Mapping[str, str] | None = None, app_dir: str | Path | None = None,
                  cwd: str | Path | None = None, nice: int = 0) -> Process:
    """Start a child process (a worker, a job) whose output goes to a log file.

    Introduced in *serving/asynchronous* for the queue worker. The child gets
    :func:`child_env` and stays in this process group. ``nice=10`` lowers its CPU
    priority: on one laptop, that stands in for "the workers run on other machines",
    so they cannot starve the servers the chapter is measuring.
    """
    name = name or Path(str(args[-1])).stem
    if nice and shutil.which("nice"):
        args = ["nice", "-n", str(nice), *args]
    _replace(name)
    log_dir = Path(tempfile.mkdtemp(prefix=f"lab-{name}-"))
    log_path = log_dir / "output.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env(env, app_dir), cwd=str(cwd) if cwd else None,
        )
    proc = Process(name, args, popen, log_path)
    _RUNNING[name] = proc
    return proc


def wait_http(url: str, *, timeout: float = 30.0, process: Process | None = None) -> None:
    """Poll ``url`` until it answers 2xx; fail early, with the log, if ``process`` dies."""
    deadline = time.monotonic() + timeout
    last: object = None
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process is not None and not process.alive:
                raise ServerStartError(
                    f"{process.name} exited with code {process.returncode} before {url} "
                    f"answered. Its output:\n{process.log(tail=40)}"
                )
            try:
                response = client.get(url)
                if response.is_success:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as error:
                last = error
            time.sleep(0.05)
    log = f" Its output:\n{process.log(tail=40)}" if process else ""
    raise ServerStartError(f"{url} did not answer within {timeout:.0f} s (last: {last}).{log}")


def wait_for(condition: Callable[[], bool], *, timeout: float = 30.0,
             process: Process | None = None, what: str = "the condition") -> None:
    """Poll ``condition()`` until true; fail early, with its log, if ``process`` dies.

    Introduced in *serving/asynchronous* to wait for a worker's "ready" line.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and not process.alive:
            raise ServerStartError(f"{process.name} exited with code {process.returncode} "
                                   f"before {what} held. Its output:\n{process.log(tail=40)}")
        time.sleep(0.02)
    log = f" Output of {process.name}:\n{process.log(tail=40)}" if process else ""
    raise TimeoutError(f"{what} did not hold within {timeout:.0f} s.{log}")


def serve(app: Any, *, name: str | None = None, mode: str = "thread", port: int = 0,
          factory: bool = False, env: Mapping[str, str] | None = None,
          app_dir: str | Path | None = None, health: str | None = "/health",
          timeout: float = 30.0, workers: int = 1, log_level: str = "warning") -> Server:
    """Serve an ASGI app on 127.0.0.1 and return once it answers ``health``.

    ``app`` is an app object (thread mode) or an import string such as
    ``"web_single_app:create_app"`` (either mode; pass ``factory=True`` for a factory,
    ``app_dir`` for where the module lives). ``port=0`` picks a free port. Use the
    result directly or as a context manager. Introduced in *serving/web-single*.
    """
    if mode not in ("thread", "process"):
        raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
    name = name or (app if isinstance(app, str) else getattr(app, "title", None) or "app")
    _replace(name)
    _check_port(port)
    if mode == "thread":
        server = _serve_thread(app, name, port, factory, app_dir, health, timeout, log_level)
    else:
        if not isinstance(app, str):
            raise TypeError("process mode needs an import string like 'module:app', not an object")
        server = _serve_process(app, name, port, factory, env, app_dir, health, timeout,
                                workers, log_level)
    _RUNNING[name] = server
    return server


def _serve_thread(app: Any, name: str, port: int, factory: bool, app_dir: str | Path | None,
                  health: str | None, timeout: float, log_level: str) -> Server:
    import uvicorn

    if app_dir and str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    config = uvicorn.Config(app, host=HOST, port=port, factory=factory, log_level=log_level,
                            timeout_graceful_shutdown=2, timeout_keep_alive=KEEP_ALIVE_S,
                            lifespan="auto")
    userver = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            userver.run()
        except BaseException as error:  # SystemExit from uvicorn on a bind error, too
            failure.append(error)

    thread = threading.Thread(target=run, name=f"uvicorn-{name}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not userver.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            userver.should_exit = True
            reason = repr(failure[0]) if failure else "it did not start in time"
            raise ServerStartError(f"{name} failed to start in a thread: {reason}")
        time.sleep(0.01)
    bound = userver.servers[0].sockets[0].getsockname()[1]
    server = Server(name, f"http://{HOST}:{bound}", "thread", uvicorn_server=userver,
                    thread=thread)
    if health:
        try:
            wait_http(server.url + health, timeout=timeout)
        except ServerStartError:
            server.stop()
            raise
    return server


def _serve_process(app: str, name: str, port: int, factory: bool,
                   env: Mapping[str, str] | None, app_dir: str | Path | None,
                   health: str | None, timeout: float, workers: int,
                   log_level: str) -> Server:
    attempts = 1 if port else 3  # a port picked here can be taken before the child binds it
    for attempt in range(attempts):
        chosen = port or free_port()
        args = [sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(chosen),
                "--log-level", log_level, "--timeout-graceful-shutdown", "2",
                "--timeout-keep-alive", str(KEEP_ALIVE_S),
                "--workers", str(workers)]
        if factory:
            args.append("--factory")
        if app_dir:
            args += ["--app-dir", str(app_dir)]
        proc = start_process(args, name=name, env=env, app_dir=app_dir)
        server = Server(name, f"http://{HOST}:{chosen}", "process", process=proc)
        try:
            if health:
                wait_http(server.url + health, timeout=timeout, process=proc)
            else:
                _wait_tcp(chosen, timeout, proc)
            if listens_on(proc.pid, chosen) is False:
                # Another process took the port between our choice and the child's bind,
                # and answered the health check: that server is not ours.
                raise ServerStartError(f"port {chosen} was taken by another process: "
                                       "address already in use")
            return server
        except ServerStartError as error:
            log = proc.log() + str(error)
            proc.stop()
            _RUNNING.pop(name, None)
            if "address already in use" in log.lower() and attempt + 1 < attempts:
                continue
            raise
    raise AssertionError("unreachable")


def _wait_tcp(port: int, timeout: float, proc: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive:
            raise ServerStartError(
                f"{proc.name} exited with code {proc.returncode}. Its output:\n{proc.log(40)}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise ServerStartError(f"{proc.name} did not listen on port {port} within {timeout:.0f} s")
