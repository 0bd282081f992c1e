"""Lambda code signing for the stack's functions: the archive is signed by AWS Signer, and Lambda
refuses any code that is not (checkov CKV_AWS_272).

One component per stack, shared by the smoke and the rotation function (they deploy the same
archive, smoke_function.package_files):

* a private, versioned artifact bucket (SSE-KMS with the stack key, public access blocked,
  BucketOwnerEnforced, TLS only, EventBridge notifications, lifecycle for old versions and
  signed objects, server access logs to a bucket of their own: infra/components/access_logs.py,
  replicated to a second region: infra/components/log_replica.py); Signer requires a versioned source bucket in the profile's region
  (StartSigningJob API reference, https://docs.aws.amazon.com/signer/latest/api/API_StartSigningJob.html);
* the archive, uploaded once as `unsigned/functions.zip` (Pulumi zips the AssetArchive for the
  upload with fixed timestamps, as it does for Lambda's `code`, so the same sources give the same
  object and no new version);
* a Signer profile (platform AWSLambda-SHA384-ECDSA) and one signing job whose source is that
  object's *version*; the signed zip lands under `signed/`;
* a Lambda code-signing config that allows only this profile's version and blocks (Enforce)
  a deployment whose signature is missing, expired, revoked or from another profile
  ("Using code signing to verify code integrity with Lambda",
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-codesigning.html).

A new archive is a new object version: the provider updates aws_s3_object in place and marks
`version_id` unknown; every argument of aws_signer_signing_job is ForceNew and it has no Update
(hashicorp/terraform-provider-aws internal/service/signer/signing_job.go: profile_name, source
bucket/key/version, destination bucket/prefix all `ForceNew: true`; Delete is a no-op), so the
job is replaced and signs the new version under `signed/<version id>/` (a new key whatever file
name Signer picks), and the functions' `s3_key` changes: Lambda UpdateFunctionCode, validated
against the config.
tests/stack/test_code_signing.py pins that chain.

Who reads and writes what (the deploy role, docs/bootstrap/production-policy.json): Pulumi puts
the object; Signer reads the source version and writes the signed object with the caller's
permissions (s3:GetObjectVersion, s3:PutObject, s3:ListBucket: "Define an IAM policy",
https://docs.aws.amazon.com/signer/latest/developerguide/gs-iam.html); Lambda fetches the
signed object for CreateFunction/UpdateFunctionCode on the caller's behalf (its own error says so:
"Your access has been denied by S3, please make sure your request credentials have permission to
GetObject", quoted in awslabs/lambda-streams-to-firehose#21; the KMS half is our reading, not
verified against AWS: docs/fidelity.md). All of them reach the stack key through S3 as IAM
principals of the account (the key policy's root statement, infra/keypolicy.py), so the key
policy needs no statement for S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.access_logs import S3AccessLogs, S3AccessLogsArgs
from infra.components.aws_common import (
    child,
    fixed_name,
    private_bucket_basics,
    s3_bucket_prefix,
    tls_only_policy,
)
from infra.components.log_replica import LogReplica, LogReplicaArgs
from infra.components.smoke_function import code_archive, package_files

# The Lambda signing platform (ListSigningPlatforms; the only one whose target is AWSLambda).
PLATFORM = "AWSLambda-SHA384-ECDSA"
# How long a signature stays valid. Lambda checks expiry at deployment only (a running function
# is never affected), and every new archive is signed afresh; the default (135 months) would let
# a stolen or forgotten signed zip deploy for 11 years. One year: a stack whose code did not
# change for a year re-signs with `pulumi up --replace <signing job urn>` (docs/decisions.md).
SIGNATURE_VALIDITY = ("DAYS", 365)
UNSIGNED_KEY = "unsigned/functions.zip"
SIGNED_PREFIX = "signed/"
# The code bucket's server access logs, in their own bucket (infra/components/access_logs.py).
ACCESS_LOG_PREFIX = "lambda-code/"
# Lifecycle: older versions of the unsigned archive serve no deployment after their signing job
# ran; keep them a month for investigation. A signed object is useless once its signature has
# expired (Enforce refuses it), so it goes a day after. Incomplete multipart uploads: one day.
NONCURRENT_DAYS = 30
SIGNED_OBJECT_DAYS = SIGNATURE_VALIDITY[1] + 1
ABORT_MULTIPART_DAYS = 1
# Signer profile names: [a-zA-Z0-9_]{2,64}, the provider's name_prefix at most 38.
PROFILE_PREFIX_MAX = 38


def bucket_prefix(project: str, stack: str) -> str:
    """`<project>-<stack>-code-`: the deploy role's policy scopes its S3 permissions to it
    (docs/bootstrap/production-policy.json)."""
    return s3_bucket_prefix(project, stack, "code", "code signing")


def profile_prefix(project: str, stack: str) -> str:
    prefix = f"{fixed_name(project, stack).replace('-', '_')}_"
    if len(prefix) > PROFILE_PREFIX_MAX:
        raise ValueError(f"code signing: signing profile prefix {prefix!r} is longer than {PROFILE_PREFIX_MAX} "
                         "characters; shorten the project or stack name")
    return prefix


def signed_prefix(version_id: str) -> str:
    return f"{SIGNED_PREFIX}{source_version(version_id)}/"


def source_version(version_id: str | None) -> str:
    """The archive's S3 version id, refused when S3 did not version the write.

    The bucket, its versioning and the archive are created by the same `pulumi up`; AWS asks for
    15 minutes between enabling versioning and the first write (pulumi-aws BucketVersioning docs:
    "do not create a bucket, enable versioning, and create an object in the bucket within the same
    configuration"). An object written before versioning took effect has no version id (PutObject
    returns none; S3 lists it as version "null") and Signer signs only a version (StartSigningJob:
    "Your S3 source bucket must be version enabled"). Say so and how to recover, instead of a
    provider error about a missing `source.s3.version`."""
    if not version_id or version_id == "null":
        raise ValueError(
            f"code signing: the archive {UNSIGNED_KEY} has S3 version id {version_id!r}: it was written "
            "before the bucket's versioning took effect (AWS asks for up to 15 minutes after enabling it). "
            "Wait, then upload it again: pulumi up --replace '<urn of lambda-code-archive>' "
            "(docs/delivery.md, troubleshooting)")
    return version_id


@dataclass(frozen=True)
class SignedCode:
    """What a function takes instead of `code=`: the signed object and the config that checks it."""

    s3_bucket: pulumi.Input[str]
    s3_key: pulumi.Input[str]
    code_signing_config_arn: pulumi.Input[str]

    def function_args(self) -> dict[str, Any]:
        return {"s3_bucket": self.s3_bucket, "s3_key": self.s3_key,
                "code_signing_config_arn": self.code_signing_config_arn}


@dataclass(frozen=True)
class LambdaCodeSigningArgs:
    project: str
    stack: str
    kms_key_arn: pulumi.Input[str]  # the stack key: the bucket's default encryption
    log_retention_days: int  # the bucket's server access logs expire after it (alerting.logRetentionDays)
    tags: dict[str, str] = field(default_factory=dict)
    # The second region the access logs are replicated to (alerting.logReplicaRegion); None: not replicated.
    log_replica_region: str | None = None


class LambdaCodeSigning(pulumi.ComponentResource):
    """The artifact bucket, the signing profile and job, and the code-signing config."""

    code: SignedCode

    def __init__(self, name: str, args: LambdaCodeSigningArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:aws:LambdaCodeSigning", name, None, opts)
        self._name, self._args = name, args
        self.bucket = self._bucket()
        self.access_logs = self._access_logs()
        self.log_replica = self._log_replica()
        self.archive = self._archive()
        self.profile = self._profile()
        self.job = self._signing_job()
        self.config = self._config()
        signed = self.job.signed_objects.apply(lambda objects: objects[0].s3s[0])  # type: ignore[index]
        self.code = SignedCode(s3_bucket=signed.apply(lambda s: s.bucket), s3_key=signed.apply(lambda s: s.key),
                               code_signing_config_arn=self.config.arn)
        self.register_outputs({"codeBucket": self.bucket.bucket, "signingProfileVersionArn": self.profile.version_arn,
                               "codeSigningConfigArn": self.config.arn})

    # -- children ---------------------------------------------------------------------------
    def _bucket(self) -> aws.s3.Bucket:
        name, args = self._name, self._args
        tags = dict(args.tags)
        # force_destroy: the bucket holds only artifacts built from the repository; `pulumi destroy`
        # must not stop at a versioned bucket that still has versions.
        bucket = aws.s3.Bucket(f"{name}-bucket", bucket_prefix=bucket_prefix(args.project, args.stack),
                               force_destroy=True, tags=tags, opts=child(self))
        # Signer requires a versioned source bucket (StartSigningJob API reference).
        self._bucket_settings: list[pulumi.Resource] = [
            *private_bucket_basics(name, self, bucket),
            aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-encryption", bucket=bucket.id,
                rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.
                    BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn),
                    # Bucket keys: one data key per bucket and period instead of a KMS call per object.
                    bucket_key_enabled=True)],
                opts=child(self)),
            aws.s3.BucketLifecycleConfiguration(
                f"{name}-lifecycle", bucket=bucket.id, rules=[
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id="expire-old-versions", status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                        noncurrent_version_expiration=aws.s3.
                        BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=NONCURRENT_DAYS),
                        abort_incomplete_multipart_upload=aws.s3.
                        BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                            days_after_initiation=ABORT_MULTIPART_DAYS)),
                    aws.s3.BucketLifecycleConfigurationRuleArgs(
                        id="expire-signed-after-signature", status="Enabled",
                        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=SIGNED_PREFIX),
                        expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=SIGNED_OBJECT_DAYS)),
                ], opts=child(self)),
            aws.s3.BucketPolicy(f"{name}-tls-only", bucket=bucket.id,
                                policy=bucket.arn.apply(tls_only_policy),
                                opts=child(self)),
        ]
        return bucket

    def _access_logs(self) -> S3AccessLogs:
        """Server access logs of every request to the code bucket, in a bucket of their own."""
        args = self._args
        return S3AccessLogs(f"{self._name}-logs", S3AccessLogsArgs(
            project=args.project, stack=args.stack, source_bucket=self.bucket, prefix=ACCESS_LOG_PREFIX,
            retention_days=args.log_retention_days, tags=dict(args.tags)), opts=child(self))

    def _log_replica(self) -> LogReplica | None:
        """The access logs, replicated to a second region (infra/components/log_replica.py)."""
        args = self._args
        if args.log_replica_region is None:
            return None
        return LogReplica(f"{self._name}-log-replica", LogReplicaArgs(
            project=args.project, stack=args.stack, logs=self.access_logs, region=args.log_replica_region,
            home_kms_key_arn=args.kms_key_arn, retention_days=args.log_retention_days, tags=dict(args.tags)),
            opts=child(self))

    def _archive(self) -> aws.s3.BucketObjectv2:
        name, args = self._name, self._args
        return aws.s3.BucketObjectv2(
            f"{name}-archive", bucket=self.bucket.id, key=UNSIGNED_KEY, source=code_archive(package_files()),
            server_side_encryption="aws:kms", kms_key_id=args.kms_key_arn, bucket_key_enabled=True,
            tags=dict(args.tags),
            # Signer needs the version id: the object goes in once versioning and encryption are on.
            # Delete before replace: deleting an object of a versioned bucket deletes *every* version
            # of its key (terraform-provider-aws internal/service/s3/object.go resourceObjectDelete ->
            # deleteAllObjectVersions when version_id is set), so Pulumi's default create-then-delete
            # would remove the version it had just uploaded (a `--replace` of this resource).
            opts=child(self, depends_on=self._bucket_settings, delete_before_replace=True))

    def _profile(self) -> aws.signer.SigningProfile:
        args = self._args
        unit, value = SIGNATURE_VALIDITY
        return aws.signer.SigningProfile(
            f"{self._name}-profile", name_prefix=profile_prefix(args.project, args.stack), platform_id=PLATFORM,
            signature_validity_period=aws.signer.SigningProfileSignatureValidityPeriodArgs(type=unit, value=value),
            tags=dict(args.tags), opts=child(self))

    def _signing_job(self) -> aws.signer.SigningJob:
        return aws.signer.SigningJob(
            f"{self._name}-job", profile_name=self.profile.name,
            source=aws.signer.SigningJobSourceArgs(s3=aws.signer.SigningJobSourceS3Args(
                bucket=self.archive.bucket, key=self.archive.key,
                version=self.archive.version_id.apply(source_version))),
            # Under the source version: a new version always lands under a new key, whatever name
            # Signer gives the signed zip, so the functions' s3_key changes and Lambda redeploys.
            destination=aws.signer.SigningJobDestinationArgs(s3=aws.signer.SigningJobDestinationS3Args(
                bucket=self.bucket.id, prefix=self.archive.version_id.apply(signed_prefix))),
            # A failed job fails `pulumi up` (the provider waits for Succeeded).
            ignore_signing_job_failure=False, opts=child(self))

    def _config(self) -> aws.lambda_.CodeSigningConfig:
        args = self._args
        return aws.lambda_.CodeSigningConfig(
            f"{self._name}-config", description=f"{args.project}/{args.stack}: code signed by this stack's Signer profile only",
            allowed_publishers=aws.lambda_.CodeSigningConfigAllowedPublishersArgs(
                signing_profile_version_arns=[self.profile.version_arn]),
            policies=aws.lambda_.CodeSigningConfigPoliciesArgs(untrusted_artifact_on_deployment="Enforce"),
            tags=dict(args.tags), opts=child(self))
