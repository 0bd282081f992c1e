"""The Lambda code bucket's server access logs, replicated to a second region
(alerting.logReplicaRegion; docs/decisions.md, "Access logs replicated to a second region").

Three buckets, closed under checkov's S3 rules (each is versioned, private, logged or a log
destination, and replicated), so no rule asks for a fourth:

* L1, the log destination in the stack's region (infra/components/access_logs.py, SSE-S3: the only
  default encryption a log destination takes) replicates to R;
* R, the replica in the second region: SSE-KMS by default with a key of its own there (a KMS key
  is regional; S3 "supports only symmetric encryption KMS keys" in the destination's region,
  API_control_EncryptionConfiguration), versioned, private, TLS only, EventBridge notifications, the
  log lifecycle of L1. It logs its own requests into Lr2 and replicates back to L1;
* Lr2, R's log destination in the second region, built by the same S3AccessLogs component as L1
  ("the source bucket and destination bucket must be in the same AWS Region"), replicates to L1.

Two-way replication between L1 and R is AWS's documented pattern ("Replicating objects within and
across Regions", bi-directional replication; terraform-provider-aws's aws_s3_bucket_replication_
configuration docs, "Bi-Directional Replication"): S3 does not replicate a replica again (unless
replica modification sync is on, which it is not here), so a log object crosses once and stops.

Encryption of the replicas (S3 user guide, "Replicating encrypted objects"): S3 replicates an
SSE-KMS object only when the rule selects it (`source_selection_criteria.sse_kms_encrypted_objects`)
and names the key that encrypts the replica (`replica_kms_key_id`, a key in the destination's
region). Objects written into R itself are SSE-KMS (its default), so R -> L1 selects them and
encrypts the replicas with the stack key (same region as L1). L1 and Lr2 hold SSE-S3 log objects,
which S3 replicates without a selection, and their replicas stay SSE-S3: "If objects in the source
bucket are encrypted using SSE-S3 or SSE-KMS, the replica objects in the destination bucket use the
same encryption as the source object encryption. The default encryption settings of the destination
bucket are not used" (same page, "How default bucket encryption affects replication"). So the
replicas in R, all R holds in normal operation, are SSE-S3; R's key encrypts only what is written
into R directly.

Every rule is a V2 rule (a `filter`, so `priority` and `delete_marker_replication` are allowed:
pulumi-aws BucketReplicationConfig docs; terraform-provider-aws
internal/service/s3/bucket_replication_configuration.go). Delete markers are not replicated: a
deletion in one region must not remove the copy in the other (lifecycle expirations never
replicate anyway). Replication needs versioning on both sides before the configuration is put
("Requirements and considerations for replication": "Both source and destination buckets must
have versioning enabled"), hence depends_on on each bucket's BucketVersioning.

The replication role (infra/components/log_replica.py `replication_policy`) has exactly the
permissions of "Setting up permissions for live replication" for these buckets, and of
"Replicating encrypted objects" for the two keys (Decrypt on R's key; Encrypt and, for the S3
Bucket Key R's objects keep in their replicas, Decrypt on the stack key), each scoped by
kms:ViaService and kms:EncryptionContext:aws:s3:arn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.access_logs import S3AccessLogs, S3AccessLogsArgs, log_lifecycle
from infra.components.aws_common import (
    account,
    child,
    customer_kms_key,
    private_bucket_basics,
    s3_bucket_prefix,
    tls_only_policy,
)
from infra.keypolicy import KeyUse

S3_SERVICE = "s3.amazonaws.com"
# R's own server access logs, in Lr2.
REPLICA_LOG_PREFIX = "log-replica/"
SOURCE_ACTIONS = ("s3:GetReplicationConfiguration", "s3:ListBucket")
SOURCE_OBJECT_ACTIONS = ("s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl",
                         "s3:GetObjectVersionTagging")
DESTINATION_OBJECT_ACTIONS = ("s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags")


def replica_bucket_prefix(project: str, stack: str) -> str:
    """`<project>-<stack>-replica-`: not under `-logs-`, so the deploy role may turn logging on for
    the replica (it logs into Lr2) and still never for a log destination
    (docs/bootstrap/production-policy.json)."""
    return s3_bucket_prefix(project, stack, "replica", "access-log replica")


@dataclass(frozen=True)
class Route:
    """One replication rule's ends, as ARNs (for the role's policy)."""

    source: str
    destination: str


def trust_policy() -> str:
    """S3 may assume the role: the trust policy of the S3 user guide ("Setting up permissions for
    live replication", Step 2: Principal s3.amazonaws.com, sts:AssumeRole, no condition). No
    aws:SourceAccount/aws:SourceArn condition: no AWS page we could read says S3 sends those keys
    when it assumes a replication role, and a condition it does not satisfy would fail every
    replication silently (objects left FAILED). What binds the role to these buckets instead:
    only a principal with iam:PassRole on it can name it in a replication configuration, and the
    deploy role holds that for this role only, passed to s3.amazonaws.com only (docs/decisions.md)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": S3_SERVICE}, "Action": "sts:AssumeRole"}]}, sort_keys=True)


def _s3_arn_context(bucket_arn: str) -> list[str]:
    # With an S3 Bucket Key the encryption context is the bucket's ARN, without one the object's
    # ("Replicating encrypted objects"; S3 user guide "Encryption context").
    return [bucket_arn, f"{bucket_arn}/*"]


def replication_policy(routes: Sequence[Route], *, decrypt: Sequence[tuple[str, str, str]],
                       encrypt: Sequence[tuple[str, str, str]], dns_suffix: str = "amazonaws.com") -> str:
    """The replication role's policy: read the sources' configuration and object versions, write
    replicas into the destinations, and use a KMS key only through S3 in its region for one
    bucket. `decrypt`/`encrypt`: (key ARN, region, bucket ARN) of SSE-KMS sources / replica keys."""
    sources = sorted({r.source for r in routes})
    destinations = sorted({r.destination for r in routes})
    statements: list[dict[str, object]] = [
        {"Sid": "ReadReplicationConfigurationOfTheSources", "Effect": "Allow", "Action": list(SOURCE_ACTIONS),
         "Resource": sources},
        {"Sid": "ReadObjectVersionsOfTheSources", "Effect": "Allow", "Action": list(SOURCE_OBJECT_ACTIONS),
         "Resource": [f"{s}/*" for s in sources]},
        {"Sid": "WriteReplicasIntoTheDestinations", "Effect": "Allow", "Action": list(DESTINATION_OBJECT_ACTIONS),
         "Resource": [f"{d}/*" for d in destinations]},
    ]
    # The replica key also needs kms:Decrypt: an SSE-KMS source object with an S3 Bucket Key (R's
    # objects) keeps the Bucket Key in its replica, and S3 calls Decrypt on the replica key "to
    # verify the integrity of the S3 Bucket Key before using it" ("Replicating encrypted
    # objects", "S3 Bucket Keys and replication"; bucket-key.md "Using an S3 Bucket Key with
    # replication", Example 1).
    for sid, action, uses in (("DecryptSseKmsSources", ["kms:Decrypt"], decrypt),
                              ("EncryptReplicas", ["kms:Decrypt", "kms:Encrypt"], encrypt)):
        for i, (key_arn, region, bucket_arn) in enumerate(sorted(uses)):
            statements.append({
                "Sid": f"{sid}{i}", "Effect": "Allow", "Action": action, "Resource": key_arn,
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.{dns_suffix}"},
                              "StringLike": {"kms:EncryptionContext:aws:s3:arn": _s3_arn_context(bucket_arn)}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


@dataclass(frozen=True)
class LogReplicaArgs:
    project: str
    stack: str
    logs: S3AccessLogs  # L1: the log destination in the stack's region
    region: str  # the second region (alerting.logReplicaRegion)
    home_kms_key_arn: pulumi.Input[str]  # the stack key, in L1's region: encrypts R's objects replicated to L1
    retention_days: int  # as L1's (alerting.logRetentionDays)
    tags: dict[str, str] = field(default_factory=dict)


class LogReplica(pulumi.ComponentResource):
    """R (with its key, policy, settings and replication back) and Lr2, the role, and L1's replication."""

    def __init__(self, name: str, args: LogReplicaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:aws:LogReplica", name, None, opts)
        self._name, self._args = name, args
        self._acct = account(self)
        self.kms_key = self._key()
        self.bucket = self._bucket()
        self.bucket_settings = self._bucket_settings()
        self.replica_logs = self._replica_logs()
        self.role, self.role_policy = self._role()
        self.replication = self._replication()
        self.register_outputs({"replicaBucket": self.bucket.bucket, "replicaRegion": args.region,
                               "replicaLogBucket": self.replica_logs.bucket.bucket})

    # -- children ---------------------------------------------------------------------------
    def _key(self) -> aws.kms.Key:
        args = self._args
        # Only the account-root statement (infra/keypolicy.py): the replication role and the deploy
        # role reach the key through their IAM policies; no AWS service needs a key-policy grant.
        use = self._acct.apply(lambda a: KeyUse(account_id=a.account_id, partition=a.partition, region=args.region,
                                                dns_suffix=a.dns_suffix))
        return customer_kms_key(self._name, self, description=f"{args.project}/{args.stack}: access-log replica",
                                tags=args.tags, use=use, region=args.region)

    def _bucket(self) -> aws.s3.Bucket:
        args = self._args
        # force_destroy: as L1's (replicas of logs `pulumi destroy` deletes with the stack).
        return aws.s3.Bucket(f"{self._name}-bucket", bucket_prefix=replica_bucket_prefix(args.project, args.stack),
                             force_destroy=True, region=args.region, tags=dict(args.tags), opts=child(self))

    def _bucket_settings(self) -> list[pulumi.Resource]:
        name, args, bucket = self._name, self._args, self.bucket
        return [
            *private_bucket_basics(name, self, bucket, args.region),
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-encryption", bucket=bucket.id, region=args.region,
                rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.
                    BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=self.kms_key.arn),
                    bucket_key_enabled=True)],
                opts=child(self)),
            log_lifecycle(name, self, bucket, args.retention_days, args.region),
            aws.s3.BucketPolicy(f"{name}-tls-only", bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy),
                                region=args.region, opts=child(self)),
        ]

    def _replica_logs(self) -> S3AccessLogs:
        args = self._args
        return S3AccessLogs(f"{self._name}-logs", S3AccessLogsArgs(
            project=args.project, stack=args.stack, source_bucket=self.bucket, prefix=REPLICA_LOG_PREFIX,
            retention_days=args.retention_days, tags=dict(args.tags), region=args.region), opts=child(self))

    def _routes(self) -> pulumi.Output[list[Route]]:
        l1, r, lr2 = self._args.logs.bucket.arn, self.bucket.arn, self.replica_logs.bucket.arn
        return pulumi.Output.all(l1, r, lr2).apply(lambda a: [Route(a[0], a[1]), Route(a[1], a[0]), Route(a[2], a[0])])

    def _role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        name, args = self._name, self._args
        routes = self._routes()
        role = aws.iam.Role(f"{name}-role", assume_role_policy=trust_policy(), tags=dict(args.tags),
                            description=f"redisstack access-log replication ({args.project}/{args.stack})",
                            opts=child(self))
        # L1 is in the provider's region (the account's), R in the second one.
        policy = pulumi.Output.all(routes, self.kms_key.arn, args.home_kms_key_arn, self.bucket.arn,
                                   args.logs.bucket.arn, self._acct).apply(
            lambda v: replication_policy(
                v[0], decrypt=[(v[1], args.region, v[3])], encrypt=[(v[2], v[5].region, v[4])],
                dns_suffix=v[5].dns_suffix))
        return role, aws.iam.RolePolicy(f"{name}-role-policy", role=role.id, policy=policy, opts=child(self))

    def _replication(self) -> list[aws.s3.BucketReplicationConfig]:
        name, args = self._name, self._args
        l1, lr2 = args.logs, self.replica_logs
        versioned = [_versioning(l1.settings), _versioning(self.bucket_settings), _versioning(lr2.settings)]
        after = [*versioned, self.role_policy]
        to_replica = aws.s3.BucketReplicationConfig(
            f"{name}-from-logs", bucket=l1.bucket.id, role=self.role.arn,
            rules=[_rule("logs-to-replica", self.bucket.arn)], opts=child(self, depends_on=after))
        back = aws.s3.BucketReplicationConfig(
            f"{name}-to-logs", bucket=self.bucket.id, role=self.role.arn, region=args.region,
            rules=[_rule("replica-to-logs", l1.bucket.arn, replica_kms_key_arn=args.home_kms_key_arn)],
            opts=child(self, depends_on=after))
        replica_logs = aws.s3.BucketReplicationConfig(
            f"{name}-logs-to-logs", bucket=lr2.bucket.id, role=self.role.arn, region=args.region,
            rules=[_rule("replica-logs-to-logs", l1.bucket.arn)], opts=child(self, depends_on=after))
        return [to_replica, back, replica_logs]


def _versioning(settings: Sequence[pulumi.Resource]) -> pulumi.Resource:
    return next(s for s in settings if isinstance(s, aws.s3.BucketVersioning))


def _rule(rule_id: str, destination_arn: pulumi.Input[str], *,
          replica_kms_key_arn: pulumi.Input[str] | None = None) -> aws.s3.BucketReplicationConfigRuleArgs:
    """A V2 rule for every object: SSE-KMS objects too when a replica key is given. A `filter`
    requires `delete_marker_replication` ("If you specify a Filter in your replication
    configuration, you must also include a DeleteMarkerReplication element", S3 API reference,
    ReplicationRule)."""
    kms = replica_kms_key_arn is not None
    return aws.s3.BucketReplicationConfigRuleArgs(
        id=rule_id, status="Enabled", priority=1,
        filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),
        delete_marker_replication=aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(status="Disabled"),
        source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
            sse_kms_encrypted_objects=aws.s3.
            BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(status="Enabled"))
        if kms else None,
        destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
            bucket=destination_arn,
            encryption_configuration=aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                replica_kms_key_id=replica_kms_key_arn) if kms else None))
