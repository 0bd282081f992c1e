"""The `elasticache` target: a production Redis (or Valkey) replication group for the rate limiter.

Security group (ingress only from the application's security groups), subnet group over
private subnets in distinct AZs, a parameter group derived from redis_conf, a customer KMS
key, RBAC users derived from the ACL model (or one AUTH token) with their passwords in Secrets
Manager, Multi-AZ with automatic failover, TLS required, snapshots + final snapshot, slow/engine
logs in KMS-encrypted CloudWatch Logs groups, ElastiCache events to an unencrypted topic (the only
kind ElastiCache can publish to) and CloudWatch alarms rendered from the thresholds table into an
encrypted topic. See docs/elasticache.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.components.aws_common import (
    Account,
    PortRule,
    account,
    alarm_topic,
    app_secret,
    child,
    customer_kms_key,
    encrypted_log_group,
    events_topic,
    fixed_name,
    key_use,
    metric_alarms,
    redis_security_group,
    stack_log_groups,
)
from infra.envcontract import env_contract, redis_url
from infra.errors import SettingError
from infra.monitoring.cloudwatch import AlarmSpec, alarm_specs, member_cluster_ids
from infra.settings import Settings
from infra.thresholds import Threshold
from ratelimit.tiers import Tier
from redis_conf.elasticache import (
    DISABLED_DEFAULT_ACCESS_STRING,
    ElastiCacheUser,
    Family,
    elasticache_parameters,
    elasticache_users,
    family_for,
)

PORT = 6379
# ElastiCache AUTH tokens allow only these specials (AWS docs, "AUTH token").
AUTH_TOKEN_SPECIALS = "!&#$^<>-"
AUTH_TOKEN_LENGTH = 64
# RBAC: every access string comes from the ACL model minus ElastiCache's restricted commands
# (redis_conf.elasticache), so the managed service refuses what the self-hosted targets refuse.
APP_USER_NAME = "app"
DEFAULT_USER_ACCESS_STRING = DISABLED_DEFAULT_ACCESS_STRING
SECRET_FIELDS = ("username", "password")
RBAC_SECRET_FIELDS = ("username", "password", "userId")
LOG_KINDS = ("slow-log", "engine-log")


def _fixed_id(*parts: str, limit: int = 40) -> str:
    """A lowercase id from parts (letters, digits, single hyphens, letter first, <= limit)."""
    text = fixed_name(*parts, limit=1000).lower()
    if not text or not text[0].isalpha():
        text = "r-" + text
    return text[:limit].rstrip("-")


def identity_id(project: str, stack: str, *, limit: int = 30) -> str:
    """The stack's id for account-wide ElastiCache ids (RBAC users and group, final snapshot).
    User and group ids are one namespace per account and region, letter first, letters, digits
    and hyphens (botocore elasticache CreateUser/CreateUserGroup: pattern [a-zA-Z][a-zA-Z0-9\\-]*,
    "stored as a lowercase string"), and ours must leave room for "-<credential>" in 40
    characters. `<project>-<stack>` is used as is when it fits and spells the identity exactly
    (the ids of such stacks never change); otherwise, truncated or lowercased or with characters
    replaced, 8 hex digits of SHA-256 of the full "<project>/<stack>" keep two stacks that share
    a long prefix (prod-eu-west-1-primary / -secondary) apart."""
    full = _fixed_id(project, stack, limit=1000)
    if full == f"{project}-{stack}" and len(full) <= limit:
        return full
    digest = hashlib.sha256(f"{project}/{stack}".encode()).hexdigest()[:8]
    return f"{full[:limit - len(digest) - 1].rstrip('-')}-{digest}"


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
    auth_mode: str = "rbac"
    auth_token: pulumi.Input[str] | None = field(default=None, repr=False)
    auth_token_update_strategy: str | None = None
    maintenance_window: str = "sun:05:00-sun:07:00"
    apply_immediately: bool = False
    log_retention_days: int = 365
    alarm_email: str | None = None
    protect: bool = True
    snapshot_retention_days: int = 7
    snapshot_window: str = "03:00-05:00"
    final_snapshot: bool = True
    timeout_ms: int = 5000
    enabled: bool = True
    rate_limit_mode: str = "redis"
    tags: dict[str, str] = field(default_factory=dict)
    # Other log groups of the stack encrypted with this component's key (the smoke function's).
    extra_log_groups: dict[str, str] = field(default_factory=dict)

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
        return identity_id(self.project, self.stack)

    @property
    def users(self) -> tuple[ElastiCacheUser, ...]:
        """RBAC users (app, monitor, admin) from the ACL model; empty in token mode."""
        return elasticache_users(self.family) if self.auth_mode == "rbac" else ()

    @property
    def key_outlives_stack(self) -> bool:
        """The final snapshot outlives the group and is encrypted with the key: deleting the key
        with the stack would make it unreadable."""
        return self.final_snapshot

    def log_group_name(self, component: str, kind: str) -> str:
        # Under /aws/vendedlogs/ ElastiCache's log delivery does not add each group to the
        # account's CloudWatch Logs resource policy, whose 5,120 characters run out after a few
        # dozen groups (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-and-resource-policy.html).
        return f"/aws/vendedlogs/elasticache/{self.project}/{self.stack}/{component}/{kind}"

    def topic_name(self, component: str, purpose: str) -> str:
        return fixed_name(self.project, self.stack, component, purpose)

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
            apply_immediately=ec.apply_immediately, log_retention_days=settings.log_retention_days,
            alarm_email=c.alerting.email, protect=ec.protect, snapshot_retention_days=c.backup.retention_days,
            snapshot_window=c.backup.window, final_snapshot=c.backup.final_snapshot, timeout_ms=c.timeout_ms,
            enabled=c.enabled, rate_limit_mode=c.rate_limit_mode, tags=settings.tags,
            extra_log_groups=stack_log_groups(settings),
        )


def _distinct_azs(subnets: list[Any], subnet_ids: tuple[str, ...], multi_az: bool) -> list[str]:
    azs = {s.availability_zone for s in subnets}
    if multi_az and len(azs) < 2:
        raise SettingError("network.subnetIds", list(subnet_ids),
                           f"Multi-AZ needs subnets in at least 2 availability zones; these are all in "
                           f"{', '.join(sorted(azs))}")
    return list(subnet_ids)


def _secret_document(username: str, extra: dict[str, str]) -> Callable[[str], str]:
    return lambda password: json.dumps({"username": username, "password": password, **extra})


@dataclass
class _Credentials:
    """The app credential (token or RBAC password) and, in RBAC mode, the users' passwords."""

    app_password: pulumi.Output[str]
    username: str | None = None
    passwords: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    user_group_id: pulumi.Output[str] | None = None
    users: dict[str, aws.elasticache.User] = field(default_factory=dict)  # credential -> its ElastiCache user


