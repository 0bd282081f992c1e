"""The one table of alert thresholds.

Every alerting fact lives here once and is rendered twice: into Prometheus alert rules
(`infra.monitoring.prometheus`, for the self-managed targets scraped through redis_exporter)
and into CloudWatch alarm specs (`infra.monitoring.cloudwatch`, for ElastiCache). The first
five rows are the deployment guide's "Critical Metrics to Watch"; the rest are what a Redis
that backs a rate limiter needs on top (an evicted or lost counter is an over-admission, not
a cache miss).

Stack config may move the lines of the tunable rows:

    thresholds:
      memory_usage: {warn: 75, crit: 85}

`apply_overrides` validates that mapping and raises `infra.errors.SettingError` with the key
``thresholds.<name>.<field>``. Pure: no Pulumi import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from infra.errors import SettingError
from redis_conf.cluster import SLOTS

# Static label on the scrape targets that are Redis Cluster nodes (infra/monitoring/prometheus.py).
CLUSTER_TARGET_LABEL = "redis_cluster"

Direction = Literal["above", "below"]
Severity = Literal["warning", "critical"]
# How a table value becomes the CloudWatch alarm's threshold:
#   same              - the CloudWatch metric has the table's unit (percent, count, seconds)
#   per_period        - the table says "per second", CloudWatch publishes a Sum per period
#   complement_percent - the table says "miss %", CloudWatch publishes hit %: 100 - value
ValueMap = Literal["same", "per_period", "complement_percent"]

# Metrics the cluster rows read that redis_exporter publishes only for a cluster node (from
# CLUSTER INFO): a non-cluster Redis has none of them, so its rules stay silent.
CLUSTER_ONLY_METRICS = frozenset({"redis_cluster_state", "redis_cluster_slots_ok"})

# A handful of lookups per minute (a quiet dev stack, a health check) must not turn one miss
# into a "50 % miss ratio" page, so the ratio is only judged above this lookup rate.
MISS_RATIO_MIN_LOOKUPS_PER_SECOND = 1


@dataclass(frozen=True)
class CloudWatchMapping:
    """Where a threshold lives on ElastiCache (namespace AWS/ElastiCache, per member node)."""

    metric_name: str
    statistic: Literal["Average", "Maximum", "Minimum", "Sum", "SampleCount"]
    period: int  # seconds; ElastiCache publishes at 60 s
    evaluation_periods: int
    comparison_operator: Literal[
        "GreaterThanThreshold", "GreaterThanOrEqualToThreshold", "LessThanThreshold", "LessThanOrEqualToThreshold"
    ]
    value_map: ValueMap = "same"

    def threshold_for(self, value: float) -> float:
        if self.value_map == "per_period":
            return value * self.period
        if self.value_map == "complement_percent":
            return 100.0 - value
        return value


@dataclass(frozen=True)
class Threshold:
    """One watched quantity with its warning and critical lines.

    `expr` is the PromQL (over redis_exporter 1.45 metric names) whose value is compared
    with a line: ``(expr) > line`` for direction "above", ``(expr) < line`` for "below".
    A line that is None does not exist: ``warn=None`` means any breach is critical at once
    (evictions, a failed save), ``crit=None`` means the row only ever warns.
    """

    name: str
    alert: str  # Prometheus alertname, shared by the warning and critical rule (inhibition)
    description: str
    unit: str
    warn: float | None
    crit: float | None
    expr: str
    direction: Direction = "above"
    for_: str = "5m"  # Prometheus `for:`; how long the breach must last
    tunable: bool = True  # False for up/down states whose line is not a matter of taste
    minimum: float = 0.0
    maximum: float | None = None
    cloudwatch: CloudWatchMapping | None = None
    from_guide: bool = False
    # The alert's `service` label: "redis" for the server's own metrics (redis_exporter),
    # "ratelimit" for the limiter client's (ratelimit.metrics, scraped from the application).
    service: str = "redis"

    @property
    def runbook_anchor(self) -> str:
        return self.name.replace("_", "-")

    def lines(self) -> tuple[tuple[Severity, float], ...]:
        out: list[tuple[Severity, float]] = []
        if self.warn is not None:
            out.append(("warning", self.warn))
        if self.crit is not None:
            out.append(("critical", self.crit))
        return tuple(out)

    def promql(self, line: float) -> str:
        op = ">" if self.direction == "above" else "<"
        return f"({self.expr}) {op} {fmt_number(line)}"


def fmt_number(value: float) -> str:
    """80.0 -> "80", 0.5 -> "0.5": how a line appears in PromQL, alarm names and docs."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


