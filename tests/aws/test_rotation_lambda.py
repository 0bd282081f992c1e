"""The rotation Lambda's four steps (redisops.rotation) against moto and botocore's Stubber.

Secrets Manager is moto: its versions and staging labels are real there; RotateSecret's own part
(an empty AWSPENDING version before createSecret) is tests/support/secrets_rotation.py. ElastiCache is a Stubber (moto has no user
groups and no ModifyUser): every request is checked against botocore's model and the call order.

Proven per step and after partial failures: a rerun of any step converges (the pending value is
created once, setSecret and finishSecret resend the same state), a crash after AWSCURRENT moved
still ends with the old value dropped, a refused new value never becomes AWSCURRENT, and no
secret appears in a log line or a reply.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import boto3
import pytest
import redis
from botocore.stub import Stubber

from redisops import aws as ops
from redisops import rotation as rot
from redisops.errors import OperationError, UsageError
from tests.support import secrets_rotation

REGION = "eu-west-1"
RG = "redisstack-prod-rg"
GROUP = "redisstack-prod-users"
USER_ID = "redisstack-prod-app"
OLD = "Old-password-0123456789abcdef-xyz"
NEW = "New-password-0123456789abcdef-xyz"


def make_secret(sm: Any, document: dict[str, Any] | str) -> str:
    text = document if isinstance(document, str) else json.dumps(document)
    return str(sm.create_secret(Name=f"redisstack/prod/redis-auth-{uuid.uuid4().hex[:6]}", SecretString=text)["ARN"])


def start_rotation(arn: str) -> str:
    return secrets_rotation.start_rotation(arn, REGION)


def stages(sm: Any, arn: str) -> dict[str, list[str]]:
    return dict(sm.describe_secret(SecretId=arn)["VersionIdsToStages"])


def value(sm: Any, arn: str, **which: str) -> dict[str, Any]:
    """The version clients read (AWSCURRENT) unless told otherwise. Named explicitly: moto answers
    GetSecretValue without a stage from its default version, which UpdateSecretVersionStage does
    not move (AWS answers with AWSCURRENT; docs/fidelity.md)."""
    which = which or {"VersionStage": "AWSCURRENT"}
    return dict(json.loads(sm.get_secret_value(SecretId=arn, **which)["SecretString"]))


def group(**overrides: Any) -> dict[str, Any]:
    g = {"ReplicationGroupId": RG, "Status": "available", "TransitEncryptionEnabled": True, "AuthTokenEnabled": False,
         "UserGroupIds": [GROUP], "ClusterEnabled": False, "MemberClusters": [f"{RG}-001", f"{RG}-002"],
         "NodeGroups": [{"NodeGroupId": "0001", "PrimaryEndpoint": {"Address": "master.example", "Port": 6379}}]}
    g.update(overrides)
    return g


class Stubbed:
    """The ElastiCache calls each step makes, queued on a Stubber."""

    def __init__(self, stub: Stubber) -> None:
        self.stub = stub

    def where(self, **overrides: Any) -> None:
        g = group(**overrides)
        self.stub.add_response("describe_replication_groups", {"ReplicationGroups": [g]}, {"ReplicationGroupId": RG})
        if g["UserGroupIds"]:
            self.stub.add_response("describe_user_groups", {"UserGroups": [{"UserGroupId": GROUP,
                                                                            "UserIds": [USER_ID, "x-default"]}]},
                                   {"UserGroupId": GROUP})

    def run(self, sm: Any, b: rot.Backend, config: rot.RotationConfig, arn: str, token: str, step: str,
            passwords: list[str] | None = None) -> str:
        """One step with the calls it makes queued first (createSecret makes none)."""
        if step != "createSecret":
            self.where()
        if passwords:
            self.passwords(passwords)
        return rot.run_step(sm, b, config, arn, token, step)

    def ready(self, user: str = "active", group: str = "active") -> None:
        """The user and its group, waited for before ModifyUser."""
        self.stub.add_response("describe_users", {"Users": [{"UserId": USER_ID, "Status": user}]}, {"UserId": USER_ID})
        self.stub.add_response("describe_user_groups", {"UserGroups": [{"UserGroupId": GROUP, "Status": group}]},
                               {"UserGroupId": GROUP})

    def passwords(self, passwords: list[str]) -> None:
        self.ready()
        self.stub.add_response("modify_user", {"UserId": USER_ID, "Status": "modifying"},
                               {"UserId": USER_ID, "AuthenticationMode": {"Type": "password", "Passwords": passwords}})
        self.stub.add_response("describe_users", {"Users": [{"UserId": USER_ID, "Status": "active"}]},
                               {"UserId": USER_ID})


def rbac_setup(sm: Any, overlap: str = "finish") -> tuple[str, rot.RotationConfig]:
    """The tests below pin the strict mode (rotation.overlap: finish) unless they say otherwise."""
    arn = make_secret(sm, {"username": "app", "password": OLD, "userId": USER_ID})
    return arn, rot.RotationConfig(target="elasticache", secrets={arn: "app"}, replication_group_id=RG,
                                   overlap=overlap)


def backend(ec: Any, verified: list[tuple[str, str]] | None = None) -> rot.ElastiCacheBackend:
    def verify(ep: ops.Endpoint, user: str, password: str) -> None:
        assert ep.tls and ep.host == "master.example"
        if verified is None:
            raise ConnectionError("WRONGPASS")
        verified.append((user, password))
    b = rot.ElastiCacheBackend(ec, RG, verify=verify)
    b.generate = lambda: NEW  # type: ignore[method-assign]
    return b


def test_rbac_four_steps_overlap_then_keep_only_the_new_password(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    verified: list[tuple[str, str]] = []
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, verified)
        assert "AWSPENDING" in rot.run_step(sm, b, config, arn, token, "createSecret")
        assert value(sm, arn, VersionId=token) == {"username": "app", "password": NEW, "userId": USER_ID}
        assert value(sm, arn)["password"] == OLD  # clients still read the old one
        s.where()
        s.passwords([OLD, NEW])
        rot.run_step(sm, b, config, arn, token, "setSecret")
        s.where()
        rot.run_step(sm, b, config, arn, token, "testSecret")
        assert verified == [("app", NEW)]
        assert value(sm, arn)["password"] == OLD
        s.where()
        s.passwords([NEW])
        assert "moved" in rot.run_step(sm, b, config, arn, token, "finishSecret")
        stub.assert_no_pending_responses()
    # AWSPENDING may stay on the new AWSCURRENT version: RotateSecret treats that as finished
    # (it refuses only an AWSPENDING on another version; RotateSecret API reference).
    labels = stages(sm, arn)
    assert "AWSCURRENT" in labels[token] and sum("AWSCURRENT" in v for v in labels.values()) == 1
    assert value(sm, arn)["password"] == NEW and value(sm, arn, VersionStage="AWSPREVIOUS")["password"] == OLD


def test_interval_overlap_keeps_the_previous_password_until_the_next_set_secret(sm: Any) -> None:
    """rotation.overlap: interval (the default): finishSecret only moves AWSCURRENT; the user keeps
    [previous, current] and the next rotation's setSecret replaces them with [current, pending]."""
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm, overlap="interval")
    assert rot.RotationConfig(target="elasticache", secrets={arn: "app"}, replication_group_id=RG).overlap == "interval"
    newer = "Newer-Token-0123456789-abcdef"
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, [])
        token = start_rotation(arn)
        for step, passwords in (("createSecret", None), ("setSecret", [OLD, NEW]), ("testSecret", None),
                                ("finishSecret", None)):  # no ModifyUser at finishSecret
            done = s.run(sm, b, config, arn, token, step, passwords)
        assert "keeps working until the next rotation" in done
        stub.assert_no_pending_responses()
        assert value(sm, arn)["password"] == NEW and value(sm, arn, VersionStage="AWSPREVIOUS")["password"] == OLD
        # Retried after the move: still nothing dropped (idempotent).
        s.where()
        assert "keeps working" in rot.run_step(sm, b, config, arn, token, "finishSecret")
        # The next rotation: its setSecret drops OLD, the value two rotations back.
        b.generate = lambda: newer  # type: ignore[method-assign]
        token2 = start_rotation(arn)
        for step, passwords in (("createSecret", None), ("setSecret", [NEW, newer]), ("testSecret", None),
                                ("finishSecret", None)):
            s.run(sm, b, config, arn, token2, step, passwords)
        stub.assert_no_pending_responses()
    assert value(sm, arn)["password"] == newer and value(sm, arn, VersionStage="AWSPREVIOUS")["password"] == NEW


