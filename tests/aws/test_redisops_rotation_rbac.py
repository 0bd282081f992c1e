"""RBAC password rotation (redisops.aws.rotate_credential) against botocore's Stubber.

moto has no ElastiCache user groups and no ModifyUser (FIELD-NOTES), so ElastiCache is a Stubber
that checks every request against botocore's model and the exact call order; Secrets Manager is
moto (its AWSCURRENT/AWSPREVIOUS versions are real there).

The rule: an ElastiCache user accepts up to two passwords at once (ModifyUser
AuthenticationMode.Passwords: "up to two", botocore data/elasticache/2015-02-02/service-2.json;
https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html), so a rotation adds
the new password next to the old one, moves the application, verifies, and only then drops the
old one: no client is refused at any moment.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from redisops import aws as ops
from redisops.errors import OperationError, UsageError

REGION = "eu-west-1"
RG = "redisstack-prod-rg"
USER_ID = "redisstack-prod-app"
OLD = "Old-password-0123456789abcdef-xyz"
NEW = "New-password-0123456789abcdef-xyz"


def rbac_group(**overrides: Any) -> dict[str, Any]:
    group = {"ReplicationGroupId": RG, "Status": "available", "TransitEncryptionEnabled": True,
             "AuthTokenEnabled": False, "UserGroupIds": ["redisstack-prod-users"], "ClusterEnabled": False,
             "MemberClusters": [f"{RG}-001", f"{RG}-002"],
             "NodeGroups": [{"NodeGroupId": "0001", "PrimaryEndpoint": {"Address": "master.example", "Port": 6379},
                             "ReaderEndpoint": {"Address": "replica.example", "Port": 6379},
                             "NodeGroupMembers": [{"CacheClusterId": f"{RG}-002", "CurrentRole": "replica"}]}]}
    group.update(overrides)
    return group


def secret(sm: Any, document: dict[str, Any]) -> str:
    return str(sm.create_secret(Name="redisstack/prod/redis-auth-x", SecretString=json.dumps(document))["ARN"])


def expect_start(stub: Stubber, *, users_in_group: tuple[str, ...] = (USER_ID, "redisstack-prod-default")) -> None:
    stub.add_response("describe_replication_groups", {"ReplicationGroups": [rbac_group()]},
                      {"ReplicationGroupId": RG})
    stub.add_response("describe_user_groups", {"UserGroups": [{"UserGroupId": "redisstack-prod-users",
                                                               "UserIds": list(users_in_group)}]},
                      {"UserGroupId": "redisstack-prod-users"})


def expect_passwords(stub: Stubber, passwords: list[str]) -> None:
    # The user and its group are waited for (`active`) before ModifyUser.
    stub.add_response("describe_users", {"Users": [{"UserId": USER_ID, "Status": "active"}]}, {"UserId": USER_ID})
    stub.add_response("describe_user_groups", {"UserGroups": [{"UserGroupId": "redisstack-prod-users",
                                                               "Status": "active"}]},
                      {"UserGroupId": "redisstack-prod-users"})
    stub.add_response("modify_user", {"UserId": USER_ID, "Status": "modifying"},
                      {"UserId": USER_ID, "AuthenticationMode": {"Type": "password", "Passwords": passwords}})
    stub.add_response("describe_users", {"Users": [{"UserId": USER_ID, "Status": "active"}]}, {"UserId": USER_ID})


def test_rbac_rotation_overlaps_both_passwords_then_keeps_only_the_new(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "app", "password": OLD, "userId": USER_ID})
    verified: list[tuple[str, str]] = []
    with Stubber(ec) as stub:
        expect_start(stub)
        expect_passwords(stub, [OLD, NEW])

        def verify(ep: ops.Endpoint, user: str, password: str) -> None:
            # When the new password is tested: the user holds both, the app already reads the new one.
            assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == password == NEW
            assert ep.host == "master.example" and ep.tls
            verified.append((user, password))
            expect_passwords(stub, [NEW])

        result = ops.rotate_credential(ec, sm, RG, arn, verify=verify, generate=lambda: NEW)
        stub.assert_no_pending_responses()
    assert verified == [("app", NEW)]
    assert (result.mode, result.username, result.dry_run, len(result.steps)) == ("rbac", "app", False, 4)
    current = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    assert current == {"username": "app", "password": NEW, "userId": USER_ID}
    previous = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"])
    assert previous["password"] == OLD


def test_a_refused_new_password_puts_everything_back(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "app", "password": OLD, "userId": USER_ID})
    with Stubber(ec) as stub:
        expect_start(stub)
        expect_passwords(stub, [OLD, NEW])
        expect_passwords(stub, [OLD])  # the overlap is undone; the old password never stopped working

        def refuse(*_: Any) -> None:
            raise ConnectionError("WRONGPASS")

        with pytest.raises(OperationError, match="still accepts"):
            ops.rotate_credential(ec, sm, RG, arn, verify=refuse, generate=lambda: NEW)
        stub.assert_no_pending_responses()
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == OLD


def test_dry_run_only_reads(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "app", "password": OLD, "userId": USER_ID})
    with Stubber(ec) as stub:
        expect_start(stub)
        result = ops.rotate_credential(ec, sm, RG, arn, dry_run=True,
                                       verify=lambda *a: pytest.fail("a dry run must not connect"))
        stub.assert_no_pending_responses()
    assert result.dry_run and "[old, new]" in result.steps[0] and "[new]" in result.steps[3]
    assert json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])["password"] == OLD


def test_a_secret_without_user_id_finds_its_user_by_name_in_the_group(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "app", "password": OLD})
    with Stubber(ec) as stub:
        expect_start(stub)
        stub.add_response("describe_users", {"Users": [
            {"UserId": USER_ID, "UserName": "app", "Status": "active"},
            {"UserId": "another-stack-app", "UserName": "app", "Status": "active"}]}, {})
        result = ops.rotate_credential(ec, sm, RG, arn, dry_run=True, verify=lambda *a: None)
    assert USER_ID in result.steps[0]


def test_a_user_outside_the_group_is_refused(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "app", "password": OLD, "userId": "someone-else"})
    with Stubber(ec) as stub:
        expect_start(stub)
        with pytest.raises(UsageError, match=r"not in .*user group"):
            ops.rotate_credential(ec, sm, RG, arn, verify=lambda *a: None)


def test_token_groups_still_rotate_with_rotate_then_set(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn = secret(sm, {"username": "default", "password": OLD})
    token_group = rbac_group(AuthTokenEnabled=True, UserGroupIds=[])
    with Stubber(ec) as stub:
        stub.add_response("describe_replication_groups", {"ReplicationGroups": [token_group]}, {"ReplicationGroupId": RG})
        for strategy in ("ROTATE", "SET"):
            stub.add_response("modify_replication_group", {"ReplicationGroup": token_group},
                              {"ReplicationGroupId": RG, "AuthToken": NEW, "AuthTokenUpdateStrategy": strategy,
                               "ApplyImmediately": True})
            stub.add_response("describe_replication_groups", {"ReplicationGroups": [token_group]},
                              {"ReplicationGroupId": ANY})
        result = ops.rotate_credential(ec, sm, RG, arn, verify=lambda *a: None, generate=lambda: NEW)
        stub.assert_no_pending_responses()
    assert result.mode == "token"
