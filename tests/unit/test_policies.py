"""Every policy of the pack on passing and failing resource args (camelCase, as the engine sends)."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from infra import versions
from infra.user_data import pack as pack_user_data
from policy import policies as P

RG = P.REPLICATION_GROUP
CONTAINER = P.CONTAINER


def run(policy: ResourceValidationPolicy, type_: str, props: Mapping[str, Any], *,
        config: Mapping[str, Any] | None = None, name: str = "redis-rg",
        stack_tags: Mapping[str, str] | None = None) -> list[str]:
    violations: list[str] = []
    args = ResourceValidationArgs(type_, props, f"urn:pulumi:prod::redisstack::{type_}::{name}", name,
                                  None, None, config, stack_tags)  # type: ignore[arg-type]
    policy.validate(args, lambda message, urn=None: violations.append(message))
    return violations


def good_rg(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "description": "rate limiter", "engine": "redis", "engineVersion": "7.1",
        "transitEncryptionEnabled": True, "transitEncryptionMode": "required",
        "atRestEncryptionEnabled": True, "kmsKeyId": "arn:aws:kms:eu-west-1:123456789012:key/abc",
        "authToken": "A-Strong-Token-0123456789", "automaticFailoverEnabled": True, "multiAzEnabled": True,
        "numCacheClusters": 3.0, "snapshotRetentionLimit": 14.0, "finalSnapshotIdentifier": "redis-final",
        "tags": {"stack": "prod", "project": "redisstack"},
    }
    props.update(overrides)
    return props


def good_container(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "image": versions.DEFAULT_IMAGES["redis"],  # the pin, whatever Renovate moved it to
        "command": ["redis-server", "/usr/local/etc/redis/redis.conf"],
        "envs": ["REDIS_PASSWORD_FILE=/run/secrets/app", "TZ=UTC"],
        "ports": [{"internal": 6379.0, "external": 6379.0, "ip": "127.0.0.1", "protocol": "tcp"}],
        "uploads": [{"file": "/usr/local/etc/redis/redis.conf", "content": "maxmemory 800mb\nmaxmemory-policy noeviction\n"}],
    }
    props.update(overrides)
    return props


# ---- pack shape -------------------------------------------------------------------------------
def test_pack_lists_every_policy_once_with_expected_levels() -> None:
    names = [p.name for p in P.POLICIES]
    assert len(names) == len(set(names)) == 13
    levels = {p.name: p.enforcement_level for p in P.POLICIES}
    assert levels.pop("rate-limit-eviction-policy") == EnforcementLevel.ADVISORY
    assert levels.pop("elasticache-rbac-not-token") == EnforcementLevel.ADVISORY
    assert set(levels.values()) == {EnforcementLevel.MANDATORY}


def test_policy_pack_main_is_not_imported_by_the_module() -> None:
    import sys

    assert "policy.__main__" not in sys.modules


# ---- security groups ---------------------------------------------------------------------------
@pytest.mark.parametrize(("type_", "props"), [
    (P.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0, "cidrIpv4": "0.0.0.0/0"}),
    (P.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 26379.0, "toPort": 26379.0, "cidrIpv6": "::/0"}),
    (P.INGRESS_RULE, {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"}),
    (P.SECURITY_GROUP_RULE, {"type": "ingress", "protocol": "tcp", "fromPort": 6000.0, "toPort": 7000.0,
                             "cidrBlocks": ["10.0.0.0/8", "0.0.0.0/0"]}),
    (P.SECURITY_GROUP, {"ingress": [{"protocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0,
                                     "securityGroups": ["sg-1"]},
                                    {"protocol": "all", "fromPort": 0.0, "toPort": 0.0,
                                     "ipv6CidrBlocks": ["::/0"]}]}),
])
def test_world_open_redis_ports_are_rejected(type_: str, props: dict[str, Any]) -> None:
    violations = run(P.NO_WORLD_INGRESS, type_, props, name="redis-in")
    assert len(violations) == 1
    assert "redis-in" in violations[0] and "appSecurityGroupIds" in violations[0]


@pytest.mark.parametrize(("type_", "props"), [
    (P.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0,
                      "referencedSecurityGroupId": "sg-0a1b2c3d4e5f60aa1"}),
    (P.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0, "cidrIpv4": "10.0.0.0/16"}),
    # Internet-facing HTTPS on another group is not this policy's business.
    (P.INGRESS_RULE, {"ipProtocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrIpv4": "0.0.0.0/0"}),
    (P.SECURITY_GROUP_RULE, {"type": "egress", "protocol": "-1", "fromPort": 0.0, "toPort": 0.0,
                             "cidrBlocks": ["0.0.0.0/0"]}),
    (P.SECURITY_GROUP, {"ingress": [], "egress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]}),
])
def test_scoped_or_unrelated_rules_pass(type_: str, props: dict[str, Any]) -> None:
    assert run(P.NO_WORLD_INGRESS, type_, props) == []


@pytest.mark.parametrize("cidr", ["0.0.0.0/1", "128.0.0.0/1", "8.8.8.0/24", "2001:db8::/16"])
def test_public_or_too_wide_ranges_on_redis_ports_are_rejected(cidr: str) -> None:
    key = "cidrIpv6" if ":" in cidr else "cidrIpv4"
    violations = run(P.NO_WORLD_INGRESS, P.INGRESS_RULE,
                     {"ipProtocol": "tcp", "fromPort": 6379.0, "toPort": 6379.0, key: cidr}, name="redis-in")
    assert len(violations) == 1 and cidr in violations[0]


def test_port_list_comes_from_policy_config() -> None:
    rule = {"ipProtocol": "tcp", "fromPort": 7000.0, "toPort": 7000.0, "cidrIpv4": "0.0.0.0/0"}
    assert run(P.NO_WORLD_INGRESS, P.INGRESS_RULE, rule) == []
    assert len(run(P.NO_WORLD_INGRESS, P.INGRESS_RULE, rule, config={"ports": [7000]})) == 1


# ---- ElastiCache ------------------------------------------------------------------------------
ALL_RG_POLICIES = [P.TRANSIT_ENCRYPTION, P.AT_REST_ENCRYPTION, P.AUTH_REQUIRED, P.MULTI_AZ, P.SNAPSHOTS]


@pytest.mark.parametrize("policy", ALL_RG_POLICIES, ids=lambda p: p.name)
def test_well_configured_replication_group_passes(policy: ResourceValidationPolicy) -> None:
    assert run(policy, RG, good_rg()) == []


@pytest.mark.parametrize(("policy", "overrides", "needle"), [
    (P.TRANSIT_ENCRYPTION, {"transitEncryptionEnabled": False}, "transitEncryptionEnabled"),
    (P.TRANSIT_ENCRYPTION, {"transitEncryptionEnabled": None}, "transitEncryptionEnabled"),
    (P.TRANSIT_ENCRYPTION, {"transitEncryptionMode": "preferred"}, "'preferred'"),
    (P.AT_REST_ENCRYPTION, {"atRestEncryptionEnabled": False}, "atRestEncryptionEnabled"),
    (P.AT_REST_ENCRYPTION, {"kmsKeyId": None}, "kmsKeyId"),
    (P.AUTH_REQUIRED, {"authToken": None}, "neither an AUTH token"),
    (P.AUTH_REQUIRED, {"userGroupIds": ["rate-limiter-users"]}, "both an AUTH token"),
    (P.MULTI_AZ, {"automaticFailoverEnabled": False}, "automaticFailoverEnabled"),
    (P.MULTI_AZ, {"multiAzEnabled": False}, "multiAzEnabled"),
    (P.MULTI_AZ, {"numCacheClusters": 1.0}, "numCacheClusters=1"),
    (P.MULTI_AZ, {"numCacheClusters": None, "numNodeGroups": 2.0, "replicasPerNodeGroup": 0.0},
     "replicasPerNodeGroup=0"),
    (P.SNAPSHOTS, {"snapshotRetentionLimit": 3.0}, "snapshotRetentionLimit=3"),
    (P.SNAPSHOTS, {"snapshotRetentionLimit": None}, "snapshotRetentionLimit=0"),
    (P.SNAPSHOTS, {"finalSnapshotIdentifier": ""}, "finalSnapshotIdentifier"),
])
def test_each_replication_group_weakness_is_reported(policy: ResourceValidationPolicy, overrides: dict[str, Any],
                                                     needle: str) -> None:
    violations = run(policy, RG, good_rg(**overrides))
    assert len(violations) == 1, violations
    assert needle in violations[0] and "redis-rg" in violations[0]


def test_auth_accepts_write_only_token_or_rbac_user_groups() -> None:
    assert run(P.AUTH_REQUIRED, RG, good_rg(authToken=None, authTokenWo="A-Strong-Token-0123456789")) == []
    assert run(P.AUTH_REQUIRED, RG, good_rg(authToken=None, userGroupIds=["rate-limiter-users"])) == []


def test_token_mode_is_warned_about_with_the_reason_and_rbac_passes() -> None:
    # ElastiCache AUTH-token mode logs every client in as the built-in `default` user with full
    # access (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html: "all
    # authenticated clients have full cache access if their token is authenticated").
    [warning] = run(P.RBAC_NOT_TOKEN, RG, good_rg())
    assert "full access" in warning and "authMode: rbac" in warning and "EVAL" in warning
    assert run(P.RBAC_NOT_TOKEN, RG, good_rg(authTokenWo="A-Strong-Token-0123456789", authToken=None)) != []
    assert run(P.RBAC_NOT_TOKEN, RG, good_rg(authToken=None, userGroupIds=["rate-limiter-users"])) == []


@pytest.mark.parametrize(("access", "named"), [
    ("on ~* &* +@all -@dangerous +info -flushdb -flushall -config -debug", "config, debug"),
    ("on %R~rl:* -@all +info +config|get +slowlog|get", "config"),
    ("on ~* +@all -BGSAVE -shutdown", "bgsave, shutdown"),
])
def test_access_strings_naming_restricted_commands_are_refused(access: str, named: str) -> None:
    # ElastiCache rejects an access string naming a restricted command
    # (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html).
    [violation] = run(P.ACCESS_STRING_ALLOWED, P.ELASTICACHE_USER, {"accessString": access}, name="app-user")
    assert f"names {named}" in violation and "app-user" in violation


def test_derived_access_strings_pass_the_access_string_policy() -> None:
    from redis_conf.elasticache import DISABLED_DEFAULT_ACCESS_STRING, FAMILIES, elasticache_users

    for family in FAMILIES:
        for user in elasticache_users(family):
            assert run(P.ACCESS_STRING_ALLOWED, P.ELASTICACHE_USER, {"accessString": user.access_string}) == []
    assert run(P.ACCESS_STRING_ALLOWED, P.ELASTICACHE_USER, {"accessString": DISABLED_DEFAULT_ACCESS_STRING}) == []
    # Categories are not commands: -@dangerous names no restricted command by itself.
    assert run(P.ACCESS_STRING_ALLOWED, P.ELASTICACHE_USER, {"accessString": "on ~* -@dangerous +@all"}) == []


def test_transit_encryption_also_covers_single_node_clusters() -> None:
    assert len(run(P.TRANSIT_ENCRYPTION, P.CACHE_CLUSTER, {"engine": "redis"})) == 1
    assert run(P.TRANSIT_ENCRYPTION, P.CACHE_CLUSTER, {"engine": "redis", "transitEncryptionEnabled": True}) == []


def test_multi_az_only_applies_to_production() -> None:
    single = good_rg(automaticFailoverEnabled=False, multiAzEnabled=False, numCacheClusters=1.0,
                     tags={"stack": "staging"})
    with pytest.raises(Exception) as info:
        run(P.MULTI_AZ, RG, single)
    assert type(info.value).__name__ == "_NotApplicableError"
    assert len(run(P.MULTI_AZ, RG, single, config={"productionStacks": ["staging"]})) == 3
    assert len(run(P.MULTI_AZ, RG, {**single, "tags": {}}, stack_tags={"environment": "production"})) == 3


def test_snapshot_minimum_comes_from_policy_config() -> None:
    assert run(P.SNAPSHOTS, RG, good_rg(snapshotRetentionLimit=14.0), config={"minRetentionDays": 14}) == []
    violations = run(P.SNAPSHOTS, RG, good_rg(snapshotRetentionLimit=14.0), config={"minRetentionDays": 21})
    assert violations == [violations[0]] and "below the required 21" in violations[0]


def test_replication_group_policies_ignore_other_types() -> None:
    for policy in ALL_RG_POLICIES:
        assert run(policy, "aws:s3/bucket:Bucket", {"tags": {"stack": "prod"}}) == []


# ---- containers: loopback ---------------------------------------------------------------------
def test_loopback_published_ports_pass() -> None:
    props = good_container(ports=[{"internal": 6379.0, "external": 6379.0, "ip": "127.0.0.1"},
                                  {"internal": 9121.0, "external": 9121.0, "ip": "::1"}])
    assert run(P.LOOPBACK_PORTS, CONTAINER, props) == []


@pytest.mark.parametrize("port", [
    {"internal": 6379.0, "external": 6379.0, "ip": "0.0.0.0"},
    {"internal": 6379.0, "external": 6379.0},  # docker's default: every interface
    {"internal": 3000.0, "external": 3001.0, "ip": "192.168.1.20"},
])
def test_ports_published_beyond_loopback_fail(port: dict[str, Any]) -> None:
    violations = run(P.LOOPBACK_PORTS, CONTAINER, good_container(ports=[port]), name="redis-grafana")
    assert len(violations) == 1
    assert "redis-grafana" in violations[0] and "127.0.0.1" in violations[0]


def test_explicitly_allowed_address_passes_and_host_network_fails() -> None:
    port = {"internal": 6379.0, "external": 6379.0, "ip": "0.0.0.0"}
    assert run(P.LOOPBACK_PORTS, CONTAINER, good_container(ports=[port]),
               config={"allowedAddresses": ["0.0.0.0"]}) == []
    violations = run(P.LOOPBACK_PORTS, CONTAINER, good_container(ports=[], networkMode="host"))
    assert len(violations) == 1 and "networkMode host" in violations[0]


# ---- containers: secrets in env/command -------------------------------------------------------
def test_file_based_secrets_pass() -> None:
    props = good_container(envs=["REDIS_PASSWORD_FILE=/run/secrets/monitor", "GF_SECURITY_ADMIN_PASSWORD__FILE=/x",
                                 "REDIS_ADDR=rediss://redis:6379", "REDIS_USER=monitor"],
                           command=["redis-server", "/conf/redis.conf", "--aclfile", "/conf/users.acl"])
    assert run(P.NO_PLAINTEXT_SECRETS, CONTAINER, props) == []


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"envs": ["REDIS_PASSWORD=s3cr3t-value-123456"]}, "env REDIS_PASSWORD"),
    ({"envs": ["GF_SECURITY_ADMIN_PASSWORD=hunter2hunter2hunter2"]}, "env GF_SECURITY_ADMIN_PASSWORD"),
    ({"envs": ["REDIS_URL=redis://app:pw-1234567890abcdef@redis:6379/0"]}, "URL with a password"),
    ({"command": ["redis-server", "--requirepass", "pw-1234567890abcdef"]}, "--requirepass"),
    ({"command": ["redis-server", "--masterauth=pw-1234567890abcdef"]}, "--masterauth"),
    ({"command": ["redis-server", "--user", "app", "on", ">pw-1234567890abcdef", "~*", "+@all"]}, ">password"),
    ({"healthcheck": {"tests": ["CMD", "redis-cli", "-a", "pw-1234567890abcdef", "ping"]}}, "-a"),
    ({"entrypoints": ["sh", "-c", "redis_exporter -redis.addr redis://:pw-123456@redis:6379"]}, "URL with a password"),
])
def test_plaintext_secrets_fail(overrides: dict[str, Any], needle: str) -> None:
    violations = run(P.NO_PLAINTEXT_SECRETS, CONTAINER, good_container(**overrides), name="redis-exporter")
    assert len(violations) == 1, violations
    assert needle in violations[0] and "docker inspect" in violations[0]


def test_reviewed_env_name_can_be_allowed() -> None:
    props = good_container(envs=["GF_AUTH_ANONYMOUS_ENABLED=false", "API_TOKEN=abc"])
    assert len(run(P.NO_PLAINTEXT_SECRETS, CONTAINER, props)) == 1
    assert run(P.NO_PLAINTEXT_SECRETS, CONTAINER, props, config={"allowedEnvNames": ["API_TOKEN"]}) == []


def test_shell_redirects_are_not_inline_acl_passwords() -> None:
    props = good_container(command=["sh", "-c", "user=redis; redis-cli ping >/dev/null 2>&1"])
    assert run(P.NO_PLAINTEXT_SECRETS, CONTAINER, props) == []


# ---- images ------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", [
    "redis:7.2.5", "oliver006/redis_exporter:v1.62.0", "prom/prometheus:v2.53.0",
    "redis@sha256:" + "a" * 64, "sha256:" + "0" * 64, "registry.example.com:5000/team/redis:7.2.5-bookworm",
])
def test_pinned_images_pass(image: str) -> None:
    assert run(P.PINNED_IMAGES, CONTAINER, good_container(image=image)) == []
    assert run(P.PINNED_IMAGES, P.REMOTE_IMAGE, {"name": image}) == []


@pytest.mark.parametrize(("image", "needle"), [
    ("redis", "no tag"), ("redis:latest", ":latest"), ("grafana/grafana:main", ":main"),
    ("redis:7", "not an exact version"), ("registry.example.com:5000/redis", "no tag"),
])
def test_floating_images_fail(image: str, needle: str) -> None:
    violations = run(P.PINNED_IMAGES, CONTAINER, good_container(image=image))
    assert len(violations) == 1 and needle in violations[0]
    assert len(run(P.PINNED_IMAGES, P.REMOTE_IMAGE, {"name": image})) == 1


# ---- eviction policy (advisory) ----------------------------------------------------------------
def test_noeviction_passes_everywhere() -> None:
    assert run(P.EVICTION_POLICY, CONTAINER, good_container()) == []
    pg = {"family": "redis7", "parameters": [{"name": "maxmemory-policy", "value": "noeviction"}]}
    assert run(P.EVICTION_POLICY, P.PARAMETER_GROUP, pg) == []
    assert run(P.EVICTION_POLICY, P.INSTANCE, {"userData": "#!/bin/sh\necho 'maxmemory-policy noeviction'\n"}) == []
    assert run(P.EVICTION_POLICY, P.INSTANCE,
               {"userDataBase64": pack_user_data("#!/bin/sh\necho 'maxmemory-policy noeviction'\n")}) == []


@pytest.mark.parametrize(("type_", "props", "policy"), [
    (P.PARAMETER_GROUP, {"family": "redis7", "parameters": [{"name": "maxmemory-policy", "value": "allkeys-lru"}]},
     "allkeys-lru"),
    (P.PARAMETER_GROUP, {"family": "redis7", "parameters": [{"name": "timeout", "value": "0"}]}, "volatile-lru"),
    (CONTAINER, good_container(uploads=[{"file": "/conf/redis.conf", "content": "maxmemory-policy allkeys-lfu\n"}]),
     "allkeys-lfu"),
    (CONTAINER, good_container(command=["redis-server", "--maxmemory-policy", "volatile-ttl"]), "volatile-ttl"),
    (P.INSTANCE, {"userData": "cat > /etc/redis/redis.conf <<EOF\nmaxmemory-policy allkeys-lru\nEOF\n"},
     "allkeys-lru"),
    # The Sentinel hosts' script travels gzip+base64 (infra/user_data.py): read decoded.
    (P.INSTANCE, {"userDataBase64": pack_user_data("#!/bin/sh\ncat > /etc/redis/redis.conf <<EOF\nmaxmemory-policy allkeys-lfu\nEOF\n")},
     "allkeys-lfu"),
    # A launch template's userData is base64 (of plain text here).
    (P.LAUNCH_TEMPLATE, {"userData": base64.b64encode(b"maxmemory-policy volatile-lfu\n").decode()}, "volatile-lfu"),
])
def test_evicting_policies_warn_and_point_at_the_alarm(type_: str, props: dict[str, Any], policy: str) -> None:
    violations = run(P.EVICTION_POLICY, type_, props)
    assert len(violations) == 1
    assert policy in violations[0] and "RedisKeysEvicted" in violations[0] and "noeviction" in violations[0]


# ---- through the analyzer, as the CLI calls it -------------------------------------------------
def test_analyzer_reports_mandatory_and_advisory_diagnostics() -> None:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    servicer = _PolicyAnalyzerServicer("redisstack-guardrails", "0.1.0", list(P.POLICIES),
                                       EnforcementLevel.MANDATORY, None, None, None, None, None, None, None)
    props = struct_pb2.Struct()
    props.update(good_rg(transitEncryptionEnabled=False, tags={"stack": "prod"}))
    request = analyzer_pb2.AnalyzeRequest(type=RG, properties=props, urn="urn:pulumi:prod::redisstack::x::rg",
                                          name="rg")
    response = servicer.Analyze(request, None)
    found = {(d.policyName, d.enforcementLevel) for d in response.diagnostics}
    assert found == {("elasticache-transit-encryption", analyzer_pb2.MANDATORY),
                     ("elasticache-rbac-not-token", analyzer_pb2.ADVISORY)}

    pg = struct_pb2.Struct()
    pg.update({"family": "redis7", "parameters": [{"name": "maxmemory-policy", "value": "allkeys-lru"}]})
    response = servicer.Analyze(analyzer_pb2.AnalyzeRequest(type=P.PARAMETER_GROUP, properties=pg,
                                                            urn="urn:x", name="pg"), None)
    assert [(d.policyName, d.enforcementLevel) for d in response.diagnostics] == [
        ("rate-limit-eviction-policy", analyzer_pb2.ADVISORY)]


def test_good_fixtures_are_not_mutated_by_policies() -> None:
    props = good_rg()
    before = copy.deepcopy(props)
    for policy in P.POLICIES:
        try:
            run(policy, RG, props)
        except Exception as exc:
            assert type(exc).__name__ == "_NotApplicableError"
    assert props == before
