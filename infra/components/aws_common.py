"""AWS building blocks shared by the ElastiCache and Sentinel-on-EC2 targets.

Plain functions that declare child resources of a component (`parent`): the customer KMS key
(policy from infra.keypolicy), the Redis security group, the alarm and event SNS topics with their
topic policies, encrypted log groups, CloudWatch alarms from `AlarmSpec`s and the Secrets Manager
secrets. Nothing here reads config or calls AWS at import.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from infra.keypolicy import KeyUse, key_policy, log_group_arn
from infra.monitoring.cloudwatch import AlarmSpec

if TYPE_CHECKING:
    from infra.settings import Settings


def child(parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)


# ---------------------------------------------------------------------------------------------
# Names and the account
# ---------------------------------------------------------------------------------------------
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def fixed_name(*parts: str, limit: int = 256) -> str:
    """A cloud name from parts: letters, digits and single hyphens (valid for SNS topics, DLM,
    ...). Used where a name must be known before the resource exists (a key policy names it)."""
    text = re.sub(r"-{2,}", "-", _NAME_UNSAFE.sub("-", "-".join(parts))).strip("-")
    return text[:limit].rstrip("-")


@dataclass(frozen=True)
class Account:
    account_id: str
    partition: str
    region: str
    dns_suffix: str = "amazonaws.com"  # amazonaws.com.cn in the China partition

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if regional else ''}:{self.account_id}:{resource}"

    def log_group_arn(self, name: str) -> str:
        return log_group_arn(self.partition, self.region, self.account_id, name)


def account(parent: pulumi.Resource) -> pulumi.Output[Account]:
    """Account id, partition (aws, aws-cn, aws-us-gov) and region of the provider, for ARNs."""
    opts = pulumi.InvokeOutputOptions(parent=parent)
    identity = aws.get_caller_identity_output(opts=opts)
    partition = aws.get_partition_output(opts=opts)
    region = aws.get_region_output(opts=opts)
    return pulumi.Output.all(identity.account_id, partition.partition, region.region, partition.dns_suffix).apply(
        lambda v: Account(v[0], v[1] or "aws", v[2], v[3] or "amazonaws.com"))


# ---------------------------------------------------------------------------------------------
# KMS
# ---------------------------------------------------------------------------------------------
def key_use(acct: pulumi.Output[Account], *, alarm_topic_names: Sequence[str] = (),
            log_group_names: Sequence[str] = ()) -> pulumi.Output[KeyUse]:
    """What a stack's key encrypts for AWS services, by the (fixed) names of those resources:
    their ARNs must be in the key policy before the resources exist."""
    return acct.apply(lambda a: KeyUse(
        account_id=a.account_id, partition=a.partition, region=a.region, dns_suffix=a.dns_suffix,
        alarm_topic_arns=tuple(a.arn("sns", n) for n in alarm_topic_names),
        log_group_arns=tuple(a.log_group_arn(n) for n in log_group_names)))


def stack_log_groups(settings: Settings) -> dict[str, str]:
    """Log groups other components of the stack encrypt with the target's key (purpose -> name):
    their names go into the key's policy (CloudWatch Logs refuses the key otherwise)."""
    from infra.components.smoke_function import log_group_name

    groups: dict[str, str] = {}
    if settings.config.smoke.enabled:
        groups["smoke-function"] = log_group_name(settings.project, settings.stack)
    if settings.config.rotation.enabled:
        from infra.components.rotation import rotation_log_group_name

        groups["rotation-function"] = rotation_log_group_name(settings.project, settings.stack)
    return groups


def customer_kms_key(name: str, parent: pulumi.Resource, *, description: str, tags: Mapping[str, str],
                     use: pulumi.Output[KeyUse], protect: bool = False, retain: bool = False,
                     region: str | None = None) -> aws.kms.Key:
    """A symmetric customer key with yearly automatic rotation and a 30-day deletion window,
    whose policy (infra.keypolicy) lets exactly the listed topics and log groups use it.
    `protect`/`retain`: the key encrypts data that outlives the stack (final snapshots, retained
    volumes, DLM snapshots): `pulumi destroy` must not schedule it for deletion. `region`: another
    region than the provider's (the access-log replica, infra/components/log_replica.py)."""
    return aws.kms.Key(
        f"{name}-kms",
        region=region,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        key_usage="ENCRYPT_DECRYPT",
        customer_master_key_spec="SYMMETRIC_DEFAULT",
        policy=use.apply(key_policy),
        tags=dict(tags),
        opts=child(parent, protect=protect, retain_on_delete=retain),
    )


