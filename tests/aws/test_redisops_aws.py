"""redisops.aws against moto (and botocore's Stubber where moto has no model of the call)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from redisops import aws as ops
from redisops.errors import OperationError, UsageError

REGION = "eu-west-1"
TOKEN = "Old-token-0123456789abcdefghijkl"


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def make_group(ec: Any, rg_id: str = "rl-prod", *, cluster: bool = False, token: str | None = TOKEN) -> None:
    kwargs: dict[str, Any] = dict(ReplicationGroupId=rg_id, ReplicationGroupDescription="limiter", Engine="redis",
                                  CacheNodeType="cache.t4g.small", TransitEncryptionEnabled=True,
                                  AutomaticFailoverEnabled=True, MultiAZEnabled=True)
    if token:
        kwargs["AuthToken"] = token
    if cluster:
        kwargs.update(NumNodeGroups=2, ReplicasPerNodeGroup=1, ClusterMode="enabled")
    else:
        # moto ignores NumCacheClusters with cluster mode off; replicas come from ReplicasPerNodeGroup.
        kwargs.update(ReplicasPerNodeGroup=2)
    ec.create_replication_group(**kwargs)


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register(f"provide-client-params.{client.meta.service_model.endpoint_prefix}.{operation}",
                                lambda params, **_: calls.append(dict(params)))
    return calls


# --- endpoint discovery --------------------------------------------------------------------
def test_discover_endpoint_of_a_cluster_mode_disabled_group(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    make_group(ec)
    ep = ops.discover_endpoint(ec, "rl-prod")
    assert re.fullmatch(r"master\.rl-prod\.[a-z0-9]+\.[a-z0-9]+\.cache\.amazonaws\.com", ep.host)
    assert ep.port == 6379 and ep.tls and ep.auth_token_enabled and not ep.cluster_mode
    assert ep.url == f"rediss://{ep.host}:6379/0"
    assert ep.members == ("rl-prod-001", "rl-prod-002", "rl-prod-003")
    assert ep.replicas == ("rl-prod-002", "rl-prod-003")
    assert ep.status == "available"


def test_discover_endpoint_of_a_cluster_mode_group_uses_the_configuration_endpoint(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    make_group(ec, "rl-cl", cluster=True)
    ep = ops.discover_endpoint(ec, "rl-cl")
    assert ep.cluster_mode and ep.host.startswith("clustercfg.rl-cl.")
    assert ep.members == ("rl-cl-0001-001", "rl-cl-0001-002", "rl-cl-0002-001", "rl-cl-0002-002")


def test_discover_unknown_group_names_it(aws: None) -> None:
    with pytest.raises(UsageError, match="'nope' not found"):
        ops.discover_endpoint(boto3.client("elasticache", region_name=REGION), "nope")


# --- snapshots -----------------------------------------------------------------------------
def test_cluster_mode_snapshot_create_wait_list(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    make_group(ec, "rl-cl", cluster=True)
    now = dt.datetime(2026, 3, 1, 4, 5, 6, tzinfo=dt.UTC)
    name = ops.create_snapshot(ec, "rl-cl", now=now)
    assert name == "rl-cl-manual-20260301-040506"
    info = ops.wait_snapshot_available(ec, name, sleep=lambda _: pytest.fail("moto snapshots are available at once"))
    assert info.status == "available" and info.created == now
    listed = ops.list_snapshots(ec, "rl-cl", source="manual")
    assert [s.name for s in listed] == [name]


def test_prune_deletes_only_our_old_manual_snapshots_and_keeps_the_newest(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    make_group(ec, "rl-cl", cluster=True)
    now = dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
    old1 = ops.create_snapshot(ec, "rl-cl", now=now - dt.timedelta(days=20))
    old2 = ops.create_snapshot(ec, "rl-cl", now=now - dt.timedelta(days=10))
    fresh = ops.create_snapshot(ec, "rl-cl", now=now - dt.timedelta(days=1))
    ec.create_snapshot(ReplicationGroupId="rl-cl", SnapshotName="before-upgrade-keep")  # not ours
    assert ops.prune_snapshots(ec, "rl-cl", retention_days=7, now=now, dry_run=True) == [old1, old2]
    assert len(ops.list_snapshots(ec, "rl-cl")) == 4  # dry run deleted nothing
    assert ops.prune_snapshots(ec, "rl-cl", retention_days=7, now=now) == [old1, old2]
    assert sorted(s.name for s in ops.list_snapshots(ec, "rl-cl")) == ["before-upgrade-keep", fresh]
    # Everything expired: the newest of ours still stays.
    assert ops.prune_snapshots(ec, "rl-cl", retention_days=1, now=now + dt.timedelta(days=60)) == []
    with pytest.raises(UsageError, match="retention-days 0"):
        ops.prune_snapshots(ec, "rl-cl", retention_days=0)


def _stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(service, region_name=REGION)
    return client, Stubber(client)


def _group_response(status: str = "available", replicas: int = 2, auth: bool = True) -> dict[str, Any]:
    members = [{"CacheClusterId": "rl-prod-001", "CurrentRole": "primary"}] + [
        {"CacheClusterId": f"rl-prod-{i:03d}", "CurrentRole": "replica"} for i in range(2, replicas + 2)]
    return {"ReplicationGroups": [{
        "ReplicationGroupId": "rl-prod", "Status": status, "ClusterEnabled": False,
        "MemberClusters": [m["CacheClusterId"] for m in members], "TransitEncryptionEnabled": True,
        "AuthTokenEnabled": auth,
        "NodeGroups": [{"NodeGroupId": "0001", "PrimaryEndpoint": {"Address": "master.rl-prod.x.euw1.cache.amazonaws.com",
                                                                  "Port": 6379},
                        "ReaderEndpoint": {"Address": "replica.rl-prod.x.euw1.cache.amazonaws.com", "Port": 6379},
                        "NodeGroupMembers": members}]}]}


def test_cluster_mode_disabled_snapshot_is_taken_from_a_replica() -> None:
    ec, stub = _stubbed("elasticache")
    stub.add_response("describe_replication_groups", _group_response(), {"ReplicationGroupId": "rl-prod"})
    stub.add_response("create_snapshot", {"Snapshot": {"SnapshotName": "rl-prod-manual-20260301-000000"}},
                      {"CacheClusterId": "rl-prod-002", "SnapshotName": "rl-prod-manual-20260301-000000"})
    with stub:
        name = ops.create_snapshot(ec, "rl-prod", now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    stub.assert_no_pending_responses()
    assert name == "rl-prod-manual-20260301-000000"
    assert ops.discover_endpoint  # reader endpoint parsing below
    stub2 = Stubber(ec)
    stub2.add_response("describe_replication_groups", _group_response(), {"ReplicationGroupId": "rl-prod"})
    with stub2:
        assert ops.discover_endpoint(ec, "rl-prod").reader_host == "replica.rl-prod.x.euw1.cache.amazonaws.com"


def test_wait_snapshot_polls_until_available_and_fails_on_failed() -> None:
    ec, stub = _stubbed("elasticache")
    for status in ("creating", "creating", "available"):
        stub.add_response("describe_snapshots", {"Snapshots": [{"SnapshotName": "s", "SnapshotStatus": status,
                                                               "SnapshotSource": "manual"}]}, {"SnapshotName": "s"})
    sleeps: list[float] = []
    with stub:
        assert ops.wait_snapshot_available(ec, "s", poll_s=7, sleep=sleeps.append).status == "available"
    assert sleeps == [7, 7]
    stub.add_response("describe_snapshots", {"Snapshots": [{"SnapshotName": "s", "SnapshotStatus": "failed"}]},
                      {"SnapshotName": "s"})
    with stub, pytest.raises(OperationError, match="snapshot s ended in status failed"):
        ops.wait_snapshot_available(ec, "s", sleep=sleeps.append)


def test_wait_group_available_times_out_with_the_status() -> None:
    ec, stub = _stubbed("elasticache")
    for _ in range(3):
        stub.add_response("describe_replication_groups", _group_response(status="modifying"),
                          {"ReplicationGroupId": "rl-prod"})
    with stub, pytest.raises(OperationError, match="still 'modifying'"):
        ops.wait_group_available(ec, "rl-prod", timeout_s=0, sleep=lambda _: None)


# --- token rotation ------------------------------------------------------------------------
def _secret(sm: Any, password: str = TOKEN, username: str = "default") -> str:
    return sm.create_secret(Name="redisstack/prod/redis-auth-x",
                            SecretString=json.dumps({"username": username, "password": password}))["ARN"]


def test_generate_token_alphabet_and_classes() -> None:
    for _ in range(50):
        token = ops.generate_token()
        assert len(token) == 64 and re.fullmatch(r"[A-Za-z0-9!&#$^<>\-]+", token)
        assert re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"\d", token)
        assert re.search(r"[!&#$^<>\-]", token)
    with pytest.raises(UsageError):
        ops.generate_token(16)


def test_rotation_rotates_updates_secret_verifies_then_sets(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    make_group(ec)
    arn = _secret(sm)
    modifies = record_calls(ec, "ModifyReplicationGroup")
    verified: list[tuple[str, str, str]] = []

    def verify(ep: ops.Endpoint, user: str, token: str) -> None:
        # At verification time the application already reads the new token.
        assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == token
        assert [m["AuthTokenUpdateStrategy"] for m in modifies] == ["ROTATE"]
        verified.append((ep.host, user, token))

    result = ops.rotate_auth_token(ec, sm, "rl-prod", arn, verify=verify, generate=lambda: "N" * 40 + "-new!")
    assert not result.dry_run and len(result.steps) == 6
    assert [(m["AuthToken"], m["AuthTokenUpdateStrategy"], m["ApplyImmediately"]) for m in modifies] == [
        ("N" * 40 + "-new!", "ROTATE", True), ("N" * 40 + "-new!", "SET", True)]
    assert verified == [(ops.discover_endpoint(ec, "rl-prod").host, "default", "N" * 40 + "-new!")]
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"]) == {"username": "default",
                                                                             "password": "N" * 40 + "-new!"}
    previous = sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"])["password"] == TOKEN


def test_rotation_dry_run_changes_nothing(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    make_group(ec)
    arn = _secret(sm)
    modifies = record_calls(ec, "ModifyReplicationGroup")
    puts = record_calls(sm, "PutSecretValue")
    result = ops.rotate_auth_token(ec, sm, "rl-prod", arn, dry_run=True,
                                   verify=lambda *a: pytest.fail("dry run must not connect"))
    assert result.dry_run and "ROTATE" in result.steps[0] and "SET" in result.steps[4]
    assert modifies == [] and puts == []
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == TOKEN


def test_rotation_refused_token_puts_the_secret_back_and_never_sets(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    make_group(ec)
    arn = _secret(sm)
    modifies = record_calls(ec, "ModifyReplicationGroup")

    def refuse(*_: Any) -> None:
        raise ConnectionError("WRONGPASS")

    with pytest.raises(OperationError, match="SET was not sent"):
        ops.rotate_auth_token(ec, sm, "rl-prod", arn, verify=refuse)
    assert [m["AuthTokenUpdateStrategy"] for m in modifies] == ["ROTATE"]
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == TOKEN


def test_rotation_refuses_groups_without_a_token_and_bad_secrets(aws: None) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    sm = boto3.client("secretsmanager", region_name=REGION)
    make_group(ec, "rl-rbac", token=None)
    arn = _secret(sm)
    with pytest.raises(UsageError, match="does not use an AUTH token"):
        ops.rotate_auth_token(ec, sm, "rl-rbac", arn, verify=lambda *a: None)
    make_group(ec)
    bad = sm.create_secret(Name="plain", SecretString="just-a-token")["ARN"]
    with pytest.raises(UsageError, match="expected a JSON object"):
        ops.rotate_auth_token(ec, sm, "rl-prod", bad, verify=lambda *a: None)


# --- alarms --------------------------------------------------------------------------------
def _alarm(cw: Any, name: str, member: str) -> None:
    cw.put_metric_alarm(AlarmName=name, Namespace="AWS/ElastiCache", MetricName="DatabaseMemoryUsagePercentage",
                        Dimensions=[{"Name": "CacheClusterId", "Value": member}], Statistic="Average", Period=60,
                        EvaluationPeriods=5, Threshold=80, ComparisonOperator="GreaterThanThreshold")


def test_alarm_status_reports_states_alarm_first_and_missing(aws: None) -> None:
    cw = boto3.client("cloudwatch", region_name=REGION)
    names = [f"redisstack-prod-rl-prod-00{i}-memory_usage-warning" for i in (1, 2, 3)]
    for i, n in enumerate(names, 1):
        _alarm(cw, n, f"rl-prod-00{i}")
    _alarm(cw, "other-stack-alarm", "x-001")
    cw.set_alarm_state(AlarmName=names[1], StateValue="ALARM", StateReason="memory 93%")
    cw.set_alarm_state(AlarmName=names[2], StateValue="OK", StateReason="fine")
    cw.set_alarm_state(AlarmName=names[0], StateValue="INSUFFICIENT_DATA", StateReason="node replaced")
    states = ops.alarm_status(cw, names=[*names, "redisstack-prod-gone"])
    assert [(a.name, a.state) for a in states] == [
        ("redisstack-prod-gone", "MISSING"), (names[1], "ALARM"), (names[0], "INSUFFICIENT_DATA"), (names[2], "OK")]
    assert states[1].member == "rl-prod-002" and states[1].reason == "memory 93%"
    by_prefix = ops.alarm_status(cw, prefix="redisstack-prod-")
    assert sorted(a.name for a in by_prefix) == sorted(names)
    with pytest.raises(UsageError):
        ops.alarm_status(cw)
