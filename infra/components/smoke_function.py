"""The in-VPC smoke function of the AWS targets: post-deploy verification without a runner in the VPC.

A Lambda in the stack's subnets, with a security group of its own that Redis admits, runs the
handler in redisops/vpc_smoke.py: `redisops smoke` (and `redisops functions load`) against the
deployed Redis, with the credentials read from Secrets Manager at invocation time. CI invokes it
through IAM (`lambda:InvokeFunction`) and gets the JSON/JUnit report back (docs/delivery.md).

Packaging: the project's own pure-Python packages plus redis-py, vendored from the virtualenv
that runs the program (the version requirements.txt pins), as a Pulumi AssetArchive of the files
themselves. Pulumi hashes such an archive by file names and contents (a tar with fixed headers,
pulumi/pulumi sdk/go/common/resource/archive/archive.go EnsureHashWithWD -> archiveTar) and zips
it with a fixed timestamp for the upload (addNextFileToZIP), so the same sources give the same
archive on every machine: no rebuild, no drift, no zip made at render time. The archive is
uploaded and signed with AWS Signer once per stack (infra/components/code_signing.py), and the
function deploys the signed object under an enforcing code-signing config. Nothing compiled
is vendored (the function runs on arm64), and boto3 comes with the Lambda Python runtime.

Environment: encrypted at rest with the stack's key (`kms_key_arn`, checkov CKV_AWS_173), the
key of its log group, here and in the rotation function. Who needs what, per the Lambda
Developer Guide (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html,
"Required permissions"): the caller of CreateFunction/UpdateFunctionConfiguration (the deploy
role) `kms:CreateGrant` and `kms:Encrypt` through Lambda (and `kms:Decrypt`: the provider reads
the function back after every create and update, below); "Lambda uses your permissions to
create a grant on the key", and decrypts at run time through that grant, so the execution role
gets no KMS statement for it (the grant follows the role: a role deleted and recreated under the
same name breaks decryption until the function's role is updated, pulumi-aws lambda.Function
docs). A caller reading the function back needs `kms:Decrypt` through Lambda ("Users without
Decrypt permissions ... can't view environment variables", same page), else the provider's read
(hashicorp/terraform-provider-aws internal/service/lambda/function.go, resourceFunctionRead ->
flattenEnvironment, which ignores Environment.Error) would record an empty environment and plan
to rewrite it; the drift/preview-prod role gets it (docs/bootstrap/prod-read-policy.json). Lambda
encrypts and decrypts with the encryption context {"aws:lambda:FunctionArn": <function ARN>} (what
a CloudTrail Decrypt record of a caller reading a function through Lambda carries), so both roles'
Encrypt/Decrypt through Lambda are held to this stack's functions (`smoke-fn-*`, `rotation-fn-*`)
and not to every CMK-encrypted environment of the account; the deploy role's CreateGrant needs
`kms:GrantIsForAWSResource` (tests/unit/test_workflows.py). No key-policy statement: these are IAM principals of the account (the account-root statement,
infra/keypolicy.py), unlike a .zip package encrypted with SourceKMSKeyArn, which needs
lambda.amazonaws.com in the key policy (encrypt-zip-package.html; not used here).
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.components.aws_common import Account, account, child, fixed_name
from infra.settings import Settings
from redisops.vpc_smoke import CONFIG_VARIABLE, OUTPUT_KEYS, function_config

if TYPE_CHECKING:
    from infra.components.code_signing import SignedCode

# python3.13: supported by Lambda until 2029-06-30 (python3.11 was deprecated 2026-06-30;
# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
RUNTIME = "python3.13"
HANDLER = "redisops.vpc_smoke.handler"
ARCHITECTURE = "arm64"
TIMEOUT_S = 300
MEMORY_MB = 1024  # Lambda scales CPU with memory; the tiers run 16 clients at once
# CI runs one smoke (or functions load) per deploy; a cap keeps a runaway caller from opening
# 16 clients per concurrent copy against production Redis. Reserved concurrency is taken from
# the account's pool (an account at the 10-execution minimum cannot reserve any; docs/decisions.md).
RESERVED_CONCURRENCY = 2
# Lambda refuses a function whose environment variables exceed 4 KB in total
# (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
ENV_LIMIT_BYTES = 4096
REPO = Path(__file__).resolve().parents[2]
# What the handler imports from this repository (redis_conf.schema imports infra.errors,
# redis_conf.elasticache imports infra.versions); the clean-interpreter test catches a miss.
OWN_PACKAGES = ("redisops", "ratelimit", "redis_conf")
OWN_FILES = ("infra/__init__.py", "infra/errors.py", "infra/versions.py")
PACKAGE_SUFFIXES = frozenset({".py", ".lua", ".json", ".conf", ".yaml", ".tmpl"})
# Third-party distributions vendored into the function: pure Python and pinned in requirements.txt.
VENDORED = ("redis",)
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")
# What the Lambda service needs to attach the function to the VPC: AWSLambdaVPCAccessExecutionRole
# without its logs:* on every resource (those are granted on the function's own log group).
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSLambdaVPCAccessExecutionRole.html
# DescribeNetworkInterfaces works only on "*" (https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html).
# The others take network-interface, subnet and security-group ARNs (Service Authorization
# Reference, Amazon EC2), so they are granted on the function's own subnets and group only.
VPC_DESCRIBE_ACTIONS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")
VPC_MANAGE_ACTIONS = ("ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                      "ec2:UnassignPrivateIpAddresses")
# Active tracing: the Lambda service samples invocations and the function's role writes the
# segments (AWSXRayDaemonWriteAccess minus its sampling reads). X-Ray actions take no resource ARN.
XRAY_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")
HTTPS = 443


class PackagingError(RuntimeError):
    """The function's archive cannot be built from this environment."""


