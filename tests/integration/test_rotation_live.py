"""RBAC password rotation with no refused client, on a real redis-server over TLS.

ElastiCache cannot run here, so its user API is played by a stand-in whose users ARE the ACL
users of a real redis-server: ModifyUser(AuthenticationMode.Passwords=[a, b]) becomes
`ACL SETUSER <name> resetpass >a >b` - what ElastiCache does with a user's "up to two"
passwords (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html). Every
request the rotation sends is first validated against botocore's ElastiCache model. Secrets
Manager is moto. The verification step is the real `verify_with_redis` (TLS, AUTH, PING).

Proven: a connection opened with the old password keeps working through the whole rotation,
new connections authenticate with either password during the overlap and only with the new one
after it, and the secret ends at the new password with the old one as AWSPREVIOUS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import redis
from botocore.validate import ParamValidator
from moto import mock_aws

from redisops import aws as ops
from tests.support.certs import make_tls_files
from tests.support.redisproc import free_port, have_redis, redis_process

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server not installed")

RG, GROUP, USER_ID = "redisstack-prod-rg", "redisstack-prod-users", "redisstack-prod-app"
OLD, NEW = "Old-password-0123456789abcdef-xyz", "New-password-0123456789abcdef-xyz"
MODEL = botocore.session.get_session().get_service_model("elasticache")


class RedisBackedElastiCache:
    """The ElastiCache calls a rotation makes, answered by a real redis-server's ACL."""

    def __init__(self, admin: redis.Redis, port: int) -> None:
        self.admin, self.port = admin, port
        self.users = {USER_ID: "app"}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        report = ParamValidator().validate(params, MODEL.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()
        self.calls.append((operation, params))

    def describe_replication_groups(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeReplicationGroups", params)
        return {"ReplicationGroups": [{
            "ReplicationGroupId": RG, "Status": "available", "TransitEncryptionEnabled": True,
            "AuthTokenEnabled": False, "UserGroupIds": [GROUP], "MemberClusters": [f"{RG}-001"],
            "NodeGroups": [{"PrimaryEndpoint": {"Address": "127.0.0.1", "Port": self.port}}]}]}

    def describe_user_groups(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeUserGroups", params)
        return {"UserGroups": [{"UserGroupId": GROUP, "Status": "active", "UserIds": list(self.users)}]}

    def describe_users(self, **params: Any) -> dict[str, Any]:
        self._call("DescribeUsers", params)
        return {"Users": [{"UserId": uid, "UserName": name, "Status": "active"} for uid, name in self.users.items()
                          if params.get("UserId") in (None, uid)]}

    def modify_user(self, **params: Any) -> dict[str, Any]:
        self._call("ModifyUser", params)
        passwords = params["AuthenticationMode"]["Passwords"]
        assert 1 <= len(passwords) <= 2
        self.admin.execute_command("ACL", "SETUSER", self.users[params["UserId"]], "resetpass",
                                   *[f">{p}" for p in passwords])
        return {"UserId": params["UserId"], "Status": "modifying"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Any]]:
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    conf = "\n".join(["bind 127.0.0.1", "port 0", f"tls-port {port}", f"tls-cert-file {tls.cert}",
                      f"tls-key-file {tls.key}", f"tls-ca-cert-file {tls.ca_cert}", "tls-auth-clients no",
                      "user default off", "user admin on >Admin-0123456789abcdef ~* &* +@all",
                      f"user app on >{OLD} ~* &* +@all -@dangerous", ""])
    with redis_process(tmp_path / "redis", conf, port=port):
        yield port, tls


def connect(port: int, tls: Any, username: str, password: str) -> redis.Redis:
    # retry=None: a refused AUTH is final (redis-py retries it as a ConnectionError, with backoff).
    return redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls.ca_cert), username=username,
                       password=password, socket_timeout=5, retry=None)


def can_log_in(port: int, tls: Any, password: str) -> bool:
    client = connect(port, tls, "app", password)
    try:
        return client.ping() is True
    except redis.AuthenticationError:
        return False
    finally:
        client.close()