def encrypted_log_group(logical: str, parent: pulumi.Resource, *, log_group_name: str,
                        kms_key_id: pulumi.Input[str], retention_days: int,
                        tags: Mapping[str, str]) -> aws.cloudwatch.LogGroup:
    """A log group encrypted with the stack's key. Its name is fixed because the key policy
    names its ARN (CloudWatch Logs refuses the key unless the policy already allows the group),
    so a replacement deletes first."""
    return aws.cloudwatch.LogGroup(logical, name=log_group_name, kms_key_id=kms_key_id,
                                   retention_in_days=retention_days, tags=dict(tags),
                                   opts=child(parent, delete_before_replace=True))


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
def _policy_doc(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def alarm_topic_policy(topic_arn: str, acct: Account) -> str:
    """Only CloudWatch alarms of this account and region may publish (confused-deputy guard:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html
    and the SNS key-management page; IAM principals of the account keep their identity policies)."""
    return _policy_doc([{
        "Sid": "CloudWatchAlarmsOfThisAccountPublish",
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish",
        "Resource": topic_arn,
        "Condition": {"ArnLike": {"aws:SourceArn": acct.arn("cloudwatch", "alarm:*")},
                      "StringEquals": {"aws:SourceAccount": acct.account_id}},
    }])


def events_topic_policy(topic_arn: str, acct: Account) -> str:
    """ElastiCache publishes event notifications only where the topic policy admits it with
    `AWS:SourceOwner` (not `aws:SourceAccount`, the default of new topics):
    https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ElastiCacheSNS.html."""
    return _policy_doc([{
        "Sid": "ElastiCacheEventsOfThisAccountPublish",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "SNS:Publish",
        "Resource": topic_arn,
        "Condition": {"StringEquals": {"AWS:SourceOwner": acct.account_id}},
    }])


def _topic(name: str, parent: pulumi.Resource, *, topic_name: str, kms_key_id: pulumi.Input[str] | None,
           policy: Any, acct: pulumi.Output[Account], email: str | None,
           tags: Mapping[str, str]) -> tuple[aws.sns.Topic, aws.sns.TopicSubscription | None]:
    topic = aws.sns.Topic(name, name=topic_name, kms_master_key_id=kms_key_id, tags=dict(tags),
                          # The name is fixed (a key policy names its ARN): a replacement deletes first.
                          opts=child(parent, delete_before_replace=True))
    aws.sns.TopicPolicy(f"{name}-policy", arn=topic.arn,
                        policy=pulumi.Output.all(topic.arn, acct).apply(lambda v: policy(v[0], v[1])),
                        opts=child(parent))
    subscription = None
    if email:
        # Stays "pending confirmation" until the recipient clicks the link AWS mails them.
        subscription = aws.sns.TopicSubscription(f"{name}-email", topic=topic.arn, protocol="email",
                                                 endpoint=email, opts=child(parent))
    return topic, subscription


def alarm_topic(name: str, parent: pulumi.Resource, *, topic_name: str, kms_key_id: pulumi.Input[str],
                acct: pulumi.Output[Account], email: str | None,
                tags: Mapping[str, str]) -> tuple[aws.sns.Topic, aws.sns.TopicSubscription | None]:
    """The encrypted topic CloudWatch alarms notify; its key's policy must name `topic_name`
    (key_use(alarm_topic_names=...))."""
    return _topic(f"{name}-alarms", parent, topic_name=topic_name, kms_key_id=kms_key_id,
                  policy=alarm_topic_policy, acct=acct, email=email, tags=tags)


def events_topic(name: str, parent: pulumi.Resource, *, topic_name: str, acct: pulumi.Output[Account],
                 email: str | None,
                 tags: Mapping[str, str]) -> tuple[aws.sns.Topic, aws.sns.TopicSubscription | None]:
    """The topic ElastiCache sends its events to (failover, node replacement, snapshot failure).
    It cannot be encrypted: "The Amazon SNS topic you are publishing to cannot be encrypted" -
    ElastiCache marks an encrypted topic inactive and drops the events
    (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ElastiCacheSNS.html). The events
    name clusters and what happened to them; no data or credential passes through."""
    return _topic(f"{name}-events", parent, topic_name=topic_name, kms_key_id=None,
                  policy=events_topic_policy, acct=acct, email=email, tags=tags)


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
# S3 (the Lambda code bucket and its access-log bucket)
# ---------------------------------------------------------------------------------------------
# S3 bucket_prefix: at most 37 characters (the provider appends a 26-character unique suffix to
# reach S3's 63).
BUCKET_PREFIX_MAX = 37


def s3_bucket_prefix(project: str, stack: str, purpose: str, owner: str) -> str:
    """`<project>-<stack>-<purpose>-`, lower case (S3 bucket names); the deploy role's policy scopes
    its S3 permissions to it (docs/bootstrap/production-policy.json). `owner` names the component
    in the error."""
    prefix = f"{fixed_name(project, stack, purpose).lower()}-"
    if len(prefix) > BUCKET_PREFIX_MAX:
        raise ValueError(f"{owner}: bucket prefix {prefix!r} is longer than {BUCKET_PREFIX_MAX} characters; "
                         "shorten the project or stack name")
    return prefix


def tls_only_statement(bucket_arn: str) -> dict[str, Any]:
    """Deny any request that does not use TLS (S3 user guide, "Security best practices":
    aws:SecureTransport)."""
    return {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def tls_only_policy(bucket_arn: str) -> str:
    """A bucket policy of the TLS-only deny alone."""
    return json.dumps({"Version": "2012-10-17", "Statement": [tls_only_statement(bucket_arn)]}, sort_keys=True)


def private_bucket_basics(name: str, parent: pulumi.Resource, bucket: aws.s3.Bucket,
                          region: str | None = None) -> list[pulumi.Resource]:
    """What every bucket of the stacks has: ACLs disabled (BucketOwnerEnforced: the owner owns
    every object, whoever wrote it), public access blocked, versioning (checkov CKV_AWS_21) and
    object events to EventBridge (CKV2_AWS_62: a write outside Pulumi is visible to whoever watches
    the account's default bus; nothing is subscribed here). `region`: the bucket's, when it is not
    the provider's (pulumi-aws 7's per-resource `region` argument). The versioning resource is
    third: replication waits for it (infra/components/log_replica.py)."""
    return [
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, region=region,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=child(parent)),
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, region=region, opts=child(parent)),
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, region=region,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child(parent)),
        aws.s3.BucketNotification(f"{name}-events", bucket=bucket.id, eventbridge=True, region=region,
                                  opts=child(parent)),
    ]