def _own_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in OWN_PACKAGES:
        for path in sorted((REPO / package).rglob("*")):
            rel = path.relative_to(REPO)
            if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in rel.parts:
                files[rel.as_posix()] = path
    for name in OWN_FILES:
        files[name] = REPO / name
    return files


def _vendored_files(distribution: str) -> dict[str, Path]:
    """The distribution's importable files, its METADATA and its license files (MIT: the notice
    travels with the code), as installed by pip (its RECORD)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PackagingError(f"{distribution} is not installed: run `pip install -r requirements.txt`") from None
    files: dict[str, Path] = {}
    for entry in dist.files or ():
        rel = entry.as_posix()
        parts = entry.parts
        if rel.startswith("..") or "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        in_dist_info = parts[0].endswith(".dist-info")
        if in_dist_info and not (parts[-1] == "METADATA" or "licenses" in parts or parts[-1].startswith("LICENSE")):
            continue
        if rel.endswith(COMPILED_SUFFIXES):
            raise PackagingError(f"{distribution} {dist.version} ships compiled code ({rel}); the smoke function "
                                 "vendors pure-Python distributions only")
        files[rel] = Path(str(dist.locate_file(entry)))
    if not files:
        raise PackagingError(f"{distribution} {dist.version}: pip recorded no files (RECORD missing)")
    return files


def package_files() -> dict[str, Path]:
    """Archive name -> source file of everything the function's code consists of."""
    files = _own_files()
    for distribution in VENDORED:
        for name, path in _vendored_files(distribution).items():
            if name in files:
                raise PackagingError(f"{distribution} would overwrite {name} of this repository")
            files[name] = path
    return dict(sorted(files.items()))


def code_archive(files: Mapping[str, Path]) -> pulumi.AssetArchive:
    return pulumi.AssetArchive({name: pulumi.FileAsset(str(path)) for name, path in files.items()})


