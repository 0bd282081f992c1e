"""Rendered prometheus.yml and alert rules, checked and unit-tested by the real promtool.

Every alert of the rules file gets synthetic series that make it FIRE (with its exact labels
and annotations, value included) and then CLEAR; coverage of that is asserted from the rules
file itself, so a new threshold without a scenario fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.monitoring.prometheus import (
    INSTANCE_TEMPLATE,
    RULES_FILE_NAME,
    VALUE_TEMPLATE,
    alert_annotations,
    render_alert_rules,
    render_prometheus_config,
)
from infra.thresholds import (
    CLUSTER_TARGET_LABEL,
    DEFAULT_THRESHOLDS,
    Threshold,
    apply_overrides,
    thresholds_by_name,
)

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package: prometheus)")

STEP = 15  # seconds between synthetic samples and between rule evaluations
INSTANCE = "redis-exporter:9121"
BASE_LABELS = {"instance": INSTANCE, "job": "redis"}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    # Generous: a hung promtool fails the test; a slow one on a busy machine must not.
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


# ---- synthetic series -----------------------------------------------------------------

Phases = list[tuple[float, int]]  # (value or per-second rate, duration in seconds)


def gauge(phases: Phases) -> list[float]:
    out: list[float] = []
    for value, seconds in phases:
        out += [value] * (seconds // STEP)
    return out


def counter(phases: Phases) -> list[float]:
    out: list[float] = []
    total = 0.0
    for rate, seconds in phases:
        for _ in range(seconds // STEP):
            out.append(total)
            total += rate * STEP
    return out


def series_text(values: list[float]) -> str:
    return " ".join(repr(round(v, 6)) for v in values)


def selector(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


@dataclass
class Scenario:
    """Series for one threshold and what must be firing at given times.

    `expect` maps eval seconds -> {severity: humanized value}; an empty dict asserts that
    nothing of this alert is firing at that time.
    """

    threshold: str
    title: str
    series: dict[str, list[float]]
    expect: dict[int, dict[str, str]]
    alert_labels: dict[str, str] = field(default_factory=dict)  # labels beyond BASE_LABELS


M = 60  # one minute
# Breach phase: a series starts with it, so even a [5m] window reads the breach from its first
# samples; the longest `for:` (5m) has fired well before FIRE - M (checked there).
FIRE = 13 * M
OK = 8 * M  # recovery phase: longer than every range window (5m) plus a step


def level_scenarios(name: str, build: Callable[[Phases], dict[str, list[float]]],
                    both: tuple[float, str], warn_only: tuple[float, str] | None, ok: float,
                    extra_labels: dict[str, str] | None = None) -> list[Scenario]:
    """Fire both lines (then clear), and fire only the warning at a level between the lines."""
    level, shown = both
    out = [Scenario(name, "fires then clears", build([(level, FIRE), (ok, OK)]),
                    {FIRE - M: {"warning": shown, "critical": shown} if warn_only else {"critical": shown},
                     FIRE + OK - STEP: {}}, extra_labels or {})]
    if warn_only is not None:
        wlevel, wshown = warn_only
        out.append(Scenario(name, "warning only between the lines", build([(wlevel, FIRE)]),
                            {FIRE - M: {"warning": wshown}}, extra_labels or {}))
    return out


def one(metric: str, kind: Callable[[Phases], list[float]], labels: dict[str, str] | None = None
        ) -> Callable[[Phases], dict[str, list[float]]]:
    return lambda phases: {selector(metric, {**BASE_LABELS, **(labels or {})}): kind(phases)}


def memory(phases: Phases, maxmemory: float = 100e6) -> dict[str, list[float]]:
    used = gauge([(pct / 100 * 100e6, s) for pct, s in phases])
    return {
        selector("redis_memory_used_bytes", BASE_LABELS): used,
        selector("redis_memory_max_bytes", BASE_LABELS): [maxmemory] * len(used),
    }


def lookups(phases: Phases, per_second: float = 100) -> dict[str, list[float]]:
    """Miss ratio `pct` at `per_second` lookups."""
    return {
        selector("redis_keyspace_misses_total", BASE_LABELS): counter([(per_second * p / 100, s) for p, s in phases]),
        selector("redis_keyspace_hits_total", BASE_LABELS): counter([(per_second * (100 - p) / 100, s) for p, s in phases]),
    }


def cpu(phases: Phases) -> dict[str, list[float]]:
    return {
        selector("redis_cpu_sys_main_thread_seconds_total", BASE_LABELS): counter([(p / 100 * 0.4, s) for p, s in phases]),
        selector("redis_cpu_user_main_thread_seconds_total", BASE_LABELS): counter([(p / 100 * 0.6, s) for p, s in phases]),
    }


def slots_ok(phases: Phases) -> dict[str, list[float]]:
    """`unserved` slots of 16384 not ok."""
    return {selector("redis_cluster_slots_ok", BASE_LABELS): gauge([(16384 - u, s) for u, s in phases])}


def cluster_node(phases: Phases) -> dict[str, list[float]]:
    """redis_up of a node whose exporter reported cluster_enabled 1 within the hour."""
    up = gauge(phases)
    return {selector("redis_up", BASE_LABELS): up,
            selector("redis_cluster_enabled", BASE_LABELS): [1.0] * len(up)}


CLUSTER = {CLUSTER_TARGET_LABEL: "true"}  # the scrape config's static label on cluster targets
REPLICA = {"master_host": "10.0.0.1", "master_port": "6379"}
LAGGING = {"slave_ip": "10.0.0.2", "slave_port": "6379", "slave_state": "online"}


def rdb_age_scenarios() -> list[Scenario]:
    """The last save is `age0` seconds old at t=0 (time() starts at 0 in promtool), so a line
    hours away is crossed minutes into the test instead of hours."""
    ts = selector("redis_rdb_last_save_timestamp_seconds", BASE_LABELS)
    changes = selector("redis_rdb_changes_since_last_save", BASE_LABELS)
    n, recover = FIRE // STEP, OK // STEP

    def unsaved_then_saving(age0: int) -> dict[str, list[float]]:
        # Writes pile up with no save since -age0; then saves resume (the timestamp follows time).
        return {ts: [float(-age0)] * n + [float((n + i) * STEP) for i in range(recover)],
                changes: [5.0] * n + [0.0] * recover}

    warn_age0 = 3600 - 5 * M  # crosses the 1 h line at t=5m
    crit_age0 = 21600 - 5 * M  # crosses the 6 h line at t=5m, far above the 1 h line from the start
    # An old save is fine while nothing changed since: no write, nothing to lose.
    idle = {ts: [float(-crit_age0 - 3600)] * n, changes: [0.0] * n}
    return [
        Scenario("rdb_last_save_age", "warning once an hour old, clears after a save", unsaved_then_saving(warn_age0),
                 {4 * M: {}, FIRE - M: {"warning": "4.02k"}, FIRE + OK - STEP: {}}),
        Scenario("rdb_last_save_age", "critical once six hours old, clears after a save",
                 unsaved_then_saving(crit_age0),
                 {7 * M: {"warning": "21.72k"}, FIRE - M: {"warning": "22.02k", "critical": "22.02k"},
                  FIRE + OK - STEP: {}}),
        Scenario("rdb_last_save_age", "no unsaved changes: silent", idle, {FIRE - M: {}}),
    ]


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    out += level_scenarios("memory_usage", memory, (95, "95"), (85, "85"), 50)
    out.append(Scenario("memory_usage", "maxmemory 0: no division by zero, silent",
                        memory([(95, FIRE)], maxmemory=0), {FIRE - M: {}}))
    out += level_scenarios("command_rate", one("redis_commands_processed_total", counter),
                           (6000, "6k"), (1200, "1.2k"), 100)
    out += level_scenarios("connected_clients", one("redis_connected_clients", gauge), (6000, "6k"), (1500, "1.5k"), 50)
    out += level_scenarios("blocked_clients", one("redis_blocked_clients", gauge), (60, "60"), (20, "20"), 0)
    out += level_scenarios("keyspace_miss_ratio", lookups, (60, "60"), (40, "40"), 5)
    out.append(Scenario("keyspace_miss_ratio", "zero traffic: silent", lookups([(0, FIRE)], per_second=0),
                        {FIRE - M: {}}))
    out.append(Scenario("keyspace_miss_ratio", "below the lookup floor: silent",
                        lookups([(100, FIRE)], per_second=0.5), {FIRE - M: {}}))
    out += level_scenarios("redis_down", one("redis_up", gauge), (0, "0"), None, 1)
    out += level_scenarios("evicted_keys", one("redis_evicted_keys_total", counter), (1, "300"), None, 0)
    out += level_scenarios("rejected_connections", one("redis_rejected_connections_total", counter),
                           (2, "600"), None, 0)
    out += level_scenarios("rdb_last_bgsave_failed", one("redis_rdb_last_bgsave_status", gauge), (0, "0"), None, 1)
    out += rdb_age_scenarios()
    out += level_scenarios("aof_last_write_failed", one("redis_aof_last_write_status", gauge), (0, "0"), None, 1)
    out += level_scenarios("replication_link_down", one("redis_master_link_up", gauge, REPLICA),
                           (0, "0"), None, 1, REPLICA)
    out += level_scenarios("replication_lag", one("redis_connected_slave_lag_seconds", gauge, LAGGING),
                           (45, "45"), (15, "15"), 0, LAGGING)
    out += level_scenarios("cluster_state", one("redis_cluster_state", gauge), (0, "0"), None, 1)
    out += level_scenarios("cluster_slots_not_ok", slots_ok, (100, "100"), None, 0)
    out += level_scenarios("cluster_node_failed", cluster_node, (0, "0"), None, 1)
    # A labelled cluster target down for 2 h (no redis_cluster_enabled since it died): still firing.
    down = gauge([(0, 2 * 3600 + 5 * M)])
    out.append(Scenario("cluster_node_failed", "a labelled cluster node dead for 2 h keeps firing",
                        {selector("redis_up", {**BASE_LABELS, **CLUSTER}): down},
                        {5 * M: {"critical": "0"}, 2 * 3600: {"critical": "0"}}, CLUSTER))
    out.append(Scenario("cluster_node_failed", "a node that never was a cluster member: silent",
                        one("redis_up", gauge)([(0, FIRE)]), {FIRE - M: {}}))
    out += level_scenarios("engine_cpu", cpu, (95, "95"), (80, "80"), 10)
    out += level_scenarios("new_connections", one("redis_connections_received_total", counter),
                           (300, "300"), (100, "100"), 1)
    out += limiter_scenarios()
    return out


AUTH = {"tier": "auth"}


def decisions(tier: str, outcome: str) -> Callable[[Phases], dict[str, list[float]]]:
    return one("ratelimit_decisions_total", counter, {"tier": tier, "outcome": outcome})


def limiter_scenarios() -> list[Scenario]:
    """The limiter client's series (ratelimit.metrics), as the application exports them."""
    out = level_scenarios("limiter_fallbacks", decisions("auth", "fallback"), (1, "300"), None, 0, AUTH)
    out += level_scenarios("credential_denials", decisions("auth", "denied"), (20, "20"), (5, "5"), 0, AUTH)
    # One NOPERM every 15 s: 20 in 5 minutes; the alert names the kind.
    noperm = one("ratelimit_errors_total", counter, {"kind": "noperm"})
    out += level_scenarios("limiter_errors", noperm, (1 / STEP, "20"), None, 0, {"kind": "noperm"})
    out.append(Scenario("limiter_errors", "library_missing named too",
                        one("ratelimit_errors_total", counter, {"kind": "library_missing"})([(1 / STEP, FIRE)]),
                        {FIRE - M: {"critical": "20"}}, {"kind": "library_missing"}))
    out.append(Scenario("credential_denials", "mfa tier too", decisions("mfa", "denied")([(12, FIRE)]),
                        {FIRE - M: {"warning": "12", "critical": "12"}}, {"tier": "mfa"}))
    # Denials answered by the local deny cache count as denials: together 8 + 7 per second.
    both = {**decisions("auth", "denied")([(8, FIRE)]), **decisions("auth", "denied_locally")([(7, FIRE)])}
    out.append(Scenario("credential_denials", "cached and Redis denials add up", both,
                        {FIRE - M: {"warning": "15", "critical": "15"}}, AUTH))
    # A flood on the general tier is the limiter doing its job, not a credential attack.
    out.append(Scenario("credential_denials", "general-tier denials: silent", decisions("general", "denied")([(50, FIRE)]),
                        {FIRE - M: {}}, {"tier": "general"}))
    return out


