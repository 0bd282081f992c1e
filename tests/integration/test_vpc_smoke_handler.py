"""The smoke function's handler against a real TLS redis-server: in-process with Secrets Manager on
moto, and from its packaged files in a clean interpreter that has only what the Lambda Python
runtime provides (the standard library and boto3), as Lambda would run it.

What differs from AWS (docs/delivery.md, "What the tests prove"): Debian's redis-server 7.0 instead
of ElastiCache; moto, or a loopback stand-in answering GetSecretValue's documented JSON shape, instead
of Secrets Manager; CPython 3.11 here instead of the python3.13 runtime.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.components.smoke_function import HANDLER, package_files
from infra.program import expectations
from ratelimit import LIBRARY_RELEASE
from redisops import vpc_smoke
from tests.integration._redisops_servers import (
    SETTINGS,
    Server,
    acl_with,
    new_passwords,
    rendered_server,
    requires_redis,
    smoke_keys,
)

pytestmark = [pytest.mark.slow, requires_redis]
REGION = "eu-west-1"
APP_ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:redisstack/prod/redis-auth-AbCdEf"
ADMIN_ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:redisstack/prod/redis-admin-AbCdEf"
# What the Lambda Python runtime provides besides the standard library: boto3 and its dependencies
# (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html, "Runtime-included SDK versions").
RUNTIME_SDK = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


def function_config_for(srv: Server, *, admin: bool = True) -> dict[str, Any]:
    """What the component hands the function for this server: the outputs without secrets."""
    env = {k: v for k, v in srv.env().items() if k not in ("REDIS_CA_CERT", "REDIS_ADMIN_PASSWORD")}
    outputs = {"env": env, "caCertPem": srv.tls.ca_cert.read_text(),
               "rateLimits": {t.name: {"limit": t.limit, "windowSeconds": t.window_s, "algorithm": t.algorithm,
                                       "failOpen": t.fail_open} for t in SETTINGS.tiers},
               "expectations": expectations(SETTINGS)}
    return vpc_smoke.function_config(outputs, app_secret_arn=APP_ARN, admin_secret_arn=ADMIN_ARN if admin else None)


def assert_smoke_reply(reply: dict[str, Any], srv: Server) -> None:
    assert reply["action"] == "smoke" and reply["command"] == "redisops smoke --stack-outputs outputs.json"
    assert reply["exitCode"] == 0 and reply["passed"] is True, reply.get("error") or [
        (c["name"], c["actual"]) for c in reply["report"]["checks"] if c["status"] != "pass"]
    checks = {c["name"]: c for c in reply["report"]["checks"]}
    assert checks["tls"]["status"] == "pass" and "verified" in checks["tls"]["actual"]
    assert checks["auth-app-login"]["status"] == "pass"
    assert checks["memory-policy"]["actual"] == "allkeys-lru"
    assert {f"ratelimit:{t.name}" for t in SETTINGS.tiers} <= set(checks)
    suite = ET.fromstring(reply["junit"].split("?>", 1)[1])
    assert suite.get("tests") == str(len(checks)) and suite.get("failures") == "0"
    assert {case.get("name") for case in suite.iter("testcase")} == set(checks)
    text = json.dumps(reply)
    for password in srv.passwords.values():
        assert password not in text
    assert smoke_keys(srv) == []


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


def put_secrets(srv: Server) -> tuple[str, str]:
    sm = boto3.client("secretsmanager", region_name=REGION)
    # The ElastiCache target's app secret is JSON {username, password}; the Sentinel target's
    # secrets are the bare password: one of each.
    app = sm.create_secret(Name="redisstack/prod/redis-auth",
                           SecretString=json.dumps({"username": "default", "password": srv.passwords["app"]}))["ARN"]
    admin = sm.create_secret(Name="redisstack/prod/redis-admin", SecretString=srv.passwords["admin"])["ARN"]
    return app, admin


def test_handler_runs_redisops_smoke_against_real_tls_redis(tmp_path: Path, aws_env: None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        app_arn, admin_arn = put_secrets(srv)
        config = {**function_config_for(srv), "appSecretArn": app_arn, "adminSecretArn": admin_arn}
        assert srv.passwords["app"] not in json.dumps(config)
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps(config))
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        reply = vpc_smoke.handler({"action": "smoke"}, None)
        assert_smoke_reply(reply, srv)
        # The outputs file that held the credential is gone with its directory, and the CA file
        # with it (a warm function serves many invocations).
        assert list(scratch.iterdir()) == []


def test_handler_with_a_wrong_app_password_fails_the_login_check_and_says_so(tmp_path: Path, aws_env: None,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        sm = boto3.client("secretsmanager", region_name=REGION)
        arn = sm.create_secret(Name="stale", SecretString=json.dumps({"password": "not-the-password-0123"}))["ARN"]
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps({**function_config_for(srv), "appSecretArn": arn}))
        reply = vpc_smoke.handler({}, None)
        assert reply["exitCode"] == 1 and reply["passed"] is False
        failed = {c["name"] for c in reply["report"]["checks"] if c["status"] == "fail"}
        assert "auth-app-login" in failed
        assert "not-the-password-0123" not in json.dumps(reply)


def test_functions_load_action_loads_the_library_with_the_admin_secret(tmp_path: Path, aws_env: None,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from ratelimit import functions as fn

    with rendered_server(tmp_path / "srv", tls=True, load_functions=False) as srv:
        app_arn, admin_arn = put_secrets(srv)
        # Before the load, smoke fails and names the fix.
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps(
            {**function_config_for(srv), "appSecretArn": app_arn, "adminSecretArn": admin_arn}))
        before = vpc_smoke.handler({"action": "smoke"}, None)
        assert before["exitCode"] == 1 and "redisops functions load" in json.dumps(before["report"])
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps(
            {**function_config_for(srv), "appSecretArn": app_arn, "adminSecretArn": admin_arn}))
        reply = vpc_smoke.handler({"action": "functions-load"}, None)
        assert reply["exitCode"] == 0, reply
        assert reply["command"] == "redisops functions load --stack-outputs outputs.json"
        admin = srv.admin()
        try:
            assert fn.read_version(admin) == fn.library_version() == reply["version"]
        finally:
            admin.close()
        assert_smoke_reply(vpc_smoke.handler({"action": "smoke"}, None), srv)


def test_functions_load_without_an_admin_secret_is_refused_before_connecting(tmp_path: Path, aws_env: None,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        app_arn, _ = put_secrets(srv)
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps(
            {**function_config_for(srv, admin=False), "appSecretArn": app_arn}))
        reply = vpc_smoke.handler({"action": "functions-load"}, None)
        assert reply["exitCode"] == 2 and "admin secret" in reply["error"]



def test_functions_load_on_elasticache_token_mode_uses_the_token(tmp_path: Path, aws_env: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The committed prod stack is ElastiCache with authMode token: one credential, the AUTH token,
    # which logs in as the built-in `default` user with every command (ElastiCache "Authenticating
    # with the Redis AUTH command"). The stack exports no admin secret, so the deploy job's
    # functions-load must run with that token, or prod's first deploy stops there.
    passwords = new_passwords()
    acl = acl_with(passwords, app_line=f"user default on >{passwords['app']} ~* &* +@all")
    with rendered_server(tmp_path / "srv", tls=True, acl_text=acl, passwords=passwords,
                         load_functions=False) as srv:
        sm = boto3.client("secretsmanager", region_name=REGION)
        token_arn = sm.create_secret(Name="redisstack/prod/redis-auth", SecretString=json.dumps(
            {"username": "default", "password": passwords["app"]}))["ARN"]
        env = {k: v for k, v in srv.env().items() if k not in ("REDIS_CA_CERT", "REDIS_ADMIN_PASSWORD")}
        config = vpc_smoke.function_config({"env": env, "caCertPem": srv.tls.ca_cert.read_text(), "authMode": "token"},
                                           app_secret_arn=token_arn, admin_secret_arn=None)
        assert config["adminIsApp"] is True and "adminSecretArn" not in config
        monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps(config))
        reply = vpc_smoke.handler({"action": "functions-load"}, None)
        assert reply["exitCode"] == 0 and reply["passed"] is True, reply
        assert reply["version"] == LIBRARY_RELEASE
        assert passwords["app"] not in json.dumps(reply)

# ---- the packaged files, in a clean interpreter ------------------------------------------------
class _SecretsManager(BaseHTTPRequestHandler):
    """GetSecretValue as the API reference documents it (awsJson1_1: X-Amz-Target
    secretsmanager.GetSecretValue, body {"SecretId"}, reply {"ARN", "Name", "SecretString", ...}):
    https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html"""

    secrets: dict[str, str] = {}
    asked: list[tuple[str, str]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        self.asked.append((target, body.get("SecretId", "")))
        if target == "secretsmanager.GetSecretValue" and body.get("SecretId") in self.secrets:
            status, reply = 200, {"ARN": body["SecretId"], "Name": "x", "VersionId": "v1",
                                  "SecretString": self.secrets[body["SecretId"]], "VersionStages": ["AWSCURRENT"]}
        else:
            status, reply = 400, {"__type": "ResourceNotFoundException", "message": "no such secret"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def secrets_manager(secrets: dict[str, str]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A loopback endpoint; yields its URL and the (target, SecretId) of every request it got."""
    asked: list[tuple[str, str]] = []
    handler = type("Handler", (_SecretsManager,), {"secrets": secrets, "asked": asked})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def stage(files: dict[str, Path], task: Path) -> None:
    """The function's files as Lambda unpacks them into /var/task."""
    for name, source in files.items():
        target = task / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def runtime_sdk(into: Path) -> Path:
    into.mkdir()
    for name in RUNTIME_SDK:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is not installed"
        origin = Path(spec.origin)
        src = origin.parent if origin.name == "__init__.py" else origin
        (into / src.name).symlink_to(src, target_is_directory=src.is_dir())
    return into