@dataclass(frozen=True)
class SmokeFunctionArgs:
    """Where the function runs and what it may reach; built by `for_target`."""

    project: str
    stack: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    redis_security_group_id: pulumi.Input[str]
    redis_ports: tuple[int, ...]
    outputs: Mapping[str, Any] = field(repr=False)  # the target's stack outputs (secrets are stripped here)
    app_secret_arn: pulumi.Input[str]
    code: SignedCode  # the signed archive and the config that checks it (infra/components/code_signing.py)
    admin_secret_arn: pulumi.Input[str] | None = None
    kms_key_arn: pulumi.Input[str] | None = None  # the key that encrypts the secrets
    log_retention_days: int = 30
    secrets_endpoint_security_group_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.subnet_ids:
            raise ValueError("the smoke function needs at least one subnet")
        if not self.redis_ports:
            raise ValueError("the smoke function needs the Redis port(s) it may reach")

    @property
    def log_group_name(self) -> str:
        return log_group_name(self.project, self.stack)

    @classmethod
    def for_target(cls, settings: Settings, outputs: Mapping[str, Any], *, redis_security_group_id: pulumi.Input[str],
                   redis_ports: Sequence[int], kms_key_arn: pulumi.Input[str] | None,
                   code: SignedCode) -> SmokeFunctionArgs:
        """From validated Settings and the target component's stack outputs (ElastiCache:
        authSecretArn; Sentinel: appSecretArn and adminSecretArn)."""
        c = settings.config
        app_secret = outputs.get("appSecretArn", outputs.get("authSecretArn"))
        if app_secret is None or c.network.vpc_id is None:
            raise ValueError("the smoke function needs the application secret and the VPC of an AWS target")
        return cls(
            project=settings.project, stack=settings.stack, vpc_id=c.network.vpc_id,
            subnet_ids=tuple(c.network.subnet_ids), redis_security_group_id=redis_security_group_id,
            redis_ports=tuple(redis_ports), outputs=outputs, app_secret_arn=app_secret, code=code,
            admin_secret_arn=outputs.get("adminSecretArn"), kms_key_arn=kms_key_arn,
            log_retention_days=settings.log_retention_days,
            secrets_endpoint_security_group_id=c.smoke.secrets_endpoint_security_group_id, tags=settings.tags)


def log_group_name(project: str, stack: str, component: str = "smoke") -> str:
    """Fixed, so the stack key's policy can name it before it exists (its KMS encryption needs
    that: infra/keypolicy.py); the target components add it to their key's log groups."""
    return f"/aws/lambda/{fixed_name(project, stack, component)}"


def network_arns(acct: Account, subnet_ids: Sequence[str], security_group_id: str) -> list[str]:
    """What the function's network interfaces touch: any interface of this account and region
    (Lambda names them), its own subnets and its own security group."""
    return ([acct.arn("ec2", "network-interface/*")] + [acct.arn("ec2", f"subnet/{s}") for s in sorted(subnet_ids)]
            + [acct.arn("ec2", f"security-group/{security_group_id}")])


def vpc_and_trace_statements(network_arns: Sequence[str]) -> list[dict[str, Any]]:
    """What a function in the VPC with active tracing needs (the smoke and rotation functions):
    describe on "*" (the only resource those actions take), manage network interfaces in its own
    subnets with its own security group (`network_arns`), write its traces."""
    return [
        {"Sid": "DescribeTheVpc", "Effect": "Allow", "Action": list(VPC_DESCRIBE_ACTIONS), "Resource": "*"},
        {"Sid": "AttachToTheVpc", "Effect": "Allow", "Action": list(VPC_MANAGE_ACTIONS),
         "Resource": list(network_arns)},
        {"Sid": "WriteTraces", "Effect": "Allow", "Action": list(XRAY_ACTIONS), "Resource": "*"},
    ]


def own_network_arns(acct: pulumi.Output[Account], subnet_ids: Sequence[str],
                     security_group: aws.ec2.SecurityGroup) -> pulumi.Output[list[str]]:
    """network_arns once the function's security group has its id."""
    return pulumi.Output.all(acct, security_group.id).apply(lambda v: network_arns(v[0], subnet_ids, v[1]))


