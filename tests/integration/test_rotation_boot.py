"""A Sentinel host that boots after a rotation comes up with the current passwords.

The users.acl and sentinel.conf a host fetches from SSM were rendered by `pulumi up`; rotations
change the passwords in Secrets Manager and on the running nodes only. The first-boot lines
(sentinel_hosts.current_password_commands, run here by bash exactly as user data has them, with
the AWS CLI played by tests/support/fake_aws.py, which validates every call against botocore's
model) put the digests of the secrets' current passwords into those files. Then a real
redis-server started from the rewritten users.acl accepts the rotated passwords and refuses the
rendered ones, and the rewritten sentinel.conf carries the same digests.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import redis

from infra.components.sentinel_hosts import current_password_commands, rotated_users
from redis_conf.acl import CREDENTIALS, password_digest, render_acl_file
from redis_conf.sentinel import Endpoint, SentinelTuning, sentinel_conf
from tests.support import fake_aws
from tests.support.redisproc import have_redis, redis_process

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server not installed")
APP_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redisstack/prod/redis/app-AbCdEf"
ADMIN_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redisstack/prod/redis/admin-AbCdEf"


def boot(tmp_path: Path, files: list[Path], current: dict[str, str]) -> list[dict[str, object]]:
    """Run the first-boot lines against `files` with Secrets Manager holding `current`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_aws.install(bindir)
    state, log = tmp_path / "aws-state.json", tmp_path / "aws-calls.log"
    state.write_text(json.dumps({"ssm": {}, "secretsmanager": current}))
    script = "set -euo pipefail\n" + current_password_commands(rotated_users(APP_ARN, ADMIN_ARN), [str(f) for f in files])
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path), "REGION": "eu-west-1",
           "FAKE_AWS_STATE": str(state), "FAKE_AWS_LOG": str(log)}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not set(current.values()) & set((done.stdout + done.stderr).split())  # nothing printed
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_host_booting_after_a_rotation_gets_the_current_passwords(tmp_path: Path) -> None:
    rendered = {c: f"Rendered-{c}-0123456789abcdefghij" for c in CREDENTIALS}
    rotated = {"app": "Rotated-app-0123456789abcdefghijkl", "admin": "Rotated-admin-0123456789abcdefghij"}
    acl, sconf = tmp_path / "users.acl", tmp_path / "sentinel.conf"
    acl.write_text(render_acl_file(rendered))
    sconf.write_text(sentinel_conf(primary=Endpoint("10.0.0.10", 6379), passwords=rendered, tuning=SentinelTuning(),
                                   bind="10.0.0.10"))
    before = sconf.read_text()
    calls = boot(tmp_path, [acl, sconf], {APP_ARN: rotated["app"], ADMIN_ARN: rotated["admin"]})
    assert sorted(c["params"]["SecretId"] for c in calls) == sorted([APP_ARN, ADMIN_ARN])
    text = acl.read_text() + sconf.read_text()
    for credential in ("app", "admin"):
        assert f"#{password_digest(rotated[credential])}" in text
        assert f"#{password_digest(rendered[credential])}" not in text
    # Users that do not rotate keep their rendered digests, and nothing else of sentinel.conf moved.
    for credential in ("monitor", "replica", "sentinel"):
        assert f"#{password_digest(rendered[credential])}" in acl.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), sconf.read_text().splitlines(), strict=True) if a != b]
    assert sorted(a.split()[1] for a, _ in changed) == ["admin", "default"]
    with redis_process(tmp_path / "redis", f"bind 127.0.0.1\naclfile {acl}\n") as rp:
        for user, credential in (("default", "app"), ("admin", "admin")):
            for password, accepted in ((rotated[credential], True), (rendered[credential], False)):
                client = redis.Redis("127.0.0.1", rp.port, username=user, password=password, retry=None)
                try:
                    assert client.ping() is accepted
                except redis.AuthenticationError:
                    assert not accepted
                finally:
                    client.close()


def test_before_any_rotation_the_files_stay_as_rendered(tmp_path: Path) -> None:
    rendered = {c: f"Rendered-{c}-0123456789abcdefghij" for c in CREDENTIALS}
    acl = tmp_path / "users.acl"
    acl.write_text(render_acl_file(rendered))
    before = acl.read_text()
    boot(tmp_path, [acl], {APP_ARN: rendered["app"], ADMIN_ARN: rendered["admin"]})
    assert acl.read_text() == before