def test_a_crash_after_set_secret_is_retried_to_the_same_end(sm: Any) -> None:
    """Secrets Manager retries the whole rotation with the same token: createSecret keeps the
    pending value it made, setSecret sends the same two passwords again."""
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, [])
        s.run(sm, b, config, arn, token, "createSecret")
        s.run(sm, b, config, arn, token, "setSecret", [OLD, NEW])
        # ... the function dies here; the retry:
        b.generate = lambda: pytest.fail("a retried createSecret must keep the pending value")  # type: ignore[method-assign]
        assert "exists already" in s.run(sm, b, config, arn, token, "createSecret")
        for step, passwords in (("setSecret", [OLD, NEW]), ("testSecret", None), ("finishSecret", [NEW])):
            s.run(sm, b, config, arn, token, step, passwords)
        stub.assert_no_pending_responses()
    assert value(sm, arn)["password"] == NEW


def test_a_crash_after_awscurrent_moved_still_drops_the_old_password(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, [])
        s.run(sm, b, config, arn, token, "createSecret")
        s.run(sm, b, config, arn, token, "setSecret", [OLD, NEW])
        s.where()
        s.ready()
        stub.add_client_error("modify_user", "ServiceUnavailable", "try later")
        with pytest.raises(Exception, match="ServiceUnavailable"):
            rot.run_step(sm, b, config, arn, token, "finishSecret")
        assert "AWSCURRENT" in stages(sm, arn)[token]  # moved before the failure
        # Every retried step before finishSecret is a no-op now; finishSecret drops the old one.
        for step in ("createSecret", "setSecret", "testSecret"):
            assert "nothing to do" in rot.run_step(sm, b, config, arn, token, step)
        s.where()
        s.passwords([NEW])
        assert "already AWSCURRENT" in rot.run_step(sm, b, config, arn, token, "finishSecret")
        stub.assert_no_pending_responses()