class ElastiCacheRedis(pulumi.ComponentResource):
    """A TLS-only, encrypted, Multi-AZ ElastiCache replication group plus what operates it."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: ElastiCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:elasticache:ElastiCacheRedis", name, None, opts)
        self._name, self._args = name, args
        tags = dict(args.tags)
        acct = account(self)
        log_names = {kind: args.log_group_name(name, kind) for kind in LOG_KINDS}

        sg, subnet_group = self._network(tags)
        params = self._parameters(tags)
        kms_key_arn = self._key(acct, log_names, tags)
        creds = self._credentials(tags)
        logs = {kind: encrypted_log_group(f"{name}-{kind}", self, log_group_name=log_names[kind],
                                          kms_key_id=kms_key_arn, retention_days=args.log_retention_days,
                                          tags=tags) for kind in LOG_KINDS}
        topic, _ = alarm_topic(name, self, topic_name=args.topic_name(name, "alarms"), kms_key_id=kms_key_arn,
                               acct=acct, email=args.alarm_email, tags=tags)
        events, _ = events_topic(name, self, topic_name=args.topic_name(name, "events"), acct=acct,
                                 email=args.alarm_email, tags=tags)
        rg = self._replication_group(sg, subnet_group, params, kms_key_arn, creds, logs, events, tags)
        alarms = self._alarms(rg, topic, tags)
        secrets = self._secrets(creds, rg, kms_key_arn, tags)

        self.replication_group = rg
        self.security_group = sg
        self.parameter_group = params
        self.secret = secrets["app"]
        self.secrets = secrets
        self.user_ids = creds.user_ids
        self.user_group_id = creds.user_group_id
        self.alarms = alarms
        self.stack_outputs = self._outputs(rg, sg, subnet_group, params, kms_key_arn, creds, secrets, topic, events,
                                           alarms, logs)
        self.register_outputs({k: v for k, v in self.stack_outputs.items()
                               if k not in ("redisPassword", "env", "adminPassword", "monitorPassword")})

    # -- network, parameters, key --------------------------------------------------------------
    def _network(self, tags: dict[str, str]) -> tuple[aws.ec2.SecurityGroup, aws.elasticache.SubnetGroup]:
        name, args = self._name, self._args
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
        return sg, subnet_group

    def _parameters(self, tags: dict[str, str]) -> aws.elasticache.ParameterGroup:
        args = self._args
        # Auto-named: a family change creates the new group before the old one (still in use)
        # is deleted, instead of failing on delete-before-replace of a fixed name.
        return aws.elasticache.ParameterGroup(
            f"{self._name}-params", family=args.family,
            description=f"From redis_conf/redis.conf for {args.family} ({args.project}/{args.stack})",
            parameters=[aws.elasticache.ParameterGroupParameterArgs(name=k, value=v)
                        for k, v in sorted(args.parameters.items())],
            tags=tags, opts=child(self))

    def _key(self, acct: pulumi.Output[Account], log_names: dict[str, str], tags: dict[str, str]) -> pulumi.Input[str]:
        """The stack's customer key, or the one given (docs/elasticache.md lists what its policy
        must allow; `redisops key-policy` checks it)."""
        args = self._args
        if args.kms_key_arn is not None:
            return args.kms_key_arn
        use = key_use(acct, alarm_topic_names=[args.topic_name(self._name, "alarms")],
                      log_group_names=[*log_names.values(), *args.extra_log_groups.values()])
        key = customer_kms_key(
            self._name, self, description=f"{args.project}/{args.stack} Redis: snapshots at rest, secrets, "
            "slow/engine logs, alarm topic", tags=tags, use=use,
            # Retained, not protected, for the final snapshot: `protect` makes `pulumi destroy` fail
            # on the key, which would overrule `elasticache.protect: false`; retain_on_delete lets
            # destroy finish and leaves the key (and its $1/month) for the snapshot.
            protect=args.protect, retain=args.key_outlives_stack)
        self.key_use = use
        return key.arn

    # -- credentials ---------------------------------------------------------------------------
    def _random_password(self, logical: str) -> pulumi.Output[str]:
        generated = random.RandomPassword(
            logical, length=AUTH_TOKEN_LENGTH, special=True, override_special=AUTH_TOKEN_SPECIALS,
            min_upper=2, min_lower=2, min_numeric=2, min_special=2,
            opts=child(self, additional_secret_outputs=["result"]))
        return pulumi.Output.secret(generated.result)

    def _credentials(self, tags: dict[str, str]) -> _Credentials:
        name, args = self._name, self._args
        # The app credential keeps its resource name in both modes (`-auth-token`), so switching
        # modes does not regenerate it.
        app = (pulumi.Output.secret(args.auth_token) if args.auth_token is not None
               else self._random_password(f"{name}-auth-token"))
        if args.auth_mode != "rbac":
            return _Credentials(app_password=app)
        passwords = {u.credential: app if u.credential == "app" else self._random_password(f"{name}-{u.credential}-password")
                     for u in args.users}
        user_ids: dict[str, str] = {}
        users: dict[str, aws.elasticache.User] = {}
        for u in args.users:
            user_ids[u.credential] = _fixed_id(args.base_id, u.credential)
            users[u.credential] = self._user(f"{name}-{u.credential}-user", user_ids[u.credential], u.user_name,
                                             u.access_string, passwords[u.credential], tags)
        members = [user.user_id for user in users.values()]
        # Every user group needs a user named "default" (AWS::ElastiCache::UserGroup: "A user named
        # default must be included"): this one is off and may run nothing, so a password-only client
        # (AUTH <password>) can never log in.
        default_user = self._user(f"{name}-default-user", _fixed_id(args.base_id, "default"), "default",
                                  DEFAULT_USER_ACCESS_STRING, self._random_password(f"{name}-default-user-password"),
                                  tags)
        group = aws.elasticache.UserGroup(
            f"{name}-users", user_group_id=_fixed_id(args.base_id, "users"), engine=args.engine,
            user_ids=[default_user.user_id, *members], tags=tags, opts=child(self, delete_before_replace=True))
        return _Credentials(app_password=app, username=APP_USER_NAME, passwords=passwords, user_ids=user_ids,
                            user_group_id=group.id, users=users)

    def _user(self, logical: str, user_id: str, user_name: str, access_string: str, password: pulumi.Output[str],
              tags: dict[str, str]) -> aws.elasticache.User:
        return aws.elasticache.User(
            logical, user_id=user_id, user_name=user_name, engine=self._args.engine, access_string=access_string,
            authentication_mode=aws.elasticache.UserAuthenticationModeArgs(type="password", passwords=[password]),
            tags=tags,
            # Rotation changes the passwords outside Pulumi. An update (access string, engine) does
            # not put the stack's password back: the provider's Read keeps `passwords` from state and
            # its Update sends them only when `authentication_mode`/`passwords` changed
            # (terraform-provider-aws internal/service/elasticache/user.go resourceUserRead,
            # resourceUserUpdate). A REPLACEMENT (user_id/user_name are ForceNew) creates the user
            # with the stack's password: its secret is then written again with that same password
            # (app_secret `written_with`; docs/decisions.md "Pulumi after an automatic rotation").
            # No ignore_changes on the passwords: it would keep the secret and the user apart.
            opts=child(self, delete_before_replace=True, additional_secret_outputs=["passwords", "authenticationMode"]))

    def _secrets(self, creds: _Credentials, rg: aws.elasticache.ReplicationGroup, kms_key_arn: pulumi.Input[str],
                 tags: dict[str, str]) -> dict[str, aws.secretsmanager.Secret]:
        """One Secrets Manager secret per credential, JSON {username, password[, userId]}.

        Each is written again whenever Pulumi hands the server the stack's password again: with the
        user that holds it (RBAC), or with the replication group (token mode: a new group starts with
        the stack's `auth_token`; a change of `auth_token_update_strategy` alone makes the provider
        send the stack's token with that strategy, replication_group.go resourceReplicationGroupUpdate
        `d.HasChanges("auth_token", "auth_token_update_strategy")`, so a SET would drop the rotated
        token: the strategy is the version's replacement trigger)."""
        args = self._args
        secrets: dict[str, aws.secretsmanager.Secret] = {}
        fields = RBAC_SECRET_FIELDS if creds.username else SECRET_FIELDS
        for credential, password in (creds.passwords or {"app": creds.app_password}).items():
            username = credential if creds.username else "default"
            extra = {"userId": creds.user_ids[credential]} if creds.username else {}
            logical = self._name if credential == "app" else f"{self._name}-{credential}"
            prefix = "redis-auth-" if credential == "app" else f"redis-{credential}-"
            secrets[credential], _ = app_secret(
                logical, self, kms_key_id=kms_key_arn, name_prefix=f"{args.project}/{args.stack}/{prefix}",
                secret_string=password.apply(_secret_document(username, extra)),
                description=f"{credential} credential of {args.project}/{args.stack} Redis (JSON: {', '.join(fields)})",
                tags=tags, written_with=[creds.users[credential]] if creds.username else [rg],
                replacement_trigger=None if creds.username else args.auth_token_update_strategy)
        return secrets

    # -- the replication group -----------------------------------------------------------------
    def _replication_group(self, sg: aws.ec2.SecurityGroup, subnet_group: aws.elasticache.SubnetGroup,
                           params: aws.elasticache.ParameterGroup, kms_key_arn: pulumi.Input[str],
                           creds: _Credentials, logs: dict[str, aws.cloudwatch.LogGroup], events: aws.sns.Topic,
                           tags: dict[str, str]) -> aws.elasticache.ReplicationGroup:
        name, args = self._name, self._args
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
        topology: dict[str, Any]
        if args.cluster_mode:
            topology = {"cluster_mode": "enabled", "num_node_groups": args.num_shards,
                        "replicas_per_node_group": args.replicas_per_shard}
        else:
            topology = {"cluster_mode": "disabled", "num_cache_clusters": args.num_cache_clusters}
        auth: dict[str, Any] = {}
        if creds.user_group_id is None:
            auth["auth_token"] = creds.app_password
            if args.auth_token_update_strategy is not None:
                auth["auth_token_update_strategy"] = args.auth_token_update_strategy
        else:
            auth["user_group_ids"] = [creds.user_group_id]
            # A group that used an AUTH token only moves to RBAC with strategy DELETE in the same
            # ModifyReplicationGroup call that adds the user group (AWS "Migrating from AUTH to
            # RBAC", Clusters.RBAC.html); the provider sends it only when this input says DELETE
            # (replication_group.go resourceReplicationGroupUpdate, "Transitioning to RBAC").
            # Inert on a new group ("Not used during initial create") and once migrated.
            auth["auth_token_update_strategy"] = "DELETE"
        return aws.elasticache.ReplicationGroup(
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
            # Events (failover, node replacement, snapshot failure) go to the unencrypted events
            # topic: ElastiCache cannot publish to an encrypted one (aws_common.events_topic).
            notification_topic_arn=events.arn,
            log_delivery_configurations=[
                aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                    destination=logs[kind].name, destination_type="cloudwatch-logs", log_format="json",
                    log_type=kind)
                for kind in LOG_KINDS],
            tags=tags,
            **topology, **auth,
            opts=child(self, protect=args.protect,
                       # A fixed id cannot exist twice, so a replacement must delete first.
                       delete_before_replace=args.replication_group_id is not None,
                       additional_secret_outputs=["authToken"]),
        )

    def _alarms(self, rg: aws.elasticache.ReplicationGroup, topic: aws.sns.Topic,
                tags: dict[str, str]) -> list[aws.cloudwatch.MetricAlarm]:
        """One alarm per member node and threshold line, following the group's (auto-named) id."""
        args = self._args
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

        return metric_alarms(
            self._name, self, {f"{t}-{sev}-{suffix}".replace("_", "-"): pick(i, (t, sev, suffix))
                               for i, (t, sev, suffix) in enumerate(keys)},
            topic_arn=topic.arn, tags=tags)

    # -- outputs -------------------------------------------------------------------------------
    def _outputs(self, rg: aws.elasticache.ReplicationGroup, sg: aws.ec2.SecurityGroup,
                 subnet_group: aws.elasticache.SubnetGroup, params: aws.elasticache.ParameterGroup,
                 kms_key_arn: pulumi.Input[str], creds: _Credentials, secrets: dict[str, aws.secretsmanager.Secret],
                 topic: aws.sns.Topic, events: aws.sns.Topic, alarms: list[aws.cloudwatch.MetricAlarm],
                 logs: dict[str, aws.cloudwatch.LogGroup]) -> dict[str, Any]:
        args, username = self._args, creds.username
        endpoint = rg.configuration_endpoint_address if args.cluster_mode else rg.primary_endpoint_address
        url = endpoint.apply(lambda host: redis_url(host, PORT, tls=True, username=username))
        env = pulumi.Output.all(url, creds.app_password, secrets["app"].arn).apply(lambda v: env_contract(
            url=v[0], password=v[1], tls=True, timeout_ms=args.timeout_ms, tiers=args.tiers,
            enabled=args.enabled, rate_limit_mode=args.rate_limit_mode, username=username,
            cluster=args.cluster_mode, password_secret_arn=v[2]))
        outputs: dict[str, Any] = {
            "replicationGroupId": rg.id,
            "engine": args.engine,
            "engineVersion": args.engine_version,
            "port": PORT,
            "clusterMode": args.cluster_mode,
            "memberClusterIds": rg.id.apply(lambda rid: member_cluster_ids(rid, **args.member_kwargs)),
            "redisUrl": url,
            "authMode": args.auth_mode,
            "username": username or "default",
            "redisPassword": creds.app_password,
            "env": pulumi.Output.secret(env),
            "authSecretArn": secrets["app"].arn,
            "securityGroupId": sg.id,
            "subnetGroupName": subnet_group.name,
            "parameterGroupName": params.name,
            "parameters": dict(args.parameters),
            "kmsKeyArn": kms_key_arn,
            "alarmTopicArn": topic.arn,
            "eventsTopicArn": events.arn,
            "alarmNames": pulumi.Output.all(*[a.name for a in alarms]),
            # Every log group the stack encrypts with this key (`redisops key-policy` reads them).
            "logGroups": {**{kind: lg.name for kind, lg in logs.items()},
                          **args.extra_log_groups},
        }
        if args.cluster_mode:
            # The one address a cluster client starts from (it discovers every shard from it). A
            # cluster-mode group has no primary or reader endpoint (ElastiCache "Finding connection
            # endpoints": cluster mode enabled -> the configuration endpoint; aws_elasticache_
            # replication_group attributes: primary/reader_endpoint_address "if the cluster mode is
            # disabled"), so neither is exported under a name that would mislead.
            outputs["configurationEndpoint"] = rg.configuration_endpoint_address
        else:
            outputs["primaryEndpoint"] = rg.primary_endpoint_address
            outputs["readerEndpoint"] = rg.reader_endpoint_address
        if username:
            outputs["rbacUsers"] = [{"credential": u.credential, "userId": creds.user_ids[u.credential],
                                     "userName": u.user_name, "accessString": u.access_string} for u in args.users]
            outputs["adminPassword"] = creds.passwords["admin"]
            outputs["adminSecretArn"] = secrets["admin"].arn
            outputs["monitorPassword"] = creds.passwords["monitor"]
            outputs["monitorSecretArn"] = secrets["monitor"].arn
        return outputs
