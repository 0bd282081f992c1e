"""Reports (JSON, JUnit, table), health levels from the thresholds table, and the CLI's usage
errors (exit 2, naming the flag) - all without a server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from infra.thresholds import DEFAULT_THRESHOLDS, thresholds_by_name
from redisops.cli import _threshold_overrides, app
from redisops.errors import UsageError
from redisops.health import _tier_of, level_for
from redisops.report import Check, Report, render_table, summary_line, to_json, to_junit

SECRET = "hunter2-but-longer-0123"
runner = CliRunner()


def sample() -> Report:
    r = Report("smoke", "redis://127.0.0.1:6379/0")
    r.add(Check("reachable", "pass", "TCP connect", "connected in 0.1 ms"))
    r.add(Check("auth-app-login", "fail", "PONG", f"WRONGPASS for {SECRET}", detail="check REDIS_PASSWORD"))
    r.add(Check("memory-policy", "skip", detail="no expectation"))
    r.add(Check("tls", "warn", "verified", "NOT verified [insecure]"))
    r.duration_s = 0.42
    return r


def test_json_report_is_complete_and_redacted() -> None:
    data = json.loads(to_json(sample(), (SECRET,)))
    assert data["passed"] is False and data["duration_s"] == 0.42
    assert [c["name"] for c in data["checks"]] == ["reachable", "auth-app-login", "memory-policy", "tls"]
    assert SECRET not in json.dumps(data) and "WRONGPASS for ****" in json.dumps(data)


def test_junit_counts_failures_and_skips_and_redacts() -> None:
    text = to_junit(sample(), (SECRET,))
    assert SECRET not in text
    suite = ET.fromstring(text.split("?>", 1)[1])
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["auth-app-login"].find("failure")
    assert failure is not None and failure.get("message") == "expected PONG; actual WRONGPASS for ****"
    assert cases["memory-policy"].find("skipped") is not None
    assert cases["reachable"].find("failure") is None


def test_table_shows_markup_like_text_verbatim_and_summary_names_failures() -> None:
    console = Console(record=True, width=200)
    render_table(sample(), console, (SECRET,))
    text = console.export_text()
    assert "NOT verified [insecure]" in text and SECRET not in text
    assert summary_line(sample()) == "smoke FAILED: 1 passed, 1 failed (auth-app-login), 1 warning, 1 skipped in 0.42 s"


def test_health_level_is_the_worst_check() -> None:
    r = Report("health", "x")
    r.add(Check("a", "OK"))
    assert r.level() == "OK"
    r.add(Check("b", "WARNING"))
    assert r.level() == "WARNING" and r.passed
    r.add(Check("c", "CRITICAL"))
    assert r.level() == "CRITICAL" and not r.passed


@pytest.mark.parametrize(("name", "value", "level"), [
    ("memory_usage", 79.9, "OK"), ("memory_usage", 80.1, "WARNING"), ("memory_usage", 90.5, "CRITICAL"),
    ("connected_clients", 1000, "OK"), ("connected_clients", 1001, "WARNING"), ("connected_clients", 5001, "CRITICAL"),
    ("blocked_clients", 11, "WARNING"), ("blocked_clients", 51, "CRITICAL"),
    ("keyspace_miss_ratio", 30.5, "WARNING"), ("keyspace_miss_ratio", 50.5, "CRITICAL"),
    ("evicted_keys", 0, "OK"), ("evicted_keys", 1, "CRITICAL"),
    ("rdb_last_bgsave_failed", 1, "OK"), ("rdb_last_bgsave_failed", 0, "CRITICAL"),
])
def test_level_for_uses_the_table(name: str, value: float, level: str) -> None:
    assert level_for(thresholds_by_name(DEFAULT_THRESHOLDS)[name], value) == level


@pytest.mark.parametrize(("key", "tier"), [("rl:{general:u1}:g", "general"), ("rl:{mfa:user:42}:s", "mfa"),
                                          ("rl:legacy:u1", "legacy")])
def test_tier_of_limiter_keys(key: str, tier: str) -> None:
    assert _tier_of(key) == tier


def test_threshold_flag_parsing() -> None:
    assert _threshold_overrides(["memory_usage=75:85", "connected_clients=:100", "blocked_clients=5:-"]) == {
        "memory_usage": {"warn": 75.0, "crit": 85.0}, "connected_clients": {"crit": 100.0},
        "blocked_clients": {"warn": 5.0, "crit": None}}
    for bad in ("memory_usage", "memory_usage=75", "memory_usage=a:b", "=1:2"):
        with pytest.raises(UsageError, match="--threshold"):
            _threshold_overrides([bad])


def invoke(args: list[str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    base = {"REDIS_URL": "", "REDIS_PASSWORD": "", "REDIS_ADMIN_PASSWORD": ""}
    return runner.invoke(app, args, env={**base, **(env or {})})


@pytest.mark.parametrize(("args", "env", "fragment"), [
    (["smoke"], {}, "REDIS_URL is not set"),
    (["smoke", "--expect-aof", "maybe"], {"REDIS_URL": "redis://127.0.0.1:1"}, "--expect-aof 'maybe': expected yes or no"),
    (["smoke", "--expect-policy", "lru"], {"REDIS_URL": "redis://127.0.0.1:1"}, "--expect-policy 'lru': expected one of"),
    (["smoke", "--expect-maxmemory", "8xb"], {"REDIS_URL": "redis://127.0.0.1:1"}, "--expect-maxmemory '8xb'"),
    (["health", "--threshold", "memory_usage=95:90"], {"REDIS_URL": "redis://127.0.0.1:1"}, "must be below crit"),
    (["health", "--threshold", "nosuch=1:2"], {"REDIS_URL": "redis://127.0.0.1:1"}, "unknown threshold"),
    (["backup", "--to", "/tmp/x", "--keep", "0"], {"REDIS_URL": "redis://127.0.0.1:1",
                                                   "REDIS_ADMIN_PASSWORD": "a" * 20}, "--keep 0"),
    (["env"], {}, "env needs --stack-outputs FILE or --stack NAME"),
])
def test_usage_errors_exit_2_naming_the_input(args: list[str], env: dict[str, str], fragment: str) -> None:
    result = invoke(args, env)
    assert result.exit_code == 2, result.output
    assert fragment in result.output


def test_typer_usage_errors_also_exit_2() -> None:
    assert invoke(["backup"]).exit_code == 2  # --to missing
    assert invoke(["smoke", "--concurrency", "0"]).exit_code == 2


def test_env_command_masks_the_password_unless_asked(tmp_path: Path) -> None:
    f = tmp_path / "o.json"
    f.write_text(json.dumps({"env": {"REDIS_URL": "rediss://h:6379/0", "REDIS_PASSWORD": SECRET, "REDIS_TLS": "true",
                                     "RATE_LIMIT_GENERAL": "120,60"}}))
    masked = invoke(["env", "--stack-outputs", str(f)])
    assert masked.exit_code == 0
    assert 'REDIS_PASSWORD="****"' in masked.stdout and SECRET not in masked.stdout
    assert "RATE_LIMIT_GENERAL=120,60" in masked.stdout
    shown = invoke(["env", "--stack-outputs", str(f), "--show-secrets"])
    assert f"REDIS_PASSWORD={SECRET}" in shown.stdout


def test_env_command_masks_every_password_token_and_secret(tmp_path: Path) -> None:
    others = {"REDIS_SENTINEL_PASSWORD": SECRET + "-s", "REDIS_ADMIN_PASSWORD": SECRET + "-a",
              "REDIS_MONITOR_PASSWORD": SECRET + "-m", "GRAFANA_TOKEN": SECRET + "-t", "APP_SECRET": SECRET + "-x"}
    f = tmp_path / "o.json"
    f.write_text(json.dumps({"env": {"REDIS_URL": "redis://h:6379/0", "REDIS_PASSWORD": SECRET, **others}}))
    masked = invoke(["env", "--stack-outputs", str(f)])
    assert masked.exit_code == 0
    assert SECRET not in masked.stdout
    for name in others:
        assert f'{name}="****"' in masked.stdout
    shown = invoke(["env", "--stack-outputs", str(f), "--show-secrets"])
    assert all(v in shown.stdout for v in others.values())


def test_restore_of_a_directory_without_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(["restore", "--from", str(tmp_path)], {"REDIS_URL": "redis://127.0.0.1:1"})
    assert result.exit_code == 2 and "no manifest.json" in result.output


class FakeInfoClient:
    """INFO samples in order; everything else answers as an idle server."""

    def __init__(self, *samples: dict) -> None:
        self.samples = list(samples)

    def ping(self) -> bool:
        return True

    def info(self, section: str = "all") -> dict:
        base = {"used_memory": 1, "maxmemory": 100, "total_commands_processed": 0, "rdb_last_bgsave_status": "ok",
                "role": "master"}
        return {**base, **self.samples.pop(0)}

    def scan_iter(self, **kw: object) -> list:
        return []

    def pipeline(self, transaction: bool = False) -> FakeInfoClient:
        return self

    def slowlog_get(self, n: int) -> list:
        return []

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("before", "after", "level"), [(7, 7, "OK"), (7, 9, "CRITICAL"), (0, 0, "OK")])
def test_evictions_and_rejections_are_judged_on_the_sample_not_since_start(
        monkeypatch: pytest.MonkeyPatch, before: int, after: int, level: str) -> None:
    from redisops import connection as rc
    from redisops.health import HealthOptions, run_health

    a = {"evicted_keys": before, "rejected_connections": before}
    b = {"evicted_keys": after, "rejected_connections": after}
    monkeypatch.setattr(rc, "client", lambda spec, role: FakeInfoClient(a, b))
    spec = rc.spec_from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    report = run_health(spec, options=HealthOptions(sample_seconds=0.01))
    for name in ("evicted_keys", "rejected_connections"):
        check = report.get(name)
        assert check.status == level, check.actual
        assert check.data["value"] == after - before and check.data["since_start"] == after
        assert f"({after} since start)" in check.actual
