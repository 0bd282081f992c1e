"""The Pulumi program: read settings once, declare the chosen target, return the stack outputs.

`build()` returns the outputs instead of exporting them so the stack tests can resolve them;
`infra/__main__.py` exports whatever it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from infra.errors import settings_errors_in
from infra.settings import Settings, load_settings
from redis_conf.elasticache import family_for, report_as_dicts


def _local(settings: Settings) -> dict[str, Any]:
    from infra.components.local_stack import LocalRedisStack, LocalStackArgs

    stack = LocalRedisStack("redis", LocalStackArgs.from_settings(settings))
    return stack.stack_outputs


def _elasticache(settings: Settings) -> dict[str, Any]:
    from infra.components.elasticache import ElastiCacheArgs, ElastiCacheRedis

    cache = ElastiCacheRedis("redis", ElastiCacheArgs.from_settings(settings))
    return cache.stack_outputs


def _sentinel(settings: Settings) -> dict[str, Any]:
    from infra.components.sentinel_hosts import SentinelHosts, SentinelHostsArgs

    hosts = SentinelHosts("redis", SentinelHostsArgs.from_settings(settings))
    return hosts.stack_outputs


TARGETS: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "local": _local,
    "elasticache": _elasticache,
    "sentinel": _sentinel,
}


def expectations(settings: Settings) -> dict[str, Any]:
    """What `redisops smoke/health` hold the running server to (redisops.connection reads it).

    ElastiCache has no AOF and sizes maxmemory by node type, so only the policy is declared there.
    """
    conf = settings.redis_conf
    if settings.target == "elasticache":
        return {"maxmemoryPolicy": conf["maxmemory-policy"], "appendonly": False}
    return {"maxmemoryPolicy": conf["maxmemory-policy"], "appendonly": bool(conf["appendonly"]),
            "maxmemoryBytes": int(conf["maxmemory"])}


def common_outputs(settings: Settings) -> dict[str, Any]:
    """What every target reports: the tiers the app gets and what the guide's redis.conf became."""
    outputs: dict[str, Any] = {
        "target": settings.target,
        "rateLimits": {t.name: {"limit": t.limit, "windowSeconds": t.window_s, "algorithm": t.algorithm,
                                "failOpen": t.fail_open} for t in settings.tiers},
    }
    outputs["expectations"] = expectations(settings)
    if settings.target == "elasticache":
        outputs["redisConfReport"] = report_as_dicts(settings.redis_conf)
        outputs["parameterFamily"] = family_for(settings.config.engine, settings.config.engine_version)
    return outputs


def build() -> dict[str, Any]:
    settings = load_settings()
    outputs = common_outputs(settings)
    outputs.update(TARGETS[settings.target](settings))
    return outputs


def main() -> None:
    """What `pulumi up`/`pulumi preview` run (infra/__main__.py): build, then export the outputs.

    Bad settings end the run as a `pulumi.RunError`, which Pulumi's language host reports by its
    message alone: the user sees "invalid stack configuration:" and the list, no program text and
    no traceback (tests/stack/test_config_errors.py). Anything else stays a traceback: a bug.
    """
    import pulumi

    try:
        outputs = build()
    except ValueError as exc:
        errors = settings_errors_in(exc)
        if errors is None:
            raise
        raise pulumi.RunError(str(errors)) from None
    for key, value in outputs.items():
        pulumi.export(key, value)
