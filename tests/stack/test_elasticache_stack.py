"""The prod stack (target elasticache) under Pulumi mocks: every property a security reviewer
and an SRE would check, on Pulumi.prod.yaml and its variants."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from infra.components.elasticache import (
    AUTH_TOKEN_SPECIALS,
    DEFAULT_USER_ACCESS_STRING,
    ElastiCacheArgs,
)
from infra.components.rotation import rotation_log_group_name
from infra.components.smoke_function import log_group_name as smoke_log_group_name
from infra.errors import SettingError, SettingsErrors
from infra.keypolicy import KeyUse, missing
from infra.monitoring.cloudwatch import TREAT_MISSING_DATA, member_cluster_ids
from infra.thresholds import DEFAULT_THRESHOLDS
from redis_conf.elasticache import MODIFIABLE, RESTRICTED_COMMANDS, elasticache_users, named_commands
from tests.support.pulumi_harness import (
    LAMBDA_COMPONENTS,
    StackRun,
    is_secret,
    load_stack_file,
    run_program,
    run_stack_file,
    unwrap_secret,
    without_component,
)

RG = "aws:elasticache/replicationGroup:ReplicationGroup"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
PARAMS = "aws:elasticache/parameterGroup:ParameterGroup"
KMS = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
USER = "aws:elasticache/user:User"
USER_GROUP = "aws:elasticache/userGroup:UserGroup"
LOGS = "aws:cloudwatch/logGroup:LogGroup"
TOPIC = "aws:sns/topic:Topic"
TOPIC_POLICY = "aws:sns/topicPolicy:TopicPolicy"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
SUBNET_GROUP = "aws:elasticache/subnetGroup:SubnetGroup"
GIVEN_KMS = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-1111-2222-3333-444455556666"
GIVEN_TOKEN = "Given-token-0123456789abcdef!&#$^<>"
# Resources without a tags argument in pulumi-aws.
UNTAGGABLE = {SECRET_VERSION, SUBSCRIPTION, TOPIC_POLICY}


def prod_config() -> tuple[dict[str, Any], tuple[str, ...]]:
    return load_stack_file("Pulumi.prod.yaml")


def variant(**changes: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Pulumi.prod.yaml with top-level keys replaced / nested keys merged (dotted: 'elasticache.x')."""
    cfg, secret = prod_config()
    cfg = copy.deepcopy(cfg)
    secret_list = list(secret)
    for key, value in changes.items():
        if "__" in key:
            top, sub = key.split("__", 1)
            cfg[top] = {**cfg.get(top, {}), sub: value}
        else:
            cfg[key] = value
        if key in ("authToken",):
            secret_list.append(key)
    return cfg, tuple(secret_list)


@cache
def run(name: str) -> StackRun:
    # The Lambda components (the smoke function on the group's security group too) have their own
    # tests (tests/stack/test_smoke_function.py, test_rotation.py, test_code_signing.py), which share
    # the run of the committed file.
    if name == "prod":
        return without_component(run_stack_file("prod"), *LAMBDA_COMPONENTS)
    variants: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
        "token": variant(elasticache__authMode="token"),
        "cluster": variant(elasticache__clusterMode=True, elasticache__numShards=3, elasticache__replicasPerShard=2),
        "valkey": variant(engine="valkey", engineVersion="8.0"),
        "valkey7": variant(engine="valkey", engineVersion="7.2"),
        "given": variant(authToken=GIVEN_TOKEN, elasticache__authMode="token", elasticache__authTokenUpdateStrategy="ROTATE",
                         elasticache__kmsKeyArn=GIVEN_KMS, elasticache__replicationGroupId="rl-prod",
                         elasticache__protect=False, backup__finalSnapshot=False,
                         network__allowedCidrs=["10.20.0.0/16", "fd00:10::/56"]),
    }
    cfg, secret = variants[name]
    return without_component(run_program(cfg, stack="prod", secret_keys=secret), *LAMBDA_COMPONENTS)


ALL = ("prod", "token", "cluster", "valkey", "valkey7", "given")


def token_of(r: StackRun) -> str:
    return str(r.outputs["redisPassword"])


def plain_strings(value: Any) -> Iterator[str]:
    """Every string in `value` that is not inside a Pulumi secret wrapper."""
    if is_secret(value):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from plain_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from plain_strings(v)
    else:
        yield str(value)


# --- credentials ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_credentials_never_appear_in_plain_outputs_or_plain_inputs(name: str) -> None:
    r = run(name)
    token = token_of(r)
    assert len(token) >= 32 if name != "given" else token == GIVEN_TOKEN
    assert {"redisPassword", "env"} <= r.secret_outputs
    secrets = {token, *(p.outputs["result"] for p in r.of_type("random:index/randomPassword:RandomPassword"))}
    if r.outputs["authMode"] == "rbac":
        assert len(secrets) == 4  # app, monitor, admin, disabled default
        assert {"adminPassword", "monitorPassword"} <= r.secret_outputs
    for key, value in r.outputs.items():
        if key not in r.secret_outputs:
            for secret in secrets:
                assert secret not in json.dumps(value, default=str), f"a credential in plain output {key}"
    bearing = 0
    for res in r.resources:
        flat = json.dumps(res.inputs, default=str)
        for s in plain_strings(res.inputs):
            for secret in secrets:
                assert secret not in s, f"a credential in plain input of {res.type} {res.name}"
        bearing += token in flat
    # The app credential does reach what needs it, wrapped as a secret: the group (or RBAC user) and the secret.
    assert bearing >= 2


