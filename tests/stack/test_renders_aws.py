"""What issue 11's AWS fixes must show in the committed renders (docs/stacks/*.yaml), which
tests/stack/test_renders.py keeps current: a reviewer reading a render sees each rule hold.

* ElastiCache log groups live under /aws/vendedlogs/ (the account's CloudWatch Logs resource
  policy holds 5,120 characters: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-and-resource-policy.html)
  and every log group is KMS-encrypted with the stack's key;
* every KMS key that encrypts data outliving the stack (final snapshots, retained volumes and
  their DLM snapshots) is protected and retained;
* no ElastiCache access string names a restricted command
  (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html);
* the replication group's event topic is unencrypted and admits ElastiCache by AWS:SourceOwner
  (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ElastiCacheSNS.html);
* Sentinel hosts are replaced delete-first (their fixed ENI is the primary interface).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from redis_conf.elasticache import RESTRICTED_COMMANDS, named_commands

ROOT = Path(__file__).resolve().parents[2]
AWS_STACKS = ("prod", "prod-sentinel")


@cache
def render(stack: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docs" / "stacks" / f"{stack}.yaml").read_text()))


def of_type(stack: str, type_: str) -> list[dict[str, Any]]:
    return [r for r in render(stack)["resources"] if r["type"] == type_]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_log_group_is_encrypted_with_the_stack_key(stack: str) -> None:
    [key] = [k for k in of_type(stack, "aws:kms/key:Key") if k["name"] == "redis-kms"]
    groups = of_type(stack, "aws:cloudwatch/logGroup:LogGroup")
    assert groups
    key_arn = render(stack)["outputs"]["kmsKeyArn"]
    for group in groups:
        assert group["inputs"]["kmsKeyId"] == key_arn
        assert group["inputs"]["retentionInDays"] == 365
        arn = f"arn:aws:logs:eu-west-1:123456789012:log-group:{group['inputs']['name']}"
        assert arn in json.dumps(key["inputs"]["policy"]), "the key policy names each of its log groups"
    if stack == "prod":
        delivered = [g for g in groups if g.get("parent") == "redisstack:elasticache:ElastiCacheRedis::redis"]
        assert len(delivered) == 2 and all(g["inputs"]["name"].startswith("/aws/vendedlogs/") for g in delivered)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_keys_of_retained_data_are_protected_and_retained(stack: str) -> None:
    [key] = [k for k in of_type(stack, "aws:kms/key:Key") if k["name"] == "redis-kms"]
    assert key["options"].get("protect") is True and key["options"].get("retainOnDelete") is True
    for volume in of_type(stack, "aws:ebs/volume:Volume"):
        assert volume["options"].get("protect") is True and volume["options"].get("retainOnDelete") is True


def test_no_access_string_names_a_restricted_command() -> None:
    users = of_type("prod", "aws:elasticache/user:User")
    assert {u["inputs"]["userName"] for u in users} == {"default", "app", "monitor", "admin"}
    restricted = frozenset().union(*RESTRICTED_COMMANDS.values())
    for user in users:
        assert not named_commands(user["inputs"]["accessString"]) & restricted, user["name"]


def test_the_event_topic_is_unencrypted_with_a_source_owner_policy() -> None:
    [rg] = of_type("prod", "aws:elasticache/replicationGroup:ReplicationGroup")
    topics = {t["inputs"]["name"]: t for t in of_type("prod", "aws:sns/topic:Topic")}
    events_arn = rg["inputs"]["notificationTopicArn"]
    events = topics[events_arn.rsplit(":", 1)[1]]
    assert "kmsMasterKeyId" not in events["inputs"]
    [policy] = [p for p in of_type("prod", "aws:sns/topicPolicy:TopicPolicy") if p["inputs"]["arn"] == events_arn]
    # Renders show JSON-in-a-string inputs parsed, under "(json)".
    statement = policy["inputs"]["policy"]["(json)"]["Statement"][0]
    assert statement["Condition"] == {"StringEquals": {"AWS:SourceOwner": "123456789012"}}
    alarms = [t for t in topics.values() if t is not events]
    assert alarms and all(t["inputs"].get("kmsMasterKeyId") for t in alarms)


def test_sentinel_hosts_are_replaced_delete_first() -> None:
    instances = of_type("prod-sentinel", "aws:ec2/instance:Instance")
    assert len(instances) == 3
    assert all(i["options"].get("deleteBeforeReplace") is True for i in instances)