# The tiers whose denials mean someone is guessing credentials (ratelimit/tiers.py names).
CREDENTIAL_TIERS: tuple[str, ...] = ("auth", "mfa")
# The limiter client's decision counter (ratelimit/metrics.py METRIC_DECISIONS + prometheus_client's
# `_total`); spelt here too because this module must not import the client (no redis/prometheus
# import in the Pulumi program); tests/integration/test_ratelimit_metrics.py checks both agree.
LIMITER_DECISIONS_METRIC = "ratelimit_decisions_total"
# ratelimit/metrics.py METRIC_ERRORS + `_total`, likewise (kind: library_missing, noperm).
LIMITER_ERRORS_METRIC = "ratelimit_errors_total"

_MIN_LOOKUPS = fmt_number(MISS_RATIO_MIN_LOOKUPS_PER_SECOND)
_LOOKUPS = "(rate(redis_keyspace_hits_total[5m]) + rate(redis_keyspace_misses_total[5m]))"

DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    # --- the guide's "Critical Metrics to Watch" ---------------------------------------
    Threshold(
        name="memory_usage",
        alert="RedisMemoryHigh",
        description="Memory used as a percentage of maxmemory",
        unit="%",
        warn=80,
        crit=90,
        # `> 0` drops instances without maxmemory instead of dividing by zero (+Inf).
        expr="100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)",
        maximum=100,
        cloudwatch=CloudWatchMapping("DatabaseMemoryUsagePercentage", "Average", 60, 5, "GreaterThanThreshold"),
        from_guide=True,
    ),
    Threshold(
        name="command_rate",
        alert="RedisCommandRateHigh",
        description="Commands processed per second",
        unit="ops/s",
        warn=1000,
        crit=5000,
        expr="rate(redis_commands_processed_total[1m])",
        # ElastiCache publishes per-command-family counts only, no total to compare with.
        cloudwatch=None,
        from_guide=True,
    ),
    Threshold(
        name="connected_clients",
        alert="RedisConnectedClientsHigh",
        description="Client connections open",
        unit="clients",
        warn=1000,
        crit=5000,
        expr="redis_connected_clients",
        cloudwatch=CloudWatchMapping("CurrConnections", "Maximum", 60, 5, "GreaterThanThreshold"),
        from_guide=True,
    ),
    Threshold(
        name="blocked_clients",
        alert="RedisBlockedClientsHigh",
        description="Clients blocked in BLPOP/XREAD/WAIT-style calls",
        unit="clients",
        warn=10,
        crit=50,
        expr="redis_blocked_clients",
        cloudwatch=None,  # not published by ElastiCache
        from_guide=True,
    ),
    Threshold(
        name="keyspace_miss_ratio",
        alert="RedisKeyspaceMissRatioHigh",
        description=f"Keyspace misses as a percentage of lookups (only above {_MIN_LOOKUPS} lookup/s)",
        unit="%",
        warn=30,
        crit=50,
        # 0/0 is NaN and never compares true, but the explicit traffic floor also keeps a
        # near-idle instance from alerting on its first few misses.
        expr=(
            f"100 * rate(redis_keyspace_misses_total[5m]) / {_LOOKUPS}"
            f" and on(instance, job) {_LOOKUPS} > {_MIN_LOOKUPS}"
        ),
        maximum=100,
        cloudwatch=CloudWatchMapping(
            "CacheHitRate", "Average", 60, 5, "LessThanThreshold", value_map="complement_percent"
        ),
        from_guide=True,
    ),
    # --- what a rate-limiting Redis needs on top --------------------------------------
    Threshold(
        name="redis_down",
        alert="RedisDown",
        description="The exporter cannot reach or authenticate to Redis (redis_up == 0)",
        unit="up",
        warn=None,
        crit=1,
        expr="redis_up",
        direction="below",
        for_="1m",
        tunable=False,
        maximum=1,
        # ElastiCache replaces failed nodes itself and reports it as an event (SNS), not a metric.
        cloudwatch=None,
    ),
    Threshold(
        name="evicted_keys",
        alert="RedisKeysEvicted",
        description="Keys evicted in the last 5 minutes: an evicted counter resets a client's window (over-admission)",
        unit="keys",
        warn=None,
        crit=0,
        expr="increase(redis_evicted_keys_total[5m])",
        for_="0m",
        cloudwatch=CloudWatchMapping("Evictions", "Sum", 60, 1, "GreaterThanThreshold"),
    ),
    Threshold(
        name="rejected_connections",
        alert="RedisRejectedConnections",
        description="Connections refused at maxclients in the last 5 minutes: limiter calls are failing",
        unit="connections",
        warn=None,
        crit=0,
        expr="increase(redis_rejected_connections_total[5m])",
        for_="0m",
        cloudwatch=None,  # ElastiCache publishes no refused-connection count
    ),
    Threshold(
        name="rdb_last_bgsave_failed",
        alert="RedisRdbBgsaveFailed",
        description="The last RDB background save failed (with stop-writes-on-bgsave-error, writes are refused)",
        unit="ok",
        warn=None,
        crit=1,
        expr="redis_rdb_last_bgsave_status",
        direction="below",
        for_="0m",
        tunable=False,
        maximum=1,
        cloudwatch=None,  # ElastiCache has no save directive; snapshots report through events
    ),
    Threshold(
        name="rdb_last_save_age",
        alert="RedisRdbSaveTooOld",
        description="Seconds since the last successful RDB save while there are unsaved changes",
        unit="s",
        # The guide's save points write at least every 15 minutes when anything changed:
        # one hour is four missed save points, six hours is a lost night of recovery data.
        warn=3600,
        crit=21600,
        expr=(
            "(time() - redis_rdb_last_save_timestamp_seconds)"
            " and on(instance, job) redis_rdb_changes_since_last_save > 0"
        ),
        for_="5m",
        cloudwatch=None,
    ),
    Threshold(
        name="aof_last_write_failed",
        alert="RedisAofWriteFailed",
        description="The last AOF write failed (disk full or I/O error): writes are being refused",
        unit="ok",
        warn=None,
        crit=1,
        expr="redis_aof_last_write_status",
        direction="below",
        for_="0m",
        tunable=False,
        maximum=1,
        cloudwatch=None,  # no AOF on ElastiCache
    ),
    Threshold(
        name="replication_link_down",
        alert="RedisReplicationLinkDown",
        description="A replica has lost its link to the primary (the metric exists on replicas only)",
        unit="up",
        warn=None,
        crit=1,
        expr="redis_master_link_up",
        direction="below",
        for_="1m",
        tunable=False,
        maximum=1,
        cloudwatch=None,  # ElastiCache resyncs or replaces the replica itself
    ),
    Threshold(
        name="replication_lag",
        alert="RedisReplicationLagHigh",
        description="Seconds since a replica last acknowledged the replication stream (seen from the primary)",
        unit="s",
        # A failover onto a lagging replica loses that many seconds of counters.
        warn=10,
        crit=30,
        expr="redis_connected_slave_lag_seconds",
        for_="2m",
        cloudwatch=CloudWatchMapping("ReplicationLag", "Maximum", 60, 2, "GreaterThanThreshold"),
    ),
    # --- Redis Cluster (the metrics exist on cluster nodes only: silent elsewhere) -------
    Threshold(
        name="cluster_state",
        alert="RedisClusterStateNotOk",
        description="A cluster node reports cluster_state:fail (it lost the majority of primaries, or with "
                    "full coverage required a slot is unserved): it refuses every command",
        unit="ok",
        warn=None,
        crit=1,
        expr="redis_cluster_state",
        direction="below",
        for_="1m",
        tunable=False,
        maximum=1,
        cloudwatch=None,  # ElastiCache reports shard failures through events, not a metric
    ),
    Threshold(
        name="cluster_slots_not_ok",
        alert="RedisClusterSlotsNotOk",
        description=f"Hash slots of {SLOTS} this node does not see served (unassigned, or owner in PFAIL/FAIL): "
                    "limiter keys there get their tier's failure policy",
        unit="slots",
        warn=None,
        crit=0,
        # Not slots_fail + slots_pfail alone: with cluster-require-full-coverage no the state
        # stays ok while slots are unassigned (redis_conf/cluster.py), so count what is served.
        expr=f"{SLOTS} - redis_cluster_slots_ok",
        for_="1m",
        maximum=SLOTS,
        cloudwatch=None,
    ),
    Threshold(
        name="cluster_node_failed",
        alert="RedisClusterNodeFailed",
        description="A cluster node is unreachable to its exporter: its shard runs without it "
                    "(a replica promoted, or one replica fewer)",
        unit="up",
        warn=None,
        crit=1,
        # A dead node exports no redis_cluster_enabled, so "was a member" cannot come from the
        # node alone: a window of it clears the alert once the window passes the death (the old
        # [1h] went silent after an hour), and a window long enough (days) is a heavy query each
        # evaluation and still ends. The scrape config marks cluster targets with a static label
        # (render_prometheus_config(cluster=True), the dev cluster), which stays on redis_up for
        # as long as the target is scraped. The [1h] arm keeps a Prometheus whose scrape config
        # lacks the label covered for the first hour.
        expr=(f'redis_up{{{CLUSTER_TARGET_LABEL}="true"}}'
              " or (redis_up and on(instance, job) max_over_time(redis_cluster_enabled[1h]) == 1)"),
        direction="below",
        for_="1m",
        tunable=False,
        maximum=1,
        cloudwatch=None,
    ),
    Threshold(
        name="engine_cpu",
        alert="RedisEngineCpuHigh",
        description="CPU used by Redis' main (command) thread, percent of one core",
        unit="%",
        # Redis executes commands on one thread; near 100 % every limiter call queues.
        warn=70,
        crit=90,
        expr=(
            "100 * (rate(redis_cpu_sys_main_thread_seconds_total[1m])"
            " + rate(redis_cpu_user_main_thread_seconds_total[1m]))"
        ),
        maximum=100,
        cloudwatch=CloudWatchMapping("EngineCPUUtilization", "Average", 60, 5, "GreaterThanThreshold"),
    ),
    Threshold(
        name="new_connections",
        alert="RedisConnectionChurnHigh",
        description="New connections per second: the limiter's clients should pool, each TLS handshake costs the main thread",
        unit="conn/s",
        warn=50,
        crit=200,
        expr="rate(redis_connections_received_total[1m])",
        cloudwatch=CloudWatchMapping(
            "NewConnections", "Sum", 60, 5, "GreaterThanThreshold", value_map="per_period"
        ),
    ),
    # --- the limiter client's own metrics (scraped from the application) --------------
    Threshold(
        name="limiter_fallbacks",
        alert="RateLimiterFallback",
        description="Decisions made by the failure policy in the last 5 minutes: the limiter is deciding without Redis",
        unit="decisions",
        warn=None,
        crit=0,
        expr=f'sum by (instance, job, tier) (increase({LIMITER_DECISIONS_METRIC}{{outcome="fallback"}}[5m]))',
        for_="0m",
        cloudwatch=None,  # an application metric: CloudWatch alarms watch ElastiCache's own
        service="ratelimit",
    ),
    Threshold(
        name="limiter_errors",
        alert="RateLimiterErrors",
        description="Limiter configuration errors in the last 5 minutes (library missing, NOPERM): "
                    "decisions fall back to each tier's policy until it is fixed",
        unit="errors",
        warn=None,
        # Any: each one is a decision made without Redis for a reason no outage explains, and
        # it stays until an operator loads the library or fixes the ACL.
        crit=0,
        expr=f"sum by (instance, job, kind) (increase({LIMITER_ERRORS_METRIC}[5m]))",
        for_="0m",
        cloudwatch=None,
        service="ratelimit",
    ),
    Threshold(
        name="credential_denials",
        alert="RateLimiterCredentialDenialSpike",
        description=f"Denials per second on the {' and '.join(CREDENTIAL_TIERS)} tiers: credential stuffing or MFA guessing",
        unit="denials/s",
        # A user who mistypes a password a few times is far below 1/s per application instance;
        # a stuffing run from a botnet is not.
        warn=1,
        crit=10,
        # No regex matchers: `.` matches newlines on Prometheus 3 (tests/unit/test_prometheus3.py).
        expr="sum by (instance, job, tier) (" + " or ".join(
            f'rate({LIMITER_DECISIONS_METRIC}{{tier="{tier}",outcome="{outcome}"}}[5m])'
            for tier in CREDENTIAL_TIERS for outcome in ("denied", "denied_locally")) + ")",
        for_="2m",
        cloudwatch=None,
        service="ratelimit",
    ),
)

