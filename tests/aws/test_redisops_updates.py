"""`redisops updates`: pending ElastiCache service updates, security first, exit 1 when a security
update is past its recommended apply-by date. moto has no model of DescribeUpdateActions, so
botocore's Stubber checks each request against the real API model (elasticache 2015-02-02):
parameter names, types and enums (ServiceUpdateStatus, UpdateActionStatus) are validated."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from typer.testing import CliRunner

from redisops import cli
from redisops import updates as up
from redisops.errors import UsageError

NOW = dt.datetime(2026, 12, 10, 12, 0, tzinfo=dt.UTC)
RG = "rl-prod"
runner = CliRunner()


def action(name: str, *, kind: str | None = "security-update", severity: str = "important",
           status: str = "not-applied", apply_by: dt.datetime | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"ReplicationGroupId": RG, "ServiceUpdateName": name, "ServiceUpdateSeverity": severity,
                           "ServiceUpdateStatus": "available", "UpdateActionStatus": status,
                           "ServiceUpdateReleaseDate": dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "Engine": "redis"}
    if kind is not None:
        raw["ServiceUpdateType"] = kind
    if apply_by is not None:
        raw["ServiceUpdateRecommendedApplyByDate"] = apply_by
    return raw


EXPECTED_REQUEST = {"ReplicationGroupIds": [RG], "ServiceUpdateStatus": ["available"],
                    "UpdateActionStatus": list(up.PENDING_STATUSES)}


def stubbed(*pages: list[dict[str, Any]]) -> tuple[Any, Stubber]:
    client = boto3.client("elasticache", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    for i, page in enumerate(pages):
        response: dict[str, Any] = {"UpdateActions": page}
        request = dict(EXPECTED_REQUEST)
        if i + 1 < len(pages):
            response["Marker"] = f"m{i + 1}"
        if i:
            request["Marker"] = f"m{i}"
        stub.add_response("describe_update_actions", response, request)
    stub.activate()
    return client, stub


def test_security_updates_first_then_severity_then_apply_by() -> None:
    client, stub = stubbed([
        action("engine-minor", kind=None, severity="critical", apply_by=NOW + dt.timedelta(days=1)),
        action("sec-low", severity="low", apply_by=NOW + dt.timedelta(days=2)),
        action("sec-critical-late", severity="critical", apply_by=NOW + dt.timedelta(days=30)),
        action("sec-critical-soon", severity="critical", apply_by=NOW + dt.timedelta(days=3)),
    ])
    actions = up.pending_updates(client, RG, now=NOW)
    stub.assert_no_pending_responses()
    assert [a.service_update for a in actions] == ["sec-critical-soon", "sec-critical-late", "sec-low", "engine-minor"]
    assert [a.security for a in actions] == [True, True, True, False]
    assert actions[0].apply_by == "2026-12-13T12:00:00+00:00"
    assert up.past_due(actions) == []


def test_past_due_only_for_security_updates_after_apply_by() -> None:
    client, _stub = stubbed([
        action("sec-late", apply_by=NOW - dt.timedelta(days=1), status="scheduled"),
        action("sec-no-date"),
        action("engine-late", kind=None, apply_by=NOW - dt.timedelta(days=10)),
    ])
    actions = up.pending_updates(client, RG, now=NOW)
    assert [a.service_update for a in up.past_due(actions)] == ["sec-late"]
    late = next(a for a in actions if a.service_update == "engine-late")
    assert late.past_due is False and late.type == "unspecified"


def test_pages_are_followed() -> None:
    client, stub = stubbed([action("a", apply_by=NOW + dt.timedelta(days=5))],
                           [action("b", apply_by=NOW + dt.timedelta(days=4))])
    assert [a.service_update for a in up.pending_updates(client, RG, now=NOW)] == ["b", "a"]
    stub.assert_no_pending_responses()


def test_empty_group_id_is_a_usage_error() -> None:
    client = boto3.client("elasticache", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with pytest.raises(UsageError, match="--replication-group-id"):
        up.pending_updates(client, "")


def run_cli(monkeypatch: pytest.MonkeyPatch, client: Any, *args: str) -> Any:
    monkeypatch.setattr(cli, "_aws_client", lambda region, service: client)
    return runner.invoke(cli.app, ["updates", *args])


def test_cli_exits_1_and_names_the_past_due_update(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client, _ = stubbed([action("elasticache-redis-7-1-sec-2026-11", severity="critical",
                                apply_by=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
                         action("engine-minor", kind=None, apply_by=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))])
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"replicationGroupId": RG}))
    report = tmp_path / "updates.json"
    result = run_cli(monkeypatch, client, "--stack-outputs", str(outputs), "--json", str(report))
    assert result.exit_code == 1, result.output
    assert "elasticache-redis-7-1-sec-2026-11" in result.output and "past the recommended apply-by" in result.output
    body = json.loads(report.read_text())
    assert body["replicationGroupId"] == RG
    assert body["pastDue"] == ["elasticache-redis-7-1-sec-2026-11"]
    assert [a["service_update"] for a in body["pending"]] == ["elasticache-redis-7-1-sec-2026-11", "engine-minor"]


def test_cli_exits_0_when_nothing_is_past_due(monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = stubbed([])
    result = run_cli(monkeypatch, client, "--replication-group-id", RG)
    assert result.exit_code == 0, result.output
    assert f"{RG}: no pending service updates" in result.output


def test_cli_without_a_group_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_cli(monkeypatch, object())
    assert result.exit_code == 2
    assert "--replication-group-id is required" in result.output
