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


# Ports handed out by free_port(), each held by a bound, non-listening SO_REUSEADDR socket.
# A port picked with bind(0) and closed again can be taken by anyone (another test process on
# this shared machine picking its own free port, or an outgoing connection's local port) before
# the server binds it, and then either the server fails to start or the test talks to a stranger.
# Held like this, the kernel hands the port to nobody else: bind(0) and connect() skip it and
# an explicit bind without SO_REUSEADDR fails. redis-server, redis-sentinel and the Go programs
# (prometheus, redis_exporter) listen with SO_REUSEADDR, which Linux allows beside a
# non-listening holder, so the intended server still binds it (and rebinds it on a restart even
# with connections in TIME_WAIT), while a connection to a port nobody listens on is refused.
_RESERVED: dict[int, list[socket.socket]] = {}
_MAX_RESERVED = 512  # oldest released first; one file descriptor each


def _hold(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        raise
    return s


def free_port(*, cluster_bus: bool = False) -> int:
    """A loopback port from the OS, held for this test session (see _RESERVED) so that only the
    server it is meant for can bind it; with `cluster_bus`, port + 10000 is held too (a cluster
    node binds both). Ports stay at most 55535 so that port + 10000 is valid. Connecting to a
    held port that no server listens on is refused: it doubles as a "nothing listens here" port."""
    while True:
        s = _hold(0)
        port = int(s.getsockname()[1])
        held = [s]
        if port > 55535:
            s.close()
            continue
        if cluster_bus:
            try:
                held.append(_hold(port + 10000))
            except OSError:
                s.close()
                continue
        while len(_RESERVED) >= _MAX_RESERVED:
            for old in _RESERVED.pop(next(iter(_RESERVED))):
                old.close()
        _RESERVED[port] = held
        return port


def free_port_block(n: int, *, cluster_bus: bool = False) -> int:
    """The first of `n` consecutive loopback ports, all held like free_port()'s (with
    `cluster_bus`, each port + 10000 too): for a server set configured by a base port and an
    offset (the dev stack's cluster topology: node i on base + i)."""
    for _ in range(200):
        base = free_port(cluster_bus=cluster_bus)
        if base + n - 1 > 55535:
            continue
        held: list[socket.socket] = []
        try:
            for p in range(base + 1, base + n):
                held.append(_hold(p))
                if cluster_bus:
                    held.append(_hold(p + 10000))
        except OSError:
            for h in held:
                h.close()
            continue
        for i, p in enumerate(range(base + 1, base + n)):
            _RESERVED[p] = held[i * (2 if cluster_bus else 1):(i + 1) * (2 if cluster_bus else 1)]
        return base
    raise RuntimeError(f"no {n} consecutive free loopback ports found")


class PortInUse(RuntimeError):
    """The server could not bind its port: another process holds it."""


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1",
                  proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on host:port; with `proc`, stop early (and say
    so) when that process has exited, e.g. because it could not bind the port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(f"the process exited with status {proc.returncode} before listening on {host}:{port}")
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

    def start(self, write_config: bool = True, timeout: float = 30.0) -> RedisProcess:
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
            wait_for_port(self.port, timeout, proc=self.proc)
        except TimeoutError as exc:
            self.stop()
            log = self.log_tail()
            error = PortInUse if "Address already in use" in log else RuntimeError
            raise error(f"redis did not start on port {self.port} ({exc}); log:\n{log}") from None
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

    def paused(self) -> bool:
        """Stopped by pause() (state T in /proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "T"

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

    def signal_stop(self) -> None:
        """SIGCONT + SIGTERM without waiting (see stop_all)."""
        if self.proc is not None and self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    return

    def restart(self) -> RedisProcess:
        self.stop()
        return self.start(write_config=False)


def stop_all(processes: list[RedisProcess], timeout: float = 10.0) -> None:
    """Stop several servers at once (each is told first, then each is waited for, killed if it
    will not go), so that no primary waits out shutdown-timeout for replicas stopping after it."""
    for p in processes:
        p.signal_stop()
    for p in processes:
        p.stop(timeout)


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
