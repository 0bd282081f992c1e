"""The ElastiCache posture on a real redis-server: what the prod stack's outputs tell a client
must work against a server configured the way the managed service will be.

The server: TLS only (no plaintext port), the stack's parameter-group values as directives,
no AOF / save points (ElastiCache has none), and the users as ElastiCache sets them up: in RBAC
mode (the default) the stack's users with their access strings and generated passwords and the
`default` user off; in token mode the built-in `default` user with full access and the token -
what ElastiCache does with an AUTH token. The client side is the prod stack's real outputs (run
under mocks), only with the endpoint pointed at loopback.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.components.elasticache import DEFAULT_USER_ACCESS_STRING
from redis_conf.acl import APP_FORBIDDEN_COMMANDS, APP_FORBIDDEN_PUBSUB, APP_FORBIDDEN_SCRIPTING
from tests.support.certs import make_tls_files
from tests.support.pulumi_harness import load_stack_file, run_program
from tests.support.redisproc import free_port, have_redis, redis_process

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]

# Parameter-group entries that are ElastiCache controls, not redis.conf directives.
MANAGED_ONLY = {"reserved-memory-percent", "cluster-enabled"}


def stack_outputs(auth_mode: str) -> dict[str, Any]:
    cfg, secret = load_stack_file("Pulumi.prod.yaml")
    cfg["elasticache"] = {**cfg["elasticache"], "authMode": auth_mode}
    return run_program(cfg, stack="prod", secret_keys=secret).outputs


def server_conf(outputs: dict[str, Any], tls: Any, port: int) -> str:
    token = outputs["redisPassword"]
    lines = [
        "port 0", f"tls-port {port}",
        f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}", f"tls-ca-cert-file {tls.ca_cert}",
        # ElastiCache encrypts in transit but does not ask clients for certificates.
        "tls-auth-clients no",
        "appendonly no", 'save ""', "maxmemory 64mb", "enable-debug-command no",
    ]
    lines += [f"{name} {value}" for name, value in outputs["parameters"].items() if name not in MANAGED_ONLY]
    if outputs["authMode"] == "rbac":
        passwords = {"app": token, "monitor": outputs["monitorPassword"], "admin": outputs["adminPassword"]}
        lines.append(f"user default {DEFAULT_USER_ACCESS_STRING}")
        lines += [f"user {u['userName']} {u['accessString']} >{passwords[u['credential']]}"
                  for u in outputs["rbacUsers"]]
    else:
        # ElastiCache token mode: the token authenticates the built-in default user, which has
        # full access ("on ~* &* +@all", Clusters.RBAC.html: "all authenticated clients have full
        # cache access if their token is authenticated").
        lines.append(f"user default on ~* &* +@all >{token}")
    return "\n".join(lines) + "\n"


def loopback_outputs(outputs: dict[str, Any], port: int) -> dict[str, Any]:
    user = f"{outputs['username']}@" if outputs["authMode"] == "rbac" else ""
    url = f"rediss://{user}127.0.0.1:{port}/0"
    local = json.loads(json.dumps(outputs))
    local.update(primaryEndpoint="127.0.0.1", readerEndpoint="127.0.0.1", port=port, redisUrl=url)
    local["env"]["REDIS_URL"] = url
    return local


@pytest.fixture(scope="module", params=["rbac"])
def posture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    outputs = stack_outputs(request.param)
    workdir = tmp_path_factory.mktemp(f"elasticache-{request.param}")
    tls = make_tls_files(workdir / "tls")
    port = free_port()
    local = loopback_outputs(outputs, port)
    (workdir / "outputs.json").write_text(json.dumps(local))
    with redis_process(workdir / "redis", server_conf(outputs, tls, port), port=port):
        yield local, tls, port, workdir


def _client(local: dict[str, Any], tls: Any, port: int, **kw: Any) -> redis.Redis:
    env = local["env"]
    args: dict[str, Any] = dict(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(tls.ca_cert),
                                ssl_cert_reqs="required", socket_timeout=5, username=env.get("REDIS_USERNAME"),
                                password=env["REDIS_PASSWORD"],
                                # A refusal must surface at once, not after redis-py's default retries.
                                retry=Retry(NoBackoff(), 0))
    args.update(kw)
    return redis.Redis(**args)


def test_outputs_describe_a_tls_endpoint_with_a_strong_token(posture: Any) -> None:
    local, _, port, _ = posture
    env = local["env"]
    assert env["REDIS_URL"].startswith("rediss://") and env["REDIS_URL"].endswith(f"127.0.0.1:{port}/0")
    assert env["REDIS_TLS"] == "true" and len(env["REDIS_PASSWORD"]) >= 32


def test_tls_verified_against_the_ca_and_auth_works(posture: Any) -> None:
    local, tls, port, _ = posture
    c = _client(local, tls, port)
    assert c.ping() is True
    assert c.acl_whoami() == (local["env"].get("REDIS_USERNAME") or "default")
    c.set("rl:{probe}:fw", "1", ex=5)
    assert c.get("rl:{probe}:fw") == b"1"


def test_a_certificate_from_another_ca_is_rejected(posture: Any, tmp_path: Path) -> None:
    local, _, port, _ = posture
    other = make_tls_files(tmp_path / "other")
    with pytest.raises(redis.exceptions.ConnectionError) as err:
        _client(local, other, port).ping()
    assert isinstance(err.value.__context__, ssl.SSLCertVerificationError) or "certificate verify failed" in str(err.value)


def test_plaintext_is_not_served(posture: Any) -> None:
    _, _, port, _ = posture
    plain = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0))
    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        plain.ping()


def test_unauthenticated_and_wrong_token_are_refused(posture: Any) -> None:
    local, tls, port, _ = posture
    anonymous = _client(local, tls, port, username=None, password=None)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("x")
    # Changed, not merely re-spelled: the token alphabet includes "!", so replacing the last
    # character with "!" gave the right token back once in every ~70 runs.
    right = local["env"]["REDIS_PASSWORD"]
    wrong_token = right[:-1] + ("?" if right.endswith("!") else "!")
    assert wrong_token != right
    wrong = _client(local, tls, port, password=wrong_token)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    # The default user exists only because ElastiCache requires it; it cannot log in at all.
    default = _client(local, tls, port, username="default")
    with pytest.raises(redis.exceptions.AuthenticationError):
        default.ping()


@pytest.mark.parametrize("command", APP_FORBIDDEN_COMMANDS)
def test_dangerous_commands_are_refused_for_the_app(posture: Any, command: str) -> None:
    local, tls, port, _ = posture
    conn = _client(local, tls, port).connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() == b"OK"
        args = {"CONFIG": ("GET", "maxmemory"), "DEBUG": ("SLEEP", "0"), "KEYS": ("*",)}.get(command, ())
        conn.send_command(command, *args)
        # DEBUG is switched off server-wide (enable-debug-command no) before ACL is asked.
        refused = "DEBUG command not allowed" if command == "DEBUG" else "NOPERM|no permissions"
        with pytest.raises(redis.exceptions.ResponseError, match=refused):
            conn.read_response()
        conn.send_command("DISCARD")
        conn.read_response()
    finally:
        conn.disconnect()


@pytest.mark.parametrize("command", sorted(APP_FORBIDDEN_SCRIPTING))
def test_the_app_access_string_refuses_lua(posture: Any, command: str) -> None:
    # The RBAC app user's access string, derived from the ACL model: -@scripting +fcall +fcall_ro.
    local, tls, port, _ = posture
    app = _client(local, tls, port)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command(*APP_FORBIDDEN_SCRIPTING[command])
    app.close()


def test_the_app_access_string_refuses_a_sentinel_hello(posture: Any) -> None:
    # The derived access string carries -@pubsub (redis_conf/acl.py APP_PUBSUB_RULES).
    local, tls, port, _ = posture
    app = _client(local, tls, port)
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.execute_command(*APP_FORBIDDEN_PUBSUB["PUBLISH __sentinel__:hello"])
    app.close()


def test_parameter_group_values_are_live(posture: Any) -> None:
    # The app cannot run CONFIG (as on ElastiCache); INFO shows what the parameters set.
    local, tls, port, _ = posture
    info = _client(local, tls, port).info()
    assert info["maxmemory_policy"] == local["parameters"]["maxmemory-policy"]
    assert info["aof_enabled"] == 0


def test_redisops_smoke_passes_with_the_stack_outputs(posture: Any) -> None:
    smoke = pytest.importorskip("redisops.smoke")
    from redisops.connection import load_outputs_file, spec_from_outputs

    _, tls, _, workdir = posture
    outputs = load_outputs_file(workdir / "outputs.json")
    spec = spec_from_outputs(outputs, source="outputs.json", environ={"REDIS_CA_CERT": str(tls.ca_cert)})
    # What the deploy workflow does before smoke: the RBAC admin user loads the library.
    from redisops import functions

    assert functions.load(spec)["state"] == "current"
    report = smoke.run_smoke(spec)
    failed = [(c.name, c.detail) for c in report.checks if c.status not in ("pass", "skip")]
    assert report.passed, failed
    names = {c.name for c in report.checks}
    assert {"tls", "auth-refuses-anonymous", "auth-app-login"} <= names
    assert {f"forbidden:{c}" for c in APP_FORBIDDEN_COMMANDS} <= names


def test_the_monitor_and_admin_users_log_in_with_their_outputs(posture: Any) -> None:
    local, tls, port, _ = posture
    monitor = _client(local, tls, port, username="monitor", password=local["monitorPassword"])
    assert monitor.info("memory")["used_memory"] > 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        monitor.set("rl:{x}:y", "1")
    admin = _client(local, tls, port, username="admin", password=local["adminPassword"])
    assert admin.acl_whoami() == "admin"


def test_token_mode_gives_the_app_credential_everything_so_smoke_fails(tmp_path: Path) -> None:
    # Why RBAC is the default: with an AUTH token the app logs in as `default` with full access,
    # and `redisops smoke` proves it - every forbidden command is accepted.
    smoke = pytest.importorskip("redisops.smoke")
    from redisops.connection import load_outputs_file, spec_from_outputs

    outputs = stack_outputs("token")
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    (tmp_path / "outputs.json").write_text(json.dumps(loopback_outputs(outputs, port)))
    with redis_process(tmp_path / "redis", server_conf(outputs, tls, port), port=port):
        spec = spec_from_outputs(load_outputs_file(tmp_path / "outputs.json"), source="outputs.json",
                                 environ={"REDIS_CA_CERT": str(tls.ca_cert)})
        report = smoke.run_smoke(spec)
    assert not report.passed
    failed = {c.name for c in report.checks if c.status == "fail"}
    assert {f"forbidden:{c}" for c in APP_FORBIDDEN_COMMANDS if c != "DEBUG"} & failed