def build_test_file(scens: list[Scenario], thresholds: tuple[Threshold, ...]) -> dict[str, Any]:
    table = {t.name: t for t in thresholds}
    tests = []
    for sc in scens:
        t = table[sc.threshold]
        lines: dict[str, float] = dict(t.lines())
        checks = []
        for at, firing in sorted(sc.expect.items()):
            exp = []
            for severity, shown in firing.items():
                ann = alert_annotations(t, severity, lines[severity])  # type: ignore[arg-type]
                exp.append({
                    "exp_labels": {**BASE_LABELS, **sc.alert_labels,
                                   "severity": severity, "threshold": t.name, "service": t.service},
                    "exp_annotations": {k: v.replace(VALUE_TEMPLATE, shown).replace(INSTANCE_TEMPLATE, INSTANCE)
                                        for k, v in ann.items()},
                })
            checks.append({"eval_time": f"{at}s", "alertname": t.alert, "exp_alerts": exp})
        tests.append({
            "name": f"{sc.threshold}: {sc.title}",
            "interval": f"{STEP}s",
            "input_series": [{"series": s, "values": series_text(v)} for s, v in sc.series.items()],
            "alert_rule_test": checks,
        })
    return {"rule_files": [RULES_FILE_NAME], "evaluation_interval": f"{STEP}s", "tests": tests}