CHILD = """
import json, sys
sys.path[:0] = [{task!r}, {sdk!r}]
handler_module, handler_name = {handler!r}.rsplit(".", 1)
module = __import__(handler_module, fromlist=[handler_name])
reply = getattr(module, handler_name)({{"action": {action!r}}}, None)
import redis
print(json.dumps({{"reply": reply, "redis": redis.__file__, "path": sys.path}}))
"""


def test_packaged_function_runs_in_a_clean_interpreter_with_only_the_runtime_sdk(tmp_path: Path) -> None:
    task = tmp_path / "task"
    stage(package_files(), task)
    sdk = runtime_sdk(tmp_path / "sdk")
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        config = function_config_for(srv)
        secrets = {APP_ARN: json.dumps({"username": "default", "password": srv.passwords["app"]}),
                   ADMIN_ARN: srv.passwords["admin"]}
        with secrets_manager(secrets) as (endpoint, asked):
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
                   vpc_smoke.CONFIG_VARIABLE: json.dumps(config), "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
                   "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
            code = CHILD.format(task=str(task), sdk=str(sdk), handler=HANDLER, action="smoke")
            # -I -S: no site-packages, no PYTHON* variables, no user site: the task dir and the SDK only.
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True,
                                  timeout=240, cwd=task, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        # Nothing but the task directory, the SDK and the standard library was importable.
        assert not any("site-packages" in p for p in result["path"]), result["path"]
        assert result["redis"] == str(task / "redis" / "__init__.py")
        assert_smoke_reply(result["reply"], srv)
        # Least privilege in action: it asked only for the application secret (smoke needs no admin).
        assert asked == [("secretsmanager.GetSecretValue", APP_ARN)]
        assert srv.passwords["app"] not in proc.stdout + proc.stderr


