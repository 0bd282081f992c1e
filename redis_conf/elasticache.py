"""What the source redis.conf becomes on ElastiCache: parameters, plus a report of what cannot map."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from infra import versions
from redis_conf.acl import APP_RULES
from redis_conf.schema import SPECS, RedisConf

Family = Literal["redis7", "valkey7", "valkey8"]
# The families of the engine lines the versions table allows (infra/versions.py ENGINE_LINES).
FAMILIES: tuple[Family, ...] = versions.families()  # type: ignore[assignment]

# Parameters ElastiCache lets a custom parameter group modify, per family (AWS docs:
# "Redis OSS 7 parameter changes", "Valkey 7.2 / 8 parameters"). Only names we may emit
# need to be here; the test checks every emitted parameter is in its family's set.
_COMMON_MODIFIABLE = frozenset({
    "acllog-max-len", "activedefrag", "active-defrag-cycle-max", "active-defrag-cycle-min",
    "active-defrag-ignore-bytes", "active-defrag-max-scan-fields", "active-defrag-threshold-lower",
    "active-defrag-threshold-upper", "activerehashing", "close-on-replica-write",
    "cluster-allow-reads-when-down", "cluster-require-full-coverage", "hash-max-listpack-entries",
    "hash-max-listpack-value", "hll-sparse-max-bytes", "latency-tracking", "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire", "lazyfree-lazy-server-del", "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush", "lfu-decay-time", "lfu-log-factor", "list-compress-depth",
    "list-max-listpack-size", "maxmemory-policy", "maxmemory-samples", "min-replicas-max-lag",
    "min-replicas-to-write", "notify-keyspace-events", "proto-max-bulk-len", "repl-backlog-size",
    "repl-backlog-ttl", "replica-allow-chaining", "replica-ignore-maxmemory", "replica-lazy-flush",
    "reserved-memory-percent", "set-max-intset-entries", "slowlog-log-slower-than", "slowlog-max-len",
    "stream-node-max-bytes", "stream-node-max-entries", "tcp-keepalive", "timeout",
    "zset-max-listpack-entries", "zset-max-listpack-value",
    # Settable only in a new parameter group at creation time (cluster mode cannot be toggled).
    "cluster-enabled",
})
MODIFIABLE: dict[Family, frozenset[str]] = {
    "redis7": _COMMON_MODIFIABLE,
    "valkey7": _COMMON_MODIFIABLE,
    "valkey8": _COMMON_MODIFIABLE,
}


def family_for(engine: str, version: str) -> Family:
    line = versions.engine_line(engine, version)
    if line is None:
        raise ValueError(f"no ElastiCache parameter family for {engine} {version}; supported: "
                         + ", ".join(f"{e.engine} {e.version}" for e in versions.ENGINE_LINES))
    return line.family  # type: ignore[return-value]


@dataclass(frozen=True)
class ReportEntry:
    """One directive of the source file and its fate on ElastiCache."""

    directive: str
    value: str
    status: Literal["parameter", "managed"]
    parameter: str | None
    reason: str
    equivalent: str


def elasticache_parameters(conf: RedisConf, family: Family, *, reserved_memory_percent: int = 25,
                           cluster_mode: bool = False) -> dict[str, str]:
    """Parameter group parameters (name -> value) for `family`; only modifiable names."""
    params: dict[str, str] = {"cluster-enabled": "yes"} if cluster_mode else {}
    for name, value in conf.values.items():
        mapping = SPECS[name].elasticache
        if mapping.parameter is not None:
            # Parameter values carry no redis.conf quoting. An empty value equals the
            # family default and AWS rejects empty parameter values, so it is left out.
            rendered = SPECS[name].render(value).strip('"')
            if rendered:
                params[mapping.parameter] = rendered
    # maxmemory has no parameter: headroom below the node's memory keeps snapshots and
    # replication buffers from triggering evictions of rate-limit counters.
    params["reserved-memory-percent"] = str(reserved_memory_percent)
    unknown = sorted(set(params) - MODIFIABLE[family])
    if unknown:
        raise ValueError(f"parameters not modifiable in family {family}: {', '.join(unknown)}")
    return dict(sorted(params.items()))


def mapping_report(conf: RedisConf) -> list[ReportEntry]:
    """Every directive of the source file: mapped to a parameter, or why not and the managed equivalent."""
    entries: list[ReportEntry] = []
    for name, value in conf.values.items():
        spec = SPECS[name]
        m = spec.elasticache
        entries.append(ReportEntry(
            directive=name, value=spec.render(value),
            status="parameter" if m.parameter else "managed", parameter=m.parameter,
            reason="" if m.parameter else m.why_not, equivalent="" if m.parameter else m.equivalent,
        ))
    for command in conf.disabled_commands:
        entries.append(ReportEntry(
            directive="rename-command", value=f'{command} ""', status="managed", parameter=None,
            reason="renaming is replaced by access control (and CONFIG/DEBUG do not exist on ElastiCache)",
            equivalent=f"RBAC access string of the application user: {APP_RULES}",
        ))
    return entries


def report_as_dicts(conf: RedisConf) -> list[dict[str, str | None]]:
    return [asdict(e) for e in mapping_report(conf)]