def test_modify_user_waits_for_an_active_user_and_group_and_retries_state_faults(sm: Any) -> None:
    """A user or user group still `modifying` (a deploy's ModifyUserGroup, an earlier attempt):
    setSecret waits for `active` and retries InvalidUserStateFault / InvalidUserGroupStateFault
    within the step instead of failing the rotation."""
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, [])
        b.wait_user = lambda c, uid: ops.wait_user_active(c, uid, poll_s=0)
        rot.run_step(sm, b, config, arn, token, "createSecret")
        s.where()
        stub.add_response("describe_users", {"Users": [{"UserId": USER_ID, "Status": "modifying"}]},
                          {"UserId": USER_ID})  # polled until active
        s.ready()
        stub.add_client_error("modify_user", "InvalidUserGroupStateFault", "user group is modifying")
        s.ready()
        stub.add_client_error("modify_user", "InvalidUserStateFault", "user is modifying")
        s.passwords([OLD, NEW])
        assert "accepts the current and the pending" in rot.run_step(sm, b, config, arn, token, "setSecret")
        stub.assert_no_pending_responses()


def test_state_faults_are_retried_only_until_the_deadline() -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    with Stubber(ec) as stub:
        stub.add_client_error("modify_user", "InvalidUserStateFault", "user is modifying")
        with pytest.raises(Exception, match="InvalidUserStateFault"):
            ops.set_user_passwords(ec, USER_ID, [NEW], wait=lambda c, u: None, group_ids=[GROUP],
                                   wait_group=lambda c, g: None, retry_s=0)
        stub.assert_no_pending_responses()


