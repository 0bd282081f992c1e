"""CloudWatch alarm specs for ElastiCache, from the same thresholds table as the Prometheus rules.

Pure data: the ElastiCache component turns each AlarmSpec into a pulumi_aws MetricAlarm.
ElastiCache publishes per node, so every alarm targets one member cluster id
(`<rg>-001`, or `<rg>-0001-001` in cluster mode); an alarm on the replication group id
itself would sit in INSUFFICIENT_DATA forever.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infra.thresholds import Severity, Threshold, fmt_number

NAMESPACE = "AWS/ElastiCache"
TreatMissingData = Literal["breaching", "notBreaching", "ignore", "missing"]

# Chosen per metric, because "no datapoint" means different things:
TREAT_MISSING_DATA: dict[str, TreatMissingData] = {
    # Gauges every live node publishes each minute. A gap means the node is being replaced
    # or is in maintenance; neither "fine" nor "full" is true, so the alarm shows it as
    # INSUFFICIENT_DATA instead of paging on a guess (node loss arrives as an ElastiCache event).
    "DatabaseMemoryUsagePercentage": "missing",
    "EngineCPUUtilization": "missing",
    "CurrConnections": "missing",
    # Counts: a missing minute is a minute without evictions / new connections; treating it
    # as missing would let an alarm that fired once stay in ALARM indefinitely.
    "Evictions": "notBreaching",
    "NewConnections": "notBreaching",
    # Published by replicas only, and roles swap on failover; alarms exist on every member,
    # so the primary's permanent gap must read as OK.
    "ReplicationLag": "notBreaching",
    # Undefined without lookups (no traffic): zero traffic must not page, as in Prometheus.
    "CacheHitRate": "notBreaching",
}

# Days left on a server certificate: WARNING below the first line, CRITICAL below the second.
# The stacks renew 30 days ahead (pulumi-tls early_renewal_hours), so a certificate with fewer
# than 30 days left means a renewal did not happen; 14 leaves two weeks to fix it. One source for
# `redisops health` (the tls_certificate row) and the Sentinel hosts' CloudWatch alarm.
TLS_DAYS_WARNING = 30
TLS_DAYS_CRITICAL = 14

_RG_ID = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    metric_name: str
    namespace: str
    dimensions: dict[str, str]
    statistic: str
    period: int
    evaluation_periods: int
    threshold: float
    comparison_operator: str
    treat_missing_data: TreatMissingData
    description: str
    severity: Severity
    threshold_name: str  # the row of infra.thresholds this came from
    member_cluster_id: str


def member_cluster_ids(
    replication_group_id: str,
    *,
    num_cache_clusters: int | None = None,
    num_node_groups: int | None = None,
    replicas_per_node_group: int | None = None,
) -> list[str]:
    """Member cache cluster ids as ElastiCache names them.

    Cluster mode disabled: pass `num_cache_clusters` (primary + replicas, 1..6) ->
    `<rg>-001`, `<rg>-002`, ... Cluster mode enabled: pass `num_node_groups` (shards,
    1..500) and `replicas_per_node_group` (0..5) -> `<rg>-0001-001`, `<rg>-0001-002`, ...
    The id is lowercased, as ElastiCache stores it.

    Sources: the ElastiCache API reference, NodeGroup ("A Valkey or Redis OSS (cluster mode
    enabled) replication group contains 1 to 90 node groups numbered 0001 to 0090",
    https://docs.aws.amazon.com/AmazonElastiCache/latest/APIReference/API_NodeGroup.html) and
    NodeGroupMember (each node is a cache cluster with its own CacheClusterId, the dimension
    CloudWatch reports node metrics under). The `-NNN` member suffix inside a node group is what
    DescribeReplicationGroups' MemberClusters lists (e.g. `<rg>-0001-001`); the API reference
    states no format for it, so the stack tests assert the alarms follow `memberClusters`.
    """
    rg = replication_group_id.lower()
    if not _RG_ID.match(rg) or rg.endswith("-") or "--" in rg:
        raise ValueError(
            f"member_cluster_ids: {replication_group_id!r} is not a replication group id "
            "(1-40 chars, letter first, letters/digits/hyphens, no trailing or double hyphen)"
        )
    cluster_mode = num_node_groups is not None or replicas_per_node_group is not None
    if cluster_mode:
        if num_cache_clusters is not None:
            raise ValueError("member_cluster_ids: num_cache_clusters is for cluster mode disabled only")
        shards = 1 if num_node_groups is None else num_node_groups
        replicas = 0 if replicas_per_node_group is None else replicas_per_node_group
        if not 1 <= shards <= 500 or not 0 <= replicas <= 5:
            raise ValueError(f"member_cluster_ids: shards {shards} (1..500), replicas per shard {replicas} (0..5)")
        return [f"{rg}-{s:04d}-{n:03d}" for s in range(1, shards + 1) for n in range(1, replicas + 2)]
    count = 1 if num_cache_clusters is None else num_cache_clusters
    if not 1 <= count <= 6:
        raise ValueError(f"member_cluster_ids: num_cache_clusters {count} not in 1..6")
    return [f"{rg}-{n:03d}" for n in range(1, count + 1)]


def alarm_specs(
    thresholds: Sequence[Threshold],
    member_cluster_ids: Sequence[str],
    *,
    name_prefix: str,
) -> list[AlarmSpec]:
    """One alarm per (threshold with a CloudWatch mapping, severity line, member node)."""
    if not member_cluster_ids:
        raise ValueError("alarm_specs: at least one member cluster id is required")
    if len(set(member_cluster_ids)) != len(member_cluster_ids):
        raise ValueError(f"alarm_specs: duplicate member cluster ids in {list(member_cluster_ids)}")
    specs: list[AlarmSpec] = []
    for t in thresholds:
        cw = t.cloudwatch
        if cw is None:
            continue
        for severity, line in t.lines():
            value = cw.threshold_for(line)
            for member in member_cluster_ids:
                specs.append(
                    AlarmSpec(
                        name=f"{name_prefix}-{member}-{t.name}-{severity}",
                        metric_name=cw.metric_name,
                        namespace=NAMESPACE,
                        dimensions={"CacheClusterId": member},
                        statistic=cw.statistic,
                        period=cw.period,
                        evaluation_periods=cw.evaluation_periods,
                        threshold=value,
                        comparison_operator=cw.comparison_operator,
                        treat_missing_data=TREAT_MISSING_DATA[cw.metric_name],
                        description=(
                            f"[{severity}] {t.description} on {member}: {cw.metric_name} {cw.statistic} "
                            f"{_op_text(cw.comparison_operator)} {fmt_number(value)} for "
                            f"{cw.evaluation_periods} x {cw.period}s (table: {t.name} {fmt_number(line)} {t.unit})"
                        ),
                        severity=severity,
                        threshold_name=t.name,
                        member_cluster_id=member,
                    )
                )
    return specs


def _op_text(op: str) -> str:
    return {
        "GreaterThanThreshold": ">",
        "GreaterThanOrEqualToThreshold": ">=",
        "LessThanThreshold": "<",
        "LessThanOrEqualToThreshold": "<=",
    }[op]
