"""Dev stack process handling without real services: a start that never gets healthy is reaped
(SIGTERM, then SIGKILL, then waited for) and was in the state file before the wait; the Pulumi
CLI is bounded by a timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from redisops import devstack as ds


class FastClock:
    """devstack's `time` with a clock that passes the 30 s health deadline at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10.0
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.01))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_start_that_never_gets_healthy_is_killed_and_reaped_and_was_recorded_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A service that ignores SIGTERM and never listens.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    spec = ds.ContainerSpec("redis", "redis:7", "redis", ("redis-server",), ("-c", code), {}, (),
                            ((6379, free_port(), "127.0.0.1"),), ())
    monkeypatch.setattr(ds, "local_program", lambda _e: sys.executable)

    def not_listening(*_a: object) -> bool:  # once the service ignores SIGTERM
        deadline = time.monotonic() + 10
        while "up" not in (tmp_path / "redis.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        return False

    monkeypatch.setattr(ds, "_wait_port", not_listening)
    monkeypatch.setattr(ds, "time", FastClock())
    recorded: list[dict[str, Any]] = []
    remap = ds.Remap.build({"redis": spec}, tmp_path)
    with pytest.raises(ds.DevStackError, match="not healthy"):
        ds.start_process(spec, remap, tmp_path, on_started=recorded.append)
    assert len(recorded) == 1 and recorded[0]["port"] == spec.ports[0][1]
    pid = recorded[0]["pid"]
    with pytest.raises(ProcessLookupError):  # gone, and no zombie left behind
        os.kill(pid, 0)


def test_pulumi_cli_calls_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(argv: list[str], **kw: Any) -> Any:
        seen.update(kw)
        raise subprocess.TimeoutExpired(argv, kw["timeout"])

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(ds.DevStackError, match="did not finish within"):
        ds._pulumi(tmp_path, "dev", "up", "--yes")
    assert 0 < seen["timeout"] <= 3600
    with pytest.raises(ds.DevStackError, match="did not finish within"):
        ds._up_docker(tmp_path, "dev", tmp_path, print)
