"""The `elasticache` target: a production Redis (or Valkey) replication group for the rate limiter.

Security group (ingress only from the application's security groups), subnet group over
private subnets in distinct AZs, a parameter group derived from redis_conf, a customer KMS
key, a generated AUTH token (or RBAC users) kept in Secrets Manager, Multi-AZ with automatic
failover, TLS required, snapshots + final snapshot, slow/engine logs in CloudWatch Logs, and
CloudWatch alarms rendered from the thresholds table into an SNS topic. See docs/elasticache.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.components.aws_common import (
    PortRule,
    alarm_topic,
    app_secret,
    child,
    customer_kms_key,
    metric_alarms,
    redis_security_group,
)
from infra.envcontract import env_contract, redis_url
from infra.errors import SettingError
from infra.monitoring.cloudwatch import AlarmSpec, alarm_specs, member_cluster_ids
from infra.settings import Settings
from infra.thresholds import Threshold
from ratelimit.tiers import Tier
from redis_conf.acl import APP_RULES
from redis_conf.elasticache import Family, elasticache_parameters, family_for

PORT = 6379
# ElastiCache AUTH tokens allow only these specials (AWS docs, "AUTH token").
AUTH_TOKEN_SPECIALS = "!&#$^<>-"
AUTH_TOKEN_LENGTH = 64
# Fixed at creation for a cluster-mode group; set on our own group because a custom group
# does not inherit it from default.<family>.cluster.on.
# RBAC: the access string of the application user is the ACL model's app rules (one source),
# so the managed service refuses the same commands the self-hosted targets refuse.
APP_USER_NAME = "app"
APP_ACCESS_STRING = f"on {APP_RULES}"
# Every user group must contain a user named "default"; ours can do nothing at all.
DEFAULT_USER_ACCESS_STRING = "off -@all"
SECRET_FIELDS = ("username", "password")
_ID_SAFE = re.compile(r"[^a-z0-9-]+")


def _fixed_id(*parts: str, limit: int = 40) -> str:
    """A lowercase id from parts (letters, digits, single hyphens, letter first, <= limit)."""
    text = _ID_SAFE.sub("-", "-".join(parts).lower())
    text = re.sub(r"-{2,}", "-", text).strip("-")
    if not text or not text[0].isalpha():
        text = "r-" + text
    return text[:limit].rstrip("-")


@dataclass(frozen=True)
class ElastiCacheArgs:
    """Everything the component needs, typed; built from Settings by `from_settings`."""

    project: str
    stack: str
    engine: str
    engine_version: str
    family: Family
    node_type: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    app_security_group_ids: tuple[str, ...]
    parameters: dict[str, str]
    tiers: tuple[Tier, ...]
    thresholds: tuple[Threshold, ...]
    allowed_cidrs: tuple[str, ...] = ()
    cluster_mode: bool = False
    num_cache_clusters: int = 2
    num_shards: int = 1
    replicas_per_shard: int = 1
    multi_az: bool = True
    replication_group_id: str | None = None
    kms_key_arn: str | None = None
    auth_mode: str = "token"
    auth_token: pulumi.Input[str] | None = field(default=None, repr=False)
    auth_token_update_strategy: str | None = None
    maintenance_window: str = "sun:05:00-sun:07:00"
    apply_immediately: bool = False
    log_retention_days: int = 30
    alarm_email: str | None = None
    protect: bool = True
    snapshot_retention_days: int = 7
    snapshot_window: str = "03:00-05:00"
    final_snapshot: bool = True
    timeout_ms: int = 5000
    enabled: bool = True
    rate_limit_mode: str = "redis"
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cluster_mode and self.multi_az and self.num_cache_clusters < 2:
            raise SettingError("elasticache.numCacheClusters", self.num_cache_clusters,
                               "Multi-AZ needs at least 2 nodes (a primary and a replica)")
        if self.cluster_mode and self.multi_az and self.replicas_per_shard < 1:
            raise SettingError("elasticache.replicasPerShard", self.replicas_per_shard,
                               "Multi-AZ needs at least 1 replica per shard")
        if self.multi_az and len(set(self.subnet_ids)) < 2:
            raise SettingError("network.subnetIds", list(self.subnet_ids),
                               "Multi-AZ needs at least 2 subnets in different AZs")
        if self.auth_mode not in ("token", "rbac"):
            raise SettingError("elasticache.authMode", self.auth_mode, "expected token or rbac")
        if self.auth_mode == "rbac" and self.auth_token is not None:
            raise SettingError("elasticache.authMode", "rbac", "an RBAC user group cannot be combined with "
                               "an AUTH token: remove authToken or use authMode token")
        if self.auth_token_update_strategy is not None:
            if self.auth_token_update_strategy not in ("ROTATE", "SET"):
                raise SettingError("elasticache.authTokenUpdateStrategy", self.auth_token_update_strategy,
                                   "expected ROTATE or SET")
            if self.auth_mode != "token":
                raise SettingError("elasticache.authTokenUpdateStrategy", self.auth_token_update_strategy,
                                   "only applies to authMode token")
        if not self.app_security_group_ids and not self.allowed_cidrs:
            raise SettingError("network.appSecurityGroupIds", [], "required: the application security groups "
                               "allowed to reach Redis (or network.allowedCidrs)")
        if self.snapshot_retention_days < 1:
            raise SettingError("backup.retentionDays", self.snapshot_retention_days, "expected 1..35")

    @property
    def member_kwargs(self) -> dict[str, int]:
        if self.cluster_mode:
            return {"num_node_groups": self.num_shards, "replicas_per_node_group": self.replicas_per_shard}
        return {"num_cache_clusters": self.num_cache_clusters}

    @property
    def member_suffixes(self) -> list[str]:
        """What ElastiCache appends to the group id for each member (`-001`, `-0001-001`, ...)."""
        if self.cluster_mode:
            return [f"{s:04d}-{n:03d}" for s in range(1, self.num_shards + 1)
                    for n in range(1, self.replicas_per_shard + 2)]
        return [f"{n:03d}" for n in range(1, self.num_cache_clusters + 1)]

    @property
    def automatic_failover(self) -> bool:
        # Cluster mode requires it; otherwise it needs a replica to fail over to.
        return self.cluster_mode or self.num_cache_clusters >= 2

    @property
    def base_id(self) -> str:
        return _fixed_id(self.project, self.stack, limit=30)

    @classmethod
    def from_settings(cls, settings: Settings) -> ElastiCacheArgs:
        c = settings.config
        ec = c.elasticache
        family = family_for(c.engine, c.engine_version)
        parameters = elasticache_parameters(settings.redis_conf, family, cluster_mode=ec.cluster_mode,
                                            reserved_memory_percent=ec.reserved_memory_percent)
        if c.network.vpc_id is None:
            raise SettingError("network.vpcId", None, "required for target elasticache")
        token = c.auth_token.get_secret_value() if c.auth_token is not None else None
        return cls(
            project=settings.project, stack=settings.stack, engine=c.engine, engine_version=c.engine_version,
            family=family, node_type=ec.node_type, vpc_id=c.network.vpc_id, subnet_ids=c.network.subnet_ids,
            app_security_group_ids=c.network.app_security_group_ids, allowed_cidrs=c.network.allowed_cidrs,
            parameters=parameters, tiers=settings.tiers, thresholds=settings.thresholds,
            cluster_mode=ec.cluster_mode, num_cache_clusters=ec.num_cache_clusters, num_shards=ec.num_shards,
            replicas_per_shard=ec.replicas_per_shard, multi_az=ec.multi_az,
            replication_group_id=ec.replication_group_id, kms_key_arn=ec.kms_key_arn, auth_mode=ec.auth_mode,
            auth_token=pulumi.Output.secret(token) if token is not None else None,
            auth_token_update_strategy=ec.auth_token_update_strategy, maintenance_window=ec.maintenance_window,
            apply_immediately=ec.apply_immediately, log_retention_days=c.alerting.log_retention_days,
            alarm_email=c.alerting.email, protect=ec.protect, snapshot_retention_days=c.backup.retention_days,
            snapshot_window=c.backup.window, final_snapshot=c.backup.final_snapshot, timeout_ms=c.timeout_ms,
            enabled=c.enabled, rate_limit_mode=c.rate_limit_mode, tags=settings.tags,
        )


def _distinct_azs(subnets: list[Any], subnet_ids: tuple[str, ...], multi_az: bool) -> list[str]:
    azs = {s.availability_zone for s in subnets}
    if multi_az and len(azs) < 2:
        raise SettingError("network.subnetIds", list(subnet_ids),
                           f"Multi-AZ needs subnets in at least 2 availability zones; these are all in "
                           f"{', '.join(sorted(azs))}")
    return list(subnet_ids)


class ElastiCacheRedis(pulumi.ComponentResource):
    """A TLS-only, encrypted, Multi-AZ ElastiCache replication group plus what operates it."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: ElastiCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:elasticache:ElastiCacheRedis", name, None, opts)
        tags = dict(args.tags)

        # --- network ----------------------------------------------------------------------
        sg, _ingress, _egress = redis_security_group(
            name, self, vpc_id=args.vpc_id, ports=[PortRule(PORT, "Redis over TLS")],
            source_security_group_ids=args.app_security_group_ids, cidrs=args.allowed_cidrs,
            description=f"{args.engine} for the rate limiter ({args.project}/{args.stack}): TLS port "
                        f"{PORT} from the application only",
            tags=tags)
        subnets = [aws.ec2.get_subnet_output(id=sid, opts=pulumi.InvokeOutputOptions(parent=self))
                   for sid in args.subnet_ids]
        checked_subnet_ids = pulumi.Output.all(*subnets).apply(
            lambda found: _distinct_azs(list(found), args.subnet_ids, args.multi_az))
        subnet_group = aws.elasticache.SubnetGroup(
            f"{name}-subnets", description=f"Private subnets of {args.project}/{args.stack} Redis",
            subnet_ids=checked_subnet_ids, tags=tags, opts=child(self))

        # --- parameters -------------------------------------------------------------------
        # Auto-named: a family change creates the new group before the old one (still in use)
        # is deleted, instead of failing on delete-before-replace of a fixed name.
        params = aws.elasticache.ParameterGroup(
            f"{name}-params", family=args.family,
            description=f"From redis_conf/redis.conf for {args.family} ({args.project}/{args.stack})",
            parameters=[aws.elasticache.ParameterGroupParameterArgs(name=k, value=v)
                        for k, v in sorted(args.parameters.items())],
            tags=tags, opts=child(self))

        # --- encryption key ---------------------------------------------------------------
        kms_key_arn: pulumi.Input[str]
        if args.kms_key_arn is None:
            key = customer_kms_key(name, self, description=f"At-rest encryption of {args.project}/{args.stack} "
                                   "Redis snapshots, its secret and alarm topic", tags=tags, protect=args.protect)
            kms_key_arn = key.arn
        else:
            kms_key_arn = args.kms_key_arn

        # --- credentials ------------------------------------------------------------------
        token: pulumi.Output[str]
        if args.auth_token is not None:
            token = pulumi.Output.secret(args.auth_token)
        else:
            generated = random.RandomPassword(
                f"{name}-auth-token", length=AUTH_TOKEN_LENGTH, special=True,
                override_special=AUTH_TOKEN_SPECIALS, min_upper=2, min_lower=2, min_numeric=2, min_special=2,
                opts=child(self, additional_secret_outputs=["result"]))
            token = pulumi.Output.secret(generated.result)
        user_group_ids: list[pulumi.Input[str]] | None = None
        username: str | None = None
        if args.auth_mode == "rbac":
            username = APP_USER_NAME
            default_password = random.RandomPassword(
                f"{name}-default-user-password", length=AUTH_TOKEN_LENGTH, special=True,
                override_special=AUTH_TOKEN_SPECIALS, opts=child(self, additional_secret_outputs=["result"]))
            default_user = aws.elasticache.User(
                f"{name}-default-user", user_id=_fixed_id(args.base_id, "default"), user_name="default",
                engine=args.engine, access_string=DEFAULT_USER_ACCESS_STRING,
                authentication_mode=aws.elasticache.UserAuthenticationModeArgs(
                    type="password", passwords=[pulumi.Output.secret(default_password.result)]),
                tags=tags, opts=child(self, delete_before_replace=True, additional_secret_outputs=["passwords"]))
            app_user = aws.elasticache.User(
                f"{name}-app-user", user_id=_fixed_id(args.base_id, "app"), user_name=APP_USER_NAME,
                engine=args.engine, access_string=APP_ACCESS_STRING,
                authentication_mode=aws.elasticache.UserAuthenticationModeArgs(type="password", passwords=[token]),
                tags=tags, opts=child(self, delete_before_replace=True, additional_secret_outputs=["passwords"]))
            group = aws.elasticache.UserGroup(
                f"{name}-users", user_group_id=_fixed_id(args.base_id, "users"), engine=args.engine,
                user_ids=[default_user.user_id, app_user.user_id], tags=tags,
                opts=child(self, delete_before_replace=True))
            user_group_ids = [group.id]

        # --- logs, alarms topic -----------------------------------------------------------
        logs = {kind: aws.cloudwatch.LogGroup(
            f"{name}-{kind}", retention_in_days=args.log_retention_days, tags=tags, opts=child(self))
            for kind in ("slow-log", "engine-log")}
        topic, _subscription = alarm_topic(name, self, kms_key_id=kms_key_arn, email=args.alarm_email, tags=tags)

        final_snapshot_id: pulumi.Output[str] | None = None
        if args.final_snapshot:
            # A new suffix whenever the group is replaced: each group is deleted with its own final
            # snapshot name (a second replacement under one name fails with SnapshotAlreadyExists).
            # Keepers: the inputs whose change replaces the replication group.
            suffix = random.RandomId(
                f"{name}-final-snapshot-suffix", byte_length=4,
                keepers={"replicationGroupId": args.replication_group_id or "(auto-named)", "engine": args.engine,
                         "clusterMode": "enabled" if args.cluster_mode else "disabled",
                         "kmsKeyId": kms_key_arn, "subnetGroupName": subnet_group.name},
                opts=child(self))
            final_snapshot_id = suffix.hex.apply(lambda h: f"{_fixed_id(args.base_id, 'final', limit=200)}-{h}")

        # --- the replication group --------------------------------------------------------
        topology: dict[str, Any]
        if args.cluster_mode:
            topology = {"cluster_mode": "enabled", "num_node_groups": args.num_shards,
                        "replicas_per_node_group": args.replicas_per_shard}
        else:
            topology = {"cluster_mode": "disabled", "num_cache_clusters": args.num_cache_clusters}
        auth: dict[str, Any] = {}
        if args.auth_mode == "token":
            auth["auth_token"] = token
            if args.auth_token_update_strategy is not None:
                auth["auth_token_update_strategy"] = args.auth_token_update_strategy
        else:
            auth["user_group_ids"] = user_group_ids
        rg = aws.elasticache.ReplicationGroup(
            f"{name}-rg",
            description=f"Rate-limiter {args.engine} for {args.project}/{args.stack}",
            replication_group_id=args.replication_group_id,
            engine=args.engine, engine_version=args.engine_version, node_type=args.node_type, port=PORT,
            parameter_group_name=params.name, subnet_group_name=subnet_group.name, security_group_ids=[sg.id],
            multi_az_enabled=args.multi_az, automatic_failover_enabled=args.automatic_failover,
            transit_encryption_enabled=True, transit_encryption_mode="required",
            at_rest_encryption_enabled=True, kms_key_id=kms_key_arn,
            snapshot_retention_limit=args.snapshot_retention_days, snapshot_window=args.snapshot_window,
            final_snapshot_identifier=final_snapshot_id,
            maintenance_window=args.maintenance_window, apply_immediately=args.apply_immediately,
            auto_minor_version_upgrade=True,
            notification_topic_arn=topic.arn,
            log_delivery_configurations=[
                aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                    destination=logs[kind].name, destination_type="cloudwatch-logs", log_format="json",
                    log_type=kind)
                for kind in ("slow-log", "engine-log")],
            tags=tags,
            **topology, **auth,
            opts=child(self, protect=args.protect,
                       # A fixed id cannot exist twice, so a replacement must delete first.
                       delete_before_replace=args.replication_group_id is not None,
                       additional_secret_outputs=["authToken"]),
        )

        # --- alarms: one per member node, following the group's (auto-named) id ------------
        prefix = _fixed_id(args.project, args.stack, limit=60)
        specs = rg.id.apply(lambda rid: alarm_specs(args.thresholds, member_cluster_ids(rid, **args.member_kwargs),
                                                    name_prefix=prefix))
        keys = [(t.name, severity, suffix) for t in args.thresholds if t.cloudwatch is not None
                for severity, _ in t.lines() for suffix in args.member_suffixes]

        def pick(i: int, expected: tuple[str, str, str]) -> pulumi.Output[AlarmSpec]:
            def get(all_specs: list[AlarmSpec]) -> AlarmSpec:
                s = all_specs[i]
                if (s.threshold_name, s.severity) != expected[:2] or not s.member_cluster_id.endswith(expected[2]):
                    raise RuntimeError(f"alarm spec order changed: {s.name} where {expected} was expected")
                return s
            return specs.apply(get)

        alarms = metric_alarms(
            name, self, {f"{t}-{sev}-{suffix}".replace("_", "-"): pick(i, (t, sev, suffix))
                         for i, (t, sev, suffix) in enumerate(keys)},
            topic_arn=topic.arn, tags=tags)
        secret, _version = app_secret(
            name, self, secret_string=token.apply(lambda t: json.dumps({"username": username or "default",
                                                                         "password": t})),
            kms_key_id=kms_key_arn, description=f"AUTH credential of {args.project}/{args.stack} Redis "
            f"(JSON: {', '.join(SECRET_FIELDS)})", name_prefix=f"{args.project}/{args.stack}/redis-auth-",
            tags=tags)

        # --- outputs ----------------------------------------------------------------------
        endpoint = rg.configuration_endpoint_address if args.cluster_mode else rg.primary_endpoint_address
        url = endpoint.apply(lambda host: redis_url(host, PORT, tls=True, username=username))
        env = pulumi.Output.all(url, token).apply(lambda v: env_contract(
            url=v[0], password=v[1], tls=True, timeout_ms=args.timeout_ms, tiers=args.tiers,
            enabled=args.enabled, rate_limit_mode=args.rate_limit_mode, username=username))
        self.replication_group = rg
        self.security_group = sg
        self.parameter_group = params
        self.secret = secret
        self.alarms = alarms
        self.stack_outputs = {
            "replicationGroupId": rg.id,
            "engine": args.engine,
            "engineVersion": args.engine_version,
            "primaryEndpoint": endpoint,
            "readerEndpoint": rg.reader_endpoint_address if not args.cluster_mode else endpoint,
            "port": PORT,
            "clusterMode": args.cluster_mode,
            "memberClusterIds": rg.id.apply(lambda rid: member_cluster_ids(rid, **args.member_kwargs)),
            "redisUrl": url,
            "authMode": args.auth_mode,
            "username": username or "default",
            "redisPassword": token,
            "env": pulumi.Output.secret(env),
            "authSecretArn": secret.arn,
            "securityGroupId": sg.id,
            "subnetGroupName": subnet_group.name,
            "parameterGroupName": params.name,
            "parameters": dict(args.parameters),
            "kmsKeyArn": kms_key_arn,
            "alarmTopicArn": topic.arn,
            "alarmNames": pulumi.Output.all(*[a.name for a in alarms]),
            "logGroups": {kind: lg.name for kind, lg in logs.items()},
        }
        self.register_outputs({k: v for k, v in self.stack_outputs.items() if k not in ("redisPassword", "env")})