_FIELDS = ("warn", "crit")


def thresholds_by_name(thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS) -> dict[str, Threshold]:
    return {t.name: t for t in thresholds}


def apply_overrides(
    overrides: Mapping[str, Any] | None, base: tuple[Threshold, ...] = DEFAULT_THRESHOLDS
) -> tuple[Threshold, ...]:
    """The table with stack config `thresholds: {<name>: {warn: x, crit: y}}` applied.

    Only the given fields move; `crit: null` / `warn: null` removes that line (at least one
    must remain). Raises SettingError keyed ``thresholds.<name>[.<field>]``.
    """
    if overrides is None:
        return base
    if not isinstance(overrides, Mapping):
        raise SettingError("thresholds", overrides, "expected a mapping of threshold name -> {warn, crit}")
    table = thresholds_by_name(base)
    changed: dict[str, Threshold] = {}
    for name, fields in overrides.items():
        key = f"thresholds.{name}"
        if name not in table:
            raise SettingError(key, fields, f"unknown threshold; known: {', '.join(sorted(table))}")
        t = table[name]
        if not t.tunable:
            raise SettingError(key, fields, f"not tunable: {t.alert} is an up/down state, not a level")
        if not isinstance(fields, Mapping):
            raise SettingError(key, fields, "expected a mapping with warn and/or crit")
        unknown = sorted(str(f) for f in fields if f not in _FIELDS)
        if unknown:
            raise SettingError(f"{key}.{unknown[0]}", fields[unknown[0]], "unknown field; allowed: warn, crit")
        values: dict[str, float | None] = {"warn": t.warn, "crit": t.crit}
        for field in _FIELDS:
            if field in fields:
                values[field] = _number(f"{key}.{field}", fields[field], t)
        warn, crit = values["warn"], values["crit"]
        if warn is None and crit is None:
            raise SettingError(f"{key}.crit", None, "at least one of warn and crit must stay set")
        if warn is not None and crit is not None:
            if t.direction == "above" and not warn < crit:
                raise SettingError(f"{key}.warn", warn, f"must be below crit ({fmt_number(crit)}): the value rises towards critical")
            if t.direction == "below" and not warn > crit:
                raise SettingError(f"{key}.warn", warn, f"must be above crit ({fmt_number(crit)}): the value falls towards critical")
        changed[name] = replace(t, warn=warn, crit=crit)
    return tuple(changed.get(t.name, t) for t in base)


