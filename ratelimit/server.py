"""A throwaway redis-server on loopback for the benchmark (and anything else that needs one).

No password and no persistence: the benchmark measures the limiter, and redis-benchmark must
not carry a secret on its argv.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any


def memory_in_use(r: Any) -> int:
    """used_memory without the clients' query/output buffers (INFO memory mem_clients_normal and
    mem_clients_slaves), which come and go with the pipelines and replies around a reading: what
    every "bytes per key" figure here (ratelimit.bench, ratelimit.clusterbench, redisops.plancheck)
    is a difference of."""
    info = r.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0)) - int(info.get("mem_clients_slaves", 0))


def _held_port() -> socket.socket:
    """A loopback port from the OS, held by a bound, never-listening SO_REUSEADDR socket until the
    server listens: meanwhile nobody else is handed it (a port picked and released at once can be
    taken by another process before the server binds it), while redis-server, which binds with
    SO_REUSEADDR, can."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


class LocalRedis:
    """`with LocalRedis() as srv: redis.Redis(port=srv.port)`; stopped (and its dir removed) on exit."""

    def __init__(self, binary: str | None = None, extra_args: list[str] | None = None,
                 wrapper: list[str] | None = None) -> None:
        """`wrapper`: a command the server runs under (e.g. valgrind and its options)."""
        found = binary or shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(found).exists():
            raise FileNotFoundError("redis-server not found; install it (Debian: apt-get install redis-server)")
        self.binary = found
        self.extra_args = list(extra_args or [])
        self.wrapper = list(wrapper or [])
        self.port = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> LocalRedis:
        self._dir = tempfile.TemporaryDirectory(prefix="ratelimit-redis-")
        with _held_port() as holder:
            self.port = int(holder.getsockname()[1])
            args = [*self.wrapper, self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no",
                    "--logfile", str(Path(self._dir.name) / "redis.log"), *self.extra_args]
            self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}")

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing (a stalled Redis)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)  # a paused server could not act on SIGTERM
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
