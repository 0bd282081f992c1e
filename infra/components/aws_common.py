"""AWS building blocks shared by the ElastiCache and Sentinel-on-EC2 targets.

Plain functions that declare child resources of a component (`parent`): the customer KMS key,
the Redis security group, the alarm SNS topic, CloudWatch alarms from `AlarmSpec`s and the
Secrets Manager secret the application reads. Nothing here reads config or calls AWS at import.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.monitoring.cloudwatch import AlarmSpec


def child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


# ---------------------------------------------------------------------------------------------
# KMS
# ---------------------------------------------------------------------------------------------
# Services that publish into our encrypted SNS topic: CloudWatch cannot use the AWS-managed
# alias/aws/sns key, so an encrypted alarm topic needs a customer key that lets them in.
TOPIC_PUBLISHERS = ("cloudwatch.amazonaws.com", "elasticache.amazonaws.com")


def kms_key_policy(account_id: str, partition: str, publishers: Sequence[str] = TOPIC_PUBLISHERS, *,
                   logs_region: str | None = None) -> str:
    """Key policy: the account administers the key through IAM (ElastiCache and Secrets Manager
    use it on behalf of IAM principals via grants / kms:ViaService); listed AWS services may only
    encrypt for the SNS topic, and only on behalf of this account. With `logs_region`, CloudWatch
    Logs of that region may use the key for this account's log groups: a log group with
    `kms_key_id` is only created when the key policy lets the logs service in (IAM grants do
    not reach it)."""
    statements: list[dict[str, Any]] = [{
        "Sid": "AccountAdministersThroughIam",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if publishers:
        statements.append({
            "Sid": "ServicesPublishToEncryptedAlarmTopic",
            "Effect": "Allow",
            "Principal": {"Service": list(publishers)},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        })
    if logs_region is not None:
        statements.append({
            "Sid": "CloudWatchLogsEncryptsOwnLogGroups",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{logs_region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{logs_region}:{account_id}:log-group:*"}},
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def customer_kms_key(name: str, parent: pulumi.Resource, *, description: str, tags: Mapping[str, str],
                     protect: bool = False, logs_region: pulumi.Input[str] | None = None) -> aws.kms.Key:
    """A symmetric customer key with yearly automatic rotation and a 30-day deletion window.
    Pass `logs_region` when a CloudWatch log group is encrypted with it (see kms_key_policy)."""
    identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=parent))
    policy = pulumi.Output.all(identity, logs_region).apply(
        lambda v: kms_key_policy(v[0].account_id, v[0].arn.split(":")[1] or "aws", logs_region=v[1]))
    return aws.kms.Key(
        f"{name}-kms",
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        key_usage="ENCRYPT_DECRYPT",
        customer_master_key_spec="SYMMETRIC_DEFAULT",
        policy=policy,
        tags=dict(tags),
        # Scheduling deletion of this key makes every snapshot encrypted with it unreadable.
        opts=child(parent, protect=protect),
    )


# ---------------------------------------------------------------------------------------------
# Security group
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PortRule:
    port: int
    description: str  # what the port is, e.g. "Redis (TLS)"


def check_cidrs(cidrs: Sequence[str], key: str = "network.allowedCidrs") -> None:
    from infra.errors import SettingError

    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.prefixlen == 0:
            raise SettingError(key, cidr, "never open Redis to the whole internet (/0); use appSecurityGroupIds")


def redis_security_group(
    name: str,
    parent: pulumi.Resource,
    *,
    vpc_id: pulumi.Input[str],
    ports: Sequence[PortRule],
    source_security_group_ids: Sequence[str],
    cidrs: Sequence[str] = (),
    self_ports: Sequence[PortRule] = (),
    description: str,
    tags: Mapping[str, str],
) -> tuple[aws.ec2.SecurityGroup, list[aws.vpc.SecurityGroupIngressRule], list[aws.vpc.SecurityGroupEgressRule]]:
    """A security group that admits `ports` only from the given security groups (and CIDRs when
    explicitly configured, never /0). No egress rule is declared for clients: the provider deletes
    AWS's default allow-all egress, so the group only answers established connections.
    `self_ports` opens those ports between members of the group (replication, Sentinel gossip),
    in both directions."""
    check_cidrs(cidrs)
    sg = aws.ec2.SecurityGroup(
        f"{name}-sg",
        description=description,
        vpc_id=vpc_id,
        revoke_rules_on_delete=True,
        tags={**tags, "Name": f"{name}-redis"},
        opts=child(parent),
    )
    ingress: list[aws.vpc.SecurityGroupIngressRule] = []
    egress: list[aws.vpc.SecurityGroupEgressRule] = []
    rule_tags = dict(tags)
    for rule in ports:
        for sg_id in source_security_group_ids:
            ingress.append(aws.vpc.SecurityGroupIngressRule(
                f"{name}-in-{rule.port}-{sg_id}",
                security_group_id=sg.id, ip_protocol="tcp", from_port=rule.port, to_port=rule.port,
                referenced_security_group_id=sg_id,
                description=f"{rule.description} from application security group {sg_id}",
                tags=rule_tags, opts=child(parent)))
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            family = {"cidr_ipv4": str(net)} if net.version == 4 else {"cidr_ipv6": str(net)}
            ingress.append(aws.vpc.SecurityGroupIngressRule(
                f"{name}-in-{rule.port}-{str(net).replace('/', '-').replace(':', '_')}",
                security_group_id=sg.id, ip_protocol="tcp", from_port=rule.port, to_port=rule.port,
                description=f"{rule.description} from explicitly allowed range {net}",
                tags=rule_tags, opts=child(parent), **family))
    for rule in self_ports:
        ingress.append(aws.vpc.SecurityGroupIngressRule(
            f"{name}-in-{rule.port}-self",
            security_group_id=sg.id, ip_protocol="tcp", from_port=rule.port, to_port=rule.port,
            referenced_security_group_id=sg.id, description=f"{rule.description} between members",
            tags=rule_tags, opts=child(parent)))
        egress.append(aws.vpc.SecurityGroupEgressRule(
            f"{name}-out-{rule.port}-self",
            security_group_id=sg.id, ip_protocol="tcp", from_port=rule.port, to_port=rule.port,
            referenced_security_group_id=sg.id, description=f"{rule.description} to other members",
            tags=rule_tags, opts=child(parent)))
    return sg, ingress, egress


# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------
def alarm_topic(name: str, parent: pulumi.Resource, *, kms_key_id: pulumi.Input[str] | None,
                email: str | None, tags: Mapping[str, str]) -> tuple[aws.sns.Topic, aws.sns.TopicSubscription | None]:
    topic = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=kms_key_id, tags=dict(tags), opts=child(parent))
    subscription = None
    if email:
        # Stays "pending confirmation" until the recipient clicks the link AWS mails them.
        subscription = aws.sns.TopicSubscription(f"{name}-alarms-email", topic=topic.arn, protocol="email",
                                                 endpoint=email, opts=child(parent))
    return topic, subscription


def metric_alarms(
    name: str,
    parent: pulumi.Resource,
    specs: Mapping[str, pulumi.Input[AlarmSpec]],
    *,
    topic_arn: pulumi.Input[str],
    tags: Mapping[str, str],
) -> list[aws.cloudwatch.MetricAlarm]:
    """One MetricAlarm per spec. `specs` maps a stable logical key (part of the Pulumi resource
    name) to the spec, which may be an Output (e.g. when dimensions derive from an auto-named id).
    Alarms notify on ALARM and on OK so an incident is visibly closed."""
    alarms: list[aws.cloudwatch.MetricAlarm] = []
    for key, spec_input in specs.items():
        spec = pulumi.Output.from_input(spec_input)
        alarms.append(aws.cloudwatch.MetricAlarm(
            f"{name}-alarm-{key}",
            name=spec.apply(lambda s: s.name),
            alarm_description=spec.apply(lambda s: s.description),
            namespace=spec.apply(lambda s: s.namespace),
            metric_name=spec.apply(lambda s: s.metric_name),
            dimensions=spec.apply(lambda s: dict(s.dimensions)),
            statistic=spec.apply(lambda s: s.statistic),
            period=spec.apply(lambda s: s.period),
            evaluation_periods=spec.apply(lambda s: s.evaluation_periods),
            threshold=spec.apply(lambda s: s.threshold),
            comparison_operator=spec.apply(lambda s: s.comparison_operator),
            treat_missing_data=spec.apply(lambda s: s.treat_missing_data),
            alarm_actions=[topic_arn],
            ok_actions=[topic_arn],
            tags=spec.apply(lambda s: {**tags, "severity": s.severity, "threshold": s.threshold_name}),
            opts=child(parent),
        ))
    return alarms


# ---------------------------------------------------------------------------------------------
# Secrets Manager
# ---------------------------------------------------------------------------------------------
def app_secret(name: str, parent: pulumi.Resource, *, secret_string: pulumi.Input[str],
               kms_key_id: pulumi.Input[str] | None, description: str, name_prefix: str,
               tags: Mapping[str, str]) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    """The credential secret the application reads. Keep `secret_string` to what only changes
    when the credential changes in Pulumi (no endpoints): `redisops` rotation writes newer
    versions outside Pulumi, and Pulumi only writes a version again when its own input changes,
    so an unrelated update can never put back a rotated-out token."""
    secret = aws.secretsmanager.Secret(
        f"{name}-auth", name_prefix=name_prefix, description=description, kms_key_id=kms_key_id,
        recovery_window_in_days=30, tags=dict(tags), opts=child(parent))
    version = aws.secretsmanager.SecretVersion(
        f"{name}-auth-value", secret_id=secret.id, secret_string=pulumi.Output.secret(secret_string),
        opts=child(parent, additional_secret_outputs=["secretString"]))
    return secret, version
