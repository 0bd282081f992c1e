"""Stack settings: defaults, overrides, and a table of bad inputs each rejected with key/value/allowed."""

from __future__ import annotations

from typing import Any

import pytest

from infra.errors import SettingError, SettingsErrors
from infra.settings import parse_settings
from ratelimit.tiers import DEFAULT_TIERS

PROD_NETWORK = {
    "vpcId": "vpc-0a1b2c3d4e5f60718",
    "subnetIds": ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"],
    "appSecurityGroupIds": ["sg-0a1b2c3d4e5f60aa1"],
}
REPLICA = {"logReplicaRegion": "eu-central-1"}
PROD = {"target": "elasticache", "network": PROD_NETWORK, "alerting": REPLICA}
SENTINEL = {"target": "sentinel", "network": {**PROD_NETWORK, "subnetIds": [
    "subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]}, "alerting": REPLICA}


def errors_of(raw: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> list[SettingError]:
    with pytest.raises(SettingsErrors) as info:
        parse_settings(raw, secret_keys=frozenset(secret_keys))
    return info.value.errors


def test_guide_defaults() -> None:
    s = parse_settings({"target": "local"})
    assert [(t.name, t.limit, t.window_s) for t in s.tiers] == [
        ("general", 120, 60), ("auth", 30, 60), ("sensitive", 10, 60),
        ("admin", 300, 60), ("mfa", 5, 60), ("financial", 20, 60)]
    assert s.config.local.ports.model_dump() == {"redis": 6379, "exporter": 9121, "prometheus": 9090, "grafana": 3001,
                                                 "app": 8000}
    assert s.config.local.bind_address == "127.0.0.1"
    assert s.config.tls is True
    assert s.config.timeout_ms == 5000
    assert s.redis_conf["maxmemory"] == 800 * 1024 * 1024
    assert s.redis_conf["maxmemory-policy"] == "allkeys-lru"
    assert s.redis_conf["save"] == ((900, 1), (300, 10), (60, 10000))
    assert s.thresholds, "the thresholds table reaches the settings"


def test_rbac_is_the_elasticache_default_and_token_mode_an_explicit_choice() -> None:
    assert parse_settings(PROD).config.elasticache.auth_mode == "rbac"
    token = parse_settings({**PROD, "authToken": "abcdefghijklmnop1234", "elasticache": {"authMode": "token"}},
                           secret_keys=frozenset({"authToken"}))
    assert token.config.elasticache.auth_mode == "token"


def test_a_key_arn_is_accepted_as_given() -> None:
    arn = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-1111-2222-3333-444455556666"
    assert parse_settings({**PROD, "elasticache": {"kmsKeyArn": arn}}).config.elasticache.kms_key_arn == arn


@pytest.mark.parametrize(("raw", "days"), [
    # Decision (docs/decisions.md, "Log retention"): the default follows the target. AWS targets
    # keep CloudWatch logs a year (audits look back that far; checkov CKV_AWS_338), local keeps none.
    (PROD, 365), (SENTINEL, 365), ({"target": "local"}, 30),
    ({**PROD, "alerting": {**REPLICA, "logRetentionDays": 90}}, 90),
])
def test_log_retention_defaults_by_target(raw: dict[str, Any], days: int) -> None:
    s = parse_settings(raw)
    assert s.log_retention_days == days


def test_overrides_apply() -> None:
    s = parse_settings({
        "target": "local",
        "rateLimits": {"auth": "50,30", "mfa": {"limit": 3, "window": 120}, "search": "1000,60"},
        "redis": {"maxmemory": "1gb", "maxmemory-policy": "volatile-ttl", "save": ""},
        "local": '{"ports": {"redis": 6380}}',
        "timeoutMs": "250",
    })
    assert s.tier("auth").limit == 50 and s.tier("auth").window_s == 30
    assert s.tier("auth").fail_open is False, "an override keeps the tier's failure policy"
    assert (s.tier("mfa").limit, s.tier("mfa").window_s, s.tier("mfa").algorithm) == (3, 120, "sliding_log")
    assert s.tier("search").spec == "1000,60"
    assert s.redis_conf["maxmemory"] == 1024**3
    assert s.redis_conf["maxmemory-policy"] == "volatile-ttl"
    assert s.redis_conf["save"] == ()
    assert s.config.local.ports.redis == 6380
    assert s.config.timeout_ms == 250
    assert len(s.tiers) == len(DEFAULT_TIERS) + 1


def test_prod_requires_and_accepts_network() -> None:
    s = parse_settings(PROD, stack="prod")
    assert s.config.elasticache.multi_az and s.config.elasticache.num_cache_clusters >= 2
    assert s.config.backup.retention_days >= 7


def test_secret_is_accepted_only_as_secret_and_never_shown() -> None:
    pw = "correct-horse-battery-staple"
    assert parse_settings({"target": "local", "password": pw}, secret_keys=frozenset({"password"})).config.password
    errs = errors_of({"target": "local", "password": pw})
    assert errs[0].key == "password"
    assert pw not in str(SettingsErrors(errs))


# (raw config, secret keys, expected key, expected value shown, fragment of what is allowed)
BAD: list[tuple[str, dict[str, Any], tuple[str, ...], str, Any, str]] = [
    ("unknown target", {"target": "cloud"}, (), "target", "cloud", "local, elasticache or sentinel"),
    ("missing target", {}, (), "target", None, "required"),
    ("unknown top-level key", {"target": "local", "portz": 1}, (), "portz", 1, "unknown key"),
    ("unknown nested key", {"target": "local", "local": {"foo": 1}}, (), "local.foo", 1, "allowed keys here: ports"),
    ("tier with slash", {"target": "local", "rateLimits": {"auth": "30/60"}}, (), "rateLimits.auth", "30/60",
     '"<limit>,<window_seconds>" with positive integers'),
    ("tier zero limit", {"target": "local", "rateLimits": {"general": "0,60"}}, (), "rateLimits.general", "0,60",
     "positive integers"),
    ("tier negative window", {"target": "local", "rateLimits": {"admin": "300,-60"}}, (), "rateLimits.admin",
     "300,-60", "positive integers"),
    ("tier wrong type", {"target": "local", "rateLimits": {"auth": 30}}, (), "rateLimits.auth", 30, "<limit>,<window_seconds>"),
    ("tier object bad limit", {"target": "local", "rateLimits": {"auth": {"limit": -1, "window": 60}}}, (),
     "rateLimits.auth.limit", -1, "positive integer"),
    ("tier unknown algorithm", {"target": "local", "rateLimits": {"auth": {"limit": 5, "window": 60,
                                                                          "algorithm": "leaky"}}}, (),
     "rateLimits.auth.algorithm", "leaky", "gcra, sliding_log, fixed_window"),
    ("tier bad name", {"target": "local", "rateLimits": {"Bad-Name": "1,1"}}, (), "rateLimits.Bad-Name", "1,1",
     "lowercase"),
    ("short password", {"target": "local", "password": "short"}, ("password",), "password", None,
     "at least 16 characters"),
    ("password not secret", {"target": "local", "password": "x" * 20}, (), "password", None, "--secret"),
    ("unknown maxmemory-policy", {"target": "local", "redis": {"maxmemory-policy": "lru"}}, (),
     "redis.maxmemory-policy", "lru", "allkeys-lru"),
    ("bad memory size", {"target": "local", "redis": {"maxmemory": "800xb"}}, (), "redis.maxmemory", "800xb",
     "memory size like 800mb"),
    ("timeout 1-19", {"target": "local", "redis": {"timeout": 5}}, (), "redis.timeout", 5, "at least 20 seconds"),
    ("unknown directive", {"target": "local", "redis": {"maxmemroy": "1gb"}}, (), "redis.maxmemroy", "1gb",
     "unknown Redis directive"),
    ("appendfsync enum", {"target": "local", "redis": {"appendfsync": "sometimes"}}, (), "redis.appendfsync",
     "sometimes", "always, everysec, no"),
    ("bad save points", {"target": "local", "redis": {"save": "900"}}, (), "redis.save", "900",
     '"<seconds> <changes>" pairs'),
    ("samples out of range", {"target": "local", "redis": {"maxmemory-samples": 0}}, (), "redis.maxmemory-samples",
     0, "from 1 to 64"),
    ("tls off with auth token", {**PROD, "tls": False, "authToken": "abcdefghijklmnop1234"}, ("authToken",), "tls",
     False, "AUTH tokens require transit encryption"),
    ("auth token bad chars", {**PROD, "authToken": "abcdefghijklmnop@@@@"}, ("authToken",), "authToken", None,
     "! & # $ ^ < > -"),
    ("rg id too long", {**PROD, "elasticache": {"replicationGroupId": "a" * 41}}, (),
     "elasticache.replicationGroupId", "a" * 41, "1-40"),
    ("rg id double dash", {**PROD, "elasticache": {"replicationGroupId": "rate--limit"}}, (),
     "elasticache.replicationGroupId", "rate--limit", "without '--'"),
    ("rg id starts with digit", {**PROD, "elasticache": {"replicationGroupId": "1redis"}}, (),
     "elasticache.replicationGroupId", "1redis", "starting with a letter"),
    ("prod missing vpc", {"target": "elasticache", "network": {**PROD_NETWORK, "vpcId": None}}, (),
     "network.vpcId", None, "required"),
    ("prod missing app sgs", {"target": "elasticache", "network": {**PROD_NETWORK, "appSecurityGroupIds": []}}, (),
     "network.appSecurityGroupIds", [], "application security groups"),
    ("multi-az one subnet", {"target": "elasticache", "network": {**PROD_NETWORK, "subnetIds": [
        "subnet-0a1b2c3d4e5f60001"]}}, (), "network.subnetIds", ["subnet-0a1b2c3d4e5f60001"], "at least 2 subnets"),
    ("multi-az one node", {**PROD, "elasticache": {"numCacheClusters": 1}}, (), "elasticache.numCacheClusters", 1,
     "at least 2 nodes"),
    ("cidr open to world", {"target": "elasticache", "network": {**PROD_NETWORK, "allowedCidrs": ["0.0.0.0/0"]}}, (),
     "network.allowedCidrs", ["0.0.0.0/0"], "whole internet"),
    ("ipv6 open to world", {"target": "elasticache", "network": {**PROD_NETWORK, "allowedCidrs": ["::/0"]}}, (),
     "network.allowedCidrs", ["::/0"], "whole internet"),
    ("two /1s are the internet", {"target": "elasticache", "network": {**PROD_NETWORK, "allowedCidrs": [
        "0.0.0.0/1", "128.0.0.0/1"]}}, (), "network.allowedCidrs", ["0.0.0.0/1", "128.0.0.0/1"], "private range"),
    ("public cidr", {"target": "elasticache", "network": {**PROD_NETWORK, "allowedCidrs": ["8.8.8.0/24"]}}, (),
     "network.allowedCidrs", ["8.8.8.0/24"], "private range"),
    ("sentinel without tls", {**SENTINEL, "tls": False}, (), "tls", False, "requires TLS"),
    ("password with a space", {"target": "local", "password": "has a space in it ok"}, ("password",), "password",
     None, "without quotes, backslashes or spaces"),
    ("ipv6 bind address", {"target": "local", "local": {"bindAddress": "::1"}}, (), "local.bindAddress", "::1",
     "IPv4 address"),
    ("windows overlap across the week's end", {**PROD, "backup": {"window": "23:30-00:30"},
                                                "elasticache": {"maintenanceWindow": "sun:00:00-sun:01:00"}}, (),
     "backup.window", "23:30-00:30", "must not overlap"),
    ("bad vpc id", {"target": "elasticache", "network": {**PROD_NETWORK, "vpcId": "my-vpc"}}, (), "network.vpcId",
     "my-vpc", 'like "vpc-0a1b'),
    ("bad subnet id", {"target": "elasticache", "network": {**PROD_NETWORK, "subnetIds": ["subnet-1", "s2"]}}, (),
     "network.subnetIds.0", "subnet-1", 'like "subnet-0a1b'),
    ("node type", {**PROD, "elasticache": {"nodeType": "r7g.large"}}, (), "elasticache.nodeType", "r7g.large",
     'like "cache.r7g.large"'),
    ("log retention", {**PROD, "alerting": {**REPLICA, "logRetentionDays": 10}}, (), "alerting.logRetentionDays", 10,
     "CloudWatch's retention values"),
    ("snapshot window format", {**PROD, "backup": {"window": "3-5"}}, (), "backup.window", "3-5", "HH:MM-HH:MM"),
    ("snapshot window too short", {**PROD, "backup": {"window": "03:00-03:30"}}, (), "backup.window", "03:00-03:30",
     "at least 60 minutes"),
    ("windows overlap", {**PROD, "backup": {"window": "05:30-06:30"}}, (), "backup.window", "05:30-06:30",
     "must not overlap"),
    ("retention too long", {**PROD, "backup": {"retentionDays": 40}}, (), "backup.retentionDays", 40,
     "less than or equal to 35"),
    ("maintenance window", {**PROD, "elasticache": {"maintenanceWindow": "sunday 5am"}}, (),
     "elasticache.maintenanceWindow", "sunday 5am", "ddd:HH:MM-ddd:HH:MM"),
    ("port out of range", {"target": "local", "local": {"ports": {"grafana": 70000}}}, (), "local.ports.grafana",
     70000, "less than or equal to 65535"),
    ("port not a number", {"target": "local", "local": {"ports": {"redis": "sixty"}}}, (), "local.ports.redis",
     "sixty", "valid integer"),
    ("duplicate ports", {"target": "local", "local": {"ports": {"grafana": 6379}}}, (), "local.ports.grafana", 6379,
     "already used by local.ports.redis"),
    ("image unpinned", {"target": "local", "local": {"images": {"redis": "redis:latest"}}}, (),
     "local.images.redis", "redis:latest", "pinned to an exact version"),
    ("image untagged", {"target": "local", "local": {"images": {"grafana": "grafana/grafana"}}}, (),
     "local.images.grafana", "grafana/grafana", "pinned"),
    ("bind address", {"target": "local", "local": {"bindAddress": "localhost:6379"}}, (), "local.bindAddress",
     "localhost:6379", "IPv4 address"),
    ("topology", {"target": "local", "local": {"topology": "ring"}}, (), "local.topology", "ring",
     "single, sentinel or cluster"),
    ("cluster primaries", {"target": "local", "local": {"topology": "cluster", "cluster": {"primaries": 2}}}, (),
     "local.cluster.primaries", 2, "a failover needs a majority of primaries"),
    ("cluster replicas", {"target": "local", "local": {"cluster": {"replicas": 6}}}, (),
     "local.cluster.replicas", 6, "0..5 replicas per primary"),
    ("cluster node timeout", {"target": "local", "local": {"cluster": {"nodeTimeoutMs": 50}}}, (),
     "local.cluster.nodeTimeoutMs", 50, "100..120000 ms"),
    ("cluster ports", {"target": "local", "local": {"topology": "cluster", "ports": {"redis": 55531}}}, (),
     "local.ports.redis", 55531, "at most 55530"),
    ("engine", {"target": "local", "engine": "keydb"}, (), "engine", "keydb", "redis or valkey"),
    ("engine version", {"target": "local", "engineVersion": "6.2"}, (), "engineVersion", "6.2", "7.0, 7.1"),
    ("tls not bool", {"target": "local", "tls": "maybe"}, (), "tls", "maybe", "valid boolean"),
    ("timeout not int", {"target": "local", "timeoutMs": "5s"}, (), "timeoutMs", "5s", "valid integer"),
    ("rate limit mode", {"target": "local", "rateLimitMode": "memcached"}, (), "rateLimitMode", "memcached",
     "redis or memory"),
    ("sentinel needs 3 subnets", {**SENTINEL, "network": {**PROD_NETWORK}}, (), "network.subnetIds",
     PROD_NETWORK["subnetIds"], "3 subnets"),
    ("sentinel quorum", {**SENTINEL, "sentinel": {"quorum": 4}}, (), "sentinel.quorum", 4,
     "less than or equal to 3"),
    ("tag reserved prefix", {"target": "local", "tags": {"aws:owner": "me"}}, (), "tags", {"aws:owner": "me"},
     "not starting with 'aws:'"),
    ("rbac with token", {**PROD, "authToken": "abcdefghijklmnop1234", "elasticache": {"authMode": "rbac"}},
     ("authToken",), "elasticache.authMode", "rbac", "cannot be combined"),
    ("password on elasticache", {**PROD, "password": "x" * 20}, ("password",), "password", "<secret>",
     "authToken"),
    # The provider reads kms_key_id back as the key ARN and the argument forces a new group
    # (hashicorp/terraform-provider-aws internal/service/elasticache/replication_group.go:
    # kms_key_id ForceNew): an alias ARN would plan a replacement on every `up`.
    ("kms alias arn", {**PROD, "elasticache": {"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:alias/redis"}}, (),
     "elasticache.kmsKeyArn", "arn:aws:kms:eu-west-1:123456789012:alias/redis", "not an alias ARN"),
    ("kms key id, not an arn", {**PROD, "elasticache": {"kmsKeyArn": "0b1c2d3e-1111-2222-3333-444455556666"}}, (),
     "elasticache.kmsKeyArn", "0b1c2d3e-1111-2222-3333-444455556666", "expected a KMS key ARN"),
    ("token with the default auth mode", {**PROD, "authToken": "abcdefghijklmnop1234"}, ("authToken",),
     "elasticache.authMode", "rbac", "use authMode token"),
    ("threshold unknown", {"target": "local", "thresholds": {"memory": {"warn": 1}}}, (), "thresholds.memory", None,
     "memory_usage"),
]


@pytest.mark.parametrize(("raw", "secret_keys", "key", "value", "allowed"),
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_is_rejected_with_key_value_and_allowed(raw: dict[str, Any], secret_keys: tuple[str, ...],
                                                          key: str, value: Any, allowed: str) -> None:
    errors = errors_of(raw, secret_keys)
    match = [e for e in errors if e.key == key or e.key.startswith(key + ".")]
    assert match, f"no error for {key}; got: {[str(e) for e in errors]}"
    err = match[0]
    if value is not None:
        assert err.value == value
    assert allowed.replace("\\", "") in err.allowed, str(err)
    text = str(err)
    assert text.startswith(f"redisstack:{err.key} = "), text


def test_bad_input_table_is_large_and_distinct() -> None:
    assert len(BAD) >= 30
    assert len({case[0] for case in BAD}) == len(BAD)


def test_all_problems_reported_in_one_pass() -> None:
    errors = errors_of({"target": "local", "rateLimits": {"auth": "x"}, "redis": {"maxmemory": "1tb"},
                        "local": {"ports": {"redis": 0}}})
    assert {e.key for e in errors} >= {"rateLimits.auth", "redis.maxmemory", "local.ports.redis"}


@pytest.mark.parametrize(("parameter", "needle"), [
    ("/aws/service/debian/release/trixie/latest/arm64", "Debian release trixie has no package floor"),
    ("/aws/service/debian/release/13/latest/amd64", "Debian release 13 has no package floor"),
    ("/myorg/golden-ami", "expected Debian's AMI parameter"),
])
def test_settings_refuse_an_ami_of_a_release_without_package_floors(parameter: str, needle: str) -> None:
    (err,) = [str(e) for e in errors_of({**SENTINEL, "engineVersion": "7.0",
                                         "sentinel": {"amiSsmParameter": parameter}})]
    assert err.startswith(f'redisstack:sentinel.amiSsmParameter = "{parameter}": ') and needle in err
    assert "bookworm" in err


@pytest.mark.parametrize("parameter", ["/aws/service/debian/release/bookworm/latest/arm64",
                                       "/aws/service/debian/release/12/latest/amd64"])
def test_settings_accept_an_ami_of_a_release_with_floors(parameter: str) -> None:
    raw = {**SENTINEL, "engineVersion": "7.0", "sentinel": {"amiSsmParameter": parameter}}
    assert parse_settings(raw).config.sentinel.ami_ssm_parameter == parameter


def test_rotation_overlap_defaults_to_interval_and_refuses_other_values() -> None:
    assert parse_settings(PROD).config.rotation.overlap == "interval"
    assert parse_settings({**PROD, "rotation": {"overlap": "finish"}}).config.rotation.overlap == "finish"
    [err] = errors_of({**PROD, "rotation": {"overlap": "never"}})
    assert err.key == "rotation.overlap" and err.value == "never"
    assert "interval" in err.allowed and "finish" in err.allowed


# -- alerting.logReplicaRegion (docs/decisions.md, "Access logs replicated to a second region") ----
def test_the_log_replica_region_is_required_where_the_code_bucket_is_created_and_named_in_the_error() -> None:
    for base in (PROD, SENTINEL):
        errs = errors_of({**base, "alerting": {}})
        assert [(e.key, e.value) for e in errs] == [("alerting.logReplicaRegion", None)]
        assert "required" in errs[0].allowed and '"off"' in errs[0].allowed and "CKV_AWS_144" in errs[0].allowed
    # No function, no code bucket, nothing to replicate; the local target never has one.
    assert parse_settings({**PROD, "alerting": {}, "smoke": {"enabled": False},
                           "rotation": {"enabled": False}}).log_replica_region is None
    assert parse_settings({"target": "local"}).log_replica_region is None


@pytest.mark.parametrize("region", ["eu-central-1", "us-west-2", "ap-southeast-2", "us-gov-west-1", "cn-north-1"])
def test_a_region_name_is_the_replica_region(region: str) -> None:
    assert parse_settings({**PROD, "alerting": {"logReplicaRegion": region}}).log_replica_region == region


def test_off_is_an_explicit_opt_out_without_replica() -> None:
    s = parse_settings({**PROD, "alerting": {"logReplicaRegion": "off"}})
    assert s.config.alerting.log_replica_region == "off" and s.log_replica_region is None


@pytest.mark.parametrize("bad", ["eu-central", "EU-CENTRAL-1", "frankfurt", "eu-central-1a", "", "none"])
def test_a_bad_replica_region_is_refused_naming_key_value_and_what_is_allowed(bad: str) -> None:
    errs = errors_of({**PROD, "alerting": {"logReplicaRegion": bad}})
    assert [(e.key, e.value) for e in errs] == [("alerting.logReplicaRegion", bad)]
    assert 'like "eu-central-1"' in errs[0].allowed and '"off"' in errs[0].allowed


def test_the_replica_region_must_not_be_the_stacks_own() -> None:
    with pytest.raises(SettingsErrors) as info:
        parse_settings({**PROD, "alerting": {"logReplicaRegion": "eu-west-1"}}, aws_region="eu-west-1")
    [err] = info.value.errors
    assert (err.key, err.value) == ("alerting.logReplicaRegion", "eu-west-1")
    assert "is the stack's aws:region (eu-west-1)" in err.allowed
    assert parse_settings({**PROD, "alerting": {"logReplicaRegion": "eu-central-1"}},
                          aws_region="eu-west-1").log_replica_region == "eu-central-1"


@pytest.mark.parametrize(("stack_region", "replica", "partitions"), [
    ("eu-west-1", "cn-north-1", ("aws-cn", "aws")), ("eu-west-1", "us-gov-west-1", ("aws-us-gov", "aws")),
    ("us-gov-west-1", "us-east-1", ("aws", "aws-us-gov")), ("cn-north-1", "eu-central-1", ("aws", "aws-cn"))])
def test_the_replica_region_must_be_in_the_stacks_partition(stack_region: str, replica: str,
                                                             partitions: tuple[str, str]) -> None:
    # An account, its replication role and its buckets exist in one partition (botocore
    # endpoints.json regionRegex per partition): a region of another one would fail mid-`up`.
    with pytest.raises(SettingsErrors) as info:
        parse_settings({**PROD, "alerting": {"logReplicaRegion": replica}}, aws_region=stack_region)
    [err] = info.value.errors
    assert (err.key, err.value) == ("alerting.logReplicaRegion", replica)
    assert err.allowed.startswith(f"is in partition {partitions[0]}, the stack's aws:region ({stack_region}) "
                                  f"in {partitions[1]}: ")
    assert "in its partition" in err.allowed
    assert parse_settings({**PROD, "alerting": {"logReplicaRegion": "us-gov-east-1"}},
                          aws_region="us-gov-west-1").log_replica_region == "us-gov-east-1"
