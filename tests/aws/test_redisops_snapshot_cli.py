"""The top-level ElastiCache commands (snapshot, endpoint, alarms, rotate-token) take their
replication group, secret and alarm names from the stack outputs; moto stands in for AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from redisops.cli import app

REGION = "eu-west-1"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def outputs_file(tmp_path: Path, **outputs: Any) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path


def make_group(rg_id: str = "rl-prod") -> None:
    boto3.client("elasticache", region_name=REGION).create_replication_group(
        ReplicationGroupId=rg_id, ReplicationGroupDescription="limiter", Engine="redis",
        CacheNodeType="cache.t4g.small", TransitEncryptionEnabled=True, AuthToken="Old-token-0123456789abcdef",
        NumNodeGroups=2, ReplicasPerNodeGroup=1, ClusterMode="enabled")


def test_snapshot_takes_the_group_from_stack_outputs(tmp_path: Path) -> None:
    make_group()
    f = outputs_file(tmp_path, replicationGroupId="rl-prod")
    result = runner.invoke(app, ["snapshot", "--stack-outputs", str(f), "--region", REGION])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout[result.stdout.index("{"):])
    assert body["snapshot"].startswith("rl-prod-manual-") and body["status"] == "available"
    names = [s["SnapshotName"] for s in boto3.client("elasticache", region_name=REGION).describe_snapshots()["Snapshots"]]
    assert body["snapshot"] in names


def test_snapshot_list_shows_what_was_taken(tmp_path: Path) -> None:
    make_group()
    f = outputs_file(tmp_path, replicationGroupId="rl-prod")
    taken = json.loads((r := runner.invoke(app, ["snapshot", "--stack-outputs", str(f), "--region", REGION])).stdout[
        r.stdout.index("{"):])["snapshot"]
    result = runner.invoke(app, ["snapshot", "--list", "--stack-outputs", str(f), "--region", REGION])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [s["name"] for s in listed] == [taken]
    assert listed[0]["status"] == "available"


def test_endpoint_from_outputs(tmp_path: Path) -> None:
    make_group()
    result = runner.invoke(app, ["endpoint", "--stack-outputs", str(outputs_file(tmp_path, replicationGroupId="rl-prod")),
                                 "--region", REGION])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["replication_group_id"] == "rl-prod" and body["url"].startswith("rediss://")


def test_missing_group_id_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    result = runner.invoke(app, ["snapshot", "--stack-outputs", str(outputs_file(tmp_path, env={}))])
    assert result.exit_code == 2
    assert "--replication-group-id" in result.output and "replicationGroupId" in result.output


def test_alarms_from_outputs_exit_1_when_one_is_missing(tmp_path: Path) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    cw.put_metric_alarm(AlarmName="rl-prod-memory", MetricName="DatabaseMemoryUsagePercentage",
                        Namespace="AWS/ElastiCache", Statistic="Average", Period=60, EvaluationPeriods=5,
                        Threshold=80, ComparisonOperator="GreaterThanThreshold")
    ok = runner.invoke(app, ["alarms", "--stack-outputs", str(outputs_file(tmp_path, alarmNames=["rl-prod-memory"])),
                             "--region", REGION])
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(app, ["alarms", "--region", REGION, "--stack-outputs",
                                  str(outputs_file(tmp_path, alarmNames=["rl-prod-memory", "rl-prod-gone"]))])
    assert missing.exit_code == 1
    assert "MISSING" in missing.stdout


def test_rotate_token_needs_the_secret(tmp_path: Path) -> None:
    make_group()
    result = runner.invoke(app, ["rotate-token", "--stack-outputs",
                                 str(outputs_file(tmp_path, replicationGroupId="rl-prod")), "--dry-run"])
    assert result.exit_code == 2
    assert "--secret-id" in result.output and "authSecretArn" in result.output


def test_rotate_token_picks_the_secret_of_the_rbac_user(tmp_path: Path) -> None:
    f = outputs_file(tmp_path, replicationGroupId="rl-prod", authSecretArn="arn:app")
    result = runner.invoke(app, ["rotate-token", "--stack-outputs", str(f), "--user", "monitor", "--dry-run"])
    assert result.exit_code == 2 and "monitorSecretArn" in result.output
    result = runner.invoke(app, ["rotate-token", "--stack-outputs", str(f), "--user", "root", "--dry-run"])
    assert result.exit_code == 2 and "app, monitor, admin" in result.output
