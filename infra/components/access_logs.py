"""S3 server access logging for one bucket: a dedicated destination bucket and the source bucket's
logging configuration (used for the Lambda code bucket, infra/components/code_signing.py).

Built as the S3 user guide asks ("Enabling Amazon S3 server access logging",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html):

* the destination is in the source's account and region (it is created by the same provider);
* log delivery is granted by a bucket policy to the logging service principal
  `logging.s3.amazonaws.com`, `s3:PutObject` on the prefix only, with `aws:SourceArn` (the source
  bucket) and `aws:SourceAccount` against the confused deputy; ACL grants are not used ("If the
  target bucket uses the bucket owner enforced setting for Object Ownership ... you must use a
  bucket policy", and it is BucketOwnerEnforced here);
* default encryption SSE-S3 (AES256): "You can use default bucket encryption on the target bucket
  *only* if you use server-side encryption with Amazon S3 managed keys (SSE-S3) ... Default
  server-side encryption with AWS Key Management Service (AWS KMS) keys (SSE-KMS) is not
  supported" (the same page; AWS's S3 docs team, awsdocs/amazon-s3-developer-guide#38: "Currently,
  we support SSE-S3 (AES-256) for server access log delivery buckets"). checkov's CKV_AWS_145 is
  suppressed on this bucket for that reason (policy/checkov-suppressions.yaml);
* no Object Lock and no default retention ("S3 buckets with S3 Object Lock can't be used as
  destination buckets");
* no server access logging of the destination itself: "Your target bucket should not have server
  access logging enabled" (the same page);
* the TLS-only deny of every bucket here, which denies only requests made without TLS; AWS
  services deliver into buckets with that same statement (AWS Control Tower's log buckets,
  "Amazon S3 bucket policy in the audit account",
  https://docs.aws.amazon.com/controltower/latest/userguide/logging-s3-audit-bucket.html). There is
  no deny on a missing `x-amz-server-side-encryption` header: S3's delivery does not send it
  (aws-quickstart/quickstart-compliance-common#29), the default encryption applies instead.

Versioned, so an overwritten or deleted log survives as a noncurrent version for NONCURRENT_DAYS;
logs expire after the stack's log retention (alerting.logRetentionDays: one setting for
CloudWatch and these logs, docs/decisions.md).

`region`: the source bucket's region when it is not the provider's (the access-log replica in the
second region logs into a destination built by this same component there,
infra/components/log_replica.py): "the source bucket and destination bucket must be in the same AWS
Region" (the page above).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.aws_common import (
    Account,
    account,
    child,
    private_bucket_basics,
    s3_bucket_prefix,
    tls_only_statement,
)

LOGGING_SERVICE = "logging.s3.amazonaws.com"
# A deleted or overwritten log stays recoverable this long as a noncurrent version.
NONCURRENT_DAYS = 30
ABORT_MULTIPART_DAYS = 1


def log_bucket_prefix(project: str, stack: str) -> str:
    """`<project>-<stack>-logs-`: not under the code bucket's `-code-` pattern, so the deploy
    role's object permissions on the code bucket do not reach the logs
    (docs/bootstrap/production-policy.json)."""
    return s3_bucket_prefix(project, stack, "logs", "access logs")


def destination_policy(log_bucket_arn: str, prefix: str, source_bucket_arn: str, acct: Account) -> str:
    """Log delivery for the one source bucket under its prefix, and TLS only for everyone else."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "S3ServerAccessLogsPolicy", "Effect": "Allow", "Principal": {"Service": LOGGING_SERVICE},
         "Action": "s3:PutObject", "Resource": f"{log_bucket_arn}/{prefix}*",
         "Condition": {"ArnLike": {"aws:SourceArn": source_bucket_arn},
                       "StringEquals": {"aws:SourceAccount": acct.account_id}}},
        tls_only_statement(log_bucket_arn),
    ]}, sort_keys=True)