def test_generated_token_uses_elasticache_alphabet_and_is_secret_in_state() -> None:
    r = run("token")
    token = token_of(r)
    assert len(token) == 64
    assert re.fullmatch(r"[A-Za-z0-9" + re.escape(AUTH_TOKEN_SPECIALS) + r"]+", token)
    pw = r.one("random:index/randomPassword:RandomPassword")
    assert pw.inputs["overrideSpecial"] == "!&#$^<>-" and pw.inputs["length"] == 64
    assert "result" in pw.additional_secret_outputs
    rg = r.one(RG)
    assert is_secret(rg.inputs["authToken"]) and rg.inputs["authToken"]["value"] == token
    assert "authToken" in rg.additional_secret_outputs
    assert "authTokenUpdateStrategy" not in rg.inputs
    assert "userGroupIds" not in rg.inputs


def test_secret_holds_the_credential_encrypted_with_the_customer_key() -> None:
    r = run("token")
    secret, version = r.one(SECRET), r.one(SECRET_VERSION)
    key = r.one(KMS, "redis-kms")
    assert secret.inputs["kmsKeyId"] == key.outputs["arn"]
    assert secret.inputs["namePrefix"] == "redisstack/prod/redis-auth-"
    assert is_secret(version.inputs["secretString"])
    assert json.loads(version.inputs["secretString"]["value"]) == {"username": "default", "password": token_of(r)}
    assert version.inputs["secretId"] == secret.outputs["id"]
    assert r.outputs["authSecretArn"] == secret.outputs["arn"]


def test_each_rbac_user_has_its_own_encrypted_secret_with_its_user_id() -> None:
    # Passwords live in Secrets Manager as Pulumi secrets; the user id lets `redisops rotate-token`
    # (and an automatic rotation) find the ElastiCache user without a lookup.
    r = run("prod")
    key = r.one(KMS, "redis-kms").outputs["arn"]
    secrets = {s.inputs["namePrefix"]: s for s in r.of_type(SECRET)}
    assert set(secrets) == {"redisstack/prod/redis-auth-", "redisstack/prod/redis-monitor-",
                            "redisstack/prod/redis-admin-"}
    versions = {v.inputs["secretId"]: v for v in r.of_type(SECRET_VERSION)}
    users = {u.inputs["userName"]: u for u in r.of_type(USER)}
    for prefix, credential, output in (("redis-auth-", "app", "authSecretArn"),
                                       ("redis-monitor-", "monitor", "monitorSecretArn"),
                                       ("redis-admin-", "admin", "adminSecretArn")):
        secret = secrets[f"redisstack/prod/{prefix}"]
        assert secret.inputs["kmsKeyId"] == key and r.outputs[output] == secret.outputs["arn"]
        version = versions[secret.outputs["id"]]
        assert is_secret(version.inputs["secretString"])
        doc = json.loads(version.inputs["secretString"]["value"])
        password = unwrap_secret(users[credential].inputs["authenticationMode"])["passwords"][0]
        assert doc == {"username": credential, "password": password, "userId": users[credential].inputs["userId"]}
    assert r.outputs["adminPassword"] == json.loads(versions[secrets["redisstack/prod/redis-admin-"].outputs["id"]]
                                                     .inputs["secretString"]["value"])["password"]


def _version_of(r: StackRun, prefix: str) -> Any:
    secret = next(s for s in r.of_type(SECRET) if s.inputs["namePrefix"] == f"redisstack/prod/{prefix}")
    return next(v for v in r.of_type(SECRET_VERSION) if v.inputs["secretId"] == secret.outputs["id"])


def test_a_replaced_user_gets_its_secret_written_again_with_the_password_it_was_created_with() -> None:
    # After an automatic rotation the secret holds a password the stack does not know. The provider
    # never sends the stack's password on an update of an unrelated field (access string, engine):
    # Read keeps `passwords` from state, Update sends them only when they changed
    # (terraform-provider-aws internal/service/elasticache/user.go). But user_id / user_name are
    # ForceNew: a replacement creates the user with the stack's password, and a secret left at the
    # rotated value would lock the app out. So each secret version is replaced with its user
    # (replaceWith) and written after it (dependsOn); no ignore_changes keeps the two apart.
    r = run("prod")
    users = {u.inputs["userName"]: u for u in r.of_type(USER)}
    for prefix, credential in (("redis-auth-", "app"), ("redis-monitor-", "monitor"), ("redis-admin-", "admin")):
        version, user = _version_of(r, prefix), users[credential]
        assert version.replace_with == (user.urn,), credential
        assert user.urn in version.depends_on, credential
        assert version.replacement_trigger is None and not version.ignore_changes
        assert not user.ignore_changes  # the user's password input and the secret move together
        doc = json.loads(version.inputs["secretString"]["value"])
        assert doc["password"] == unwrap_secret(user.inputs["authenticationMode"])["passwords"][0]


@pytest.mark.parametrize("name", ["token", "given"])
def test_token_mode_secret_follows_every_token_pulumi_sends_to_the_group(name: str) -> None:
    # Token mode: a new group starts with the stack's auth_token, and the provider sends the stack's
    # token whenever auth_token OR auth_token_update_strategy changes (replication_group.go
    # resourceReplicationGroupUpdate: d.HasChanges("auth_token", "auth_token_update_strategy")), so a
    # strategy change alone (e.g. to SET) would drop the rotated token. The secret version is
    # replaced with the group and whenever the strategy changes (replacementTrigger).
    r = run(name)
    rg, version = r.one(RG), _version_of(r, "redis-auth-")
    assert version.replace_with == (rg.urn,) and rg.urn in version.depends_on
    assert version.replacement_trigger == rg.inputs.get("authTokenUpdateStrategy")
    assert json.loads(version.inputs["secretString"]["value"])["password"] == rg.inputs["authToken"]["value"]


def test_given_token_and_rotate_strategy_reach_the_group() -> None:
    r = run("given")
    assert not r.of_type("random:index/randomPassword:RandomPassword")
    rg = r.one(RG)
    assert rg.inputs["authToken"]["value"] == GIVEN_TOKEN and is_secret(rg.inputs["authToken"])
    assert rg.inputs["authTokenUpdateStrategy"] == "ROTATE"


