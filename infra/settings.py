"""Stack settings: read the Pulumi config once, validate it all, hand typed values to components.

`parse_settings()` is pure (raw key/value pairs in, `Settings` out) so every rule is unit-tested
without Pulumi; `load_settings()` is the only place in the package that reads Pulumi config.
Every problem is reported at once, each naming the key, the value and what is allowed, before
any resource is declared.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from infra import versions
from infra.cidr import cidr_problem
from infra.errors import NAMESPACE, SettingError, SettingsErrors
from infra.thresholds import Threshold, apply_overrides
from ratelimit.tiers import ALGORITHMS, DEFAULT_TIERS, SPEC_HELP, Tier, parse_limit_spec
from redis_conf.schema import RedisConf, load_base

Target = Literal["local", "elasticache", "sentinel"]
Engine = Literal["redis", "valkey"]
# ElastiCache engine lines, from the versions table (infra/versions.py).
ENGINE_VERSIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    engine: versions.engine_versions(engine) for engine in ("redis", "valkey")
})
SECRET_KEYS = ("password", "authToken", "grafanaAdminPassword")
MIN_PASSWORD = 16
# ElastiCache AUTH tokens: 16-128 printable characters; the only specials AWS documents as
# allowed are ! & # $ ^ < > -
AUTH_TOKEN = re.compile(r"^[A-Za-z0-9!&#$^<>\-]{16,128}$")
KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)
# alerting.logReplicaRegion: an AWS region name (us-east-1, eu-central-1, ap-southeast-2,
# us-gov-west-1, cn-north-1: botocore/data/endpoints.json "regionRegex" of each partition), or
# LOG_REPLICA_OFF for a stack that deliberately keeps its access logs in one region. The replica
# must be in aws:region's partition (endpoints.json: aws-cn "^cn\-\w+\-\d+$", aws-us-gov
# "^us\-gov\-\w+\-\d+$", aws the others): an account, its IAM role and its buckets exist in one
# partition only, so a region of another one fails in the middle of `pulumi up`.
AWS_REGION = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx|cn|us-gov)-[a-z]+-\d$")
LOG_REPLICA_OFF = "off"
LOG_REPLICA_HELP = (f'expected an AWS region name like "eu-central-1", other than the stack\'s aws:region and in '
                    f'its partition, or "{LOG_REPLICA_OFF}" (no replica: checkov CKV_AWS_144 then fails unsuppressed '
                    "on the access-log bucket, docs/security-scan.md)")
# A year where logs leave the machine (AWS targets: audits and incident reviews look back that far;
# checkov CKV_AWS_338); a month on a laptop, which keeps no CloudWatch log group at all.
LOG_RETENTION_DEFAULTS: Mapping[str, int] = MappingProxyType({"elasticache": 365, "sentinel": 365, "local": 30})
# Credential rotation: the guide asks for quarterly at least; 30 days by default. Secrets Manager
# itself accepts AutomaticallyAfterDays 1..1000 (botocore secretsmanager RotationRulesType); more
# than a year between rotations is refused here as no rotation at all.
ROTATION_DAYS_DEFAULT, ROTATION_DAYS_MIN, ROTATION_DAYS_MAX = 30, 1, 365
_TAG_OR_DIGEST = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
                            r"(@sha256:[0-9a-f]{64})?$")
_FLOATING_TAGS = {"latest", "stable", "edge", "main", "master", "nightly", "alpine", "bookworm"}
_DAY = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True,
                              str_strip_whitespace=True)


def _hhmm(text: str) -> int:
    h, m = text.split(":")
    if not (h.isdigit() and m.isdigit() and len(h) == 2 and len(m) == 2 and int(h) < 24 and int(m) < 60):
        raise ValueError
    return int(h) * 60 + int(m)


def _window_minutes(text: str) -> tuple[int, int]:
    """'03:00-05:00' -> (start, end) minutes of the day; end may wrap past midnight."""
    try:
        a, b = text.split("-")
        start, end = _hhmm(a), _hhmm(b)
    except ValueError:
        raise ValueError('expected "HH:MM-HH:MM" (UTC, at least 60 minutes), e.g. "03:00-05:00"') from None
    if (end - start) % 1440 < 60:
        raise ValueError('expected "HH:MM-HH:MM" (UTC, at least 60 minutes), e.g. "03:00-05:00"')
    return start, end if end > start else end + 1440


def _weekly_window(text: str) -> tuple[int, int]:
    """'sun:05:00-sun:07:00' -> (start, end) minutes of the week."""
    allowed = 'expected "ddd:HH:MM-ddd:HH:MM" (UTC, at least 60 minutes), e.g. "sun:05:00-sun:07:00"'
    try:
        a, b = text.lower().split("-")
        (da, ta), (db, tb) = a.split(":", 1), b.split(":", 1)
        start = _DAY.index(da) * 1440 + _hhmm(ta)
        end = _DAY.index(db) * 1440 + _hhmm(tb)
    except ValueError:
        raise ValueError(allowed) from None
    if (end - start) % (7 * 1440) < 60:
        raise ValueError(allowed)
    return start, end if end > start else end + 7 * 1440


class Ports(_Model):
    """Host ports of the local stack (the guide's)."""

    redis: int = Field(6379, ge=1, le=65535, description="Redis port on the host")
    exporter: int = Field(9121, ge=1, le=65535, description="redis_exporter metrics port")
    prometheus: int = Field(9090, ge=1, le=65535, description="Prometheus web port")
    grafana: int = Field(3001, ge=1, le=65535, description="Grafana web port")
    app: int = Field(8000, ge=1, le=65535, description="The application's port on the host, whose /metrics "
                     "Prometheus scrapes (job ratelimit-app; the example app: python -m examples.app)")


class Images(_Model):
    """Container images, pinned to exact versions at or above their floors (infra/versions.py)."""

    redis: str = Field(versions.DEFAULT_IMAGES["redis"],
                       description=f"Redis image (engine valkey: {versions.DEFAULT_VALKEY_IMAGE} or another "
                                   "valkey/valkey tag)")
    exporter: str = Field(versions.DEFAULT_IMAGES["exporter"], description="redis_exporter image")
    prometheus: str = Field(versions.DEFAULT_IMAGES["prometheus"], description="Prometheus image")
    grafana: str = Field(versions.DEFAULT_IMAGES["grafana"], description="Grafana image")

    @field_validator("redis", "exporter", "prometheus", "grafana")
    @classmethod
    def _pinned(cls, v: str, info: ValidationInfo) -> str:
        m = _TAG_OR_DIGEST.match(v)
        tag = m.group("tag") if m else None
        if not m or (tag is None and "@sha256:" not in v) or (tag or "").lower() in _FLOATING_TAGS:
            raise ValueError(f'expected an image pinned to an exact version, e.g. "{versions.DEFAULT_IMAGES["redis"]}" '
                             'or "redis:<version>@sha256:<digest>" (no latest/stable/untagged)')
        expect: tuple[versions.Component, ...] = (
            ("redis", "valkey") if info.field_name == "redis" else (versions.image_spec(str(info.field_name)).component,))
        problem = versions.image_problem(v, expect=expect)
        if problem:
            raise ValueError(problem)
        return v


class LocalClusterSettings(_Model):
    """`local.topology: cluster`: N primaries with M replicas each (redis_conf/cluster.py)."""

    primaries: int = Field(3, description="Primaries (shards); at least 3, a failover needs a majority of them")
    replicas: int = Field(1, description="Replicas per primary, 0..5 (0: no failover)")
    node_timeout_ms: int = Field(5000, description="cluster-node-timeout: how long a primary may be unreachable "
                                                   "before its replica takes over")

    @field_validator("primaries", "replicas", "node_timeout_ms", mode="before")
    @classmethod
    def _layout(cls, v: Any, info: ValidationInfo) -> Any:
        # The one validation of a layout and its tuning is redis_conf.cluster's; its "allowed"
        # text is reported under this key.
        from redis_conf.cluster import ClusterError, ClusterLayout, ClusterTuning

        try:
            if info.field_name == "node_timeout_ms":
                ClusterTuning(node_timeout_ms=v)
            else:
                ClusterLayout(**{"primaries": 3, "replicas": 1, str(info.field_name): v})
        except ClusterError as e:
            raise ValueError(e.allowed) from None
        except TypeError:
            raise ValueError("expected an integer") from None
        return v


class LocalSettings(_Model):
    """The `local` target (pulumi-docker)."""

    ports: Ports = Field(default_factory=Ports, description="Host ports")
    bind_address: str = Field("127.0.0.1", description="Host address the ports are published on; "
                                                       "anything but loopback is reported in outputs")
    images: Images = Field(default_factory=Images, description="Pinned images")
    topology: Literal["single", "sentinel", "cluster"] = Field(
        "single", description="single Redis, 1 primary + 2 replicas + 3 Sentinels, or a Redis Cluster "
                              "(local.cluster; process mode only)")
    cluster: LocalClusterSettings = Field(default_factory=LocalClusterSettings,
                                          description="the cluster topology's layout")

    @field_validator("bind_address")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            address = ipaddress.ip_address(v)
        except ValueError:
            address = None
        # Docker publishes through the bridge's IPv4 host binding; an IPv6 address would only
        # fail later, at `pulumi up`.
        if address is None or address.version != 4:
            raise ValueError('expected an IPv4 address, e.g. "127.0.0.1" (loopback) or "0.0.0.0" '
                             "(all interfaces)")
        return v


class NetworkSettings(_Model):
    """AWS network inputs (elasticache and sentinel targets)."""

    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC id")
    subnet_ids: tuple[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")], ...] = Field(
        (), description="Private subnets, one per AZ (>= 2 for Multi-AZ, 3 for sentinel)")
    app_security_group_ids: tuple[Annotated[str, Field(pattern=r"^sg-[0-9a-f]{8,17}$")], ...] = Field(
        (), description="Security groups of the application; the only ones allowed in")
    allowed_cidrs: tuple[str, ...] = Field((), description="Extra CIDR ranges allowed in (never /0)")

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in v:
            problem = cidr_problem(cidr)
            if problem:
                raise ValueError(problem)
        return v


class SmokeSettings(_Model):
    """The in-VPC smoke function of the AWS targets (infra/components/smoke_function.py)."""

    enabled: bool = Field(True, description="A Lambda in the subnets that runs `redisops smoke` inside the VPC; "
                          "CI invokes it after `pulumi up` (docs/delivery.md)")
    secrets_endpoint_security_group_id: str | None = Field(
        None, pattern=r"^sg-[0-9a-f]{8,17}$", description="Security group of the VPC's Secrets Manager interface "
        "endpoint: the function's HTTPS egress goes only there (default: port 443 to any address, via NAT)")


class RotationSettings(_Model):
    """Automatic rotation of the AWS targets' credentials (infra/components/rotation.py)."""

    enabled: bool = Field(True, description="Secrets Manager rotates every credential secret of the stack with the "
                          "stack's rotation Lambda (docs/runbooks/rotation.md); off only when set to false")
    days: int = Field(ROTATION_DAYS_DEFAULT, description=f"Days between rotations ({ROTATION_DAYS_MIN}.."
                      f"{ROTATION_DAYS_MAX}); Secrets Manager schedules the next one this many days after the last")
    overlap: Literal["interval", "finish"] = Field(
        "interval", description="When the previous password stops working: `interval` - at the NEXT rotation "
        "(finishSecret only moves AWSCURRENT; the target keeps [AWSPREVIOUS, AWSCURRENT], so every client, also "
        "one holding the deploy-time REDIS_PASSWORD, has one whole interval to re-read the secret); `finish` - "
        "right after finishSecret (strict: a client holding the old value is refused on its next connect)")

    @field_validator("days")
    @classmethod
    def _days(cls, v: int) -> int:
        if not ROTATION_DAYS_MIN <= v <= ROTATION_DAYS_MAX:
            raise ValueError(f"expected a whole number of days from {ROTATION_DAYS_MIN} to {ROTATION_DAYS_MAX} "
                             "(how often Secrets Manager rotates the credentials)")
        return v


class ElastiCacheSettings(_Model):
    """The `elasticache` target."""

    node_type: str = Field("cache.t4g.medium", pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$",
                           description="Node type (sets maxmemory)")
    num_cache_clusters: int = Field(2, ge=1, le=6, description="Nodes (primary + replicas) when cluster mode is off")
    multi_az: bool = Field(True, description="Multi-AZ with automatic failover")
    cluster_mode: bool = Field(False, description="Cluster mode (sharding); fixed at creation")
    num_shards: int = Field(1, ge=1, le=500, description="Shards when cluster mode is on")
    replicas_per_shard: int = Field(1, ge=0, le=5, description="Replicas per shard when cluster mode is on")
    replication_group_id: str | None = Field(None, description="Fixed id; default: auto-named")
    kms_key_arn: str | None = Field(None, description="Customer KMS key ARN (`...:key/<id>`, not an alias) for "
                                    "at-rest encryption, secrets, logs, the Lambda functions' environment variables and the "
                                    "alarm topic; default: one is created "
                                    "(docs/elasticache.md lists the key-policy statements a given key must carry)")
    auth_mode: Literal["token", "rbac"] = Field("rbac", description="RBAC users app/monitor/admin (ACL model; "
                                                "`default` disabled), or one AUTH token with full access")
    auth_token_update_strategy: Literal["ROTATE", "SET"] | None = Field(
        None, description="During token rotation: ROTATE (old and new valid), then SET")
    reserved_memory_percent: int = Field(25, ge=0, le=100, description="Memory kept free for snapshots/replication")
    maintenance_window: str = Field("sun:05:00-sun:07:00", description="Weekly maintenance window (UTC)")
    apply_immediately: bool = Field(False, description="Apply modifications now instead of in the window")
    protect: bool = Field(True, description="Pulumi protect on the replication group")

    @field_validator("replication_group_id")
    @classmethod
    def _rg_id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]{0,39}", v) or "--" in v or v.endswith("-"):
            raise ValueError("expected 1-40 letters, digits or '-', starting with a letter, without '--' "
                             "or a trailing '-'")
        return v.lower()

    @field_validator("maintenance_window")
    @classmethod
    def _mw(cls, v: str) -> str:
        _weekly_window(v)
        return v.lower()

    @field_validator("kms_key_arn")
    @classmethod
    def _key_arn(cls, v: str | None) -> str | None:
        # The provider reads kms_key_id back as the key ARN and the argument forces a new group
        # (hashicorp/terraform-provider-aws internal/service/elasticache/replication_group.go:
        # "kms_key_id": ForceNew), so an alias ARN plans a replacement on every `up` - and with
        # protect on, every `up` fails.
        if v is None:
            return v
        if ":alias/" in v:
            raise ValueError('expected the key ARN, not an alias ARN: "arn:aws:kms:<region>:<account>:key/<key-id>" '
                             "(`aws kms describe-key --key-id <alias> --query KeyMetadata.Arn` prints it); an alias "
                             "is read back as the key ARN, so every `pulumi up` would plan a new replication group")
        if not KMS_KEY_ARN.fullmatch(v):
            raise ValueError('expected a KMS key ARN like "arn:aws:kms:eu-west-1:123456789012:key/<key-id>"')
        return v


