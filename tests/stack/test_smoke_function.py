"""The in-VPC smoke function of the AWS targets under Pulumi mocks: where it runs, what it may reach,
what its role may do, and what its code archive holds."""

from __future__ import annotations

import importlib.metadata
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from infra.components import smoke_function as sf
from infra.keypolicy import IAM_PRINCIPAL_CALLS, KeyUse, missing
from redisops import vpc_smoke
from tests.support.leaks import generated_secrets, plain_occurrences
from tests.support.pulumi_harness import (
    STACK_FILES,
    StackRun,
    load_stack_file,
    run_program,
    run_stack_file,
    without_component,
)

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = "redisstack:aws:SmokeFunction"
ROTATION = "redisstack:aws:CredentialRotation"
FUNCTION = "aws:lambda/function:Function"
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ROLE = "aws:iam/role:Role"
POLICY = "aws:iam/rolePolicy:RolePolicy"
LOGS = "aws:cloudwatch/logGroup:LogGroup"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
ENDPOINT_SG = "sg-0feedc0ffee123456"
GIVEN_KMS = "arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-1111-2222-3333-444455556666"
# The AWS managed policy for VPC functions (v3, 2024-01-05):
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
MANAGED_VPC_ACCESS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                      "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}


@cache
def run(stack: str, **overrides: Any) -> StackRun:
    # The rotation function (its own tests: tests/stack/test_rotation.py) is another Lambda.
    return without_component(run_stack_file(stack, **overrides), ROTATION)


def owned(r: StackRun, type_: str) -> list[Any]:
    return [x for x in r.of_type(type_) if x.parent_type == COMPONENT]


def smoke_sg(r: StackRun) -> Any:
    return r.one(SG, "smoke-sg")


def redis_sg(r: StackRun) -> Any:
    return r.one(SG, "redis-sg")


# ---- network placement --------------------------------------------------------------------------
@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_function_runs_in_the_stack_subnets_with_its_own_group(stack: str) -> None:
    r = run(stack)
    fn = r.one(FUNCTION)
    assert fn.parent_type == COMPONENT
    assert fn.inputs["vpcConfig"]["subnetIds"] == SUBNETS
    assert fn.inputs["vpcConfig"]["securityGroupIds"] == [smoke_sg(r).outputs["id"]]
    assert smoke_sg(r).inputs["vpcId"] == "vpc-0a1b2c3d4e5f60718"
    assert smoke_sg(r).inputs["revokeRulesOnDelete"] is True
    assert "ingress" not in smoke_sg(r).inputs and "egress" not in smoke_sg(r).inputs  # no inline rules


@pytest.mark.parametrize(("stack", "ports"), [("prod", {6379}), ("prod-sentinel", {6379, 26379})])
def test_egress_only_to_the_redis_ports_of_this_stack_and_https(stack: str, ports: set[int]) -> None:
    r = run(stack)
    sg, target = smoke_sg(r).outputs["id"], redis_sg(r).outputs["id"]
    # Nothing may connect to the function.
    assert [x.name for x in r.of_type(INGRESS) if x.inputs["securityGroupId"] == sg] == []
    egress = [x.inputs for x in r.of_type(EGRESS) if x.inputs["securityGroupId"] == sg]
    to_redis = {(e["fromPort"], e["toPort"]) for e in egress if e.get("referencedSecurityGroupId") == target}
    assert to_redis == {(p, p) for p in ports}
    others = [e for e in egress if e.get("referencedSecurityGroupId") != target]
    # HTTPS for Secrets Manager through the subnets' NAT, nothing else.
    assert [(e["fromPort"], e["toPort"], e.get("cidrIpv4")) for e in others] == [(443, 443, "0.0.0.0/0")]
    assert all(e["ipProtocol"] == "tcp" for e in egress)


@pytest.mark.parametrize(("stack", "ports"), [("prod", {6379}), ("prod-sentinel", {6379, 26379})])
def test_redis_admits_the_function_on_its_ports_only(stack: str, ports: set[int]) -> None:
    r = run(stack)
    sg, target = smoke_sg(r).outputs["id"], redis_sg(r).outputs["id"]
    from_fn = [x.inputs for x in r.of_type(INGRESS) if x.inputs.get("referencedSecurityGroupId") == sg]
    assert {(i["securityGroupId"], i["fromPort"], i["toPort"], i["ipProtocol"]) for i in from_fn} == {
        (target, p, p, "tcp") for p in ports}
    # The component adds no other rule to the Redis group.
    assert {x.name for x in owned(r, INGRESS)} == {f"smoke-redis-in-{p}" for p in ports}