@pytest.mark.parametrize("name", ["prod", "valkey", "valkey7", "cluster"])
def test_rbac_users_are_derived_from_the_acl_model_and_default_is_disabled(name: str) -> None:
    # ElastiCache RBAC rules: every user group must contain a user named "default"
    # (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-elasticache-usergroup.html,
    # UserIds: "A user named default must be included"); an access string naming a restricted
    # command is rejected (ClientConfig.RestrictedCommands.html); a user group cannot be combined
    # with an AUTH token (replication_group.go: user_group_ids ConflictsWith auth_token).
    r = run(name)
    rg = r.one(RG)
    assert "authToken" not in rg.inputs
    group = r.one(USER_GROUP)
    assert rg.inputs["userGroupIds"] == [group.outputs["id"]]
    users = {u.inputs["userName"]: u for u in r.of_type(USER)}
    assert set(users) == {"default", "app", "monitor", "admin"}
    assert sorted(group.inputs["userIds"]) == sorted(u.inputs["userId"] for u in users.values())
    family = r.outputs["parameterFamily"]
    expected = {u.user_name: u.access_string for u in elasticache_users(family)}
    for user_name, access in expected.items():
        assert users[user_name].inputs["accessString"] == access
        assert not named_commands(access) & RESTRICTED_COMMANDS[family]
    assert "-@dangerous" in users["app"].inputs["accessString"]
    # The default user every group must hold is switched off and may run nothing; its id differs
    # from the built-in "default" user id, which cannot be put in a custom group.
    default = users["default"]
    assert default.inputs["accessString"] == DEFAULT_USER_ACCESS_STRING == "off -@all"
    assert default.inputs["userId"] != "default"
    for res in users.values():
        assert is_secret(res.inputs["authenticationMode"])
        mode = unwrap_secret(res.inputs["authenticationMode"])
        assert mode["type"] == "password" and len(mode["passwords"]) == 1 and len(mode["passwords"][0]) == 64
        assert res.delete_before_replace  # fixed ids
        assert res.inputs["engine"] == r.outputs["engine"]
        assert {"passwords", "authenticationMode"} <= set(res.additional_secret_outputs)
    assert unwrap_secret(users["app"].inputs["authenticationMode"])["passwords"] == [token_of(r)]
    assert group.delete_before_replace and group.inputs["engine"] == r.outputs["engine"]
    assert r.outputs["username"] == "app"
    assert r.outputs["env"]["REDIS_USERNAME"] == "app"
    host = "clustercfg." if name == "cluster" else "master."
    assert r.outputs["redisUrl"].startswith(f"rediss://app@{host}")
    assert [(u["credential"], u["userName"], u["accessString"]) for u in r.outputs["rbacUsers"]] == [
        (c, c, expected[c]) for c in ("app", "monitor", "admin")]


@pytest.mark.parametrize("name", ["prod", "valkey", "valkey7", "cluster"])
def test_rbac_group_carries_the_delete_strategy_that_migrates_a_token_group(name: str) -> None:
    # An existing group that used an AUTH token (authMode token, the default before RBAC) moves
    # to RBAC only when ModifyReplicationGroup adds the user group with AuthTokenUpdateStrategy
    # DELETE in the same call (AWS "Migrating from AUTH to RBAC",
    # https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html). The provider
    # sends DELETE only when auth_token_update_strategy says so, and refuses DELETE next to an
    # auth_token (hashicorp/terraform-provider-aws internal/service/elasticache/replication_group.go:
    # resourceReplicationGroupUpdate "Transitioning to RBAC", authTokenUpdateStrategyValidate).
    rg = run(name).one(RG)
    assert rg.inputs["authTokenUpdateStrategy"] == "DELETE"
    assert "authToken" not in rg.inputs and "authTokenWo" not in rg.inputs


@pytest.mark.parametrize("name", ["token", "given"])
def test_token_mode_never_sends_the_delete_strategy(name: str) -> None:
    # DELETE with an auth_token is refused at plan time (authTokenUpdateStrategyValidate).
    rg = run(name).one(RG)
    assert rg.inputs.get("authTokenUpdateStrategy") != "DELETE" and is_secret(rg.inputs["authToken"])


def test_token_mode_is_an_explicit_choice_without_users() -> None:
    r = run("token")
    assert r.of_type(USER) == [] and r.of_type(USER_GROUP) == []
    assert is_secret(r.one(RG).inputs["authToken"])
    assert r.outputs["authMode"] == "token" and r.outputs["username"] == "default"
    assert "REDIS_USERNAME" not in r.outputs["env"] and "rbacUsers" not in r.outputs


# --- network -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_ingress_only_from_app_security_groups_or_explicit_cidrs_never_the_internet(name: str) -> None:
    r = run(name)
    sg = r.one(SG)
    assert "ingress" not in sg.inputs and "egress" not in sg.inputs  # no inline rules to drift
    assert sg.inputs["description"] and sg.inputs["vpcId"] == "vpc-0a1b2c3d4e5f60718"
    assert sg.inputs["revokeRulesOnDelete"] is True
    rules = r.of_type(INGRESS)
    assert rules
    for rule in rules:
        i = rule.inputs
        assert i["securityGroupId"] == sg.outputs["id"]
        assert i["description"]
        assert (i["ipProtocol"], i["fromPort"], i["toPort"]) == ("tcp", 6379, 6379)
        assert i.get("cidrIpv4") not in ("0.0.0.0/0",) and i.get("cidrIpv6") not in ("::/0",)
        sources = [k for k in ("referencedSecurityGroupId", "cidrIpv4", "cidrIpv6", "prefixListId") if k in i]
        assert len(sources) == 1
    by_sg = sorted(rule.inputs["referencedSecurityGroupId"] for rule in rules if "referencedSecurityGroupId" in rule.inputs)
    assert by_sg == ["sg-0a1b2c3d4e5f60aa1"]
    cidrs = sorted(rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrIpv6") for rule in rules
                   if "referencedSecurityGroupId" not in rule.inputs)
    assert cidrs == (["10.20.0.0/16", "fd00:10::/56"] if name == "given" else [])
    # No egress rule at all: the provider removes AWS's default allow-all egress.
    assert r.of_type(EGRESS) == []
    assert r.one(RG).inputs["securityGroupIds"] == [sg.outputs["id"]]
    assert r.outputs["securityGroupId"] == sg.outputs["id"]


