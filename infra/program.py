"""The Pulumi program: read settings once, declare the chosen target, return the stack outputs.

`build()` returns the outputs instead of exporting them so the stack tests can resolve them;
`infra/__main__.py` exports whatever it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infra.errors import settings_errors_in
from infra.settings import Settings, load_settings
from redis_conf.elasticache import family_for, report_as_dicts

if TYPE_CHECKING:
    from infra.components.code_signing import SignedCode


def _local(settings: Settings) -> dict[str, Any]:
    from infra.components.local_stack import LocalRedisStack, LocalStackArgs

    stack = LocalRedisStack("redis", LocalStackArgs.from_settings(settings))
    return stack.stack_outputs


def _elasticache(settings: Settings) -> dict[str, Any]:
    from infra.components.elasticache import PORT, ElastiCacheArgs, ElastiCacheRedis

    cache = ElastiCacheRedis("redis", ElastiCacheArgs.from_settings(settings))
    key = cache.stack_outputs["kmsKeyArn"]
    code = _signed_code(settings, key)
    rotation = _rotation(settings, "elasticache", {c: s.arn for c, s in cache.secrets.items()},
                         redis_sg=cache.security_group.id, ports=(PORT,), kms_key_arn=key, code=code,
                         replication_group_id=cache.replication_group.id, user_group_id=cache.user_group_id,
                         user_ids=cache.user_ids)
    return {**cache.stack_outputs,
            **_smoke(settings, cache.stack_outputs, cache.security_group.id, (PORT,), key, code), **rotation}


def _sentinel(settings: Settings) -> dict[str, Any]:
    from infra.components.sentinel_hosts import REDIS_PORT, SENTINEL_PORT, SentinelHosts, SentinelHostsArgs

    hosts = SentinelHosts("redis", SentinelHostsArgs.from_settings(settings))
    out = hosts.stack_outputs
    code = _signed_code(settings, hosts.kms_key.arn)
    rotation = _rotation(settings, "sentinel", {"app": hosts.app_secret.arn, "admin": hosts.admin_secret.arn},
                         redis_sg=hosts.security_group.id, ports=(REDIS_PORT, SENTINEL_PORT),
                         kms_key_arn=hosts.kms_key.arn, code=code, nodes=out["redisNodes"],
                         sentinels=out["sentinelEndpoints"], tls=bool(out["tls"]), ca_cert_pem=out.get("caCertPem"))
    return {**out, **_smoke(settings, out, hosts.security_group.id, (REDIS_PORT, SENTINEL_PORT), hosts.kms_key.arn,
                            code), **rotation}


def _signed_code(settings: Settings, kms_key_arn: Any) -> SignedCode | None:
    """The functions' archive, signed once for both (infra/components/code_signing.py); None when
    neither the smoke nor the rotation function is deployed."""
    c = settings.config
    if not (c.smoke.enabled or c.rotation.enabled):
        return None
    from infra.components.code_signing import LambdaCodeSigning, LambdaCodeSigningArgs

    return LambdaCodeSigning("lambda-code", LambdaCodeSigningArgs(
        project=settings.project, stack=settings.stack, kms_key_arn=kms_key_arn,
        log_retention_days=settings.log_retention_days, tags=settings.tags,
        log_replica_region=settings.log_replica_region)).code


def _smoke(settings: Settings, outputs: dict[str, Any], redis_sg: Any, ports: tuple[int, ...],
           kms_key_arn: Any, code: SignedCode | None) -> dict[str, Any]:
    """The in-VPC smoke function CI invokes after `pulumi up` (smoke.enabled, on by default)."""
    if not settings.config.smoke.enabled:
        return {}
    assert code is not None  # _signed_code signs whenever a function is deployed
    from infra.components.smoke_function import SmokeFunction, SmokeFunctionArgs

    everything = {**common_outputs(settings), **outputs}  # the tiers and expectations smoke holds Redis to
    fn = SmokeFunction("smoke", SmokeFunctionArgs.for_target(settings, everything, redis_security_group_id=redis_sg,
                                                             redis_ports=ports, kms_key_arn=kms_key_arn, code=code))
    return fn.stack_outputs


def _rotation(settings: Settings, target: str, secret_arns: dict[str, Any], *, redis_sg: Any,
              ports: tuple[int, ...], kms_key_arn: Any, code: SignedCode | None, **where: Any) -> dict[str, Any]:
    """The rotation Lambda and its schedules (rotation.enabled, on by default on AWS targets)."""
    c = settings.config
    if not c.rotation.enabled:
        return {}
    assert code is not None  # _signed_code signs whenever a function is deployed
    from infra.components.rotation import CredentialRotation, CredentialRotationArgs

    assert c.network.vpc_id is not None  # the target refused to build without one
    return CredentialRotation("rotation", CredentialRotationArgs(
        project=settings.project, stack=settings.stack, target=target, vpc_id=c.network.vpc_id,
        subnet_ids=tuple(c.network.subnet_ids), redis_security_group_id=redis_sg, redis_ports=ports,
        secret_arns=secret_arns, kms_key_arn=kms_key_arn, code=code, days=c.rotation.days, overlap=c.rotation.overlap,
        log_retention_days=settings.log_retention_days,
        endpoint_security_group_id=c.smoke.secrets_endpoint_security_group_id, tags=settings.tags,
        **where)).stack_outputs


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
        family = family_for(settings.config.engine, settings.config.engine_version)
        outputs["redisConfReport"] = report_as_dicts(settings.redis_conf, family)
        outputs["parameterFamily"] = family
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
