"""The rotation Lambda's Sentinel path on the real rendered topology (3 Redis nodes + 3 Sentinels,
TLS, the ACL files and sentinel.conf the EC2 hosts get), with Secrets Manager on moto.

Proven:
* the app password (the nodes' `default` user and the Sentinels' `default` user): a connection
  opened with the old password keeps working through setSecret and after finishSecret, new
  connections work with old and new between setSecret and finishSecret, only with the new one
  after it; the change survives a restart (ACL SAVE into the node's aclfile, SENTINEL
  FLUSHCONFIG into sentinel.conf);
* the admin password, which the function itself logs in with: a finishSecret that dies half-way
  (some nodes already without the old password, AWSCURRENT already moved) is retried to the end -
  the function never locks itself out;
* no password in any log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from moto import mock_aws

from redisops import rotation as rot
from tests.integration._sentinel_topology import HOST, STEADY, Topology, sentinel_topology
from tests.support.redisproc import have_redis
from tests.support.secrets_rotation import start_rotation

pytestmark = [pytest.mark.skipif(not have_redis(), reason="redis-server not installed"), pytest.mark.slow]
REGION = "eu-west-1"


@pytest.fixture
def topo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with sentinel_topology(tmp_path, tls=True, tuning=STEADY) as t:
        yield t


def addresses(procs: list[Any]) -> tuple[str, ...]:
    return tuple(f"{HOST}:{p.port}" for p in procs)


def logs_in(topo: Topology, port: int, user: str, password: str) -> bool:
    # retry=None: a refused AUTH is final (redis-py would retry it as a ConnectionError, with backoff).
    client = redis.Redis(HOST, port, username=user, password=password, socket_timeout=10, retry=None,
                         **topo.ssl_kwargs())
    try:
        return client.ping() is True
    except redis.AuthenticationError:
        return False
    except redis.exceptions.MasterDownError:
        # AUTH went through on connect; a just-restarted replica (replica-serve-stale-data no)
        # answers MASTERDOWN to PING until it has resynced - the login itself was accepted.
        return True
    finally:
        client.close()


def everywhere(topo: Topology, user: str, password: str) -> list[bool]:
    return [logs_in(topo, p.port, user, password) for p in [*topo.nodes, *topo.sentinels]]


def setup(topo: Topology, sm: Any, overlap: str = "finish") -> tuple[dict[str, str], rot.RotationConfig]:
    arns = {c: str(sm.create_secret(Name=f"redisstack/test/{c}", SecretString=topo.passwords[c])["ARN"])
            for c in ("app", "admin")}
    # The strict mode (rotation.overlap: finish); interval is the test below that says so.
    config = rot.RotationConfig(target="sentinel", overlap=overlap, secrets={arns["app"]: "app", arns["admin"]: "admin"},
                                nodes=addresses(topo.nodes), sentinels=addresses(topo.sentinels), tls=True,
                                ca_cert_pem=topo.tls.ca_cert.read_text(), admin_secret_arn=arns["admin"])
    return arns, config


def backend(sm: Any, config: rot.RotationConfig, connect: rot.Connect | None = None) -> rot.SentinelBackend:
    backend = rot.backend_for(config, sm)
    assert isinstance(backend, rot.SentinelBackend)
    if connect is not None:
        backend.connect = connect
    return backend


def test_app_password_overlaps_then_only_the_new_one_works_and_survives_restarts(
        topo: Topology, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # what Lambda records by default (its application log level is INFO)
    old = topo.passwords["app"]
    before = redis.Redis(HOST, topo.nodes[0].port, username="default", password=old, socket_timeout=10,
                         **topo.ssl_kwargs())
    before.set("rl:{rotation}:k", "1")
    before_sentinel = topo.sentinel_client(0)
    assert before_sentinel.ping() is True  # redis-py connects on first use: authenticate now, with the old one
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arns, config = setup(topo, sm)
        b = backend(sm, config)
        token = start_rotation(arns["app"], REGION)
        rot.run_step(sm, b, config, arns["app"], token, "createSecret")
        new = sm.get_secret_value(SecretId=arns["app"], VersionId=token)["SecretString"]
        rot.run_step(sm, b, config, arns["app"], token, "setSecret")
        assert everywhere(topo, "default", old) == [True] * 6
        assert everywhere(topo, "default", new) == [True] * 6
        assert before.get("rl:{rotation}:k") == b"1"
        rot.run_step(sm, b, config, arns["app"], token, "testSecret")
        rot.run_step(sm, b, config, arns["app"], token, "finishSecret")
        assert sm.get_secret_value(SecretId=arns["app"], VersionStage="AWSCURRENT")["SecretString"] == new
    assert everywhere(topo, "default", old) == [False] * 6
    assert everywhere(topo, "default", new) == [True] * 6
    # Connections authenticated before the rotation are not cut off.
    assert before.get("rl:{rotation}:k") == b"1" and before_sentinel.ping() is True
    # Persisted: a restarted replica reads its aclfile, a restarted Sentinel its sentinel.conf.
    for proc in (topo.nodes[2], topo.sentinels[2]):
        proc.restart()
        assert logs_in(topo, proc.port, "default", new) and not logs_in(topo, proc.port, "default", old)
    before.close()
    before_sentinel.close()
    assert old not in caplog.text and new not in caplog.text


def test_interval_overlap_keeps_the_previous_app_password_until_the_next_rotation(topo: Topology) -> None:
    # rotation.overlap: interval: a client holding the deploy-time REDIS_PASSWORD still logs in after
    # finishSecret; the next rotation's setSecret leaves exactly [current, pending] everywhere.
    old = topo.passwords["app"]
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arns, config = setup(topo, sm, overlap="interval")
        b = backend(sm, config)
        pending: list[str] = []
        for _ in range(2):
            token = start_rotation(arns["app"], REGION)
            for step in rot.STEPS:
                rot.run_step(sm, b, config, arns["app"], token, step)
                if step == "createSecret":
                    pending.append(sm.get_secret_value(SecretId=arns["app"], VersionId=token)["SecretString"])
            if len(pending) == 1:
                assert everywhere(topo, "default", old) == [True] * 6  # the whole interval
                assert everywhere(topo, "default", pending[0]) == [True] * 6
    new, newer = pending
    assert everywhere(topo, "default", old) == [False] * 6
    assert everywhere(topo, "default", new) == [True] * 6 and everywhere(topo, "default", newer) == [True] * 6


def test_admin_rotation_that_dies_in_finish_secret_is_retried_without_lockout(topo: Topology) -> None:
    old = topo.passwords["admin"]
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name=REGION)
        arns, config = setup(topo, sm)
        token = start_rotation(arns["admin"], REGION)
        b = backend(sm, config)
        for step in ("createSecret", "setSecret", "setSecret", "testSecret"):  # setSecret twice: a retry
            rot.run_step(sm, b, config, arns["admin"], token, step)
        new = sm.get_secret_value(SecretId=arns["admin"], VersionId=token)["SecretString"]
        # finishSecret dies after it dropped the old admin password on the first three addresses.
        real = b.connect
        done: list[int] = []

        def dying(host: str, port: int, user: str, password: str) -> Any:
            if len(done) == 3:
                raise ConnectionError("the function was stopped here")
            client = real(host, port, user, password)
            done.append(port)
            return client

        crashing = backend(sm, config, dying)
        with pytest.raises(Exception, match="no version of the admin secret"):
            rot.run_step(sm, crashing, config, arns["admin"], token, "finishSecret")
        assert everywhere(topo, "admin", old) == [False] * 3 + [True] * 3
        # The retry logs in with AWSCURRENT (moved already) everywhere and finishes.
        rot.run_step(sm, b, config, arns["admin"], token, "finishSecret")
    assert everywhere(topo, "admin", old) == [False] * 6
    assert everywhere(topo, "admin", new) == [True] * 6