def test_internet_cidr_is_refused_with_key_and_value() -> None:
    cfg, secret = variant(network__allowedCidrs=["0.0.0.0/0"])
    with pytest.raises(SettingsErrors, match=r"network\.allowedCidrs.*0\.0\.0\.0/0"):
        run_program(cfg, stack="prod", secret_keys=secret)


def test_subnet_group_spans_the_configured_private_subnets() -> None:
    r = run("prod")
    group = r.one(SUBNET_GROUP)
    assert group.inputs["subnetIds"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002",
                                         "subnet-0a1b2c3d4e5f60003"]
    assert r.one(RG).inputs["subnetGroupName"] == group.outputs["name"]
    looked_up = sorted(a["id"] for tok, a in r.invokes if tok == "aws:ec2/getSubnet:getSubnet")
    assert looked_up == group.inputs["subnetIds"]


def test_multi_az_with_one_subnet_is_refused_by_run_program() -> None:
    cfg, secret = variant(network__subnetIds=["subnet-0a1b2c3d4e5f60001"])
    with pytest.raises(SettingsErrors, match=r"network\.subnetIds.*at least 2 subnets"):
        run_program(cfg, stack="prod", secret_keys=secret)


def test_multi_az_with_two_subnets_in_one_az_is_refused_naming_the_az() -> None:
    # The harness puts subnet ids ending in 1 and 5 into the same AZ (eu-west-1b).
    cfg, secret = variant(network__subnetIds=["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60005"])
    with pytest.raises(Exception, match=r"network\.subnetIds.*at least 2 availability zones.*eu-west-1b"):
        run_program(cfg, stack="prod", secret_keys=secret)


def test_single_node_without_multi_az_is_allowed_and_has_no_failover() -> None:
    cfg, secret = variant(elasticache__multiAz=False, elasticache__numCacheClusters=1,
                          network__subnetIds=["subnet-0a1b2c3d4e5f60001"])
    r = run_program(cfg, stack="prod", secret_keys=secret)
    rg = r.one(RG)
    assert rg.inputs["multiAzEnabled"] is False and rg.inputs["automaticFailoverEnabled"] is False
    assert [a.inputs["dimensions"]["CacheClusterId"] for a in r.of_type(ALARM)].count(f"{rg.outputs['id']}-001") > 0


# --- the replication group -----------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_tls_required_and_at_rest_encryption_with_the_customer_key(name: str) -> None:
    r = run(name)
    rg = r.one(RG).inputs
    assert rg["transitEncryptionEnabled"] is True and rg["transitEncryptionMode"] == "required"
    assert rg["atRestEncryptionEnabled"] is True
    assert rg["port"] == 6379
    if name == "given":
        assert not r.of_type(KMS)
        assert rg["kmsKeyId"] == GIVEN_KMS == r.outputs["kmsKeyArn"]
    else:
        key = r.one(KMS, "redis-kms")
        assert key.inputs["enableKeyRotation"] is True
        assert key.inputs["deletionWindowInDays"] == 30
        assert rg["kmsKeyId"] == key.outputs["arn"] == r.outputs["kmsKeyArn"]
        assert key.protect  # snapshots die with the key
        policy = json.loads(key.inputs["policy"])
        principals = [s["Principal"] for s in policy["Statement"]]
        assert {"AWS": "arn:aws:iam::123456789012:root"} in principals
        assert all(s.get("Condition") for s in policy["Statement"] if "Service" in s["Principal"])
        # No service may use the key for anything but the stack's own topic and log groups.
        assert all(s["Principal"]["Service"] in ("cloudwatch.amazonaws.com", "logs.eu-west-1.amazonaws.com")
                   for s in policy["Statement"] if "Service" in s["Principal"])
    assert r.outputs["redisUrl"].startswith("rediss://")
    assert r.outputs["env"]["REDIS_TLS"] == "true"


def test_prod_group_is_multi_az_protected_with_snapshots_and_windows() -> None:
    r = run("prod")
    res = r.one(RG)
    rg = res.inputs
    assert res.protect is True and res.delete_before_replace is False
    assert "replicationGroupId" not in rg  # auto-named
    assert (rg["engine"], rg["engineVersion"], rg["nodeType"]) == ("redis", "7.1", "cache.r7g.large")
    assert rg["clusterMode"] == "disabled" and rg["numCacheClusters"] == 3
    assert rg["multiAzEnabled"] is True and rg["automaticFailoverEnabled"] is True
    assert rg["snapshotRetentionLimit"] == 14 and rg["snapshotWindow"] == "03:00-05:00"
    assert rg["maintenanceWindow"] == "sun:05:00-sun:07:00"
    assert rg["applyImmediately"] is False
    assert rg["autoMinorVersionUpgrade"] is True
    assert re.fullmatch(r"redisstack-prod-final-[0-9a-f]{8}", rg["finalSnapshotIdentifier"])
    assert rg["notificationTopicArn"] == r.outputs["eventsTopicArn"]
    assert rg["parameterGroupName"] == r.one(PARAMS).outputs["name"]