def test_a_secrets_manager_endpoint_keeps_https_inside_the_vpc() -> None:
    r = run("prod", smoke__secretsEndpointSecurityGroupId=ENDPOINT_SG)
    sg = smoke_sg(r).outputs["id"]
    egress = [x.inputs for x in r.of_type(EGRESS) if x.inputs["securityGroupId"] == sg]
    https = [e for e in egress if e["fromPort"] == 443]
    assert [(e.get("referencedSecurityGroupId"), e.get("cidrIpv4")) for e in https] == [(ENDPOINT_SG, None)]
    assert not any(e.get("cidrIpv4") or e.get("cidrIpv6") for e in egress)
    endpoint_in = [x.inputs for x in r.of_type(INGRESS) if x.inputs["securityGroupId"] == ENDPOINT_SG]
    assert [(i["fromPort"], i["referencedSecurityGroupId"]) for i in endpoint_in] == [(443, sg)]


# ---- IAM ------------------------------------------------------------------------------------------
def policy_of(r: StackRun) -> dict[str, Any]:
    return {s["Sid"]: s for s in json.loads(r.one(POLICY, "smoke-policy").inputs["policy"])["Statement"]}


def test_only_lambda_assumes_the_role() -> None:
    trust = json.loads(run("prod").one(ROLE, "smoke-role").inputs["assumeRolePolicy"])
    assert trust["Statement"] == [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                   "Principal": {"Service": "lambda.amazonaws.com"}}]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_role_reads_its_own_secrets_decrypts_through_secrets_manager_and_writes_its_own_logs(stack: str) -> None:
    r = run(stack)
    by_sid = policy_of(r)
    assert set(by_sid) == {"DescribeTheVpc", "AttachToTheVpc", "WriteTraces", "OwnLogGroup", "OwnSecrets",
                           "DecryptOwnSecrets"}
    # The managed AWSLambdaVPCAccessExecutionRole minus its logs:* on every resource; only the
    # Describe actions (which take no resource ARN) on "*", the rest on the function's own
    # subnets and security group (checkov CKV_AWS_355 / CKV_AWS_290).
    describe, vpc = by_sid["DescribeTheVpc"], by_sid["AttachToTheVpc"]
    assert set(vpc["Action"] + describe["Action"]) == {a for a in MANAGED_VPC_ACCESS if not a.startswith("logs:")}
    assert describe["Resource"] == "*" and all(a.startswith("ec2:Describe") for a in describe["Action"])
    prefix = "arn:aws:ec2:eu-west-1:123456789012:"
    subnets = sorted(r.one(FUNCTION).inputs["vpcConfig"]["subnetIds"])
    assert vpc["Resource"] == ([prefix + "network-interface/*"] + [f"{prefix}subnet/{s}" for s in subnets]
                               + [prefix + "security-group/" + smoke_sg(r).outputs["id"]])
    assert by_sid["WriteTraces"] == {"Sid": "WriteTraces", "Effect": "Allow", "Resource": "*",
                                     "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]}
    logs = by_sid["OwnLogGroup"]
    assert logs["Action"] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert logs["Resource"] == r.one(LOGS, "smoke-logs").outputs["arn"] + ":*"
    secrets = by_sid["OwnSecrets"]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    expected = sorted(v for k, v in r.outputs.items() if k in ("authSecretArn", "appSecretArn", "adminSecretArn"))
    assert secrets["Resource"] == expected and expected
    decrypt = by_sid["DecryptOwnSecrets"]
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == r.one("aws:kms/key:Key", "redis-kms").outputs["arn"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    for statement in by_sid.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions)
        assert statement["Effect"] == "Allow"


def test_a_given_kms_key_is_the_one_it_may_decrypt_with_and_encrypts_the_environment() -> None:
    r = run("prod", elasticache__kmsKeyArn=GIVEN_KMS)
    assert policy_of(r)["DecryptOwnSecrets"]["Resource"] == GIVEN_KMS
    assert r.one(FUNCTION).inputs["kmsKeyArn"] == GIVEN_KMS == r.one(LOGS, "smoke-logs").inputs["kmsKeyId"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_environment_is_encrypted_with_the_stack_key_of_its_log_group(stack: str) -> None:
    # checkov CKV_AWS_173. Lambda decrypts it through the grant it creates with the deploy role's
    # kms:CreateGrant/kms:Encrypt (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html),
    # so the role gets no KMS statement for it (its Sids are exactly those listed above).
    r = run(stack)
    key = r.one("aws:kms/key:Key", "redis-kms").outputs["arn"]
    assert r.one(FUNCTION).inputs["kmsKeyArn"] == key == r.outputs["kmsKeyArn"]
    assert r.one(LOGS, "smoke-logs").inputs["kmsKeyId"] == key


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_key_needs_no_lambda_statement_but_its_iam_principals_must_encrypt(stack: str) -> None:
    # The deploy role (an IAM principal, through the account-root statement) lets Lambda create its
    # grant: no service-principal statement for Lambda. A given key's policy that withholds
    # kms:Encrypt from the account's principals is reported by `redisops key-policy`.
    policy = json.loads(run(stack).one("aws:kms/key:Key", "redis-kms").inputs["policy"])
    principals = [st["Principal"] for st in policy["Statement"]]
    assert not [p for p in principals if "lambda" in json.dumps(p)]
    (root,) = [st for st in policy["Statement"] if st["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}]
    assert root["Action"] == "kms:*" and root["Resource"] == "*"
    narrowed = {"Statement": [{**root, "Action": [a for a in IAM_PRINCIPAL_CALLS if a != "kms:Encrypt"]}]}
    assert missing(narrowed, KeyUse("123456789012", "aws", "eu-west-1")) == [
        "IAM principals of the account may use the key (ElastiCache, Secrets Manager, SSM, EBS, Lambda, S3): "
        "kms:Encrypt is not allowed"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_function_is_traced_and_capped(stack: str) -> None:
    # checkov CKV_AWS_50 / CKV_AWS_115: X-Ray active (its role may write traces, see above) and a
    # concurrency cap, so a runaway caller cannot multiply the clients it opens against Redis.
    fn = run(stack).one(FUNCTION).inputs
    assert fn["tracingConfig"] == {"mode": "Active"}
    assert fn["reservedConcurrentExecutions"] == sf.RESERVED_CONCURRENCY == 2


def test_function_is_created_after_its_permissions() -> None:
    # Lambda creates the VPC network interfaces with the role at create time: without the policy
    # in place, CreateFunction fails on ec2:CreateNetworkInterface.
    r = run("prod")
    fn = r.one(FUNCTION)
    assert fn.inputs["role"] == r.one(ROLE, "smoke-role").outputs["arn"]
    assert any("aws:iam/rolePolicy:RolePolicy::smoke-policy" in d for d in fn.depends_on)


# ---- configuration and outputs ---------------------------------------------------------------
@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_configuration_carries_no_secret_and_fits_lambdas_environment_limit(stack: str) -> None:
    r = run(stack)
    fn = r.one(FUNCTION)
    leaks = plain_occurrences(fn.inputs, generated_secrets(r))
    assert leaks == []
    variables = fn.inputs["environment"]["variables"]
    assert set(variables) == {vpc_smoke.CONFIG_VARIABLE}
    size = sum(len(k) + len(v.encode()) for k, v in variables.items())
    assert size <= sf.ENV_LIMIT_BYTES
    config = json.loads(variables[vpc_smoke.CONFIG_VARIABLE])
    env = config["outputs"]["env"]
    assert not [k for k in env if k.endswith(vpc_smoke.SECRET_SUFFIXES)]
    assert set(config["fillFromAppSecret"]) <= set(vpc_smoke.APP_PASSWORD_VARIABLES)
    assert "REDIS_PASSWORD" in config["fillFromAppSecret"]
    # The tiers and expectations smoke holds Redis to are the stack's own.
    assert config["outputs"]["rateLimits"] == r.outputs["rateLimits"]
    assert config["outputs"]["expectations"] == r.outputs["expectations"]
    assert env["REDIS_URL"] == r.outputs.get("redisUrl", r.outputs.get("sentinelUrl"))


def test_sentinel_function_gets_the_ca_and_both_secrets() -> None:
    r = run("prod-sentinel")
    config = json.loads(r.one(FUNCTION).inputs["environment"]["variables"][vpc_smoke.CONFIG_VARIABLE])
    assert config["outputs"]["caCertPem"] == r.outputs["caCertPem"]
    assert config["appSecretArn"] == r.outputs["appSecretArn"]
    assert config["adminSecretArn"] == r.outputs["adminSecretArn"]
    assert sorted(config["fillFromAppSecret"]) == ["REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"]


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_outputs_name_the_function_for_ci_and_are_not_secret(stack: str) -> None:
    r = run(stack)
    fn = r.one(FUNCTION)
    assert r.outputs["smokeFunctionName"] == fn.outputs["name"]
    assert r.outputs["smokeFunctionArn"] == fn.outputs["arn"]
    assert not {"smokeFunctionName", "smokeFunctionArn"} & r.secret_outputs


def test_disabled_smoke_function_deploys_nothing() -> None:
    r = run("prod", smoke__enabled=False)
    assert r.of_type(COMPONENT) == [] and r.of_type(FUNCTION) == []
    assert "smokeFunctionName" not in r.outputs


def test_local_target_has_no_smoke_function() -> None:
    config, secret = load_stack_file("Pulumi.dev.yaml")
    r = run_program(config, stack="dev", secret_keys=secret)
    assert r.of_type(COMPONENT) == [] and "smokeFunctionName" not in r.outputs


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_logs_kept_as_configured_and_every_taggable_resource_tagged(stack: str) -> None:
    r = run(stack)
    logs = r.one(LOGS, "smoke-logs")
    assert logs.inputs["retentionInDays"] == 365  # the AWS-target default (docs/decisions.md, "Log retention")
    # Encrypted with the stack's key, whose policy names this group (infra/keypolicy.py).
    assert logs.inputs["kmsKeyId"] == r.outputs["kmsKeyArn"]
    assert logs.outputs["arn"] in r.one("aws:kms/key:Key", "redis-kms").inputs["policy"]
    assert r.one(FUNCTION).inputs["loggingConfig"] == {"logFormat": "Text", "logGroup": logs.outputs["name"]}
    for res in r.resources:
        if res.parent_type == COMPONENT and res.type != POLICY:  # an inline role policy has no tags
            assert res.inputs["tags"]["stack"] == stack and res.inputs["tags"]["managed-by"] == "pulumi", res.name


# ---- the code -----------------------------------------------------------------------------------
def test_runtime_and_handler() -> None:
    fn = run("prod").one(FUNCTION)
    assert (fn.inputs["runtime"], fn.inputs["architectures"], fn.inputs["handler"]) == (
        "python3.13", ["arm64"], "redisops.vpc_smoke.handler")
    assert fn.inputs["timeout"] == sf.TIMEOUT_S <= 900 and fn.inputs["memorySize"] == sf.MEMORY_MB
    module, attr = sf.HANDLER.rsplit(".", 1)
    assert callable(getattr(vpc_smoke, attr)) and module == vpc_smoke.__name__


def test_archive_holds_the_handler_its_packages_and_pure_python_redis_py() -> None:
    files = sf.package_files()
    # Uploaded once, signed, and deployed from the signed object (tests/stack/test_code_signing.py).
    archive = run("prod").one("aws:s3/bucketObjectv2:BucketObjectv2").inputs["source"]
    assert sorted(archive.assets) == sorted(files)
    assert all(Path(a.path) == files[name] for name, a in archive.assets.items())
    top = {name.split("/")[0] for name in files}
    version = importlib.metadata.version("redis")
    assert top == {"redisops", "ratelimit", "redis_conf", "infra", "redis", f"redis-{version}.dist-info"}
    for needed in ("redisops/vpc_smoke.py", "redisops/smoke.py", "redisops/connection.py", "redis/__init__.py",
                   "infra/errors.py", f"redis-{version}.dist-info/licenses/LICENSE"):
        assert needed in files
    assert any(n.startswith("ratelimit/") and n.endswith(".lua") for n in files)
    # Sources only: no bytecode, nothing compiled (arm64), no machine paths in the names.
    assert not [n for n in files if "__pycache__" in n or n.endswith((".pyc", ".so", ".pyd", ".dylib"))]
    assert not [n for n in files if n.startswith("/") or ".." in n.split("/")]
    # boto3 comes with the runtime; the Pulumi program and its SDKs never go in.
    assert not top & {"boto3", "botocore", "pulumi", "pulumi_aws", "pydantic", "typer", "rich"}
    assert not [n for n in files if n.startswith("infra/") and n not in sf.OWN_FILES]


def test_vendored_redis_py_is_the_pinned_one_and_supports_the_runtime() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    for dist in sf.VENDORED:
        # A pin makes every machine (deploy job, drift job, laptop) package the same files.
        assert pins.get(dist) == importlib.metadata.version(dist), f"{dist} must be pinned in requirements.txt"
        meta = importlib.metadata.metadata(dist)
        runtime = sf.RUNTIME.removeprefix("python")
        assert f"Programming Language :: Python :: {runtime}" in meta.get_all("Classifier", [])
        assert not meta.get_all("Requires-Dist") or all(
            "extra ==" in r or "python_full_version < '3.11.3'" in r for r in meta.get_all("Requires-Dist", []))


def test_archive_is_the_same_on_every_build() -> None:
    first, second = sf.package_files(), sf.package_files()
    assert list(first) == list(second) == sorted(first)
    assert {n: p.read_bytes() for n, p in first.items()} == {n: p.read_bytes() for n, p in second.items()}


def test_a_compiled_distribution_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sf, "VENDORED", ("cryptography",))
    with pytest.raises(sf.PackagingError, match=r"cryptography .* ships compiled code"):
        sf.package_files()