def write_rules(tmp_path: Path, thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS) -> Path:
    (tmp_path / RULES_FILE_NAME).write_text(render_alert_rules(thresholds))
    return tmp_path / RULES_FILE_NAME


# ---- tests ---------------------------------------------------------------------------------


def test_promtool_check_config_and_rules(tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    (tmp_path / "prometheus.yml").write_text(render_prometheus_config("127.0.0.1:9121", scrape_interval="1s",
                                                                      evaluation_interval="1s"))
    res = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    n_rules = sum(len(t.lines()) for t in DEFAULT_THRESHOLDS)
    assert f"SUCCESS: {n_rules} rules found" in res.stdout + res.stderr
    res = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": ["127.0.0.1:9121"]}]
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}


def test_prometheus_config_rejects_bad_targets() -> None:
    bad: Any
    for bad in ("redis-exporter", ":9121", "host:port", []):
        with pytest.raises(ValueError):
            render_prometheus_config(bad)


def test_rules_file_shape() -> None:
    rules = yaml.safe_load(render_alert_rules())["groups"][0]["rules"]
    assert len(rules) == sum(len(t.lines()) for t in DEFAULT_THRESHOLDS)
    mem = [r for r in rules if r["alert"] == "RedisMemoryHigh"]
    assert [r["labels"]["severity"] for r in mem] == ["warning", "critical"]
    assert mem[1]["expr"] == "(100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)) > 90"
    for r in rules:
        assert r["annotations"]["runbook_url"].startswith("docs/runbooks/troubleshooting.md#")
        assert VALUE_TEMPLATE in r["annotations"]["description"]
        assert r["for"].endswith("m")


