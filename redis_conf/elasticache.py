"""What the source redis.conf and the ACL model become on ElastiCache: parameters, RBAC access
strings, plus a report of what cannot map."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Literal

from infra import versions
from redis_conf.acl import USERS
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


# ---------------------------------------------------------------------------------------------
# RBAC: access strings derived from the ACL model (redis_conf/acl.py)
# ---------------------------------------------------------------------------------------------
# ElastiCache makes these commands unavailable, and rejects an RBAC access string that names one
# of them, allowed or denied ("You can't use forbidden and renamed commands as part of the access
# string ... an exception is thrown"). Sources, read 2026-12:
#   https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html
#     "For clusters running Redis OSS, the following commands are unavailable: bgrewriteaof,
#     bgsave, config, debug, migrate, replicaof, save, slaveof, shutdown, sync"
#   https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html (access string rules)
# Valkey 7.2+ on ElastiCache carries the Redis OSS 7.2 feature set and the same restriction list.
# FCALL, FCALL_RO and FUNCTION are not on it: ElastiCache (Redis OSS) 7 "adds support for Redis OSS
# Functions" (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/engine-versions.html), and
# Valkey 7.2/8.x inherit them, so the application user's `+fcall +fcall_ro` passes through as is.
# Re-read 2026-12 (issue 12): supported-engine-versions.html, "ElastiCache (Redis OSS) 7 adds support
# for Redis OSS Functions ... execute LUA scripts with application logic stored on the ElastiCache
# cluster" and "ElastiCache version 7.1 is compatible with Redis OSS 7.0"; engine-versions.html,
# "all the features available in Redis OSS 7.2 are available by default in Valkey 7.2 and later".
# Every allowed engine line (infra/versions.py ENGINE_LINES: redis 7.0/7.1, valkey 7.2-8.2) has them.
_RESTRICTED: frozenset[str] = frozenset({
    "bgrewriteaof", "bgsave", "config", "debug", "migrate", "replicaof", "save", "slaveof", "shutdown", "sync",
})
RESTRICTED_COMMANDS: Mapping[str, frozenset[str]] = MappingProxyType({family: _RESTRICTED for family in FAMILIES})
RESTRICTED_COMMANDS_SOURCE = "https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html"

# Credentials of the ACL model that exist on ElastiCache; replication and failover are the
# service's own (no `replica` or `sentinel` user).
ELASTICACHE_CREDENTIALS: tuple[str, ...] = ("app", "monitor", "admin")
# Every user group must contain a user named "default" (AWS::ElastiCache::UserGroup UserIds: "A
# user named default must be included"); ours is switched off and may run nothing.
DISABLED_DEFAULT_ACCESS_STRING = "off -@all"
# Rules ElastiCache manages through the API or refuses: passwords are set with CreateUser /
# ModifyUser and `reset` "removes all passwords" (Clusters.RBAC.html). `resetkeys` and
# `resetchannels` only clear what a user already has; an ElastiCache user is created from the
# access string alone, so on the model's fresh user they are no-ops and are left out as well.
_API_MANAGED = frozenset({"reset", "resetpass", "nopass", "resetkeys", "resetchannels"})
_PASSWORD_PREFIXES = (">", "<", "#", "!")


class AccessStringError(ValueError):
    """An ACL rule the derivation cannot carry to ElastiCache faithfully."""


def _rule_command(token: str) -> str | None:
    """The command a `+cmd`, `-cmd`, `+cmd|sub` or `-cmd|sub` rule names (lowercase), else None."""
    if token[:1] in "+-" and not token.startswith(("+@", "-@")):
        return token[1:].split("|", 1)[0].lower()
    return None


def named_commands(access: str) -> set[str]:
    """Every command an access string or rule list names (allowed or denied), lowercase."""
    return {c for c in (_rule_command(t) for t in access.split()) if c is not None}


def elasticache_access_string(rules: str, family: Family, *, enabled: bool = True) -> str:
    """The ElastiCache access string for ACL model `rules` on `family`.

    Rules naming a command ElastiCache makes unavailable are left out whatever their sign: a
    denial of an unavailable command changes nothing, and a grant of one could never be used.
    Password and reset rules are left out (see _API_MANAGED). Everything else is kept in order,
    so the user may run exactly what the model allows, minus the unavailable commands."""
    restricted = RESTRICTED_COMMANDS[family]
    kept: list[str] = []
    for token in rules.split():
        low = token.lower()
        if low in ("on", "off"):
            raise AccessStringError(f"{rules!r}: on/off is set by the derivation, not the model's rules")
        if low.startswith("(") or low.endswith(")"):
            raise AccessStringError(f"{rules!r}: selectors are not derived yet; extend elasticache_access_string")
        if low in _API_MANAGED or token.startswith(_PASSWORD_PREFIXES):
            continue
        command = _rule_command(token)
        if command is not None and command in restricted:
            continue
        kept.append(token)
    return " ".join(["on" if enabled else "off", *kept])


@dataclass(frozen=True)
class ElastiCacheUser:
    """One RBAC user: the model credential it carries, its user name and access string."""

    credential: str
    user_name: str
    access_string: str


def elasticache_users(family: Family) -> tuple[ElastiCacheUser, ...]:
    """The model's app, monitor and admin users as ElastiCache users (user name = credential)."""
    by_credential = {u.password_setting: u for u in USERS}
    missing = [c for c in ELASTICACHE_CREDENTIALS if c not in by_credential]
    if missing:
        raise AccessStringError(f"the ACL model has no user for credential(s) {', '.join(missing)}")
    return tuple(ElastiCacheUser(c, c, elasticache_access_string(by_credential[c].rules, family))
                 for c in ELASTICACHE_CREDENTIALS)


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


def mapping_report(conf: RedisConf, family: Family = "redis7") -> list[ReportEntry]:
    """Every directive of the source file: mapped to a parameter, or why not and the managed equivalent."""
    app = next(u for u in elasticache_users(family) if u.credential == "app")
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
            equivalent=f"RBAC access string of the application user: {app.access_string}",
        ))
    return entries


def report_as_dicts(conf: RedisConf, family: Family = "redis7") -> list[dict[str, str | None]]:
    return [asdict(e) for e in mapping_report(conf, family)]