def test_defaults_keep_at_least_seven_days_of_snapshots() -> None:
    cfg, secret = prod_config()
    cfg = {k: v for k, v in cfg.items() if k != "backup"}
    r = run_program(cfg, stack="prod", secret_keys=secret)
    assert r.one(RG).inputs["snapshotRetentionLimit"] >= 7
    assert r.one(RG).inputs["finalSnapshotIdentifier"].startswith("redisstack-prod-final-")


@pytest.mark.parametrize("name", ["prod", "cluster", "valkey"])
def test_final_snapshot_name_changes_with_every_replacement_of_the_group(name: str) -> None:
    # The suffix is regenerated whenever an input that replaces the group changes, so a second
    # replacement never reuses the first one's final snapshot name (SnapshotAlreadyExists).
    r = run(name)
    suffix = r.one("random:index/randomId:RandomId")
    keepers = suffix.inputs["keepers"]
    rg = r.one(RG).inputs
    assert keepers == {
        "replicationGroupId": "(auto-named)", "engine": rg["engine"], "clusterMode": rg["clusterMode"],
        "kmsKeyId": rg["kmsKeyId"], "subnetGroupName": rg["subnetGroupName"]}
    assert rg["finalSnapshotIdentifier"].endswith("-" + suffix.outputs["hex"])


def test_final_snapshot_suffix_follows_a_fixed_group_id() -> None:
    cfg, secret = variant(elasticache__replicationGroupId="rl-prod", elasticache__kmsKeyArn=GIVEN_KMS)
    r = run_program(cfg, stack="prod", secret_keys=secret)
    keepers = r.one("random:index/randomId:RandomId").inputs["keepers"]
    assert keepers["replicationGroupId"] == "rl-prod" and keepers["kmsKeyId"] == GIVEN_KMS


def test_fixed_id_unprotected_no_final_snapshot_variant() -> None:
    res = run("given").one(RG)
    assert res.inputs["replicationGroupId"] == "rl-prod"
    assert res.delete_before_replace is True and res.protect is False
    assert "finalSnapshotIdentifier" not in res.inputs


@pytest.mark.parametrize("name", ["prod", "given"])
def test_slow_and_engine_logs_go_to_encrypted_vended_log_groups(name: str) -> None:
    # ElastiCache log delivery adds every group outside /aws/vendedlogs/ to the account's CloudWatch
    # Logs resource policy, which holds 5,120 characters
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-and-resource-policy.html).
    r = run(name)
    key_arn = r.outputs["kmsKeyArn"]
    groups = {g.name: g for g in r.of_type(LOGS)}
    assert set(groups) == {"redis-slow-log", "redis-engine-log"}
    for kind in ("slow-log", "engine-log"):
        g = groups[f"redis-{kind}"]
        assert g.inputs["name"] == f"/aws/vendedlogs/elasticache/redisstack/prod/redis/{kind}"
        assert g.inputs["kmsKeyId"] == key_arn
        # Issue 13 decision: 365 days by default on AWS targets (Pulumi.prod.yaml sets none).
        assert g.inputs["retentionInDays"] == 365
        assert g.delete_before_replace  # fixed name (the key policy names it)
    deliveries = r.one(RG).inputs["logDeliveryConfigurations"]
    assert sorted((d["logType"], d["destination"], d["destinationType"], d["logFormat"]) for d in deliveries) == [
        ("engine-log", groups["redis-engine-log"].outputs["name"], "cloudwatch-logs", "json"),
        ("slow-log", groups["redis-slow-log"].outputs["name"], "cloudwatch-logs", "json"),
    ]
    assert r.outputs["logGroups"] == {**{k: groups[f"redis-{k}"].inputs["name"] for k in ("slow-log", "engine-log")},
                                      "smoke-function": smoke_log_group_name("redisstack", "prod"),
                                      "rotation-function": rotation_log_group_name("redisstack", "prod")}


def test_key_policy_allows_exactly_the_stack_topic_and_log_groups() -> None:
    # CloudWatch alarms publish into an SSE-KMS topic only with kms:Decrypt/GenerateDataKey* for
    # cloudwatch.amazonaws.com; SNS passes aws:sns:topicArn as encryption context
    # (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html). CloudWatch Logs uses
    # the key only where kms:EncryptionContext:aws:logs:arn names the group
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
    r = run("prod")
    policy = r.one(KMS, "redis-kms").inputs["policy"]
    topic = r.one(TOPIC, "redis-alarms").outputs["arn"]
    # The component's two groups and the smoke function's (same stack, same key).
    functions = [f"arn:aws:logs:eu-west-1:123456789012:log-group:{n('redisstack', 'prod')}"
                 for n in (smoke_log_group_name, rotation_log_group_name)]
    groups = sorted([*(g.outputs["arn"] for g in r.of_type(LOGS)), *functions])
    assert len(groups) == 4
    use = KeyUse("123456789012", "aws", "eu-west-1", alarm_topic_arns=(topic,), log_group_arns=tuple(groups))
    assert missing(policy, use) == []
    # ... and nothing wider: another topic, another log group of the account are refused.
    other = KeyUse("123456789012", "aws", "eu-west-1",
                   alarm_topic_arns=("arn:aws:sns:eu-west-1:123456789012:someone-elses-topic",),
                   log_group_arns=("arn:aws:logs:eu-west-1:123456789012:log-group:/other/app",))
    assert len(missing(policy, other)) == 2 + 5  # Decrypt, GenerateDataKey; the five logs calls
    statements = {st["Sid"]: st for st in json.loads(policy)["Statement"]}
    sns = statements["CloudWatchAlarmsPublishToEncryptedTopic"]["Condition"]
    assert sns["StringEquals"]["kms:EncryptionContext:aws:sns:topicArn"] == [topic]
    logs = statements["CloudWatchLogsEncryptsTheseLogGroups"]["Condition"]
    assert logs == {"ArnEquals": {"kms:EncryptionContext:aws:logs:arn": groups}}