def test_a_refused_new_password_never_becomes_current(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        b = backend(ec, None)  # the verifier refuses
        s.run(sm, b, config, arn, token, "createSecret")
        s.run(sm, b, config, arn, token, "setSecret", [OLD, NEW])
        s.where()
        with pytest.raises(ConnectionError):
            rot.run_step(sm, b, config, arn, token, "testSecret")
        stub.assert_no_pending_responses()
    assert value(sm, arn)["password"] == OLD and stages(sm, arn)[token] == ["AWSPENDING"]


class TokenGroup:
    """An AUTH-token group seen through the Stubber, and which tokens its nodes accept (the
    verifier). ModifyReplicationGroup semantics (API reference, AuthTokenUpdateStrategy; AWS
    "Modifying the AUTH token on an existing ElastiCache cluster"): ROTATE adds the new token
    beside the current one, SET keeps only the given one and is "allowed only after ROTATE"."""

    TOKEN = {"AuthTokenEnabled": True, "UserGroupIds": []}

    def __init__(self, stub: Stubber, accepted: set[str]) -> None:
        self.stub, self.accepted, self.verified = stub, accepted, 0

    def verify(self, ep: ops.Endpoint, user: str, password: str) -> None:
        assert ep.tls and user == "default"
        self.verified += 1
        if password not in self.accepted:
            raise redis.exceptions.AuthenticationError("WRONGPASS invalid username-password pair")

    def where(self, times: int = 1) -> None:
        for _ in range(times):
            self.stub.add_response("describe_replication_groups",
                                   {"ReplicationGroups": [group(**self.TOKEN)]}, {"ReplicationGroupId": RG})

    def modify(self, strategy: str) -> None:
        self.stub.add_response("modify_replication_group", {"ReplicationGroup": group(**self.TOKEN)},
                               {"ReplicationGroupId": RG, "AuthToken": NEW, "AuthTokenUpdateStrategy": strategy,
                                "ApplyImmediately": True})
        self.where()  # wait_group_available

    def refuse_set(self) -> None:
        self.stub.add_client_error("modify_replication_group", service_error_code="InvalidParameterValue",
                                   service_message="SET is allowed only after ROTATE", http_status_code=400)


def token_setup(sm: Any, ec: Any, stub: Stubber, accepted: set[str]) -> tuple[str, rot.RotationConfig, TokenGroup,
                                                                              rot.ElastiCacheBackend]:
    arn = make_secret(sm, {"username": "default", "password": OLD})
    config = rot.RotationConfig(target="elasticache", secrets={arn: "app"}, replication_group_id=RG)
    g = TokenGroup(stub, accepted)
    b = rot.ElastiCacheBackend(ec, RG, verify=g.verify)
    b.generate = lambda: NEW  # type: ignore[method-assign]
    return arn, config, g, b


def test_token_mode_rotates_then_sets_and_retried_steps_send_nothing_twice(sm: Any) -> None:
    # Secrets Manager retries a failed step with the same token: each retry must converge, and the
    # app (holding OLD until it re-reads) is never refused before finishSecret.
    ec = boto3.client("elasticache", region_name=REGION)
    with Stubber(ec) as stub:
        accepted = {OLD}
        arn, config, g, b = token_setup(sm, ec, stub, accepted)
        token = start_rotation(arn)
        rot.run_step(sm, b, config, arn, token, "createSecret")
        g.where(2)  # _where, then the status check; NEW is refused -> ROTATE
        g.modify("ROTATE")
        rot.run_step(sm, b, config, arn, token, "setSecret")
        accepted.add(NEW)  # what the ROTATE did: both valid
        # The retry (the Lambda died after the ROTATE): the group takes NEW already -> no second ROTATE.
        g.where(2)
        rot.run_step(sm, b, config, arn, token, "setSecret")
        g.where()
        rot.run_step(sm, b, config, arn, token, "testSecret")
        g.where()
        g.modify("SET")
        rot.run_step(sm, b, config, arn, token, "finishSecret")
        accepted.discard(OLD)
        # finishSecret retried after its SET landed: ElastiCache refuses a SET without a ROTATE
        # before it; the group taking NEW means NEW is its only token -> done, no error.
        g.where()
        g.refuse_set()
        assert "no longer works" in rot.run_step(sm, b, config, arn, token, "finishSecret")
        stub.assert_no_pending_responses()
    assert value(sm, arn) == {"username": "default", "password": NEW}


def test_token_mode_never_rotates_or_sets_on_a_guess(sm: Any) -> None:
    # setSecret cannot tell whether the pending token is installed (network down): it fails and is
    # retried, sending no ROTATE. A refused SET while the group does NOT take the pending token is
    # a real error, not "already done".
    ec = boto3.client("elasticache", region_name=REGION)
    with Stubber(ec) as stub:
        arn, config, g, b = token_setup(sm, ec, stub, {OLD})
        token = start_rotation(arn)
        rot.run_step(sm, b, config, arn, token, "createSecret")

        def unreachable(ep: ops.Endpoint, user: str, password: str) -> None:
            raise redis.exceptions.ConnectionError("Timeout connecting to server")

        b.verify = unreachable
        g.where(2)
        with pytest.raises(redis.exceptions.ConnectionError):
            rot.run_step(sm, b, config, arn, token, "setSecret")
        b.verify = g.verify
        g.where()
        g.refuse_set()  # NEW is not taken (probed after the refusal) -> the refusal stands
        with pytest.raises(Exception, match="allowed only after ROTATE"):
            rot.run_step(sm, b, config, arn, token, "finishSecret")
        stub.assert_no_pending_responses()
    assert g.verified == 1  # the probe after the refused SET; the unreachable probe sent nothing


def test_the_protocol_checks_come_before_anything_is_touched(sm: Any) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    b = backend(ec, [])
    with Stubber(ec):  # no ElastiCache call expected: any would fail
        with pytest.raises(UsageError, match="not enabled for rotation"):
            rot.run_step(sm, b, config, arn, str(uuid.uuid4()), "createSecret")
        start_rotation(arn)
        with pytest.raises(UsageError, match="no version"):
            rot.run_step(sm, b, config, arn, str(uuid.uuid4()), "setSecret")
        with pytest.raises(UsageError, match="Step 'rotate'"):
            rot.run_step(sm, b, config, arn, "t", "rotate")
        other = make_secret(sm, "x" * 40)
        with pytest.raises(UsageError, match="not one this function rotates"):
            rot.run_step(sm, b, config, other, "t", "createSecret")


def test_config_round_trips_and_refuses_what_it_cannot_rotate() -> None:
    config = rot.RotationConfig(target="sentinel", secrets={"arn:app": "app", "arn:admin": "admin"},
                                nodes=("10.0.0.1:6379",), sentinels=("10.0.0.1:26379",), admin_secret_arn="arn:admin",
                                ca_cert_pem="-----BEGIN CERTIFICATE-----")
    assert rot.RotationConfig.from_json(config.to_json()) == config
    with pytest.raises(UsageError, match=r"credentials \['monitor'\] cannot be rotated"):
        rot.RotationConfig(target="sentinel", secrets={"a": "monitor"}, nodes=("h:1",), admin_secret_arn="a")
    with pytest.raises(UsageError, match="replicationGroupId is required"):
        rot.RotationConfig(target="elasticache", secrets={"a": "app"})
    with pytest.raises(UsageError, match="expected one of elasticache, sentinel"):
        rot.RotationConfig(target="local", secrets={"a": "app"})


def test_the_handler_logs_and_returns_no_secret(sm: Any, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    ec = boto3.client("elasticache", region_name=REGION)
    arn, config = rbac_setup(sm)
    token = start_rotation(arn)
    monkeypatch.setenv(rot.CONFIG_VARIABLE, config.to_json())
    real_client = boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, **kw: ec if service == "elasticache" else real_client(service, **kw))
    monkeypatch.setattr(ops, "generate_token", lambda *a, **k: NEW)
    monkeypatch.setattr(rot.ElastiCacheBackend, "__init__", _plain_init(rot.ElastiCacheBackend.__init__))
    replies: list[dict[str, str]] = []
    caplog.set_level(logging.INFO, logger="redisops.rotation")
    with Stubber(ec) as stub:
        s = Stubbed(stub)
        for step, passwords in (("createSecret", None), ("setSecret", [OLD, NEW]), ("testSecret", None),
                                ("finishSecret", [NEW])):
            if step != "createSecret":
                s.where()
            if passwords:
                s.passwords(passwords)
            replies.append(rot.handler({"SecretId": arn, "ClientRequestToken": token, "Step": step}, None))
        s.where()
        s.ready()
        # botocore's messages may quote a parameter value: here the password itself.
        stub.add_client_error("modify_user", "InvalidParameterValueException", f"bad password {NEW}")
        with pytest.raises(RuntimeError) as raised:
            rot.handler({"SecretId": arn, "ClientRequestToken": token, "Step": "finishSecret"}, None)
    # What leaves the handler is what the Lambda runtime logs (errorMessage, stackTrace): no secret,
    # and no chained original that would carry one.
    assert str(raised.value) == "finishSecret failed: ClientError"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert [r["step"] for r in replies] == list(rot.STEPS)
    text = caplog.text + json.dumps(replies)
    assert "finishSecret" in caplog.text and "failed" in caplog.text and arn in caplog.text
    assert "ClientError: (message withheld)" in caplog.text
    assert OLD not in text and NEW not in text


def _plain_init(init: Any) -> Any:
    """The handler's backend with the test's verifier (boto3's real one would connect)."""
    def patched(self: Any, elasticache: Any, replication_group_id: str, **kwargs: Any) -> None:
        kwargs["verify"] = lambda ep, user, password: None
        init(self, elasticache, replication_group_id, **kwargs)
    return patched


def test_sentinel_secrets_stay_bare_passwords(sm: Any) -> None:
    """The Sentinel hosts' secrets are the password itself (the TLS renewal timer passes it to
    redis-cli as it is): a rotated version keeps that format."""
    arn = make_secret(sm, "A" * 20 + "b" * 10 + "1" * 10)
    token = start_rotation(arn)
    config = rot.RotationConfig(target="sentinel", secrets={arn: "admin"}, nodes=("127.0.0.1:1",),
                                admin_secret_arn=arn)
    b = rot.SentinelBackend(sm, arn, config.nodes, (), connect=lambda *a: pytest.fail("createSecret connects nowhere"))
    rot.run_step(sm, b, config, arn, token, "createSecret")
    pending = sm.get_secret_value(SecretId=arn, VersionId=token)["SecretString"]
    assert len(pending) == rot.SENTINEL_PASSWORD_LENGTH and pending.isalnum()
    with pytest.raises(OperationError, match="no version of the admin secret is accepted"):
        rot.run_step(sm, rot.SentinelBackend(sm, arn, config.nodes, (), connect=_refuse), config, arn, token,
                     "setSecret")


def _refuse(*_: Any) -> Any:
    raise ConnectionError("WRONGPASS")