def execution_policy(*, log_group_arn: str, secret_arns: Sequence[str], kms_key_arn: str | None,
                     region: str, network_arns: Sequence[str], dns_suffix: str = "amazonaws.com") -> str:
    """Least privilege: attach to its subnets with its security group, write its own log group and
    traces, read its own secrets, and decrypt them only through Secrets Manager (the caller of
    GetSecretValue needs kms:Decrypt on a customer key:
    https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html)."""
    statements: list[dict[str, Any]] = [
        *vpc_and_trace_statements(network_arns),
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "OwnSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": sorted(secret_arns)},
    ]
    if kms_key_arn:
        statements.append({"Sid": "DecryptOwnSecrets", "Effect": "Allow", "Action": "kms:Decrypt",
                           "Resource": kms_key_arn,
                           # kms:ViaService is the endpoint's host: the partition's DNS suffix (amazonaws.com.cn in aws-cn).
                           "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.{dns_suffix}"}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


LAMBDA_TRUST_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}, sort_keys=True)


def environment(outputs: Mapping[str, Any], app_secret_arn: str, admin_secret_arn: str | None) -> dict[str, str]:
    """The function's environment: its configuration as one JSON variable (no secret in it)."""
    value = json.dumps(function_config(outputs, app_secret_arn=app_secret_arn, admin_secret_arn=admin_secret_arn),
                       sort_keys=True, separators=(",", ":"))
    if len(CONFIG_VARIABLE) + len(value.encode()) > ENV_LIMIT_BYTES:
        raise ValueError(f"smoke function: {CONFIG_VARIABLE} would be {len(value)} bytes; Lambda allows "
                         f"{ENV_LIMIT_BYTES} bytes of environment in total")
    return {CONFIG_VARIABLE: value}


def function_security_group(name: str, parent: pulumi.Resource, *, what: str, project: str, stack: str, vpc_id: str,
                            redis_security_group_id: pulumi.Input[str], redis_ports: Sequence[int],
                            endpoint_security_group_id: str | None, tags: dict[str, str]) -> aws.ec2.SecurityGroup:
    """A stack function's own group: no ingress at all, egress only to Redis (and HTTPS for the
    AWS APIs it calls); Redis admits it on its port(s). DNS needs no rule: security groups do not
    filter traffic to the Amazon DNS server
    (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html). Shared by the
    smoke and the rotation function (infra/components/rotation.py)."""
    sg = aws.ec2.SecurityGroup(
        f"{name}-sg", vpc_id=vpc_id, revoke_rules_on_delete=True,
        description=f"redisstack {what} ({project}/{stack}): egress to Redis and Secrets Manager only",
        tags={**tags, "Name": f"{name}-{what.split()[0]}"}, opts=child(parent))
    for port in redis_ports:
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-out-{port}", security_group_id=sg.id, ip_protocol="tcp", from_port=port, to_port=port,
            referenced_security_group_id=redis_security_group_id,
            description=f"Redis port {port} of this stack", tags=tags, opts=child(parent))
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-redis-in-{port}", security_group_id=redis_security_group_id, ip_protocol="tcp",
            from_port=port, to_port=port, referenced_security_group_id=sg.id,
            description=f"Port {port} from the stack's {what}", tags=tags, opts=child(parent))
    if endpoint_security_group_id:
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-out-{HTTPS}", security_group_id=sg.id, ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            referenced_security_group_id=endpoint_security_group_id, description="HTTPS to the Secrets Manager endpoint",
            tags=tags, opts=child(parent))
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoint-in-{HTTPS}", security_group_id=endpoint_security_group_id, ip_protocol="tcp",
            from_port=HTTPS, to_port=HTTPS, referenced_security_group_id=sg.id,
            description=f"HTTPS from the {what} of {project}/{stack}", tags=tags, opts=child(parent))
    else:
        # Secrets Manager's public endpoint through the subnets' NAT (docs/delivery.md: set
        # smoke.secretsEndpointSecurityGroupId to keep this inside the VPC).
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-out-{HTTPS}", security_group_id=sg.id, ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0", description="HTTPS to Secrets Manager (via NAT)", tags=tags, opts=child(parent))
    return sg