@pytest.mark.parametrize(("name", "protected", "retained"), [("prod", True, True), ("token", True, True)])
def test_the_key_of_a_final_snapshot_outlives_the_stack(name: str, protected: bool, retained: bool) -> None:
    # The final snapshot is kept after the group is deleted and is encrypted with this key;
    # scheduling the key's deletion with `pulumi destroy` would make it unreadable.
    key = run(name).one(KMS)
    assert (key.protect, key.retain_on_delete) == (protected, retained)


def test_an_unprotected_stack_with_a_final_snapshot_destroys_but_keeps_its_key() -> None:
    # Pulumi resource options (https://www.pulumi.com/docs/iac/concepts/options/protect/,
    # .../retainondelete/): a protected resource makes `pulumi destroy` fail until it is
    # unprotected; retainOnDelete deletes it from the state only. `elasticache.protect: false`
    # asks for a stack that destroys cleanly, so its key is retained for the final snapshot
    # (which stays readable) but not protected.
    cfg, secret = variant(elasticache__protect=False)
    r = run_program(cfg, stack="prod", secret_keys=secret)
    key = r.one(KMS, "redis-kms")
    assert (key.protect, key.retain_on_delete) == (False, True)
    assert r.one(RG).inputs["finalSnapshotIdentifier"]


def test_a_stack_without_final_snapshot_or_protection_may_delete_its_key() -> None:
    cfg, secret = variant(elasticache__protect=False, backup__finalSnapshot=False)
    key = run_program(cfg, stack="prod", secret_keys=secret).one(KMS, "redis-kms")
    assert (key.protect, key.retain_on_delete) == (False, False)


@pytest.mark.parametrize("name", ALL)
def test_tags_on_every_taggable_resource(name: str) -> None:
    r = run(name)
    want = {"project": "redisstack", "stack": "prod", "managed-by": "pulumi", "service": "api-rate-limiter",
            "owner": "platform", "cost-center": "4711"}
    aws_resources = [res for res in r.resources if res.type.startswith("aws:") and res.type not in UNTAGGABLE]
    assert len(aws_resources) > 10
    for res in aws_resources:
        tags = res.inputs.get("tags") or {}
        assert want.items() <= tags.items(), f"{res.type} {res.name} tags {tags}"
    for res in r.resources:
        if res.type != "redisstack:elasticache:ElastiCacheRedis":
            assert (res.parent_type, res.parent_name) == ("redisstack:elasticache:ElastiCacheRedis", "redis")


# --- parameters ----------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "family"), [("prod", "redis7"), ("cluster", "redis7"), ("valkey", "valkey8"),
                                               ("valkey7", "valkey7")])
def test_every_parameter_is_modifiable_in_its_family(name: str, family: str) -> None:
    r = run(name)
    group = r.one(PARAMS)
    assert group.inputs["family"] == family == r.outputs["parameterFamily"]
    assert "name" not in group.inputs  # auto-named: a family change never deletes the in-use group first
    assert not group.delete_before_replace
    params = {p["name"]: p["value"] for p in group.inputs["parameters"]}
    assert set(params) <= MODIFIABLE[family]  # type: ignore[index]
    assert params.get("cluster-enabled") == ("yes" if name == "cluster" else None)
    assert params["maxmemory-policy"] == "allkeys-lru"  # Pulumi.prod.yaml override
    assert params["reserved-memory-percent"] == "25"
    assert all(v != "" for v in params.values())
    assert r.outputs["parameters"] == params
    assert r.outputs["parameterGroupName"] == group.outputs["name"]


def test_redis_conf_report_explains_what_cannot_map() -> None:
    report = {e["directive"]: e for e in run("prod").outputs["redisConfReport"]}
    assert report["maxmemory-policy"]["status"] == "parameter"
    for directive in ("appendonly", "save", "maxmemory", "rename-command"):
        assert report[directive]["status"] == "managed"
        assert report[directive]["equivalent"]


# --- engines and topologies ----------------------------------------------------------------
def test_valkey_variant() -> None:
    r = run("valkey")
    rg = r.one(RG).inputs
    assert (rg["engine"], rg["engineVersion"]) == ("valkey", "8.0")
    assert r.outputs["engine"] == "valkey"


def test_cluster_mode_variant_uses_shards_and_configuration_endpoint() -> None:
    r = run("cluster")
    res = r.one(RG)
    rg = res.inputs
    assert rg["clusterMode"] == "enabled" and rg["numNodeGroups"] == 3 and rg["replicasPerNodeGroup"] == 2
    assert "numCacheClusters" not in rg
    assert rg["automaticFailoverEnabled"] is True and rg["multiAzEnabled"] is True
    # No primary/reader endpoint in cluster mode: ElastiCache has only the configuration endpoint
    # there ("Finding connection endpoints"); exporting it under those names misled operators.
    assert "primaryEndpoint" not in r.outputs and "readerEndpoint" not in r.outputs
    assert r.outputs["redisUrl"] == f"rediss://app@{res.outputs['configurationEndpointAddress']}:6379/0"
    assert r.outputs["memberClusterIds"] == res.outputs["memberClusters"]
    assert len(r.outputs["memberClusterIds"]) == 9
    # The configuration endpoint is an output of its own, and the env contract tells the app (and
    # redisops, connection.spec_from_env) to build a cluster client that follows MOVED/ASK.
    assert r.outputs["configurationEndpoint"] == res.outputs["configurationEndpointAddress"]
    env = r.outputs["env"]
    assert env["REDIS_CLUSTER"] == "true"
    assert env["REDIS_URL"] == f"rediss://app@{res.outputs['configurationEndpointAddress']}:6379/0"
    from redisops.connection import spec_from_env

    assert spec_from_env({**env, "REDIS_CA_CERT": ""}).mode == "cluster"