class SentinelSettings(_Model):
    """The `sentinel` target (and the local sentinel topology)."""

    instance_type: str = Field("t4g.small", pattern=r"^[a-z][a-z0-9]*\.[a-z0-9]+$", description="EC2 instance type")
    ami_ssm_parameter: str = Field("/aws/service/debian/release/bookworm/latest/arm64",
                                   description="SSM parameter holding the AMI id: Debian's, of a release with "
                                   "package floors (infra/versions.py DEBIAN_FLOORS)")
    data_volume_gib: int = Field(20, ge=8, le=16384, description="Encrypted EBS volume for /var/lib/redis")
    down_after_ms: int = Field(5000, ge=500, description="Sentinel down-after-milliseconds")
    failover_timeout_ms: int = Field(60000, ge=1000, description="Sentinel failover-timeout")
    parallel_syncs: int = Field(1, ge=1, description="Replicas resyncing at once after failover")
    quorum: int = Field(2, ge=2, le=3, description="Sentinels (of 3) that must agree the primary is down; "
                        "1 would let a minority start failovers")
    min_replicas_to_write: int = Field(1, ge=0, le=2, description="Primary refuses writes with fewer replicas")
    min_replicas_max_lag: int = Field(10, ge=1, description="Seconds of replica lag tolerated")

    @field_validator("ami_ssm_parameter")
    @classmethod
    def _ami_release_has_floors(cls, v: str) -> str:
        # The hosts install Debian's redis packages: only a release whose package floors are in the
        # versions table can be checked against the CVE fixes (the boot check refuses the rest).
        problem = versions.ami_parameter_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class AlertingSettings(_Model):
    """Where alarms go and how long logs are kept (AWS targets)."""

    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                              description="Email subscribed to the alarm SNS topic")
    log_retention_days: int | None = Field(None, description="CloudWatch Logs retention in days (slow/engine logs, "
                                           "agent metrics); default by target: 365 on elasticache and sentinel, 30 "
                                           "on local (which creates no log group)")

    log_replica_region: str | None = Field(
        None, description="Region the Lambda code bucket's server access logs are replicated to (a second "
        "region, not the stack's aws:region; docs/decisions.md \"Access logs replicated to a second region\"). "
        f"Required on AWS targets that deploy a function (smoke or rotation); \"{LOG_REPLICA_OFF}\" keeps them in "
        "one region and leaves checkov CKV_AWS_144 failing on the log bucket")

    @field_validator("log_replica_region")
    @classmethod
    def _replica_region(cls, v: str | None) -> str | None:
        if v is not None and v != LOG_REPLICA_OFF and not AWS_REGION.fullmatch(v):
            raise ValueError(LOG_REPLICA_HELP)
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int | None) -> int | None:
        if v is not None and v not in LOG_RETENTION_DAYS:
            raise ValueError(f"expected one of CloudWatch's retention values: {', '.join(map(str, LOG_RETENTION_DAYS))}")
        return v


