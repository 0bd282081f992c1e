"""Automatic credential rotation of the AWS targets: the rotation Lambda and its schedule.

One function per stack, in the stack's subnets, runs redisops/rotation.py (Secrets Manager's
createSecret / setSecret / testSecret / finishSecret) for every credential secret of the target:

* elasticache: the app, monitor and admin users' secrets (RBAC, ModifyUser with two passwords),
  or the one AUTH-token secret (ROTATE then SET);
* sentinel: the app and admin secrets (ACL SETUSER on every Redis node and Sentinel, as admin).

What it may do, and nothing more:
* network: its own security group, no ingress, egress to the target's Redis port(s) and HTTPS
  for the AWS APIs (the smoke function's rules: smoke_function.function_security_group);
* IAM: its own log group; DescribeSecret / GetSecretValue / PutSecretValue /
  UpdateSecretVersionStage on exactly the secrets it rotates; kms:Decrypt and
  kms:GenerateDataKey on the stack key only through Secrets Manager (PutSecretValue encrypts the
  new version with it: https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html);
  on ElastiCache DescribeReplicationGroups of its group, DescribeUserGroups of its user group,
  DescribeUsers / ModifyUser of its users (token mode: ModifyReplicationGroup of its group
  instead); the VPC attachment actions Lambda needs, on its own subnets and security group
  (smoke_function.vpc_and_trace_statements), and its X-Ray traces (tracing Active);
* environment: encrypted with the stack key, like its log group; Lambda decrypts it through the
  grant it creates with the deploy role's permissions, so the role has no KMS statement for it
  (smoke_function module docstring, "Environment");
* concurrency: reserved, one per secret it rotates (CredentialRotationArgs.reserved_concurrency);
* invocation: only Secrets Manager, only for these secrets (a resource policy per secret).

Code: the same signed archive as the smoke function (infra/components/code_signing.py), handler
`redisops.rotation.handler`. The schedule (`rotation.days`) starts with the next window after
`pulumi up`, not at once (`rotate_immediately=False`: a deploy is never raced by a rotation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.aws_common import Account, account, child, encrypted_log_group
from infra.components.code_signing import SignedCode
from infra.components.smoke_function import (
    ARCHITECTURE,
    ENV_LIMIT_BYTES,
    LAMBDA_TRUST_POLICY,
    RUNTIME,
    function_security_group,
    log_group_name,
    own_network_arns,
    vpc_and_trace_statements,
)
from redisops.rotation import CONFIG_VARIABLE, RotationConfig

HANDLER = "redisops.rotation.handler"
# Lambda's maximum: an ElastiCache ModifyUser/ModifyReplicationGroup is waited for inside a step.
TIMEOUT_S = 900
MEMORY_MB = 256
LOG_COMPONENT = "rotation"
SECRET_ACTIONS = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
                  "secretsmanager:UpdateSecretVersionStage")
KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


@dataclass(frozen=True)
class CredentialRotationArgs:
    """The target's credentials and where they live; built by the target's wiring in
    infra/program.py. No secret in it: only ARNs, ids and addresses."""

    project: str
    stack: str
    target: str  # elasticache | sentinel
    vpc_id: str
    subnet_ids: tuple[str, ...]
    redis_security_group_id: pulumi.Input[str]
    redis_ports: tuple[int, ...]
    secret_arns: Mapping[str, pulumi.Input[str]]  # credential (app, admin, monitor) -> secret ARN
    kms_key_arn: pulumi.Input[str]
    code: SignedCode  # the signed archive and the config that checks it (infra/components/code_signing.py)
    days: int = 30
    overlap: str = "interval"  # rotation.overlap (redisops/rotation.py OVERLAP_MODES)
    log_retention_days: int = 365
    endpoint_security_group_id: str | None = None
    # elasticache
    replication_group_id: pulumi.Input[str] | None = None
    user_group_id: pulumi.Input[str] | None = None
    user_ids: Mapping[str, str] = field(default_factory=dict)  # credential -> ElastiCache user id (RBAC)
    # sentinel
    nodes: pulumi.Input[Sequence[str]] | None = None
    sentinels: pulumi.Input[Sequence[str]] | None = None
    tls: bool = True
    ca_cert_pem: pulumi.Input[str] | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.subnet_ids:
            raise ValueError("the rotation function needs at least one subnet")
        if not self.secret_arns:
            raise ValueError("the rotation function needs the secrets it rotates")
        if self.target == "elasticache" and self.replication_group_id is None:
            raise ValueError("rotation on elasticache needs the replication group id")
        if self.target == "elasticache" and bool(self.user_ids) != (self.user_group_id is not None):
            raise ValueError("rotation on elasticache: RBAC needs both the user ids and the user group id")
        if self.target == "sentinel" and (self.nodes is None or "admin" not in self.secret_arns):
            raise ValueError("rotation on sentinel needs the node addresses and the admin secret")

    @property
    def log_group_name(self) -> str:
        return log_group_name(self.project, self.stack, LOG_COMPONENT)

    @property
    def reserved_concurrency(self) -> int:
        """One per secret it rotates: Secrets Manager runs one rotation of a secret at a time
        (RotateSecret fails while AWSPENDING is on another version) and calls its four steps one
        after the other, so more copies than secrets are never needed; a cap keeps a runaway
        caller from opening connections against production Redis (as the smoke function's)."""
        return len(self.secret_arns)


def rotation_log_group_name(project: str, stack: str) -> str:
    """Fixed, so the stack key's policy names it before it exists (aws_common.stack_log_groups)."""
    return log_group_name(project, stack, LOG_COMPONENT)


def elasticache_arn(acct: Account, kind: str, resource_id: str) -> str:
    """arn:<partition>:elasticache:<region>:<account>:<kind>:<id> (kind: replicationgroup, user,
    usergroup; https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticache.html)."""
    return acct.arn("elasticache", f"{kind}:{resource_id}")


def execution_policy(*, acct: Account, log_group_arn: str, secret_arns: Sequence[str], kms_key_arn: str,
                     network_arns: Sequence[str], replication_group_id: str | None = None,
                     user_group_id: str | None = None, user_ids: Sequence[str] = ()) -> str:
    """Least privilege for the rotation function (module docstring)."""
    statements: list[dict[str, Any]] = [
        *vpc_and_trace_statements(network_arns),
        {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"{log_group_arn}:*"},
        {"Sid": "RotateOwnSecrets", "Effect": "Allow", "Action": list(SECRET_ACTIONS), "Resource": sorted(secret_arns)},
        {"Sid": "StackKeyThroughSecretsManagerOnly", "Effect": "Allow", "Action": list(KMS_ACTIONS),
         "Resource": kms_key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{acct.region}.{acct.dns_suffix}"}}},
    ]
    if replication_group_id is not None:
        group_arn = elasticache_arn(acct, "replicationgroup", replication_group_id)
        if user_ids:
            statements += [
                {"Sid": "ReadOwnReplicationGroup", "Effect": "Allow",
                 "Action": ["elasticache:DescribeReplicationGroups"], "Resource": group_arn},
                {"Sid": "ReadOwnUserGroup", "Effect": "Allow", "Action": ["elasticache:DescribeUserGroups"],
                 "Resource": elasticache_arn(acct, "usergroup", str(user_group_id))},
                {"Sid": "ChangeOwnUsersPasswords", "Effect": "Allow",
                 "Action": ["elasticache:DescribeUsers", "elasticache:ModifyUser"],
                 "Resource": sorted(elasticache_arn(acct, "user", u) for u in user_ids)},
            ]
        else:
            statements.append({"Sid": "ChangeOwnGroupsAuthToken", "Effect": "Allow",
                               "Action": ["elasticache:DescribeReplicationGroups",
                                          "elasticache:ModifyReplicationGroup"], "Resource": group_arn})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def environment(config: RotationConfig) -> dict[str, str]:
    value = config.to_json()
    if len(CONFIG_VARIABLE) + len(value.encode()) > ENV_LIMIT_BYTES:
        raise ValueError(f"rotation function: {CONFIG_VARIABLE} would be {len(value)} bytes; Lambda allows "
                         f"{ENV_LIMIT_BYTES} bytes of environment in total")
    return {CONFIG_VARIABLE: value}


class CredentialRotation(pulumi.ComponentResource):
    """The stack's rotation Lambda and one Secrets Manager rotation schedule per credential secret."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: CredentialRotationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:aws:CredentialRotation", name, None, opts)
        self._name, self._args = name, args
        tags = dict(args.tags)
        acct = account(self)
        self.security_group = function_security_group(
            name, self, what="rotation function", project=args.project, stack=args.stack, vpc_id=args.vpc_id,
            redis_security_group_id=args.redis_security_group_id, redis_ports=args.redis_ports,
            endpoint_security_group_id=args.endpoint_security_group_id, tags=tags)
        self.log_group = encrypted_log_group(f"{name}-logs", self, log_group_name=args.log_group_name,
                                             kms_key_id=args.kms_key_arn, retention_days=args.log_retention_days,
                                             tags=tags)
        self.role, self.role_policy = self._iam(acct, tags)
        self.function = self._function(tags)
        self.schedules = self._schedules()
        self.stack_outputs = {"rotationFunctionName": self.function.name, "rotationDays": args.days}
        self.register_outputs(self.stack_outputs)

    # -- children ---------------------------------------------------------------------------
    def _iam(self, acct: pulumi.Output[Account], tags: dict[str, str]) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        name, args = self._name, self._args
        role = aws.iam.Role(f"{name}-role", assume_role_policy=LAMBDA_TRUST_POLICY,
                            description=f"redisstack rotation function ({args.project}/{args.stack})", tags=tags,
                            opts=child(self))
        policy = pulumi.Output.all(acct, self.log_group.arn, pulumi.Output.all(*args.secret_arns.values()),
                                   args.kms_key_arn, args.replication_group_id, args.user_group_id,
                                   own_network_arns(acct, args.subnet_ids, self.security_group)).apply(
            lambda v: execution_policy(acct=v[0], log_group_arn=v[1], secret_arns=v[2], kms_key_arn=v[3],
                                       replication_group_id=v[4], user_group_id=v[5], network_arns=v[6],
                                       user_ids=list(args.user_ids.values())))
        return role, aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child(self))

    def _config(self) -> pulumi.Output[dict[str, str]]:
        args = self._args
        credentials = list(args.secret_arns)
        return pulumi.Output.all(pulumi.Output.all(*args.secret_arns.values()), args.replication_group_id, args.nodes,
                                 args.sentinels, args.ca_cert_pem).apply(lambda v: environment(RotationConfig(
                                     target=args.target, secrets=dict(zip(v[0], credentials, strict=True)),
                                     replication_group_id=v[1], nodes=tuple(v[2] or ()), sentinels=tuple(v[3] or ()),
                                     tls=args.tls, ca_cert_pem=v[4], overlap=args.overlap,
                                     admin_secret_arn=v[0][credentials.index("admin")] if args.target == "sentinel"
                                     else None)))

    def _function(self, tags: dict[str, str]) -> aws.lambda_.Function:
        name, args = self._name, self._args
        return aws.lambda_.Function(
            f"{name}-fn",
            description=f"{args.project}/{args.stack}: Secrets Manager rotation of the Redis credentials",
            runtime=RUNTIME, architectures=[ARCHITECTURE], handler=HANDLER, **args.code.function_args(),
            role=self.role.arn, timeout=TIMEOUT_S, memory_size=MEMORY_MB,
            reserved_concurrent_executions=args.reserved_concurrency,
            tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active"),
            vpc_config=aws.lambda_.FunctionVpcConfigArgs(subnet_ids=list(args.subnet_ids),
                                                         security_group_ids=[self.security_group.id]),
            # ARNs, ids, addresses and the CA certificate (public): no secret.
            environment=aws.lambda_.FunctionEnvironmentArgs(variables=pulumi.Output.unsecret(self._config())),
            kms_key_arn=args.kms_key_arn,  # encrypts the environment (smoke_function docstring, "Environment")
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            tags=tags, opts=child(self, depends_on=[self.role_policy]))

    def _schedules(self) -> list[aws.secretsmanager.SecretRotation]:
        name, args = self._name, self._args
        schedules: list[aws.secretsmanager.SecretRotation] = []
        for credential, secret_arn in args.secret_arns.items():
            # Only Secrets Manager, only for this secret, may invoke the function
            # (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotating-secrets-required-permissions-function.html).
            permission = aws.lambda_.Permission(
                f"{name}-invoke-{credential}", action="lambda:InvokeFunction", function=self.function.name,
                principal="secretsmanager.amazonaws.com", source_arn=secret_arn, opts=child(self))
            schedules.append(aws.secretsmanager.SecretRotation(
                f"{name}-{credential}", secret_id=secret_arn, rotation_lambda_arn=self.function.arn,
                rotation_rules=aws.secretsmanager.SecretRotationRotationRulesArgs(automatically_after_days=args.days),
                rotate_immediately=False, opts=child(self, depends_on=[permission])))
        return schedules