@pytest.mark.parametrize("name", ["prod", "token", "valkey"])
def test_cluster_mode_off_exports_no_cluster_flag(name: str) -> None:
    r = run(name)
    assert "REDIS_CLUSTER" not in r.outputs["env"] and "configurationEndpoint" not in r.outputs
    rg = r.one(RG)
    assert r.outputs["primaryEndpoint"] == rg.outputs["primaryEndpointAddress"]
    assert r.outputs["readerEndpoint"] == rg.outputs["readerEndpointAddress"]


# --- alarms --------------------------------------------------------------------------------
EXPECTED_LINES = {
    # (threshold row, severity) -> (metric, statistic, operator, threshold)
    ("memory_usage", "warning"): ("DatabaseMemoryUsagePercentage", "Average", "GreaterThanThreshold", 80),
    ("memory_usage", "critical"): ("DatabaseMemoryUsagePercentage", "Average", "GreaterThanThreshold", 90),
    ("connected_clients", "warning"): ("CurrConnections", "Maximum", "GreaterThanThreshold", 1000),
    ("connected_clients", "critical"): ("CurrConnections", "Maximum", "GreaterThanThreshold", 5000),
    ("keyspace_miss_ratio", "warning"): ("CacheHitRate", "Average", "LessThanThreshold", 70),
    ("keyspace_miss_ratio", "critical"): ("CacheHitRate", "Average", "LessThanThreshold", 50),
    ("evicted_keys", "critical"): ("Evictions", "Sum", "GreaterThanThreshold", 0),
    ("replication_lag", "warning"): ("ReplicationLag", "Maximum", "GreaterThanThreshold", 10),
    ("replication_lag", "critical"): ("ReplicationLag", "Maximum", "GreaterThanThreshold", 30),
    ("engine_cpu", "warning"): ("EngineCPUUtilization", "Average", "GreaterThanThreshold", 70),
    ("engine_cpu", "critical"): ("EngineCPUUtilization", "Average", "GreaterThanThreshold", 90),
    ("new_connections", "warning"): ("NewConnections", "Sum", "GreaterThanThreshold", 50 * 60),
    ("new_connections", "critical"): ("NewConnections", "Sum", "GreaterThanThreshold", 200 * 60),
}


@pytest.mark.parametrize("name", ["prod", "cluster", "valkey"])
def test_one_alarm_per_member_node_per_line_with_valid_dimensions(name: str) -> None:
    r = run(name)
    rg = r.one(RG)
    rg_id = rg.outputs["id"]
    if name == "cluster":
        members = member_cluster_ids(rg_id, num_node_groups=3, replicas_per_node_group=2)
        assert members[0] == f"{rg_id}-0001-001" and members[-1] == f"{rg_id}-0003-003"
    else:
        members = member_cluster_ids(rg_id, num_cache_clusters=3)
        assert members == [f"{rg_id}-001", f"{rg_id}-002", f"{rg_id}-003"]
    topic = r.one(TOPIC, "redis-alarms").outputs["arn"]
    seen: dict[tuple[str, str, str], Any] = {}
    for alarm in r.of_type(ALARM):
        i = alarm.inputs
        assert i["namespace"] == "AWS/ElastiCache"
        assert set(i["dimensions"]) == {"CacheClusterId"}
        member = i["dimensions"]["CacheClusterId"]
        assert member in members
        row, severity = i["tags"]["threshold"], i["tags"]["severity"]
        metric, stat, op, threshold = EXPECTED_LINES[(row, severity)]
        assert (i["metricName"], i["statistic"], i["comparisonOperator"], i["threshold"]) == (metric, stat, op, threshold)
        assert i["treatMissingData"] == TREAT_MISSING_DATA[metric]
        assert i["alarmActions"] == [topic] and i["okActions"] == [topic]
        assert i["name"] == f"redisstack-prod-{member}-{row}-{severity}"
        assert member in i["alarmDescription"]
        seen[(member, row, severity)] = alarm
    assert set(seen) == {(m, row, sev) for m in members for (row, sev) in EXPECTED_LINES}
    assert sorted(r.outputs["alarmNames"]) == sorted(a.inputs["name"] for a in r.of_type(ALARM))


def test_treat_missing_data_is_deliberate_per_metric() -> None:
    by_metric = {a.inputs["metricName"]: a.inputs["treatMissingData"] for a in run("prod").of_type(ALARM)}
    assert by_metric["DatabaseMemoryUsagePercentage"] == "missing"
    assert by_metric["Evictions"] == "notBreaching"
    assert by_metric["ReplicationLag"] == "notBreaching"  # the primary never publishes it


def test_threshold_overrides_move_the_alarms() -> None:
    cfg, secret = variant(thresholds={"memory_usage": {"warn": 70, "crit": 85}})
    r = run_program(cfg, stack="prod", secret_keys=secret)
    lines = {a.inputs["threshold"] for a in r.of_type(ALARM) if a.inputs["metricName"] == "DatabaseMemoryUsagePercentage"}
    assert lines == {70, 85}


def test_alarm_topic_is_encrypted_and_mails_the_configured_address() -> None:
    r = run("prod")
    topic = r.one(TOPIC, "redis-alarms")
    assert topic.inputs["kmsMasterKeyId"] == r.one(KMS, "redis-kms").outputs["arn"]
    assert topic.inputs["name"] == "redisstack-prod-redis-alarms" and topic.delete_before_replace
    sub = r.one(SUBSCRIPTION, "redis-alarms-email")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"], sub.inputs["topic"]) == (
        "email", "oncall@example.com", topic.outputs["arn"])
    assert r.outputs["alarmTopicArn"] == topic.outputs["arn"]
    policy = json.loads(r.one(TOPIC_POLICY, "redis-alarms-policy").inputs["policy"])
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Resource"] == topic.outputs["arn"]
    assert statement["Condition"] == {"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"},
                                      "StringEquals": {"aws:SourceAccount": "123456789012"}}