class SmokeFunction(pulumi.ComponentResource):
    """A Lambda in the VPC that runs `redisops smoke` / `functions load` for CI."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: SmokeFunctionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:aws:SmokeFunction", name, None, opts)
        tags = dict(args.tags)
        self._name = name
        self.security_group = self._network(args, tags)
        # Encrypted with the stack's key, whose policy names this group (issue 13: every log group the
        # stacks create); a given key (elasticache.kmsKeyArn) must carry that statement too.
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=args.log_group_name, kms_key_id=args.kms_key_arn,
            retention_in_days=args.log_retention_days, tags=tags, opts=child(self, delete_before_replace=True))
        self.role, self.role_policy = self._iam(args, tags)
        self.function = self._function(args, tags)
        self.stack_outputs = {"smokeFunctionName": self.function.name, "smokeFunctionArn": self.function.arn}
        self.register_outputs(self.stack_outputs)

    # -- children ---------------------------------------------------------------------------
    def _network(self, args: SmokeFunctionArgs, tags: dict[str, str]) -> aws.ec2.SecurityGroup:
        return function_security_group(
            self._name, self, what="smoke function", project=args.project, stack=args.stack, vpc_id=args.vpc_id,
            redis_security_group_id=args.redis_security_group_id, redis_ports=args.redis_ports,
            endpoint_security_group_id=args.secrets_endpoint_security_group_id, tags=tags)

    def _iam(self, args: SmokeFunctionArgs, tags: dict[str, str]) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        name = self._name
        acct = account(self)
        role = aws.iam.Role(f"{name}-role", assume_role_policy=LAMBDA_TRUST_POLICY,
                            description=f"redisstack smoke function ({args.project}/{args.stack})", tags=tags,
                            opts=child(self))
        secrets = [args.app_secret_arn] + ([args.admin_secret_arn] if args.admin_secret_arn is not None else [])
        network = own_network_arns(acct, args.subnet_ids, self.security_group)
        policy = pulumi.Output.all(self.log_group.arn, pulumi.Output.all(*secrets), args.kms_key_arn,
                                   acct, network).apply(
            lambda v: execution_policy(log_group_arn=v[0], secret_arns=v[1], kms_key_arn=v[2], region=v[3].region,
                                       network_arns=v[4], dns_suffix=v[3].dns_suffix))
        role_policy = aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child(self))
        return role, role_policy

    def _function(self, args: SmokeFunctionArgs, tags: dict[str, str]) -> aws.lambda_.Function:
        name = self._name
        # Only the outputs it needs go in (of those, `env` is secret: function_config strips it).
        needed = {k: v for k, v in args.outputs.items() if k in (*OUTPUT_KEYS, "authMode")}
        variables = pulumi.Output.all(pulumi.Output.from_input(needed), args.app_secret_arn,
                                      args.admin_secret_arn).apply(lambda v: environment(v[0], v[1], v[2]))
        return aws.lambda_.Function(
            f"{name}-fn",
            description=f"{args.project}/{args.stack}: redisops smoke and functions load, run inside the VPC",
            runtime=RUNTIME, architectures=[ARCHITECTURE], handler=HANDLER, **args.code.function_args(),
            role=self.role.arn, timeout=TIMEOUT_S, memory_size=MEMORY_MB,
            reserved_concurrent_executions=RESERVED_CONCURRENCY,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=list(args.subnet_ids),
                                                         security_group_ids=[self.security_group.id]),
            # The secrets were stripped from the outputs before they got here (function_config);
            # Output.unsecret only drops the marker the whole `env` output carries.
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=pulumi.Output.unsecret(variables)),
            kms_key_arn=args.kms_key_arn,  # encrypts the environment (module docstring, "Environment")
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            tags=tags,
            # Lambda creates the VPC network interfaces with the role's permissions at create time.
            opts=child(self, depends_on=[self.role_policy]))
