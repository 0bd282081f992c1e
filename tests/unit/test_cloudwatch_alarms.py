"""CloudWatch alarm specs for ElastiCache, from the thresholds table."""

from __future__ import annotations

import pytest

from infra.monitoring.cloudwatch import (
    NAMESPACE,
    TREAT_MISSING_DATA,
    AlarmSpec,
    alarm_specs,
    member_cluster_ids,
)
from infra.thresholds import DEFAULT_THRESHOLDS, apply_overrides, thresholds_by_name

MEMBERS = ["ratelimit-prod-001", "ratelimit-prod-002"]


def test_member_ids_cluster_mode_disabled() -> None:
    assert member_cluster_ids("RateLimit-Prod", num_cache_clusters=3) == [
        "ratelimit-prod-001", "ratelimit-prod-002", "ratelimit-prod-003"]
    assert member_cluster_ids("rl") == ["rl-001"]


def test_member_ids_cluster_mode_enabled() -> None:
    assert member_cluster_ids("rl", num_node_groups=2, replicas_per_node_group=1) == [
        "rl-0001-001", "rl-0001-002", "rl-0002-001", "rl-0002-002"]
    assert member_cluster_ids("rl", num_node_groups=1, replicas_per_node_group=0) == ["rl-0001-001"]
    assert len(member_cluster_ids("rl", num_node_groups=3, replicas_per_node_group=2)) == 9


@pytest.mark.parametrize(("rg", "kwargs"), [
    ("1abc", {}), ("abc-", {}), ("a--b", {}), ("a" * 41, {}), ("a_b", {}),
    ("rl", {"num_cache_clusters": 0}), ("rl", {"num_cache_clusters": 7}),
    ("rl", {"num_node_groups": 0}), ("rl", {"num_node_groups": 2, "replicas_per_node_group": 6}),
    ("rl", {"num_cache_clusters": 2, "num_node_groups": 2}),
])
def test_member_ids_reject_bad_input(rg: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        member_cluster_ids(rg, **kwargs)


def test_one_alarm_per_line_and_member_with_member_dimension() -> None:
    specs = alarm_specs(DEFAULT_THRESHOLDS, MEMBERS, name_prefix="prod-redis")
    mapped = [t for t in DEFAULT_THRESHOLDS if t.cloudwatch is not None]
    assert len(specs) == sum(len(t.lines()) for t in mapped) * len(MEMBERS)
    assert len({s.name for s in specs}) == len(specs)
    for s in specs:
        assert s.namespace == NAMESPACE == "AWS/ElastiCache"
        assert s.dimensions == {"CacheClusterId": s.member_cluster_id}
        assert s.member_cluster_id in MEMBERS
        assert s.name == f"prod-redis-{s.member_cluster_id}-{s.threshold_name}-{s.severity}"
        assert s.treat_missing_data == TREAT_MISSING_DATA[s.metric_name]
        assert len(s.name) <= 255 and len(s.description) <= 1024
    # Each member gets the same set of alarms.
    per_member = {m: sorted((s.threshold_name, s.severity) for s in specs if s.member_cluster_id == m) for m in MEMBERS}
    assert per_member[MEMBERS[0]] == per_member[MEMBERS[1]]
    # Rows without a CloudWatch equivalent produce nothing.
    assert not {s.threshold_name for s in specs} & {"command_rate", "redis_down", "rdb_last_save_age"}


def spec(specs: list[AlarmSpec], name: str, severity: str, member: str = MEMBERS[0]) -> AlarmSpec:
    (s,) = [s for s in specs if s.threshold_name == name and s.severity == severity and s.member_cluster_id == member]
    return s


def test_thresholds_equal_the_table() -> None:
    specs = alarm_specs(DEFAULT_THRESHOLDS, MEMBERS, name_prefix="p")
    table = thresholds_by_name()
    for s in specs:
        t = table[s.threshold_name]
        assert t.cloudwatch is not None
        line = dict(t.lines())[s.severity]
        assert s.threshold == t.cloudwatch.threshold_for(line)
        assert (s.statistic, s.period, s.evaluation_periods, s.comparison_operator) == (
            t.cloudwatch.statistic, t.cloudwatch.period, t.cloudwatch.evaluation_periods,
            t.cloudwatch.comparison_operator)
    mem = spec(specs, "memory_usage", "critical")
    assert (mem.metric_name, mem.threshold, mem.comparison_operator) == (
        "DatabaseMemoryUsagePercentage", 90, "GreaterThanThreshold")
    # Miss ratio 30 % / 50 % is a hit rate below 70 % / 50 %.
    hit_w, hit_c = spec(specs, "keyspace_miss_ratio", "warning"), spec(specs, "keyspace_miss_ratio", "critical")
    assert (hit_w.metric_name, hit_w.threshold, hit_w.comparison_operator) == ("CacheHitRate", 70, "LessThanThreshold")
    assert hit_c.threshold == 50
    # Any eviction: Sum over one minute > 0, evaluated once.
    ev = spec(specs, "evicted_keys", "critical")
    assert (ev.metric_name, ev.statistic, ev.threshold, ev.evaluation_periods) == ("Evictions", "Sum", 0, 1)
    assert ev.treat_missing_data == "notBreaching"
    # Per-second line -> Sum per 60 s period.
    nc = spec(specs, "new_connections", "warning")
    assert (nc.metric_name, nc.statistic, nc.threshold) == ("NewConnections", "Sum", 50 * 60)
    assert spec(specs, "connected_clients", "warning").metric_name == "CurrConnections"
    assert spec(specs, "engine_cpu", "critical").metric_name == "EngineCPUUtilization"
    lag = spec(specs, "replication_lag", "warning", MEMBERS[1])
    assert (lag.metric_name, lag.threshold, lag.treat_missing_data) == ("ReplicationLag", 10, "notBreaching")


def test_overrides_flow_into_alarms() -> None:
    specs = alarm_specs(apply_overrides({"memory_usage": {"warn": 70, "crit": 85}}), MEMBERS, name_prefix="p")
    assert spec(specs, "memory_usage", "warning").threshold == 70
    assert spec(specs, "memory_usage", "critical").threshold == 85


def test_cluster_mode_members() -> None:
    members = member_cluster_ids("rl", num_node_groups=2, replicas_per_node_group=1)
    specs = alarm_specs(DEFAULT_THRESHOLDS, members, name_prefix="rl")
    assert {s.dimensions["CacheClusterId"] for s in specs} == set(members)
    assert spec(specs, "memory_usage", "warning", "rl-0002-002").name == "rl-rl-0002-002-memory_usage-warning"


def test_alarm_specs_rejects_missing_or_duplicate_members() -> None:
    with pytest.raises(ValueError):
        alarm_specs(DEFAULT_THRESHOLDS, [], name_prefix="p")
    with pytest.raises(ValueError):
        alarm_specs(DEFAULT_THRESHOLDS, ["a-001", "a-001"], name_prefix="p")