@pytest.mark.parametrize("name", ["prod", "token", "cluster", "given"])
def test_elasticache_events_reach_an_unencrypted_topic_it_may_publish_to(name: str) -> None:
    # "The Amazon SNS topic you are publishing to cannot be encrypted" and "the topic's access
    # policy must use the aws:SourceOwner condition key" (not aws:SourceAccount)
    # (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ElastiCacheSNS.html).
    r = run(name)
    events = r.one(TOPIC, "redis-events")
    assert "kmsMasterKeyId" not in events.inputs
    assert r.one(RG).inputs["notificationTopicArn"] == events.outputs["arn"] == r.outputs["eventsTopicArn"]
    policy = json.loads(r.one(TOPIC_POLICY, "redis-events-policy").inputs["policy"])
    assert r.one(TOPIC_POLICY, "redis-events-policy").inputs["arn"] == events.outputs["arn"]
    [statement] = policy["Statement"]
    assert statement["Action"] == "SNS:Publish" and statement["Resource"] == events.outputs["arn"]
    assert statement["Condition"] == {"StringEquals": {"AWS:SourceOwner": "123456789012"}}
    assert "aws:SourceAccount" not in json.dumps(policy)
    sub = r.one(SUBSCRIPTION, "redis-events-email")
    assert (sub.inputs["endpoint"], sub.inputs["topic"]) == ("oncall@example.com", events.outputs["arn"])
    # The encrypted alarm topic is not the events topic.
    assert r.outputs["alarmTopicArn"] != r.outputs["eventsTopicArn"]


def test_no_subscription_without_alarm_email() -> None:
    cfg, secret = prod_config()
    cfg = copy.deepcopy(cfg)
    del cfg["alerting"]["email"]
    assert run_program(cfg, stack="prod", secret_keys=secret).of_type(SUBSCRIPTION) == []


# --- outputs -------------------------------------------------------------------------------
def test_outputs_carry_endpoints_env_contract_and_names() -> None:
    r = run("prod")
    rg = r.one(RG)
    o = r.outputs
    assert o["primaryEndpoint"] == rg.outputs["primaryEndpointAddress"]
    assert o["readerEndpoint"] == rg.outputs["readerEndpointAddress"]
    assert o["port"] == 6379
    assert o["redisUrl"] == f"rediss://app@{rg.outputs['primaryEndpointAddress']}:6379/0"
    env = o["env"]
    assert env["REDIS_URL"] == o["redisUrl"] and env["REDIS_PASSWORD"] == token_of(r)
    assert env["REDIS_TIMEOUT"] == "2000" and env["REDIS_ENABLED"] == "true"
    assert env["RATE_LIMIT_MODE"] == "redis"
    assert any(k.startswith("RATE_LIMIT_") and k != "RATE_LIMIT_MODE" for k in env)
    assert o["replicationGroupId"] == rg.outputs["id"]
    assert o["memberClusterIds"] == rg.outputs["memberClusters"]
    assert o["logGroups"] == {"smoke-function": "/aws/lambda/redisstack-prod-smoke",
                              "rotation-function": "/aws/lambda/redisstack-prod-rotation",
                              "slow-log": "/aws/vendedlogs/elasticache/redisstack/prod/redis/slow-log",
                              "engine-log": "/aws/vendedlogs/elasticache/redisstack/prod/redis/engine-log"}
    assert env["REDIS_USERNAME"] == "app" == o["username"]
    assert len(o["alarmNames"]) == len(EXPECTED_LINES) * 3
    assert "env" in r.secret_outputs and "redisUrl" not in r.secret_outputs


# --- args validation without Pulumi ----------------------------------------------------------
def _args(**kw: Any) -> ElastiCacheArgs:
    base: dict[str, Any] = dict(project="p", stack="s", engine="redis", engine_version="7.1", family="redis7",
                                node_type="cache.t4g.medium", vpc_id="vpc-0a1b2c3d", subnet_ids=("subnet-1", "subnet-2"),
                                app_security_group_ids=("sg-0a1b2c3d",), parameters={}, tiers=(),
                                thresholds=DEFAULT_THRESHOLDS)
    if "auth_token" in kw or "auth_token_update_strategy" in kw:
        base["auth_mode"] = "token"
    return ElastiCacheArgs(**{**base, **kw})


@pytest.mark.parametrize(("kw", "key"), [
    ({"num_cache_clusters": 1}, "elasticache.numCacheClusters"),
    ({"cluster_mode": True, "replicas_per_shard": 0}, "elasticache.replicasPerShard"),
    ({"subnet_ids": ("subnet-1",)}, "network.subnetIds"),
    ({"auth_mode": "rbac", "auth_token": "x" * 20}, "elasticache.authMode"),
    ({"auth_mode": "TOKEN"}, "elasticache.authMode"),
    ({"auth_mode": "rbac", "auth_token_update_strategy": "ROTATE"}, "elasticache.authTokenUpdateStrategy"),
    ({"app_security_group_ids": ()}, "network.appSecurityGroupIds"),
])
def test_args_refuse_unsafe_combinations_naming_the_key(kw: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingError) as err:
        _args(**kw)
    assert err.value.key == key


def test_args_member_suffixes_match_elasticache_naming() -> None:
    assert _args(num_cache_clusters=3).member_suffixes == ["001", "002", "003"]
    a = _args(cluster_mode=True, num_shards=2, replicas_per_shard=1)
    assert a.member_suffixes == ["0001-001", "0001-002", "0002-001", "0002-002"]
    assert [m.removeprefix("rg-") for m in member_cluster_ids("rg", **a.member_kwargs)] == a.member_suffixes
    assert "secret-token-value-1234" not in repr(_args(auth_token="secret-token-value-1234"))
