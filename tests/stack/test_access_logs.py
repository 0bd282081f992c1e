"""Server access logging of the Lambda code bucket under Pulumi mocks (infra/components/access_logs.py):
the code bucket logs to a bucket of its own, which S3's log delivery may write under the prefix for
that source only, encrypted with SSE-S3, private, versioned, not logging itself, expiring the logs
after the stack's log retention. The delivery itself needs AWS (docs/fidelity.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.components import access_logs as al
from infra.components import code_signing as cs
from redisops import mockrun
from tests.support.pulumi_harness import STACK_FILES, StackRun
from tests.support.pulumi_harness import run_stack_file as run  # the run the other component tests read

COMPONENT = "redisstack:aws:S3AccessLogs"
BUCKET = "aws:s3/bucket:Bucket"
LOGGING = "aws:s3/bucketLogging:BucketLogging"


def owned(r: StackRun, type_: str) -> Any:
    # The code bucket's logs (the replica's own logs: tests/stack/test_log_replica.py).
    found = [x for x in r.of_type(type_) if x.parent_type == COMPONENT and x.parent_name == "lambda-code-logs"]
    assert len(found) == 1, (type_, [x.name for x in found])
    return found[0]


def buckets(r: StackRun) -> tuple[str, str]:
    """(code bucket, log bucket) names."""
    code = next(x for x in r.of_type(BUCKET) if x.parent_type == "redisstack:aws:LambdaCodeSigning")
    return code.outputs["bucket"], owned(r, BUCKET).outputs["bucket"]


def setting(r: StackRun, type_: str, bucket: str) -> dict[str, Any]:
    found = dict(owned(r, f"aws:s3/{type_}:{type_[0].upper()}{type_[1:]}").inputs)  # the run is shared
    assert found.pop("bucket") == bucket
    return found


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_code_bucket_logs_every_request_to_a_bucket_of_its_own_under_its_prefix(stack: str) -> None:
    r = run(stack)
    code, logs = buckets(r)
    assert owned(r, BUCKET).inputs["bucketPrefix"] == f"redisstack-{stack}-logs-" and logs != code
    # The destination itself does not log ("should not", AWS; loops into itself); the other logging
    # configuration is the replica's, into its own destination (tests/stack/test_log_replica.py).
    (logging,) = [x for x in r.of_type(LOGGING) if x.parent_name == "lambda-code-logs"]
    destinations = {x.outputs["bucket"] for x in r.of_type(BUCKET) if x.parent_type == COMPONENT}
    assert len(destinations) == 2 and destinations.isdisjoint(x.inputs["bucket"] for x in r.of_type(LOGGING))
    assert logging.inputs == {"bucket": code, "targetBucket": logs, "targetPrefix": "lambda-code/"}
    # Logging starts once the destination accepts the logs: its policy, ownership and encryption.
    prereqs = {x.urn for x in r.resources if x.parent_name == "lambda-code-logs" and x.type in (
        "aws:s3/bucketPolicy:BucketPolicy", "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")}
    assert len(prereqs) == 3 and prereqs <= set(logging.depends_on)


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_only_s3s_log_delivery_for_the_code_bucket_may_write_and_only_under_the_prefix(stack: str) -> None:
    # The S3 user guide's bucket policy for the logging service principal ("Permissions for log
    # delivery"), with aws:SourceArn and aws:SourceAccount against the confused deputy; no ACL grant
    # (the destination is BucketOwnerEnforced).
    r = run(stack)
    code, logs = buckets(r)
    allow, deny = json.loads(setting(r, "bucketPolicy", logs)["policy"])["Statement"]
    assert allow == {
        "Sid": "S3ServerAccessLogsPolicy", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{logs}/lambda-code/*",
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{code}"},
                      "StringEquals": {"aws:SourceAccount": mockrun.ACCOUNT}}}
    # TLS only, for every principal; it denies only requests without TLS, and there is no deny on a
    # missing encryption header (which S3's delivery does not send).
    assert deny == {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
                    "Resource": [f"arn:aws:s3:::{logs}", f"arn:aws:s3:::{logs}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


@pytest.mark.parametrize("stack", list(STACK_FILES))
def test_the_destination_is_sse_s3_private_versioned_and_keeps_logs_for_the_log_retention(stack: str) -> None:
    r = run(stack)
    _, logs = buckets(r)
    # SSE-S3 only: default SSE-KMS is not supported on a log destination (S3 user guide).
    assert setting(r, "bucketServerSideEncryptionConfiguration", logs) == {
        "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    assert setting(r, "bucketOwnershipControls", logs) == {"rule": {"objectOwnership": "BucketOwnerEnforced"}}
    assert setting(r, "bucketPublicAccessBlock", logs) == {"blockPublicAcls": True, "blockPublicPolicy": True,
                                                          "ignorePublicAcls": True, "restrictPublicBuckets": True}
    assert setting(r, "bucketVersioning", logs) == {"versioningConfiguration": {"status": "Enabled"}}
    assert setting(r, "bucketNotification", logs) == {"eventbridge": True}
    # alerting.logRetentionDays defaults to 365 on AWS targets (infra/settings.py).
    (rule,) = setting(r, "bucketLifecycleConfiguration", logs)["rules"]
    assert rule == {"id": "expire-logs", "status": "Enabled", "filter": {"prefix": ""}, "expiration": {"days": 365},
                    "noncurrentVersionExpiration": {"noncurrentDays": 30},
                    "abortIncompleteMultipartUpload": {"daysAfterInitiation": 1}}
    # No Object Lock (a locked bucket cannot receive server access logs) and emptied on destroy.
    bucket = owned(r, BUCKET).inputs
    assert "objectLockEnabled" not in bucket and bucket["forceDestroy"] is True


def test_the_logs_follow_the_stacks_log_retention_setting() -> None:
    # One setting for CloudWatch and these logs: alerting.logRetentionDays.
    r = run("prod", alerting__logRetentionDays=90)
    _, logs = buckets(r)
    (rule,) = setting(r, "bucketLifecycleConfiguration", logs)["rules"]
    assert rule["expiration"] == {"days": 90}
    assert {g.inputs["retentionInDays"] for g in r.of_type("aws:cloudwatch/logGroup:LogGroup")} == {90}


def test_taggable_children_carry_the_stack_tags_and_the_component_sits_under_code_signing() -> None:
    r = run("prod")
    assert r.one(COMPONENT, "lambda-code-logs").parent_type == "redisstack:aws:LambdaCodeSigning"
    assert {"project": "redisstack", "stack": "prod"}.items() <= owned(r, BUCKET).inputs["tags"].items()
    assert cs.ACCESS_LOG_PREFIX == "lambda-code/"


@pytest.mark.parametrize(("changes", "says"), [
    ({"prefix": ""}, "prefix '' must be a non-empty key prefix ending in '/'"),
    ({"prefix": "logs"}, "prefix 'logs' must be a non-empty key prefix ending in '/'"),
    ({"prefix": "/logs/"}, "and not starting with one"),
    ({"retention_days": 0}, "retention_days 0 must be at least 1"),
])
def test_bad_arguments_are_refused_naming_the_key(changes: dict[str, Any], says: str) -> None:
    base: dict[str, Any] = {"project": "p", "stack": "prod", "source_bucket": None, "prefix": "x/", "retention_days": 1}
    with pytest.raises(ValueError, match="access logs: ") as caught:
        al.S3AccessLogsArgs(**{**base, **changes})
    assert says in str(caught.value)


def test_a_name_too_long_for_s3_is_refused_with_the_limit() -> None:
    assert al.log_bucket_prefix("redisstack", "prod-sentinel") == "redisstack-prod-sentinel-logs-"
    with pytest.raises(ValueError, match=r"access logs: bucket prefix .* longer than 37 characters"):
        al.log_bucket_prefix("a-rather-long-project-name", "production-eu")
