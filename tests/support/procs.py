"""Real prometheus-redis-exporter and prometheus processes on loopback, for tests.

Companion of `redisproc`: each process gets the argv/env/config text the stack would hand to
its container, runs in its own work directory with its output in a log file, and is
stopped by PID. Reusable by the container-less end-to-end run of the dev stack:

    with ProcessGroup() as procs:
        exp = procs.add(start_exporter(tmp / "exporter", exporter_command(...), port))
        prom = procs.add(start_prometheus(tmp / "prometheus", config_text, {"redis-alerts.yml": rules}, port))
        wait_until(lambda: prometheus_targets_up(prom.url), 20, "targets up")
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tests.support.redisproc import PortInUse, wait_for_port

EXPORTER = shutil.which("prometheus-redis-exporter") or shutil.which("redis_exporter") or \
    "/usr/bin/prometheus-redis-exporter"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def have_exporter() -> bool:
    return os.path.exists(EXPORTER)


def have_prometheus() -> bool:
    return os.path.exists(PROMETHEUS)


class _ExporterCommand(Protocol):
    @property
    def args(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> Mapping[str, str]: ...


@dataclass
class ManagedProcess:
    """One long-running program with its log in `workdir`, stopped by PID."""

    name: str
    argv: list[str]
    workdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> ManagedProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A minimal environment: nothing from the caller's environment (e.g. a stray
        # REDIS_PASSWORD) may change what the process does.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir), **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         env=env, start_new_session=True)
        try:
            wait_for_port(self.port, timeout, proc=self.proc)
        except TimeoutError as exc:
            self.stop()
            log = self.log_text()[-3000:]
            error = PortInUse if "address already in use" in log.lower() else RuntimeError
            raise error(f"{self.name} did not listen on {self.port} ({exc}); log:\n{log}") from None
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cmdline(self) -> list[str]:
        """What every local user can read about this process."""
        raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        return [a.decode(errors="replace") for a in raw.split(b"\0") if a]

    def environ(self) -> dict[str, str]:
        raw = Path(f"/proc/{self.pid}/environ").read_bytes()
        pairs = (a.decode(errors="replace").partition("=") for a in raw.split(b"\0") if a)
        return {k: v for k, _, v in pairs}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)


P = TypeVar("P", bound="ManagedProcess")


class ProcessGroup:
    """Stops everything added to it (in reverse order) on exit, whatever happened."""

    def __init__(self) -> None:
        self._stoppers: list[Callable[[], None]] = []

    def add(self, process: P) -> P:
        self._stoppers.append(process.stop)
        return process

    def on_exit(self, stop: Callable[[], None]) -> None:
        """For other kinds of processes (e.g. tests.support.redisproc.RedisProcess.stop)."""
        self._stoppers.append(stop)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        errors: list[BaseException] = []
        for stop in reversed(self._stoppers):
            try:
                stop()
            except Exception as e:  # keep stopping the others
                errors.append(e)
        if errors and exc[0] is None:
            raise errors[0]


def start_exporter(workdir: Path, command: _ExporterCommand, port: int | None = None,
                   timeout: float = 30.0) -> ManagedProcess:
    """redis_exporter from an `infra.monitoring.grafana.ExporterCommand` (args + env).

    `port` defaults to the one in the command's -web.listen-address.
    """
    args = list(command.args)
    if port is None:
        port = int(args[args.index("-web.listen-address") + 1].rpartition(":")[2])
    return ManagedProcess("exporter", [EXPORTER, *args], workdir, port, env=dict(command.env)).start(timeout)


def start_prometheus(workdir: Path, config_text: str, rule_files: Mapping[str, str], port: int,
                     timeout: float = 30.0) -> ManagedProcess:
    """prometheus with `config_text` as prometheus.yml and `rule_files` (name -> text) beside it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config_text)
    for name, text in rule_files.items():
        (workdir / name).write_text(text)
    argv = [
        PROMETHEUS,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    prom = ManagedProcess("prometheus", argv, workdir, port).start(timeout)
    try:
        wait_until(lambda: http_status(f"{prom.url}/-/ready") == 200, timeout, "prometheus /-/ready")
    except TimeoutError:
        prom.stop()  # not handed to the caller yet: nobody else would stop it
        raise
    return prom


# ---- HTTP and polling helpers (loopback only) ------------------------------------------------


def _loopback(url: str) -> str:
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"tests only talk to loopback, not {url}")
    return url


def http_status(url: str, timeout: float = 10.0) -> int:
    try:
        with urllib.request.urlopen(_loopback(url), timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


# Generous: a loopback server that answers at all answers in milliseconds; these only bound a hang.
def http_text(url: str, timeout: float = 30.0) -> str:
    with urllib.request.urlopen(_loopback(url), timeout=timeout) as r:
        return str(r.read().decode())


def http_json(url: str, params: Mapping[str, str] | None = None, timeout: float = 30.0) -> Any:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        return json.loads(http_text(url, timeout))
    except urllib.error.HTTPError as e:
        # Prometheus answers query errors with 400 and a JSON body that names the problem.
        return json.loads(e.read().decode())


T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; its last exception or value is reported."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def exporter_metric_names(metrics_text: str) -> set[str]:
    """Metric names in a Prometheus text exposition."""
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def prometheus_targets_up(prom_url: str, expected: int, job: str | None = None) -> bool:
    """`expected` targets (of scrape job `job`, when given), every one up."""
    targets = http_json(f"{prom_url}/api/v1/targets")["data"]["activeTargets"]
    if job is not None:
        targets = [t for t in targets if t["labels"].get("job") == job]
    return len(targets) == expected and all(t["health"] == "up" for t in targets)


def prometheus_rules(prom_url: str) -> list[dict[str, Any]]:
    groups = http_json(f"{prom_url}/api/v1/rules")["data"]["groups"]
    return [rule for g in groups for rule in g["rules"]]


def prometheus_query(prom_url: str, expr: str) -> dict[str, Any]:
    """The /api/v1/query answer: {"status": "success"|"error", "data"|"error": ...}."""
    result: dict[str, Any] = http_json(f"{prom_url}/api/v1/query", {"query": expr})
    return result