@dataclass(frozen=True)
class S3AccessLogsArgs:
    project: str
    stack: str
    source_bucket: aws.s3.Bucket  # the bucket whose requests are logged
    prefix: str  # of the log objects' keys, e.g. "lambda-code/"
    retention_days: int  # log objects expire after this many days
    tags: dict[str, str] = field(default_factory=dict)
    region: str | None = None  # the source's, when not the provider's: the destination goes there too

    def __post_init__(self) -> None:
        if not self.prefix or not self.prefix.endswith("/") or self.prefix.startswith("/"):
            raise ValueError(f"access logs: prefix {self.prefix!r} must be a non-empty key prefix ending in '/' "
                             "(and not starting with one)")
        if self.retention_days < 1:
            raise ValueError(f"access logs: retention_days {self.retention_days!r} must be at least 1 "
                             "(an S3 lifecycle expiration counts whole days)")


def log_lifecycle(name: str, parent: pulumi.Resource, bucket: aws.s3.Bucket, retention_days: int,
                  region: str | None = None) -> aws.s3.BucketLifecycleConfiguration:
    """Log objects expire after `retention_days`, overwritten or deleted ones NONCURRENT_DAYS
    later, incomplete uploads after a day: every bucket holding these logs or their replicas."""
    return aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle", bucket=bucket.id, region=region, rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="expire-logs", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=retention_days),
            noncurrent_version_expiration=aws.s3.
            BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=NONCURRENT_DAYS),
            abort_incomplete_multipart_upload=aws.s3.
            BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=ABORT_MULTIPART_DAYS))],
        opts=child(parent))


class S3AccessLogs(pulumi.ComponentResource):
    """The destination bucket, its settings and policy, and the source's logging configuration."""

    def __init__(self, name: str, args: S3AccessLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:aws:S3AccessLogs", name, None, opts)
        self._name, self._args = name, args
        self.bucket = self._bucket()
        # Public: replication from and into this bucket waits for its versioning (log_replica.py).
        self.settings: list[pulumi.Resource] = [
            *private_bucket_basics(name, self, self.bucket, args.region), self._encryption(),
            log_lifecycle(name, self, self.bucket, args.retention_days, args.region)]
        self.policy = self._policy()
        self.logging = self._logging()
        self.register_outputs({"logBucket": self.bucket.bucket, "logPrefix": args.prefix})

    # -- children ---------------------------------------------------------------------------
    def _bucket(self) -> aws.s3.Bucket:
        args = self._args
        # force_destroy: the logs describe a bucket that `pulumi destroy` deletes with them; a
        # versioned bucket with versions left would stop the destroy.
        return aws.s3.Bucket(f"{self._name}-bucket", bucket_prefix=log_bucket_prefix(args.project, args.stack),
                             force_destroy=True, region=args.region, tags=dict(args.tags), opts=child(self))

    def _encryption(self) -> aws.s3.BucketServerSideEncryptionConfiguration:
        # SSE-S3: SSE-KMS default encryption is not supported on a log destination (module docstring).
        return aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-encryption", bucket=self.bucket.id, region=self._args.region,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="AES256"))],
            opts=child(self))

    def _policy(self) -> aws.s3.BucketPolicy:
        args = self._args
        policy = pulumi.Output.all(self.bucket.arn, args.source_bucket.arn, account(self)).apply(
            lambda v: destination_policy(v[0], args.prefix, v[1], v[2]))
        return aws.s3.BucketPolicy(f"{self._name}-policy", bucket=self.bucket.id, policy=policy,
                                   region=args.region, opts=child(self))

    def _logging(self) -> aws.s3.BucketLogging:
        # Logging starts once the destination accepts the logs: policy, ownership, encryption.
        return aws.s3.BucketLogging(
            f"{self._name}-logging", bucket=self._args.source_bucket.id, target_bucket=self.bucket.id,
            target_prefix=self._args.prefix, region=self._args.region,
            opts=child(self, depends_on=[self.policy, *self.settings]))
