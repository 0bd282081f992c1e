"""Typed Redis directives: parse the source redis.conf, validate overrides, keep values typed.

Every directive the source file or a stack override may set is declared here once, with its
parser (text or config value -> typed value), its renderer (typed value -> redis.conf text) and
what it becomes on ElastiCache (a modifiable parameter, or the managed-service equivalent).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from infra.errors import SettingError

SOURCE = Path(__file__).with_name("redis.conf")

MAXMEMORY_POLICIES = (
    "volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu",
    "volatile-random", "allkeys-random", "volatile-ttl", "noeviction",
)
# Redis' own unit rules: k/m/g are powers of 1000, kb/mb/gb powers of 1024.
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_MEMORY = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_KEYSPACE_FLAGS = set("KEg$lshzxetmdnA")


class Invalid(ValueError):
    """A directive value that is not allowed; the message says what is."""


def parse_memory(value: Any) -> int:
    if isinstance(value, bool):
        raise Invalid("expected a memory size like 800mb, 1gb, 512000000 (units b, k, kb, m, mb, g, gb)")
    if isinstance(value, int | float) and float(value).is_integer() and value >= 0:
        return int(value)
    m = _MEMORY.match(str(value))
    if not m or m.group(2).lower() not in _MEMORY_UNITS:
        raise Invalid("expected a memory size like 800mb, 1gb, 512000000 (units b, k, kb, m, mb, g, gb)")
    return int(m.group(1)) * _MEMORY_UNITS[m.group(2).lower()]


def render_memory(n: int) -> str:
    for unit, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _int_parser(lo: int, hi: int | None = None, extra: str = "") -> Callable[[Any], int]:
    allowed = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
    allowed += extra

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise Invalid(f"expected {allowed}")
        try:
            n = int(str(value).strip()) if not isinstance(value, float) else int(value)
        except ValueError:
            raise Invalid(f"expected {allowed}") from None
        if isinstance(value, float) and not value.is_integer():
            raise Invalid(f"expected {allowed}")
        if n < lo or (hi is not None and n > hi):
            raise Invalid(f"expected {allowed}")
        return n

    return parse


def parse_timeout(value: Any) -> int:
    n = _int_parser(0, None, " (seconds)")(value)
    # ElastiCache refuses 1-19; the rule applies to every target so stacks stay portable.
    if 0 < n < 20:
        raise Invalid("expected 0 (never close idle clients) or at least 20 seconds (ElastiCache's rule, "
                      "applied to every target)")
    return n


def parse_yesno(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true"):
        return True
    if text in ("no", "false"):
        return False
    raise Invalid('expected "yes" or "no"')


def render_yesno(v: bool) -> str:
    return "yes" if v else "no"


def _enum_parser(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise Invalid(f"expected one of {', '.join(choices)}")
        return text

    return parse


def parse_save(value: Any) -> tuple[tuple[int, int], ...]:
    """`save` points: "900 1 300 10", a list of [seconds, changes] pairs, or "" to disable RDB."""
    allowed = 'expected "" (no RDB snapshots) or "<seconds> <changes>" pairs, e.g. "900 1 300 10"'
    if isinstance(value, list | tuple):
        flat: list[Any] = []
        for item in value:
            flat.extend(item if isinstance(item, list | tuple) else str(item).split())
    else:
        flat = str(value).replace('"', "").split()
    if len(flat) % 2:
        raise Invalid(allowed)
    try:
        nums = [int(x) for x in flat]
    except (TypeError, ValueError):
        raise Invalid(allowed) from None
    if any(n <= 0 for n in nums):
        raise Invalid(allowed)
    return tuple((nums[i], nums[i + 1]) for i in range(0, len(nums), 2))


def render_save(points: tuple[tuple[int, int], ...]) -> str:
    return " ".join(f"{s} {c}" for s, c in points) if points else '""'


def parse_keyspace_events(value: Any) -> str:
    text = str(value).strip().strip('"')
    if set(text) - _KEYSPACE_FLAGS:
        raise Invalid(f'expected a combination of the flags {"".join(sorted(_KEYSPACE_FLAGS))} or ""')
    return text


def render_quoted(v: str) -> str:
    return f'"{v}"'


@dataclass(frozen=True)
class ElastiCacheMapping:
    """What a directive becomes on ElastiCache: a parameter, or why not and the managed equivalent."""

    parameter: str | None = None
    why_not: str = ""
    equivalent: str = ""


@dataclass(frozen=True)
class DirectiveSpec:
    name: str
    parse: Callable[[Any], Any]
    render: Callable[[Any], str]
    elasticache: ElastiCacheMapping
    overridable: bool = True


def _not_on_ec(why: str, equivalent: str) -> ElastiCacheMapping:
    return ElastiCacheMapping(None, why, equivalent)


def _param(name: str) -> ElastiCacheMapping:
    return ElastiCacheMapping(parameter=name)


_SPECS: tuple[DirectiveSpec, ...] = (
    DirectiveSpec("maxmemory", parse_memory, render_memory, _not_on_ec(
        "set by the node type; not modifiable",
        "choose the node type; reserved-memory-percent keeps headroom for snapshots and replication")),
    DirectiveSpec("maxmemory-policy", _enum_parser(MAXMEMORY_POLICIES), str, _param("maxmemory-policy")),
    DirectiveSpec("maxmemory-samples", _int_parser(1, 64), str, _param("maxmemory-samples")),
    DirectiveSpec("appendonly", parse_yesno, render_yesno, _not_on_ec(
        "ElastiCache has no AOF on current engines",
        "Multi-AZ replication with automatic failover, plus daily snapshots")),
    DirectiveSpec("appendfsync", _enum_parser(("always", "everysec", "no")), str, _not_on_ec(
        "ElastiCache has no AOF on current engines", "Multi-AZ replication (a replica holds every write)")),
    DirectiveSpec("save", parse_save, render_save, _not_on_ec(
        "RDB save points are managed by the service",
        "automatic snapshots: snapshot window and retention (backup.window, backup.retentionDays)")),
    DirectiveSpec("protected-mode", parse_yesno, render_yesno, _not_on_ec(
        "not a parameter; the service is reachable only inside the VPC",
        "security group ingress only from the application security groups")),
    DirectiveSpec("enable-debug-command", parse_yesno, render_yesno, _not_on_ec(
        "DEBUG is unavailable on ElastiCache", "nothing to do: the command does not exist there")),
    DirectiveSpec("enable-module-command", parse_yesno, render_yesno, _not_on_ec(
        "MODULE is unavailable on ElastiCache", "nothing to do: the command does not exist there")),
    DirectiveSpec("enable-protected-configs", parse_yesno, render_yesno, _not_on_ec(
        "CONFIG SET is unavailable on ElastiCache", "parameter group changes through the stack")),
    DirectiveSpec("timeout", parse_timeout, str, _param("timeout")),
    DirectiveSpec("tcp-keepalive", _int_parser(0, None, " (seconds)"), str, _param("tcp-keepalive")),
    DirectiveSpec("maxclients", _int_parser(1, 65000), str, _not_on_ec(
        "fixed at 65000 by the service", "CurrConnections alarm from the thresholds table")),
    DirectiveSpec("slowlog-log-slower-than", _int_parser(-1, None, " (microseconds; -1 disables)"), str,
                  _param("slowlog-log-slower-than")),
    DirectiveSpec("slowlog-max-len", _int_parser(0, None), str, _param("slowlog-max-len")),
    DirectiveSpec("latency-monitor-threshold", _int_parser(0, None, " (milliseconds)"), str, _not_on_ec(
        "not modifiable", "EngineCPUUtilization alarm and the slow log delivered to CloudWatch Logs")),
    DirectiveSpec("busy-reply-threshold", _int_parser(0, None, " (milliseconds)"), str, _not_on_ec(
        "lua-time-limit / busy-reply-threshold are not modifiable (fixed at 5000 ms)",
        "the service default equals this value")),
    DirectiveSpec("aof-use-rdb-preamble", parse_yesno, render_yesno, _not_on_ec(
        "ElastiCache has no AOF on current engines", "snapshots")),
    DirectiveSpec("stop-writes-on-bgsave-error", parse_yesno, render_yesno, _not_on_ec(
        "snapshots are taken by the service", "snapshot failures raise ElastiCache events")),
    DirectiveSpec("rdbchecksum", parse_yesno, render_yesno, _not_on_ec(
        "snapshot format is managed by the service", "snapshots are checksummed by the service")),
    DirectiveSpec("notify-keyspace-events", parse_keyspace_events, render_quoted, _param("notify-keyspace-events")),
    DirectiveSpec("min-replicas-to-write", _int_parser(0, None), str, _param("min-replicas-to-write")),
    DirectiveSpec("min-replicas-max-lag", _int_parser(0, None, " (seconds)"), str, _param("min-replicas-max-lag")),
)
SPECS: Mapping[str, DirectiveSpec] = MappingProxyType({s.name: s for s in _SPECS})
RENAME = "rename-command"


@dataclass(frozen=True)
class RedisConf:
    """The typed settings of the source file after overrides.

    `values` holds typed values keyed by directive name, in source order; `disabled_commands`
    is the guide's rename-command list (rendered as ACL denials, not renames).
    """

    values: Mapping[str, Any]
    disabled_commands: tuple[str, ...]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def with_overrides(self, overrides: Mapping[str, Any], key_prefix: str = "redis") -> RedisConf:
        """Apply stack overrides; every bad one is reported (SettingError) before anything else runs."""
        values = dict(self.values)
        errors: list[SettingError] = []
        for name, raw in overrides.items():
            spec = SPECS.get(name)
            if spec is None or not spec.overridable:
                errors.append(SettingError(f"{key_prefix}.{name}", raw,
                                           f"unknown Redis directive; allowed: {', '.join(SPECS)}"))
                continue
            try:
                values[name] = spec.parse(raw)
            except Invalid as exc:
                errors.append(SettingError(f"{key_prefix}.{name}", raw, str(exc)))
        if errors:
            from infra.errors import SettingsErrors

            raise SettingsErrors(errors)
        return RedisConf(MappingProxyType(values), self.disabled_commands)


def parse_conf_text(text: str) -> RedisConf:
    values: dict[str, Any] = {}
    disabled: list[str] = []
    save_points: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = shlex.split(stripped)
        name, args = parts[0].lower(), parts[1:]
        if name == RENAME:
            if len(args) != 2 or args[1] != "":
                raise ValueError(f"{SOURCE.name}:{lineno}: only `rename-command CMD \"\"` (disable) is supported")
            disabled.append(args[0].upper())
            continue
        spec = SPECS.get(name)
        if spec is None:
            raise ValueError(f"{SOURCE.name}:{lineno}: directive {name!r} has no schema entry in redis_conf/schema.py")
        raw = " ".join(args) if name == "save" else (args[0] if args else "")
        try:
            value = spec.parse(raw)
        except Invalid as exc:
            raise ValueError(f"{SOURCE.name}:{lineno}: {name} {raw!r}: {exc}") from None
        if name == "save":
            # Redis merges repeated `save` lines into one list of points.
            save_points.extend(value)
            value = tuple(save_points)
        values[name] = value
    return RedisConf(MappingProxyType(values), tuple(disabled))


def load_base() -> RedisConf:
    return parse_conf_text(SOURCE.read_text())
