"""redisops health against real servers: each watched quantity is pushed over its warning and its
critical line (the thresholds table's, or a test override where the table's needs thousands of
clients) and the status and exit code follow."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.thresholds import DEFAULT_THRESHOLDS, apply_overrides
from redisops import connection as rc
from redisops import health as health_module
from redisops.health import HealthOptions, run_health
from tests.integration._redisops_servers import (
    Server,
    acl_with,
    new_passwords,
    rendered_server,
    requires_redis,
)
from tests.integration.test_redisops_smoke import run_cli
from tests.support.procs import wait_until

pytestmark = [pytest.mark.slow, requires_redis]
FAST = HealthOptions(sample_seconds=0.5)
SETTLE_S = 30


class SampleWindow:
    """redisops.health's `time`, with `during()` run inside the sampling window (between the two
    INFO samples) instead of a sleep, and that window measured as exactly `seconds`: what happens
    in the window, and so the rates health computes, no longer depend on how a busy machine
    schedules a load thread."""

    def __init__(self, during: Callable[[], None], seconds: float = 1.0) -> None:
        self.during, self.seconds, self.calls = during, seconds, 0

    def sleep(self, _seconds: float) -> None:
        self.during()

    def monotonic(self) -> float:
        self.calls += 1
        return 1000.0 + self.calls * self.seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def health(srv: Server, overrides: dict | None = None, options: HealthOptions = FAST, **env: str):  # type: ignore[no-untyped-def]
    thresholds = apply_overrides(overrides or {}, DEFAULT_THRESHOLDS)
    return run_health(rc.resolve(environ=srv.env(**env)), thresholds, options)


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    with rendered_server(tmp_path / "srv") as s:
        yield s


@contextmanager
def raw_clients(srv: Server, n: int, command: bytes | None = None) -> Iterator[list[socket.socket]]:
    """n authenticated connections, each optionally left inside a blocking command."""
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            pw = srv.passwords["app"].encode()
            s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
            assert s.recv(16).startswith(b"+OK")
            if command:
                s.sendall(command)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


def test_healthy_server_is_ok_and_exit_0(srv: Server) -> None:
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    app.set("rl:{general:u1}:g", "1", px=60_000)
    proc = run_cli(["health", "--sample-seconds", "0.3"], srv.env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "health OK" in proc.stdout
    report = health(srv)
    assert report.level() == "OK"
    keys = report.get("limiter_keys")
    assert keys.data["by_tier"] == {"general": 1} and keys.status == "OK"
    app.close()


def test_memory_usage_warning_then_critical(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", overrides={"maxmemory-policy": "noeviction"}) as srv:
        admin = srv.admin()
        used = int(admin.info("memory")["used_memory"])
        # maxmemory set so that the baseline sits at 70 %, then filled towards the lines.
        admin.config_set("maxmemory", str(int(used / 0.70)))
        limit = int(admin.info("memory")["maxmemory"])

        def fill_to(pct: float) -> None:
            i = 0
            while int(admin.info("memory")["used_memory"]) < limit * pct / 100:
                admin.set(f"fill:{pct}:{i}", "x" * 2000)
                i += 1

        fill_to(84)
        r = health(srv)
        assert r.get("memory_usage").status == "WARNING", r.get("memory_usage").actual
        fill_to(93)
        r = health(srv)
        assert r.get("memory_usage").status == "CRITICAL", r.get("memory_usage").actual
        assert r.level() == "CRITICAL"
        admin.close()


def test_connected_clients_over_warn_and_crit(srv: Server) -> None:
    lines = {"connected_clients": {"warn": 20, "crit": 60}}
    with raw_clients(srv, 30):
        r = health(srv, lines)
        assert r.get("connected_clients").status == "WARNING"
        assert r.level() == "WARNING"
    with raw_clients(srv, 70):
        assert health(srv, lines).get("connected_clients").status == "CRITICAL"


def test_blocked_clients_over_the_tables_lines(srv: Server) -> None:
    blpop = b"*3\r\n$5\r\nBLPOP\r\n$13\r\nhealth:nowait\r\n$1\r\n0\r\n"
    admin = srv.admin()

    def blocked(n: int) -> None:
        wait_until(lambda: int(admin.info("clients")["blocked_clients"]) == n, SETTLE_S, f"{n} clients blocked")

    with raw_clients(srv, 11, blpop):
        blocked(11)
        r = health(srv)
        assert r.get("blocked_clients").status == "WARNING", r.get("blocked_clients").actual
    with raw_clients(srv, 51, blpop):
        blocked(51)
        assert health(srv).get("blocked_clients").status == "CRITICAL"
    admin.close()


@pytest.mark.parametrize(("commands", "level"), [(0, "OK"), (2000, "WARNING"), (6000, "CRITICAL")])
def test_command_rate(srv: Server, commands: int, level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # `commands` PINGs inside a sampling window of exactly 1 s: lines 1000 and 5000 per second.
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    app.ping()  # connected (AUTH, CLIENT SETINFO) before the window

    def load() -> None:
        pipe = app.pipeline(transaction=False)
        for _ in range(commands):
            pipe.ping()
        pipe.execute()

    monkeypatch.setattr(health_module, "time", SampleWindow(load))
    check = health(srv).get("command_rate")
    app.close()
    assert check.status == level, check.actual
    # Health's own first INFO is counted in the window too.
    assert commands <= check.data["value"] <= commands + 2, check.actual


@pytest.mark.parametrize(("misses", "level"), [(20, "OK"), (40, "WARNING"), (60, "CRITICAL")])
def test_keyspace_miss_ratio(srv: Server, misses: int, level: str) -> None:
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    app.set("present", "1")
    for i in range(100):
        app.get(f"absent:{i}" if i < misses else "present")
    check = health(srv).get("keyspace_miss_ratio")
    assert check.status == level, check.actual
    assert f"{misses}.0 %" in check.actual
    app.close()


def test_evictions_are_critical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with rendered_server(tmp_path / "srv", overrides={"maxmemory-policy": "allkeys-lru"}) as srv:
        admin = srv.admin()
        assert health(srv).get("evicted_keys").status == "OK"
        admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 200_000))

        def evict() -> None:  # evictions inside the sampling window
            i = 0
            while int(admin.info("stats")["evicted_keys"]) == 0:
                admin.set(f"fill:{i}", "x" * 2000)
                i += 1

        with monkeypatch.context() as m:
            m.setattr(health_module, "time", SampleWindow(evict))
            check = health(srv).get("evicted_keys")
        assert check.status == "CRITICAL" and int(check.data["value"]) > 0
        # Evictions before the sample are history (shown), not a standing CRITICAL. (Room again,
        # so that the reply buffers of the next samples cannot push out another key.)
        admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 50_000_000))
        later = health(srv).get("evicted_keys")
        assert later.status == "OK" and later.data["value"] == 0 and later.data["since_start"] > 0, later.actual
        admin.close()


def test_limiter_key_without_ttl_is_critical(srv: Server) -> None:
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    app.set("rl:{auth:u1}:g", "1", px=60_000)
    app.set("rl:{auth:u2}:g", "1")  # a limiter key that would live forever
    check = health(srv).get("limiter_keys")
    assert check.status == "CRITICAL"
    assert check.data["without_ttl"] == ["rl:{auth:u2}:g"]
    assert check.data["by_tier"] == {"auth": 2}
    app.close()


def test_scan_budget_bounds_the_work(srv: Server) -> None:
    app = redis.Redis(port=srv.port, password=srv.passwords["app"])
    pipe = app.pipeline(transaction=False)
    for i in range(300):
        pipe.set(f"rl:{{general:u{i}}}:g", "1", px=60_000)
    pipe.execute()
    check = health(srv, options=HealthOptions(sample_seconds=0.2, scan_budget=50)).get("limiter_keys")
    assert check.data["scanned"] == 50 and "scan budget reached" in check.actual
    app.close()


def test_replica_with_link_down_is_critical(tmp_path: Path, srv: Server) -> None:
    admin = srv.admin()
    # Point the server at a primary that does not exist: role slave, link down.
    admin.execute_command("REPLICAOF", "127.0.0.1", "1")
    try:
        check = health(srv).get("replication_link_down")
        assert check.status == "CRITICAL" and "link down" in check.actual
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()


def test_slowlog_needs_admin_and_is_listed(srv: Server) -> None:
    admin = srv.admin()
    admin.config_set("slowlog-log-slower-than", "0")
    admin.set("k", "v")
    as_admin = health(srv).get("slowlog")
    assert as_admin.data["top"], as_admin.actual
    as_app = health(srv, options=HealthOptions(sample_seconds=0.2, use_admin=False)).get("slowlog")
    assert "not readable" in as_app.actual
    admin.close()


def test_unreachable_is_critical_exit_2(tmp_path: Path) -> None:
    from tests.support.redisproc import free_port

    proc = run_cli(["health"], {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_PASSWORD": "x" * 20})
    assert proc.returncode == 2
    assert "CRITICAL" in proc.stdout


def test_a_refused_query_is_a_critical_report_not_a_traceback(tmp_path: Path) -> None:
    passwords = new_passwords()
    # The app user may PING but not INFO: NOPERM mid-run.
    acl = acl_with(passwords, app_line=f"user default on >{passwords['app']} ~* &* -@all +ping")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=passwords) as srv:
        json_path = tmp_path / "h.json"
        proc = run_cli(["health", "--as-app", "--sample-seconds", "0.1", "--json", str(json_path)], srv.env())
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and "health-error" in proc.stdout
        text = json_path.read_text()
        assert '"health-error"' in text and "NoPermissionError" in text and '"level": "CRITICAL"' in text
        for pw in passwords.values():
            assert pw not in text and pw not in proc.stdout


def test_cli_threshold_override_gives_exit_1(srv: Server) -> None:
    with raw_clients(srv, 8):
        proc = run_cli(["health", "--sample-seconds", "0.2", "--threshold", "connected_clients=5:100", "--json",
                        str(srv.data_dir / "h.json")], srv.env())
    assert proc.returncode == 1, proc.stdout
    assert "health WARNING" in proc.stdout
    text = (srv.data_dir / "h.json").read_text()
    assert '"level": "WARNING"' in text
    for pw in srv.passwords.values():
        assert pw not in text and pw not in proc.stdout
