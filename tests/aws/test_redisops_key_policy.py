"""`redisops key-policy`: a user-supplied KMS key (elasticache.kmsKeyArn) is checked against
what the stack needs of it, with the key policy read from KMS (moto).

A given key encrypts the alarm topic and the log groups. CloudWatch alarms can only publish into
an SSE-KMS topic whose key policy allows cloudwatch.amazonaws.com kms:Decrypt and
kms:GenerateDataKey* (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html), and
CloudWatch Logs refuses a key whose policy does not allow logs.<region>.amazonaws.com for the
group (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html).
The same rules (infra.keypolicy) build the policy of the keys the stacks create.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from infra.keypolicy import KeyUse, key_policy, log_group_arn
from redisops import aws as ops
from redisops.cli import app
from redisops.errors import UsageError

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:redisstack-prod-redis-alarms"
GROUPS = ["/aws/vendedlogs/elasticache/redisstack/prod/redis/slow-log",
          "/aws/vendedlogs/elasticache/redisstack/prod/redis/engine-log"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def use() -> KeyUse:
    return KeyUse(ACCOUNT, "aws", REGION, alarm_topic_arns=(TOPIC,),
                  log_group_arns=tuple(log_group_arn("aws", REGION, ACCOUNT, g) for g in GROUPS))


def make_key(policy: str | None = None) -> str:
    kms = boto3.client("kms", region_name=REGION)
    kwargs = {"Policy": policy} if policy else {}
    return str(kms.create_key(Description="given", **kwargs)["KeyMetadata"]["Arn"])


def test_a_key_with_the_stack_policy_passes() -> None:
    arn = make_key(key_policy(use()))
    report = ops.check_key_policy(boto3.client("kms", region_name=REGION), arn, alarm_topic_arns=[TOPIC],
                                  log_group_names=GROUPS)
    assert report.ok and report.missing == []


def test_a_default_key_policy_lacks_the_service_statements_and_says_which() -> None:
    arn = make_key()  # KMS's default policy: the account root only
    report = ops.check_key_policy(boto3.client("kms", region_name=REGION), arn, alarm_topic_arns=[TOPIC],
                                  log_group_names=GROUPS)
    assert not report.ok
    assert any(TOPIC in m and "kms:GenerateDataKey" in m for m in report.missing)
    assert any(GROUPS[0] in m for m in report.missing) and any(GROUPS[1] in m for m in report.missing)
    assert not any("IAM principals" in m for m in report.missing)
    sids = {s["Sid"] for s in report.required_statements}
    assert {"CloudWatchAlarmsPublishToEncryptedTopic", "CloudWatchLogsEncryptsTheseLogGroups"} <= sids


def test_a_policy_for_another_topic_does_not_count() -> None:
    other = KeyUse(ACCOUNT, "aws", REGION, alarm_topic_arns=(TOPIC.replace("redis-alarms", "other"),))
    arn = make_key(key_policy(other))
    report = ops.check_key_policy(boto3.client("kms", region_name=REGION), arn, alarm_topic_arns=[TOPIC])
    assert [m for m in report.missing if TOPIC in m]


def test_an_explicit_deny_is_reported() -> None:
    doc = json.loads(key_policy(use()))
    doc["Statement"].append({"Sid": "NoLogs", "Effect": "Deny", "Principal": {"Service": f"logs.{REGION}.amazonaws.com"},
                             "Action": "kms:*", "Resource": "*"})
    arn = make_key(json.dumps(doc))
    report = ops.check_key_policy(boto3.client("kms", region_name=REGION), arn, log_group_names=GROUPS)
    assert report.missing and all("denied" in m for m in report.missing if "CloudWatch Logs" in m)


def test_a_hardened_policy_that_grants_only_for_aws_resources_passes() -> None:
    # The default key policy's shape for key users: use of the key in one statement, CreateGrant only
    # with kms:GrantIsForAWSResource in another ("Allow attachment of persistent resources",
    # https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html). Every grant the
    # stacks need is made by a service (EBS, ElastiCache, Lambda's environment grant), so it works.
    root = f"arn:aws:iam::{ACCOUNT}:root"
    doc = json.loads(key_policy(use()))
    doc["Statement"][0]["Action"] = ["kms:CreateAlias", "kms:Describe*", "kms:Put*", "kms:ScheduleKeyDeletion"]
    use_key = {"Sid": "KeyUse", "Effect": "Allow", "Principal": {"AWS": root}, "Resource": "*",
               "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]}
    grants = {"Sid": "AttachPersistentResources", "Effect": "Allow", "Principal": {"AWS": root}, "Resource": "*",
              "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
              "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
    kms = boto3.client("kms", region_name=REGION)
    arn = make_key(json.dumps({**doc, "Statement": [*doc["Statement"], use_key, grants]}))
    assert ops.check_key_policy(kms, arn, alarm_topic_arns=[TOPIC], log_group_names=GROUPS).missing == []
    # Grants only for direct callers would not serve the services: reported.
    grants["Condition"] = {"Bool": {"kms:GrantIsForAWSResource": False}}
    arn = make_key(json.dumps({**doc, "Statement": [*doc["Statement"], use_key, grants]}))
    assert ops.check_key_policy(kms, arn, alarm_topic_arns=[TOPIC], log_group_names=GROUPS).missing == [
        "IAM principals of the account may use the key (ElastiCache, Secrets Manager, SSM, EBS, Lambda, S3): "
        "kms:CreateGrant is not allowed"]


def test_a_key_of_another_account_is_reported_whatever_its_policy() -> None:
    # Its policy is complete for its own account (moto's), but the stack's topic is in another one.
    arn = make_key(key_policy(use()))
    stack_topic = TOPIC.replace(ACCOUNT, "210987654321")
    report = ops.check_key_policy(boto3.client("kms", region_name=REGION), arn, alarm_topic_arns=[stack_topic])
    assert not report.ok
    assert report.missing[0] == (
        f"the key is in account {ACCOUNT}, region {REGION}; the stack ({stack_topic}) is in account 210987654321, "
        "region eu-west-1: the deploy and drift roles use keys of the stack's account and region only "
        "(docs/bootstrap/production-policy.json, prod-read-policy.json); give a key of that account and region")


def test_an_alias_arn_is_refused() -> None:
    with pytest.raises(UsageError, match="not an alias"):
        ops.check_key_policy(boto3.client("kms", region_name=REGION), f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/redis")


def test_cli_reads_key_topic_and_groups_from_stack_outputs(tmp_path: Path) -> None:
    arn = make_key()
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"kmsKeyArn": arn, "alarmTopicArn": TOPIC,
                                   "logGroups": {"slow-log": GROUPS[0], "engine-log": GROUPS[1]}}))
    result = runner.invoke(app, ["key-policy", "--stack-outputs", str(outputs), "--region", REGION])
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout[result.stdout.index("{"):])
    assert body["ok"] is False and body["keyArn"] == arn and len(body["missing"]) == 2 + 2 * 5
    boto3.client("kms", region_name=REGION).put_key_policy(KeyId=arn, PolicyName="default", Policy=key_policy(use()))
    assert runner.invoke(app, ["key-policy", "--stack-outputs", str(outputs), "--region", REGION]).exit_code == 0
