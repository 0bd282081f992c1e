"""The rotation Lambda of the AWS targets under Pulumi mocks: where it runs, what it may reach and
do, who may invoke it, the schedule, and a configuration without a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components import rotation as rc
from infra.errors import SettingsErrors
from redisops.rotation import CONFIG_VARIABLE, RotationConfig
from tests.support.leaks import generated_secrets, plain_occurrences
from tests.support.pulumi_harness import STACK_FILES, StackRun
from tests.support.pulumi_harness import run_stack_file as run  # shared with the other component tests

COMPONENT = "redisstack:aws:CredentialRotation"
FUNCTION = "aws:lambda/function:Function"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
POLICY = "aws:iam/rolePolicy:RolePolicy"
LOGS = "aws:cloudwatch/logGroup:LogGroup"
SCHEDULE = "aws:secretsmanager/secretRotation:SecretRotation"
PERMISSION = "aws:lambda/permission:Permission"
SECRET = "aws:secretsmanager/secret:Secret"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
ACCOUNT = "arn:aws:elasticache:eu-west-1:123456789012"
VPC_AND_TRACES = ("DescribeTheVpc", "AttachToTheVpc", "WriteTraces")


def owned(r: StackRun, type_: str) -> list[Any]:
    return [x for x in r.of_type(type_) if x.parent_type == COMPONENT]


def statements(r: StackRun) -> dict[str, Any]:
    return {s["Sid"]: s for s in json.loads(r.one(POLICY, "rotation-policy").inputs["policy"])["Statement"]}


def secret_arns(r: StackRun, names: list[str]) -> list[str]:
    return sorted(r.one(SECRET, n).outputs["arn"] for n in names)


ELASTICACHE_SECRETS = ["redis-auth", "redis-admin-auth", "redis-monitor-auth"]
SENTINEL_SECRETS = ["redis-app-auth", "redis-admin-auth"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_function_runs_in_the_stack_subnets_with_a_group_that_reaches_only_redis_and_https(stack: str) -> None:
    r = run(stack)
    [fn] = owned(r, FUNCTION)
    sg = r.one(SG, "rotation-sg").outputs["id"]
    target = r.one(SG, "redis-sg").outputs["id"]
    assert fn.inputs["vpcConfig"] == {"subnetIds": SUBNETS, "securityGroupIds": [sg]}
    assert [x.name for x in r.of_type(INGRESS) if x.inputs["securityGroupId"] == sg] == []
    egress = sorted((x.inputs["fromPort"], x.inputs.get("referencedSecurityGroupId"), x.inputs.get("cidrIpv4"))
                    for x in r.of_type(EGRESS) if x.inputs["securityGroupId"] == sg)
    ports = [6379] if stack == "prod" else [6379, 26379]
    # Redis only on its port(s) of this stack's group; HTTPS for Secrets Manager / ElastiCache APIs.
    assert egress == sorted([(443, None, "0.0.0.0/0"), *((p, target, None) for p in ports)])
    admitted = sorted(x.inputs["fromPort"] for x in r.of_type(INGRESS)
                      if x.inputs["securityGroupId"] == target and x.inputs.get("referencedSecurityGroupId") == sg)
    assert admitted == ports
    assert (fn.inputs["handler"], fn.inputs["timeout"]) == ("redisops.rotation.handler", 900)
    assert fn.inputs["loggingConfig"]["logGroup"] == r.one(LOGS, "rotation-logs").outputs["name"]


@pytest.mark.parametrize(("stack", "names"), [("prod", ELASTICACHE_SECRETS), ("prod-sentinel", SENTINEL_SECRETS)])
def test_every_credential_secret_rotates_on_the_schedule_invoked_only_by_secrets_manager(
        stack: str, names: list[str]) -> None:
    r = run(stack)
    fn = r.one(FUNCTION, "rotation-fn")
    schedules = owned(r, SCHEDULE)
    assert sorted(s.inputs["secretId"] for s in schedules) == secret_arns(r, names)
    for s in schedules:
        assert s.inputs["rotationLambdaArn"] == fn.outputs["arn"]
        assert s.inputs["rotationRules"] == {"automaticallyAfterDays": 30}
        assert s.inputs["rotateImmediately"] is False
    permissions = owned(r, PERMISSION)
    assert sorted(p.inputs["sourceArn"] for p in permissions) == secret_arns(r, names)
    assert {(p.inputs["principal"], p.inputs["action"], p.inputs["function"]) for p in permissions} == {
        ("secretsmanager.amazonaws.com", "lambda:InvokeFunction", fn.outputs["name"])}
    assert r.outputs["rotationDays"] == 30


@pytest.mark.parametrize(("stack", "secrets"), [("prod", ELASTICACHE_SECRETS), ("prod-sentinel", SENTINEL_SECRETS)])
def test_function_is_traced_capped_and_attaches_only_in_its_subnets_with_its_group(
        stack: str, secrets: list[str]) -> None:
    # checkov CKV_AWS_50 / CKV_AWS_115 / CKV_AWS_290 / CKV_AWS_355, fixed as on the smoke function.
    r = run(stack)
    (fn,) = owned(r, FUNCTION)
    assert fn.inputs["tracingConfig"] == {"mode": "Active"}
    # One concurrent copy per secret it rotates (Secrets Manager rotates a secret one step at a time).
    assert fn.inputs["reservedConcurrentExecutions"] == len(secrets) == len(owned(r, SCHEDULE))
    st = statements(r)
    assert st["WriteTraces"]["Action"] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    assert st["DescribeTheVpc"]["Action"] == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    attach = st["AttachToTheVpc"]
    assert set(attach["Action"]) == {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                                     "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
    (sg,) = owned(r, SG)
    ec2 = "arn:aws:ec2:eu-west-1:123456789012"
    assert attach["Resource"] == [f"{ec2}:network-interface/*", *(f"{ec2}:subnet/{s}" for s in sorted(
        fn.inputs["vpcConfig"]["subnetIds"])), f"{ec2}:security-group/{sg.outputs['id']}"]
    assert fn.inputs["vpcConfig"]["securityGroupIds"] == [sg.outputs["id"]]


def test_elasticache_rbac_role_may_change_only_its_own_users() -> None:
    r = run("prod")
    st = statements(r)
    rg = r.outputs["replicationGroupId"]
    assert set(st) == {*VPC_AND_TRACES, "OwnLogGroup", "RotateOwnSecrets", "StackKeyThroughSecretsManagerOnly",
                       "ReadOwnReplicationGroup", "ReadOwnUserGroup", "ChangeOwnUsersPasswords"}
    assert st["RotateOwnSecrets"]["Resource"] == secret_arns(r, ELASTICACHE_SECRETS)
    assert st["RotateOwnSecrets"]["Action"] == list(rc.SECRET_ACTIONS)
    assert st["OwnLogGroup"]["Resource"] == r.one(LOGS, "rotation-logs").outputs["arn"] + ":*"
    kms = st["StackKeyThroughSecretsManagerOnly"]
    assert kms["Resource"] == r.outputs["kmsKeyArn"] and kms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    assert st["ReadOwnReplicationGroup"]["Resource"] == f"{ACCOUNT}:replicationgroup:{rg}"
    # The provider's id of a user group is its UserGroupId.
    user_group = r.one("aws:elasticache/userGroup:UserGroup").outputs["id"]
    assert st["ReadOwnUserGroup"]["Resource"] == f"{ACCOUNT}:usergroup:{user_group}"
    assert st["ChangeOwnUsersPasswords"]["Resource"] == sorted(
        f"{ACCOUNT}:user:{u['userId']}" for u in r.outputs["rbacUsers"])
    assert "elasticache:ModifyReplicationGroup" not in json.dumps(st)  # RBAC never touches the group
    # Nothing the function does is allowed on every resource, except what only works on "*".
    assert sorted(sid for sid, s in st.items() if s["Resource"] == "*") == ["DescribeTheVpc", "WriteTraces"]


def test_token_mode_role_may_modify_only_its_group() -> None:
    r = run("prod", elasticache__authMode="token")
    st = statements(r)
    assert st["ChangeOwnGroupsAuthToken"]["Action"] == ["elasticache:DescribeReplicationGroups",
                                                        "elasticache:ModifyReplicationGroup"]
    assert st["ChangeOwnGroupsAuthToken"]["Resource"] == f"{ACCOUNT}:replicationgroup:{r.outputs['replicationGroupId']}"
    assert not {"ReadOwnUserGroup", "ChangeOwnUsersPasswords"} & set(st)
    assert st["RotateOwnSecrets"]["Resource"] == secret_arns(r, ["redis-auth"])


def test_sentinel_role_has_no_elasticache_rights() -> None:
    st = statements(run("prod-sentinel"))
    assert set(st) == {*VPC_AND_TRACES, "OwnLogGroup", "RotateOwnSecrets", "StackKeyThroughSecretsManagerOnly"}


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_configuration_names_the_targets_and_holds_no_secret(stack: str) -> None:
    r = run(stack)
    variables = r.one(FUNCTION, "rotation-fn").inputs["environment"]["variables"]
    config = RotationConfig.from_json(variables[CONFIG_VARIABLE])
    names = ELASTICACHE_SECRETS if stack == "prod" else SENTINEL_SECRETS
    assert sorted(config.secrets) == secret_arns(r, names)
    if stack == "prod":
        assert config.target == "elasticache" and config.replication_group_id == r.outputs["replicationGroupId"]
        assert sorted(config.secrets.values()) == ["admin", "app", "monitor"]
    else:
        assert config.target == "sentinel" and list(config.nodes) == r.outputs["redisNodes"]
        assert list(config.sentinels) == r.outputs["sentinelEndpoints"]
        assert config.ca_cert_pem == r.outputs["caCertPem"] and config.tls
        assert config.admin_secret_arn == r.one(SECRET, "redis-admin-auth").outputs["arn"]
    assert plain_occurrences(variables, generated_secrets(r)) == []


def test_log_group_encrypted_with_the_stack_key_and_named_in_its_policy() -> None:
    r = run("prod")
    logs = r.one(LOGS, "rotation-logs")
    assert logs.inputs["name"] == "/aws/lambda/redisstack-prod-rotation" == r.outputs["logGroups"]["rotation-function"]
    assert logs.inputs["kmsKeyId"] == r.outputs["kmsKeyArn"] and logs.inputs["retentionInDays"] == 365
    assert logs.outputs["arn"] in r.one("aws:kms/key:Key", "redis-kms").inputs["policy"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_environment_is_encrypted_with_the_key_of_its_log_group(stack: str) -> None:
    # checkov CKV_AWS_173; no KMS statement for it on the role (Lambda decrypts through its grant,
    # infra/components/smoke_function.py docstring; the role's Sids are asserted exactly above).
    r = run(stack)
    fn = r.one(FUNCTION, "rotation-fn").inputs
    assert fn["kmsKeyArn"] == r.one("aws:kms/key:Key", "redis-kms").outputs["arn"] == r.outputs["kmsKeyArn"]
    assert fn["kmsKeyArn"] == r.one(LOGS, "rotation-logs").inputs["kmsKeyId"]


def test_schedule_days_and_switching_off() -> None:
    r = run("prod", rotation__days=90)
    assert {s.inputs["rotationRules"]["automaticallyAfterDays"] for s in owned(r, SCHEDULE)} == {90}
    off = run("prod", rotation__enabled=False)
    assert off.of_type(COMPONENT) == [] and "rotation-function" not in off.outputs["logGroups"]
    assert "/aws/lambda/redisstack-prod-rotation" not in off.one("aws:kms/key:Key", "redis-kms").inputs["policy"]


@pytest.mark.parametrize("days", [0, 366])
def test_days_out_of_range_are_refused_before_anything_is_built(days: int) -> None:
    with pytest.raises(SettingsErrors) as err:
        run("prod", rotation__days=days)
    text = str(err.value)
    assert "rotation.days" in text and str(days) in text and "1 to 365" in text