def _number(key: str, value: Any, t: Threshold) -> float | None:
    if value is None:
        return None
    # bool is an int subclass; `warn: true` in YAML is a typo, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SettingError(key, value, f"expected a number in {t.unit}{_range_text(t)}")
    number = float(value)
    if not math.isfinite(number):
        raise SettingError(key, value, f"expected a finite number in {t.unit}{_range_text(t)}")
    if number < t.minimum:
        raise SettingError(key, value, f"must be >= {fmt_number(t.minimum)} {t.unit}{_range_text(t)}")
    if t.maximum is not None and number > t.maximum:
        raise SettingError(key, value, f"must be <= {fmt_number(t.maximum)} {t.unit}{_range_text(t)}")
    return number


def _range_text(t: Threshold) -> str:
    hi = fmt_number(t.maximum) if t.maximum is not None else "inf"
    return f" (allowed {fmt_number(t.minimum)}..{hi})"


def thresholds_markdown(thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS) -> str:
    """The table as markdown, for docs/monitoring.md (regenerated, never hand-edited)."""
    rows = [
        "| name | alert | what | unit | warning | critical | for | PromQL | CloudWatch (ElastiCache) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in thresholds:
        op = ">" if t.direction == "above" else "<"
        warn = f"{op} {fmt_number(t.warn)}" if t.warn is not None else "-"
        crit = f"{op} {fmt_number(t.crit)}" if t.crit is not None else "-"
        if t.cloudwatch is None:
            cw = "-"
        else:
            c = t.cloudwatch
            cw_op = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=",
                     "LessThanThreshold": "<", "LessThanOrEqualToThreshold": "<="}[c.comparison_operator]
            lines = " / ".join(f"{cw_op} {fmt_number(c.threshold_for(v))}" for _, v in t.lines())
            cw = f"{c.metric_name} {c.statistic} {lines} ({c.evaluation_periods} x {c.period}s)"
        name = f"{t.name} (guide)" if t.from_guide else t.name
        expr = t.expr.replace("|", "\\|")
        rows.append(
            f"| {name} | {t.alert} | {t.description} | {t.unit} | {warn} | {crit} | {t.for_} | `{expr}` | {cw} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(thresholds_markdown(), end="")