def test_every_alert_fires_and_clears_in_promtool(tmp_path: Path) -> None:
    write_rules(tmp_path)
    scens = scenarios()
    rules = yaml.safe_load((tmp_path / RULES_FILE_NAME).read_text())["groups"][0]["rules"]
    all_alerts = {(r["alert"], r["labels"]["severity"]) for r in rules}
    table = thresholds_by_name()
    fired = {(table[s.threshold].alert, sev) for s in scens for firing in s.expect.values() for sev in firing}
    # "Clears" only counts in a scenario that fired that alert earlier.
    cleared = {
        (table[s.threshold].alert, sev)
        for s in scens
        for at, firing in s.expect.items() if not firing
        for before, f in s.expect.items() if before < at
        for sev in f
    }
    assert fired == all_alerts, f"alerts without a firing test: {sorted(all_alerts - fired)}"
    assert cleared == all_alerts, f"alerts without a clearing test: {sorted(all_alerts - cleared)}"

    (tmp_path / "tests.yml").write_text(yaml.safe_dump(build_test_file(scens, DEFAULT_THRESHOLDS), sort_keys=False))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
    assert "SUCCESS" in res.stdout + res.stderr


def test_harness_detects_a_wrong_expectation(tmp_path: Path) -> None:
    """Guards the test above against passing vacuously: a critical alert expected at a
    warning-only level must make promtool fail."""
    write_rules(tmp_path)
    wrong = Scenario("memory_usage", "wrong on purpose", memory([(85, FIRE)]),
                     {FIRE - M: {"warning": "85", "critical": "85"}})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(build_test_file([wrong], DEFAULT_THRESHOLDS)))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "RedisMemoryHigh" in res.stdout + res.stderr


def test_overridden_lines_reach_the_rules(tmp_path: Path) -> None:
    table = apply_overrides({"memory_usage": {"warn": 60, "crit": 70}})
    write_rules(tmp_path, table)
    sc = Scenario("memory_usage", "overridden lines", memory([(65, FIRE)]), {FIRE - M: {"warning": "65"}})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(build_test_file([sc], table)))
    res = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