def test_packaged_function_runs_functions_load_in_a_clean_interpreter(tmp_path: Path) -> None:
    # The deploy job's first invocation (`--action functions-load`) takes its own import path
    # (ratelimit.functions and what that imports, lazily): it must resolve from the package and the
    # runtime's SDK alone, like smoke above.
    task = tmp_path / "task"
    stage(package_files(), task)
    sdk = runtime_sdk(tmp_path / "sdk")
    with rendered_server(tmp_path / "srv", tls=True, load_functions=False) as srv:
        secrets = {APP_ARN: json.dumps({"username": "default", "password": srv.passwords["app"]}),
                   ADMIN_ARN: srv.passwords["admin"]}
        with secrets_manager(secrets) as (endpoint, asked):
            env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
                   vpc_smoke.CONFIG_VARIABLE: json.dumps(function_config_for(srv)),
                   "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
            code = CHILD.format(task=str(task), sdk=str(sdk), handler=HANDLER, action="functions-load")
            proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], env=env, capture_output=True, text=True,
                                  timeout=240, cwd=task, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reply = json.loads(proc.stdout.strip().splitlines()[-1])["reply"]
        assert reply["command"] == "redisops functions load --stack-outputs outputs.json"
        assert "No module named" not in str(reply.get("error")), reply
        assert reply["exitCode"] == 0 and reply["passed"] is True, reply
        assert reply["version"] == LIBRARY_RELEASE
        assert asked == [("secretsmanager.GetSecretValue", APP_ARN), ("secretsmanager.GetSecretValue", ADMIN_ARN)]
        for password in srv.passwords.values():
            assert password not in proc.stdout + proc.stderr