def test_rotation_never_refuses_a_client(server: tuple[int, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    port, tls = server
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    admin = connect(port, tls, "admin", "Admin-0123456789abcdef")
    ec = RedisBackedElastiCache(admin, port)
    old_connection = connect(port, tls, "app", OLD)
    old_connection.set("rl:{rotation}:k", "1")
    old_id = old_connection.client_id()
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = sm.create_secret(Name="redis-auth", SecretString=json.dumps(
            {"username": "app", "password": OLD, "userId": USER_ID}))["ARN"]
        during: dict[str, bool] = {}

        def verify(ep: ops.Endpoint, user: str, password: str) -> None:
            during.update(old=can_log_in(port, tls, OLD), new=can_log_in(port, tls, password),
                          kept=old_connection.get("rl:{rotation}:k") == b"1")
            ops.verify_with_redis(ep, user, password, ca_cert=str(tls.ca_cert))

        result = ops.rotate_credential(ec, sm, RG, arn, verify=verify, generate=lambda: NEW)
        current = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
        previous = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")["SecretString"])
    assert result.mode == "rbac"
    assert during == {"old": True, "new": True, "kept": True}
    assert can_log_in(port, tls, NEW) and not can_log_in(port, tls, OLD)
    # The connection authenticated with the old password before the rotation still works.
    assert old_connection.get("rl:{rotation}:k") == b"1" and old_connection.client_id() == old_id
    assert (current["password"], previous["password"]) == (NEW, OLD)
    assert [p["AuthenticationMode"]["Passwords"] for op, p in ec.calls if op == "ModifyUser"] == [[OLD, NEW], [NEW]]
    old_connection.close()
    admin.close()


@pytest.mark.parametrize("overlap", ["interval", "finish"])
def test_the_rotation_lambda_steps_never_refuse_a_client(server: tuple[int, Any], monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture, overlap: str) -> None:
    """The same overlap driven by Secrets Manager's four steps (redisops.rotation): old and new
    between setSecret and finishSecret; after it, `finish` keeps only the new one, `interval` keeps
    the old one too until the next rotation's setSecret. The old connection survives."""
    from redisops import rotation as rot
    from tests.support.secrets_rotation import start_rotation

    port, tls = server
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    caplog.set_level("INFO")
    admin = connect(port, tls, "admin", "Admin-0123456789abcdef")
    ec = RedisBackedElastiCache(admin, port)
    old_connection = connect(port, tls, "app", OLD)
    old_connection.set("rl:{rotation}:k", "1")
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = sm.create_secret(Name="redis-auth", SecretString=json.dumps(
            {"username": "app", "password": OLD, "userId": USER_ID}))["ARN"]
        config = rot.RotationConfig(target="elasticache", secrets={arn: "app"}, replication_group_id=RG,
                                    overlap=overlap)
        backend = rot.ElastiCacheBackend(
            ec, RG, verify=lambda ep, user, pw: ops.verify_with_redis(ep, user, pw, ca_cert=str(tls.ca_cert)),
            wait=lambda *a: None)
        token = start_rotation(arn, "eu-west-1")
        rot.run_step(sm, backend, config, arn, token, "createSecret")
        new = json.loads(sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"])["password"]
        rot.run_step(sm, backend, config, arn, token, "setSecret")
        assert can_log_in(port, tls, OLD) and can_log_in(port, tls, new)
        rot.run_step(sm, backend, config, arn, token, "testSecret")
        rot.run_step(sm, backend, config, arn, token, "finishSecret")
        current = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
        assert current["password"] == new and can_log_in(port, tls, new)
        # A client holding the deploy-time password (REDIS_PASSWORD) reconnects:
        assert can_log_in(port, tls, OLD) is (overlap == "interval")
        modified = [[OLD, new]] if overlap == "interval" else [[OLD, new], [new]]
        assert [p["AuthenticationMode"]["Passwords"] for op, p in ec.calls if op == "ModifyUser"] == modified
        if overlap == "interval":
            # The next rotation's setSecret is where OLD goes: [new, newer].
            token2 = start_rotation(arn, "eu-west-1")
            rot.run_step(sm, backend, config, arn, token2, "createSecret")
            newer = json.loads(sm.get_secret_value(SecretId=arn, VersionId=token2)["SecretString"])["password"]
            rot.run_step(sm, backend, config, arn, token2, "setSecret")
            assert not can_log_in(port, tls, OLD) and can_log_in(port, tls, new) and can_log_in(port, tls, newer)
            modify = [p["AuthenticationMode"]["Passwords"] for op, p in ec.calls if op == "ModifyUser"]
            assert modify == [[OLD, new], [new, newer]]
    assert old_connection.get("rl:{rotation}:k") == b"1"
    assert OLD not in caplog.text and new not in caplog.text
    old_connection.close()
    admin.close()
