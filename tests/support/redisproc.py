"""Real redis-server / redis-sentinel processes on loopback for tests.

A server is started from a config *text* (what the renderers produce) written into its own
temporary directory, on a free loopback port, and stopped by PID. Nothing here talks to
anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"


def have_redis() -> bool:
    return os.path.exists(REDIS_SERVER)


def free_port() -> int:
    """A free loopback port at most 55535: a cluster node also binds port + 10000."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= 55535:
            return port


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class RedisProcess:
    """One redis-server (or redis-sentinel) started from a config file in `workdir`."""

    workdir: Path
    config_text: str
    port: int
    sentinel: bool = False
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / ("sentinel.conf" if self.sentinel else "redis.conf")

    @property
    def log_path(self) -> Path:
        return self.workdir / ("sentinel.log" if self.sentinel else "redis.log")

    def start(self, write_config: bool = True, timeout: float = 10.0) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if write_config:
            self.config_path.write_text(self.config_text)
            self.config_path.chmod(0o600)
        binary = REDIS_SENTINEL if self.sentinel else REDIS_SERVER
        # The port, bind address, working dir and log file are appended so that a rendered
        # config is used as-is while tests stay on loopback with a free port.
        args = [
            binary,
            str(self.config_path),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
            *self.extra_args,
        ]
        with open(self.workdir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir)
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"redis did not start; log:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for p in (self.log_path, self.workdir / "stdout.log"):
            if p.exists():
                text += p.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill9(self) -> None:
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
            assert self.proc is not None
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def restart(self) -> RedisProcess:
        self.stop()
        return self.start(write_config=False)


@contextmanager
def redis_process(workdir: Path, config_text: str, port: int | None = None, *,
                  sentinel: bool = False, extra_args: list[str] | None = None) -> Iterator[RedisProcess]:
    """Start a server whose config already names `port` (pass it) or gets `--port` appended."""
    port = port or free_port()
    args = list(extra_args or [])
    if f"port {port}" not in config_text and f"tls-port {port}" not in config_text:
        args += ["--port", str(port)]
    rp = RedisProcess(workdir=workdir, config_text=config_text, port=port, sentinel=sentinel, extra_args=args)
    rp.start()
    try:
        yield rp
    finally:
        rp.stop()