# ---------------------------------------------------------------------------------------------
# Secrets Manager
# ---------------------------------------------------------------------------------------------
def app_secret(name: str, parent: pulumi.Resource, *, secret_string: pulumi.Input[str],
               kms_key_id: pulumi.Input[str] | None, description: str, name_prefix: str,
               tags: Mapping[str, str], written_with: Sequence[pulumi.Resource] = (),
               replacement_trigger: pulumi.Input[Any] | None = None,
               ) -> tuple[aws.secretsmanager.Secret, aws.secretsmanager.SecretVersion]:
    """The credential secret the application reads. Keep `secret_string` to what only changes
    when the credential changes in Pulumi (no endpoints): `redisops` rotation writes newer
    versions outside Pulumi, and Pulumi only writes a version again when its own input changes,
    so an unrelated update can never put back a rotated-out token.

    `written_with`: the resources that give the server this password (an ElastiCache user, or the
    replication group in token mode). Whenever Pulumi gives the server the stack's password again
    without the password input changing (the resource is replaced, or `replacement_trigger`
    changes), the secret must get that same password again, or the rotated value the secret holds
    no longer opens the server (docs/decisions.md, "Pulumi after an automatic rotation"). The
    version is written after them, so a reader never sees a password the server does not hold yet."""
    secret = aws.secretsmanager.Secret(
        f"{name}-auth", name_prefix=name_prefix, description=description, kms_key_id=kms_key_id,
        recovery_window_in_days=30, tags=dict(tags), opts=child(parent))
    version = aws.secretsmanager.SecretVersion(
        f"{name}-auth-value", secret_id=secret.id, secret_string=pulumi.Output.secret(secret_string),
        opts=child(parent, additional_secret_outputs=["secretString"],
                   depends_on=list(written_with) or None, replace_with=list(written_with) or None,
                   replacement_trigger=replacement_trigger))
    return secret, version