class BackupSettings(_Model):
    """Snapshots / backups."""

    retention_days: int = Field(7, ge=1, le=35, description="Days snapshots are kept")
    window: str = Field("03:00-05:00", description="Daily snapshot window (UTC)")
    final_snapshot: bool = Field(True, description="Take a final snapshot when the cache is deleted")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        _window_minutes(v)
        return v


class StackConfig(_Model):
    """Every key under the `redisstack:` config namespace (secrets, tiers, thresholds and
    Redis overrides are validated by their own parsers and appear here only for the docs)."""

    target: Target = Field(description="Where Redis runs: local (Docker), elasticache, sentinel (EC2)")
    engine: Engine = Field("redis", description="redis or valkey")
    engine_version: str = Field(versions.DEFAULT_ENGINE_VERSION, description="ElastiCache engine version ("
                                + ", ".join(f"{e} {'/'.join(v)}" for e, v in ENGINE_VERSIONS.items()) + ")")
    tls: bool = Field(True, description="TLS for every client and replication link")
    enabled: bool = Field(True, description="REDIS_ENABLED handed to the application")
    timeout_ms: int = Field(5000, ge=1, le=60000, description="REDIS_TIMEOUT (ms) handed to the application")
    rate_limit_mode: Literal["redis", "memory"] = Field("redis", description="RATE_LIMIT_MODE for the application")
    password: SecretStr | None = Field(None, description="(secret) app password; default: generated")
    auth_token: SecretStr | None = Field(None, description="(secret) ElastiCache AUTH token (authMode token); default: "
                                         "generated")
    grafana_admin_password: SecretStr | None = Field(None, description="(secret) Grafana admin; default: generated")
    redis: dict[str, Any] = Field(default_factory=dict, description="Overrides of redis_conf/redis.conf directives")
    rate_limits: dict[str, Any] = Field(default_factory=dict, description='Tier overrides: name -> "limit,window" '
                                        "or {limit, window, algorithm, failOpen, burst}")
    thresholds: dict[str, Any] = Field(default_factory=dict, description="Alert threshold overrides: "
                                       "name -> {warn, crit}")
    local: LocalSettings = Field(default_factory=LocalSettings, description="local target")
    network: NetworkSettings = Field(default_factory=NetworkSettings, description="AWS network inputs")
    elasticache: ElastiCacheSettings = Field(default_factory=ElastiCacheSettings, description="elasticache target")
    sentinel: SentinelSettings = Field(default_factory=SentinelSettings, description="sentinel target")
    backup: BackupSettings = Field(default_factory=BackupSettings, description="Snapshots and backups")
    smoke: SmokeSettings = Field(default_factory=SmokeSettings, description="In-VPC smoke function (AWS targets)")
    rotation: RotationSettings = Field(default_factory=RotationSettings, description="Automatic credential rotation "
                                       "(AWS targets)")
    alerting: AlertingSettings = Field(default_factory=AlertingSettings, description="Alarm routing and log retention")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on every AWS resource")

    @field_validator("password", "grafana_admin_password")
    @classmethod
    def _password(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        text = v.get_secret_value()
        if len(text) < MIN_PASSWORD:
            raise ValueError(f"expected at least {MIN_PASSWORD} characters (the guide's minimum)")
        # It is written into redis.conf / sentinel.conf (masterauth, auth-pass) and .env files.
        if not text.isprintable() or any(c in text for c in '"\\ '):
            raise ValueError("expected printable characters without quotes, backslashes or spaces")
        return v

    @field_validator("auth_token")
    @classmethod
    def _auth_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not AUTH_TOKEN.fullmatch(v.get_secret_value()):
            raise ValueError("expected 16-128 characters: letters, digits and only the specials ! & # $ ^ < > -")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not key or len(key) > 128 or key.lower().startswith("aws:") or len(str(value)) > 256:
                raise ValueError(f"tag {key!r}: expected a key of 1-128 characters not starting with 'aws:' "
                                 "and a value of at most 256 characters")
        return v


@dataclass(frozen=True)
class Settings:
    """Everything a component needs, typed and validated."""

    project: str
    stack: str
    config: StackConfig
    redis_conf: RedisConf
    tiers: tuple[Tier, ...]
    thresholds: tuple[Threshold, ...]

    @property
    def target(self) -> Target:
        return self.config.target

    @property
    def tls(self) -> bool:
        return self.config.tls

    @property
    def log_retention_days(self) -> int:
        """alerting.logRetentionDays, or the target's default (docs/decisions.md, "Log retention")."""
        configured = self.config.alerting.log_retention_days
        return configured if configured is not None else LOG_RETENTION_DEFAULTS[self.target]

    @property
    def log_replica_region(self) -> str | None:
        """alerting.logReplicaRegion; None when unset (a stack without the code bucket) or "off"."""
        region = self.config.alerting.log_replica_region
        return None if region in (None, LOG_REPLICA_OFF) else region

    @property
    def tags(self) -> dict[str, str]:
        return {"project": self.project, "stack": self.stack, "managed-by": "pulumi", **self.config.tags}

    def tier(self, name: str) -> Tier:
        return next(t for t in self.tiers if t.name == name)


def _decode(value: Any) -> Any:
    """Pulumi hands object and list values over as JSON text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_tiers(overrides: Mapping[str, Any]) -> tuple[tuple[Tier, ...], list[SettingError]]:
    tiers = {t.name: t for t in DEFAULT_TIERS}
    errors: list[SettingError] = []
    fields = {"limit", "window", "algorithm", "failOpen", "burst"}
    for name, raw in overrides.items():
        key = f"rateLimits.{name}"
        base = tiers.get(name)
        try:
            if isinstance(raw, str):
                limit, window = parse_limit_spec(raw)
                algorithm, fail_open, burst = (base.algorithm, base.fail_open, base.burst) if base else ("gcra", False, None)
            elif isinstance(raw, Mapping):
                unknown = set(raw) - fields
                if unknown:
                    raise SettingError(f"{key}.{sorted(unknown)[0]}", raw[sorted(unknown)[0]],
                                       f"unknown key; allowed: {', '.join(sorted(fields))}")
                limit_raw = raw.get("limit", base.limit if base else None)
                window_raw = raw.get("window", base.window_s if base else None)
                for fname, fval in (("limit", limit_raw), ("window", window_raw)):
                    if isinstance(fval, bool) or not isinstance(fval, int | float) or int(fval) != fval or fval <= 0:
                        raise SettingError(f"{key}.{fname}", fval, "expected a positive integer")
                limit, window = int(limit_raw), int(window_raw)  # type: ignore[arg-type]
                algorithm = raw.get("algorithm", base.algorithm if base else "gcra")
                if algorithm not in ALGORITHMS:
                    raise SettingError(f"{key}.algorithm", algorithm, f"expected one of {', '.join(ALGORITHMS)}")
                fail_open = raw.get("failOpen", base.fail_open if base else False)
                if not isinstance(fail_open, bool):
                    raise SettingError(f"{key}.failOpen", fail_open, "expected true or false")
                burst = raw.get("burst", base.burst if base else None)
                if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst <= 0):
                    raise SettingError(f"{key}.burst", burst, "expected a positive integer")
            else:
                raise SettingError(key, raw, SPEC_HELP + ' or an object {"limit", "window", "algorithm", ...}')
            tiers[name] = Tier(name, limit, window, algorithm, fail_open=fail_open, burst=burst)
        except SettingError as exc:
            errors.append(exc)
        except ValueError as exc:
            errors.append(SettingError(key, raw, str(exc)))
    return tuple(tiers.values()), errors


def _pydantic_errors(exc: ValidationError) -> list[SettingError]:
    out: list[SettingError] = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = "unknown key; allowed keys here: " + ", ".join(_allowed_keys(err["loc"][:-1]))
        elif kind == "missing":
            allowed = "required"
        elif kind == "literal_error":
            allowed = "expected one of " + str(err.get("ctx", {}).get("expected", "")).replace("'", "")
        else:
            allowed = err["msg"].removeprefix("Value error, ")
            if kind == "string_pattern_mismatch":
                field = next((str(p) for p in reversed(err["loc"]) if not isinstance(p, int)), "")
                allowed = _PATTERN_HELP.get(field, f"expected a value matching {err.get('ctx', {}).get('pattern')}")
        out.append(SettingError(key, err.get("input"), allowed))
    return out


# The example network of the committed Pulumi.prod*.yaml: renders and tests run on it offline, a
# real engine would stop on it with a provider lookup error (no such subnet), so outside mocks it is
# refused with the keys to set (docs/delivery.md, bootstrap).
EXAMPLE_NETWORK: Mapping[str, frozenset[str]] = MappingProxyType({
    "vpcId": frozenset({"vpc-0a1b2c3d4e5f60718"}),
    "subnetIds": frozenset({"subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"}),
    "appSecurityGroupIds": frozenset({"sg-0a1b2c3d4e5f60aa1"}),
})
_PATTERN_HELP = {
    "vpcId": 'expected a VPC id like "vpc-0a1b2c3d4e5f60718"',
    "subnetIds": 'expected subnet ids like "subnet-0a1b2c3d4e5f60001"',
    "appSecurityGroupIds": 'expected security group ids like "sg-0a1b2c3d4e5f60aa1"',
    "nodeType": 'expected an ElastiCache node type like "cache.r7g.large"',
    "email": 'expected an email address like "oncall@example.com"',
    "instanceType": 'expected an EC2 instance type like "t4g.small"',
}


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = StackConfig
    for part in loc:
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
    return [f.alias or n for n, f in model.model_fields.items()]


def _replica_region_errors(cfg: StackConfig, aws_region: str | None) -> list[SettingError]:
    """alerting.logReplicaRegion: required where the stack creates the Lambda code bucket (an AWS
    target deploying the smoke or rotation function), and never the stack's own region."""
    key, region = "alerting.logReplicaRegion", cfg.alerting.log_replica_region
    creates_code_bucket = cfg.target in ("elasticache", "sentinel") and (cfg.smoke.enabled or cfg.rotation.enabled)
    if region is None and creates_code_bucket:
        return [SettingError(key, None, "required on this target (the Lambda code bucket's access logs): "
                             + LOG_REPLICA_HELP)]
    if region is None or region == LOG_REPLICA_OFF or aws_region is None:
        return []
    if region == aws_region:
        return [SettingError(key, region, f"is the stack's aws:region ({aws_region}): " + LOG_REPLICA_HELP)]
    if aws_partition(region) != aws_partition(aws_region):
        return [SettingError(key, region, f"is in partition {aws_partition(region)}, the stack's aws:region "
                             f"({aws_region}) in {aws_partition(aws_region)}: " + LOG_REPLICA_HELP)]
    return []


def aws_partition(region: str) -> str:
    """The partition of a region name (the comment at AWS_REGION)."""
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws-cn" if region.startswith("cn-") else "aws"


def _cross_checks(cfg: StackConfig, aws_region: str | None = None) -> list[SettingError]:
    errors: list[SettingError] = _replica_region_errors(cfg, aws_region)
    target = cfg.target
    engine_problem = versions.engine_problem(cfg.engine, cfg.engine_version)
    if engine_problem:
        errors.append(SettingError("engineVersion", cfg.engine_version, engine_problem))
    if target == "elasticache":
        if not cfg.tls:
            allowed = ("ElastiCache AUTH tokens require transit encryption: set tls to true"
                       if cfg.auth_token is not None else
                       "the elasticache target requires TLS (AUTH tokens and RBAC need transit encryption)")
            errors.append(SettingError("tls", cfg.tls, allowed))
        if cfg.password is not None:
            errors.append(SettingError("password", "<secret>", "the elasticache target authenticates with "
                                       "authToken; set redisstack:authToken instead"))
        if cfg.auth_token is not None and cfg.elasticache.auth_mode == "rbac":
            errors.append(SettingError("elasticache.authMode", "rbac", "an RBAC user group cannot be combined "
                                       "with an AUTH token: remove authToken or use authMode token"))
        ec = cfg.elasticache
        if ec.multi_az and not ec.cluster_mode and ec.num_cache_clusters < 2:
            errors.append(SettingError("elasticache.numCacheClusters", ec.num_cache_clusters,
                                       "Multi-AZ needs at least 2 nodes (a primary and a replica)"))
        if ec.multi_az and ec.cluster_mode and ec.replicas_per_shard < 1:
            errors.append(SettingError("elasticache.replicasPerShard", ec.replicas_per_shard,
                                       "Multi-AZ needs at least 1 replica per shard"))
        if ec.multi_az and len(cfg.network.subnet_ids) < 2:
            errors.append(SettingError("network.subnetIds", list(cfg.network.subnet_ids),
                                       "Multi-AZ needs at least 2 subnets in different AZs"))
        start, end = _window_minutes(cfg.backup.window)
        mw_start, mw_end = _weekly_window(ec.maintenance_window)
        week = 7 * 1440
        # Every daily occurrence against the weekly window, also one week earlier and later,
        # so windows that wrap past midnight or the end of the week are compared too.
        occurrences = [(d * 1440 + start + shift, d * 1440 + end + shift)
                       for d in range(7) for shift in (-week, 0, week)]
        for s, e in occurrences:
            if s < mw_end and mw_start < e:
                errors.append(SettingError("backup.window", cfg.backup.window,
                                           f"must not overlap elasticache.maintenanceWindow "
                                           f"({ec.maintenance_window})"))
                break
    if target == "local" and cfg.local.topology == "cluster":
        size = cfg.local.cluster.primaries * (1 + cfg.local.cluster.replicas)
        highest = 65535 - 10000 - (size - 1)
        if cfg.local.ports.redis > highest:
            errors.append(SettingError("local.ports.redis", cfg.local.ports.redis,
                                       f"the cluster's {size} nodes listen on this port and the next {size - 1}, "
                                       f"their bus ports 10000 above: at most {highest}"))
    if target == "sentinel" and not cfg.tls:
        errors.append(SettingError("tls", cfg.tls, "the sentinel target requires TLS: passwords and "
                                   "replication cross availability zones"))
    if target == "sentinel" and cfg.sentinel.quorum != 2:
        # Each EC2 host runs one Sentinel next to its Redis: losing the primary's host also
        # loses a Sentinel, so a quorum of 3 could never be reached when it matters.
        errors.append(SettingError("sentinel.quorum", cfg.sentinel.quorum,
                                   "2 on the sentinel target: a Sentinel shares each host with Redis, so a "
                                   "quorum of 3 blocks failover when the primary's host is lost"))
    if target == "sentinel" and len(cfg.network.subnet_ids) < 3:
        errors.append(SettingError("network.subnetIds", list(cfg.network.subnet_ids),
                                   "the sentinel target needs 3 subnets in 3 different AZs"))
    if target in ("elasticache", "sentinel"):
        if cfg.network.vpc_id is None:
            errors.append(SettingError("network.vpcId", None, f"required for target {target}"))
        if not cfg.network.subnet_ids and target != "sentinel":
            errors.append(SettingError("network.subnetIds", [], f"required for target {target}"))
        if not cfg.network.app_security_group_ids and not cfg.network.allowed_cidrs:
            errors.append(SettingError("network.appSecurityGroupIds", [], "required: the application security "
                                       "groups allowed to reach Redis (or network.allowedCidrs)"))
    if target == "local":
        image = versions.split_image(cfg.local.images.redis)
        if versions.REPOSITORY_NAMES.get(image.name) not in (cfg.engine, None):
            errors.append(SettingError("local.images.redis", cfg.local.images.redis,
                                       f"engine {cfg.engine} runs {cfg.engine}-server: expected a {cfg.engine} image, "
                                       f"e.g. {versions.default_pin(cfg.engine)}"))
        ports = cfg.local.ports.model_dump()
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                errors.append(SettingError(f"local.ports.{name}", port, f"already used by local.ports.{seen[port]}"))
            seen[port] = name
    return errors


def example_network_errors(cfg: StackConfig) -> list[SettingError]:
    """The example network ids still in a stack file, one error per key to set."""
    net = cfg.network
    given = {"vpcId": [net.vpc_id] if net.vpc_id else [], "subnetIds": list(net.subnet_ids),
             "appSecurityGroupIds": list(net.app_security_group_ids)}
    return [SettingError(f"network.{key}", values if key != "vpcId" else values[0],
                         f"the committed example value: set your own with `pulumi config set --path "
                         f"{NAMESPACE}:network.{key}{'' if key == 'vpcId' else '[0]'} <id>` (docs/delivery.md, bootstrap)")
            for key, values in given.items() if any(v in EXAMPLE_NETWORK[key] for v in values)]


def parse_settings(raw: Mapping[str, Any], *, secret_keys: frozenset[str] = frozenset(),
                   project: str = NAMESPACE, stack: str = "dev", allow_example_network: bool = True,
                   aws_region: str | None = None) -> Settings:
    """Validate raw config (key without namespace -> value as Pulumi stores it) into Settings.
    `allow_example_network=False` also refuses the example network ids (EXAMPLE_NETWORK);
    `aws_region` is the stack's `aws:region` (alerting.logReplicaRegion must differ from it)."""
    values = {k: _decode(v) for k, v in raw.items()}
    errors: list[SettingError] = []
    for key in SECRET_KEYS:
        if key in values and key not in secret_keys:
            errors.append(SettingError(key, "<hidden>", f"must be stored as a secret: "
                                       f"pulumi config set --secret {NAMESPACE}:{key} ..."))
    cfg: StackConfig | None = None
    try:
        cfg = StackConfig.model_validate(values)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(exc))
    else:
        errors.extend(_cross_checks(cfg, aws_region))
        if not allow_example_network and cfg.target in ("elasticache", "sentinel"):
            errors.extend(example_network_errors(cfg))
    # Redis overrides, tiers and thresholds have parsers of their own; they are checked even
    # when other keys are wrong so that one run reports every problem.
    redis_conf = load_base()
    overrides = values.get("redis", {})
    if isinstance(overrides, Mapping):
        try:
            redis_conf = redis_conf.with_overrides(overrides)
        except SettingsErrors as exc:
            errors.extend(exc.errors)
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    tier_overrides = values.get("rateLimits", {})
    if isinstance(tier_overrides, Mapping):
        tiers, tier_errors = parse_tiers(tier_overrides)
        errors.extend(tier_errors)
    thresholds: tuple[Threshold, ...] = ()
    threshold_overrides = values.get("thresholds", {})
    if isinstance(threshold_overrides, Mapping):
        try:
            thresholds = apply_overrides(threshold_overrides)
        except SettingError as exc:
            errors.append(exc)
        except SettingsErrors as exc:
            errors.extend(exc.errors)
    if errors or cfg is None:
        raise SettingsErrors(errors)
    return Settings(project=project, stack=stack, config=cfg, redis_conf=redis_conf, tiers=tiers,
                    thresholds=thresholds)


def load_settings() -> Settings:
    """Read the whole `redisstack:` namespace from the running Pulumi program, once."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_full = set(runtime_config.get_config_secret_keys_env())
    prefix = f"{NAMESPACE}:"
    raw = {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}
    secrets = frozenset(k for k in raw if runtime_config.is_config_secret(prefix + k) or prefix + k in secret_full)
    region = merged.get("aws:region")
    return parse_settings(raw, secret_keys=secrets, project=pulumi.get_project(), stack=pulumi.get_stack(),
                          allow_example_network=_under_mocks(), aws_region=str(region) if region else None)


def _under_mocks() -> bool:
    """True when the program runs under `pulumi.runtime.set_mocks` (renders, stack tests): no
    provider looks anything up there, so the example network ids are harmless."""
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.settings import get_monitor

    return isinstance(get_monitor(), MockMonitor)
