"""Checks behind docs/fidelity.md rows added in 2026-12 that no other test held: the cluster metric
names the alert rules read, as the pinned redis_exporter derives them; the minimum Pulumi CLI the
README states for a manual `pulumi up`; and every check the page names, in any section, exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pulumi.runtime.resource
import pytest
from pytest import MonkeyPatch

from infra import versions as V
from infra.thresholds import CLUSTER_ONLY_METRICS, DEFAULT_THRESHOLDS, thresholds_by_name

ROOT = Path(__file__).resolve().parents[2]
FIDELITY = ROOT / "docs" / "fidelity.md"

# --- redis_exporter: cluster metrics ------------------------------------------------------------
# github.com/oliver006/redis_exporter at tag v1.88.0 (the pin, infra/versions.py):
#   exporter/exporter.go:854-856  `if strings.Contains(infoAll, "cluster_enabled:1")` -> CLUSTER INFO
#                                 -> e.extractClusterInfoMetrics(ch, clusterInfo)
#   exporter/info.go:224          extractClusterInfoMetrics: every "field:value" line, kept when
#                                 includeMetric(field), registered by parseAndRegisterConstMetric
#   exporter/info.go:155-159      extractInfoMetrics: INFO's fields go through the same two calls
#   exporter/metrics.go:25        includeMetric: any field starting with "cluster_" is kept
#   exporter/metrics.go:51        metric name = sanitizeMetricName(field) (no rename for cluster_*)
#   exporter/metrics.go:66-69     value "ok"/"true" -> 1, "err"/"fail"/"false" -> 0
#   main.go:162                   -namespace default "redis" -> redis_<field>
# The same lines exist at v1.45.0 (Debian bookworm's exporter, what the live tests run):
# exporter/exporter.go:596, exporter/info.go:145 and :192, exporter/metrics.go:23 and :50.
EXPORTER_DERIVED_FROM = "1.88.0"
EXPORTER_NAMESPACE = "redis"
EXPORTER_VALUES = {"ok": 1, "fail": 0}
# The fields of the CLUSTER INFO reply (redis/redis: one sdscatprintf of "cluster_state:%s\r\n"
# "cluster_slots_assigned:%d\r\n" "cluster_slots_ok:%d\r\n" ... in src/cluster.c at 7.0,
# src/cluster_legacy.c from 7.4; 7.2 keeps src/cluster.c), the part of it every engine line answers; the live check is
# tests/integration/test_cluster_monitoring.py on Debian's 7.0.15 with exporter 1.45.
CLUSTER_INFO_FIELDS = (
    "cluster_state", "cluster_slots_assigned", "cluster_slots_ok", "cluster_slots_pfail",
    "cluster_slots_fail", "cluster_known_nodes", "cluster_size", "cluster_current_epoch", "cluster_my_epoch",
)


# INFO's "# Cluster" section: "cluster_enabled:%d" (redis/redis src/server.c genRedisInfoString), on
# every server, 0 outside a cluster: not one of CLUSTER_ONLY_METRICS.
INFO_CLUSTER_FIELDS = ("cluster_enabled",)


def exporter_cluster_metrics() -> set[str]:
    return {f"{EXPORTER_NAMESPACE}_{field}" for field in CLUSTER_INFO_FIELDS + INFO_CLUSTER_FIELDS}


def test_the_cluster_rules_read_metric_names_the_pinned_exporter_produces() -> None:
    # Fails when Renovate moves the exporter pin: re-read the lines above at the new tag.
    assert V.line("exporter", "1").pin == EXPORTER_DERIVED_FROM
    produced = exporter_cluster_metrics()
    from_cluster_info = {f"{EXPORTER_NAMESPACE}_{field}" for field in CLUSTER_INFO_FIELDS}
    missing = CLUSTER_ONLY_METRICS - from_cluster_info
    assert not missing, f"CLUSTER_ONLY_METRICS names {missing}, which CLUSTER INFO does not give"
    read_by_rules = {m for t in DEFAULT_THRESHOLDS for m in re.findall(r"\bredis_cluster_\w+", t.expr)}
    assert read_by_rules and read_by_rules <= produced, read_by_rules - produced


def test_the_cluster_state_rule_fires_on_the_value_the_exporter_gives_fail() -> None:
    state = thresholds_by_name()["cluster_state"]
    assert state.expr == f"{EXPORTER_NAMESPACE}_cluster_state" and state.direction == "below"
    assert EXPORTER_VALUES["fail"] < state.crit <= EXPORTER_VALUES["ok"]


# --- Pulumi CLI minimum for a manual `pulumi up` --------------------------------------------------
# github.com/pulumi/pulumi CHANGELOG.md: 3.207.0 (2025-11-12) "[engine] Add `ReplaceWith` resource
# option" (#20693); 3.208.0 (2025-11-20) "[engine] Add a `replacement_trigger` resource option".
CLI_SINCE = {"replace_with": "3.207.0", "replacement_trigger": "3.208.0"}
REFUSAL = "The Pulumi CLI does not support the ReplaceWith option"


def readme_minimum() -> str:
    found = re.findall(r"Pulumi CLI\]\([^)]*\) (\d+\.\d+\.\d+) or newer", (ROOT / "README.md").read_text())
    assert len(found) == 1, found
    return found[0]


def workflow_pins() -> set[str]:
    pins = set()
    for wf in (ROOT / ".github" / "workflows").glob("*.yml"):
        pins.update(re.findall(r'^\s*PULUMI_VERSION:\s*"(\d+\.\d+\.\d+)"', wf.read_text(), re.M))
    return pins


def test_readme_minimum_cli_has_both_options_and_is_at_most_the_workflows_pin() -> None:
    minimum = V.parse_version(readme_minimum())
    assert minimum >= max(V.parse_version(v) for v in CLI_SINCE.values())
    pins = workflow_pins()
    assert pins and all(minimum <= V.parse_version(p) for p in pins), pins
    assert f"Pulumi CLI {readme_minimum()}" in FIDELITY.read_text()  # the row states the same floor


def test_the_installed_sdk_refuses_replace_with_on_an_older_cli_with_the_documented_message() -> None:
    source = Path(pulumi.runtime.resource.__file__).read_text()
    assert REFUSAL in source and "RESOURCE_MONITOR_FEATURE_REPLACE_WITH" in source
    assert f'"{REFUSAL}' in FIDELITY.read_text()


# --- restore on a cluster: the cluster_state line the wait reads ---------------------------------
# redis/redis, CLUSTER INFO's first line `"cluster_state:%s\r\n"` from `statestr[] = {"ok","fail"}`,
# and clusterUpdateState's delays (writable 2000 ms, rejoin clamped 500-5000 ms), the same at
# 7.0.15 src/cluster.c:4425-4427/5568/5591 (what the tests run), 7.2.6 src/cluster.c:5002-5004/5811/5834,
# 7.4.1 src/cluster_legacy.c:5011-5013/5696/5719 and unstable 4f8cdc2 (2024-10-18, the 8.0 line)
# src/cluster_legacy.c:5035-5037/5675/5698. Rebuilt here from that format, not from a live 7.0 reply.
UPSTREAM_STATESTR = ("ok", "fail")


def upstream_cluster_info(state: int) -> str:
    return (f"cluster_state:{UPSTREAM_STATESTR[state]}\r\ncluster_slots_assigned:16384\r\n"
            "cluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n")


class _RestartedPrimary:
    """CLUSTER INFO of a primary inside its writable delay (state 1, "fail") for `delayed` readings."""

    def __init__(self, delayed: int) -> None:
        self.delayed, self.readings = delayed, 0

    def execute_command(self, *args: str) -> str:
        if args[1] == "NODES":
            return "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n"
        self.readings += 1
        return upstream_cluster_info(1 if self.readings <= self.delayed else 0)

    def close(self) -> None:
        pass


def test_the_restore_waits_on_the_cluster_state_line_every_shipped_engine_prints(monkeypatch: MonkeyPatch) -> None:
    from redisops import backup as bk
    from redisops import connection as rc
    from redisops.errors import OperationError

    spec = rc.ConnectionSpec(mode="cluster", hosts=(("127.0.0.1", 7000),), tls=False, timeout_ms=1000, tiers=(),
                             source="test", username="app", password="a", admin_password="b")
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    node = _RestartedPrimary(delayed=3)
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: node)
    bk._wait_cluster_ok(spec, bk.time.monotonic() + 60, lambda _m, _f: None)
    assert node.readings == 4
    stuck = _RestartedPrimary(delayed=10**9)
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: stuck)
    with pytest.raises(OperationError, match="still reports cluster_state fail at the --wait deadline"):
        bk._wait_cluster_ok(spec, bk.time.monotonic() - 1, lambda _m, _f: None)


# --- every check the page names, in every section --------------------------------------------------
def test_every_check_named_anywhere_on_the_page_exists() -> None:
    """test_fidelity_aws / test_fidelity_local_docker cover their sections and full paths only; this
    covers the rest, and `::name` shorthands, which refer to the last path named before them in the row."""
    named: list[tuple[str, str]] = []
    for row in FIDELITY.read_text().splitlines():
        if not row.startswith("| "):
            continue
        path = None
        for full, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", row):
            path = full or path
            assert path, f"docs/fidelity.md: `::{name}` has no file named before it: {row[:80]}"
            named.append((path, name))
    assert len(named) >= 90
    functions: dict[str, set[str]] = {}
    for path, name in named:
        if path not in functions:
            tree = ast.parse((ROOT / path).read_text())
            functions[path] = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in functions[path], f"docs/fidelity.md names {path}::{name}, which does not exist"
