"""Post-deploy checks from inside the VPC: the stack's smoke function and the CI side that calls it.

ElastiCache (and the Sentinel hosts) answer only inside their VPC, so a GitHub-hosted runner cannot
reach them. The AWS targets deploy a small Lambda in the stack's subnets
(infra/components/smoke_function.py) whose handler is `handler` below; CI invokes it through IAM
(`python -m redisops.vpc_smoke invoke ...`) and gets the report back. No runner lives in the VPC and
the runner never holds a Redis credential.

Actions (the event's ``action``):

* ``smoke`` (default): `redisops smoke --stack-outputs outputs.json` - the same code
  (`connection.resolve`, `SmokeRun`, the JSON and JUnit writers), with the same defaults; the
  reply carries the JSON report and the JUnit XML.
* ``functions-load``: `redisops functions load --stack-outputs outputs.json` - FUNCTION LOAD
  REPLACE of the limiter's Redis Functions library with the admin credential
  (ratelimit.functions), then its `ratelimit_version` read back.

The function holds no credential: its environment variable `REDISSTACK_SMOKE` carries the
stack outputs it needs with every secret removed, plus the ARNs of the secrets to read at
invocation time (so a rotated credential is always the current one). The outputs file it builds
for `connection.resolve` lives in a private temporary directory for the length of one invocation.
Replies and logs never contain a password (report redaction, plus the handler's own).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from redisops import connection as rc
from redisops.errors import OperationError, UsageError

CONFIG_VARIABLE = "REDISSTACK_SMOKE"
# Stack outputs the function gets (the rest is not needed to connect or to judge the server).
OUTPUT_KEYS = ("env", "rateLimits", "expectations", "clusterMode", "caCertPem")
# The env-contract variables that carry the application password on some target (ElastiCache:
# REDIS_PASSWORD; Sentinel: also the Sentinels' own AUTH). They are removed from the function's
# configuration and filled from the application secret at invocation time.
APP_PASSWORD_VARIABLES = ("REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD")
SECRET_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET")
ACTIONS = ("smoke", "functions-load")
# What each action is, as a command a person could run with the stack outputs file.
COMMANDS = {"smoke": "redisops smoke --stack-outputs outputs.json",
            "functions-load": "redisops functions load --stack-outputs outputs.json"}
ADMIN_ACTIONS = frozenset({"functions-load"})
# Lambda's synchronous invoke can run up to 900 s; the function's own timeout is set by the
# component (TIMEOUT_S there) and the CI client waits a little longer than that.
INVOKE_READ_TIMEOUT_S = 960

SecretFetch = Callable[[str], str]


def function_config(outputs: Mapping[str, Any], *, app_secret_arn: str, admin_secret_arn: str | None) -> dict[str, Any]:
    """The function's configuration from a target's resolved stack outputs: the outputs it needs
    with every secret-looking env variable removed, and the secret ARNs to read instead. Refuses
    a secret variable it would not know how to fill."""
    picked: dict[str, Any] = {k: outputs[k] for k in OUTPUT_KEYS if k in outputs and outputs[k] is not None}
    env = dict(picked.get("env") or {})
    fill: list[str] = []
    for key in sorted(env):
        if key.upper().endswith(SECRET_SUFFIXES):
            if key not in APP_PASSWORD_VARIABLES:
                raise ValueError(f"smoke function: env variable {key} looks secret and is not the application "
                                 f"password ({', '.join(APP_PASSWORD_VARIABLES)}); it cannot be filled from a secret")
            del env[key]
            fill.append(key)
    picked["env"] = env
    config: dict[str, Any] = {"outputs": picked, "appSecretArn": app_secret_arn, "fillFromAppSecret": fill}
    if admin_secret_arn:
        config["adminSecretArn"] = admin_secret_arn
    elif outputs.get("authMode") == "token":
        config["adminIsApp"] = True
    return config


# --- the Lambda handler ----------------------------------------------------------------------

def _credential(text: str) -> tuple[str | None, str]:
    """(username, password) of a secret string: the ElastiCache secret is JSON {username, password},
    the Sentinel target's secrets are the bare password."""
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("password"), str):
            user = data.get("username")
            return (str(user) if user else None), data["password"]
    return None, text


def _secrets_manager() -> SecretFetch:
    clients: list[Any] = []

    def fetch(arn: str) -> str:
        if not clients:
            import boto3  # in every Lambda Python runtime; not packaged

            clients.append(boto3.client("secretsmanager"))
        return str(clients[0].get_secret_value(SecretId=arn)["SecretString"])
    return fetch


def stack_outputs(config: Mapping[str, Any], action: str, fetch: SecretFetch) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The outputs file's content (what `pulumi stack output --json --show-secrets` would give for
    these keys) and the secrets in it, for redaction."""
    outputs = json.loads(json.dumps(config["outputs"]))
    env: dict[str, Any] = outputs.setdefault("env", {})
    # The user name is the env contract's (REDIS_USERNAME where the target has one): only the
    # password comes from the secret.
    _user, password = _credential(fetch(str(config["appSecretArn"])))
    for key in config.get("fillFromAppSecret", ()):
        env[key] = password
    secrets = [password]
    admin_arn = config.get("adminSecretArn")
    if action in ADMIN_ACTIONS and not config.get("adminIsApp"):
        if not admin_arn:
            raise UsageError(f"{action} needs the admin credential: this stack exports no admin secret "
                             "(adminSecretArn)")
        admin_user, admin_password = _credential(fetch(str(admin_arn)))
        outputs["adminPassword"] = admin_password
        if admin_user:
            env["REDIS_ADMIN_USERNAME"] = admin_user
        secrets.append(admin_password)
    return outputs, tuple(s for s in secrets if s)


def _run_smoke(spec: rc.ConnectionSpec, _role: rc.Role = "app") -> dict[str, Any]:
    from redisops.report import to_json, to_junit
    from redisops.smoke import SmokeOptions, SmokeRun

    report = SmokeRun(spec, SmokeOptions()).run()
    secrets = spec.secrets()
    return {"exitCode": 0 if report.passed else 1, "passed": report.passed,
            "report": json.loads(to_json(report, secrets)), "junit": to_junit(report, secrets)}


def _run_functions_load(spec: rc.ConnectionSpec, role: rc.Role = "admin") -> dict[str, Any]:
    from redisops import functions

    return functions.load(spec, role)


RUNNERS: Mapping[str, Callable[[rc.ConnectionSpec, rc.Role], dict[str, Any]]] = {
    "smoke": _run_smoke, "functions-load": _run_functions_load}


def run_action(action: str, config: Mapping[str, Any], fetch: SecretFetch) -> dict[str, Any]:
    """One action against the stack described by `config` (the function's configuration)."""
    if action not in RUNNERS:
        raise UsageError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
    outputs, secrets = stack_outputs(config, action, fetch)
    try:
        with tempfile.TemporaryDirectory(prefix="redisstack-") as tmp:
            path = Path(tmp) / "outputs.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(outputs, fh)
            # The same resolution as `redisops <command> --stack-outputs outputs.json`.
            spec = rc.resolve(stack_outputs=path, environ={})
            # ElastiCache in token mode has one credential, the token, with full access (it logs in
            # as the built-in `default` user): it is the admin credential there.
            role: rc.Role = "app" if action in ADMIN_ACTIONS and config.get("adminIsApp") else "admin"
            try:
                result = RUNNERS[action](spec, role)
            finally:
                if outputs.get("caCertPem") and spec.ca_cert:  # written by resolve; a warm function lives on
                    Path(spec.ca_cert).unlink(missing_ok=True)
    except (UsageError, OperationError) as exc:
        raise type(exc)(rc.redact(str(exc), secrets=secrets)) from None
    except Exception as exc:  # e.g. a connection error: its text, without any credential
        raise OperationError(rc.redact(f"{type(exc).__name__}: {exc}", secrets=secrets)) from None
    text = json.dumps(result)
    for s in secrets:  # the report writers redact; this is the last line of defence
        text = text.replace(s, "****")
    return dict(json.loads(text))


def handler(event: Mapping[str, Any] | None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point (`redisops.vpc_smoke.handler`). Never raises: the reply says what failed
    (exitCode 2 for bad input or configuration, 1 for a failed check or operation)."""
    started = time.monotonic()
    action = str((event or {}).get("action", "smoke"))
    reply: dict[str, Any] = {"action": action, "command": COMMANDS.get(action, "")}
    try:
        if action not in RUNNERS:
            raise UsageError(f"action {action!r}: expected one of {', '.join(ACTIONS)}")
        raw = os.environ.get(CONFIG_VARIABLE)
        if not raw:
            raise UsageError(f"{CONFIG_VARIABLE} is not set: this function is configured by the stack "
                             "(infra/components/smoke_function.py)")
        reply.update(run_action(action, json.loads(raw), _secrets_manager()))
    except (UsageError, OperationError) as exc:
        reply.update(exitCode=exc.exit_code, passed=False, error=str(exc))
    except Exception as exc:  # the caller gets a reply, not a Lambda stack trace
        reply.update(exitCode=1, passed=False, error=f"{type(exc).__name__}: {exc}")
    reply["durationS"] = round(time.monotonic() - started, 3)
    print(json.dumps({k: v for k, v in reply.items() if k not in ("report", "junit")}))  # the function's log line
    return reply


# --- the CI side: invoke the function, write the reports, exit like the command --------------

def _outputs_file(path: Path) -> dict[str, Any]:
    return rc.load_outputs_file(path)


def lambda_client_for(function_arn: str) -> Any:
    """A Lambda client in the function's own region (from its ARN), that waits as long as the
    function may run and never retries: a retried invoke would run the checks twice. (botocore's
    default read timeout is 60 s and its default retry mode retries read timeouts:
    https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html)"""
    import boto3
    from botocore.config import Config

    parts = function_arn.split(":")
    if len(parts) < 7 or parts[2] != "lambda":
        raise UsageError(f"smokeFunctionArn {function_arn!r}: expected arn:<partition>:lambda:<region>:<account>:function:<name>")
    return boto3.client("lambda", region_name=parts[3], config=Config(
        read_timeout=INVOKE_READ_TIMEOUT_S, connect_timeout=10, retries={"total_max_attempts": 1}))


# The stack key encrypts the function's environment (infra/components/smoke_function.py); Lambda
# decrypts it before the handler runs, through the grant made when the function was created or
# updated, and a key it cannot use fails the invoke itself with one of these (Lambda API Reference,
# Invoke, "Errors": "Lambda was unable to decrypt the environment variables because ..."). What
# each means for this stack, and the fix:
KMS_INVOKE_ERRORS = {
    "KMSAccessDeniedException": "KMS access was denied: the function's grant on the key is gone (revoked, or its "
                                "role replaced outside Pulumi); recreate the function, which makes a new grant with "
                                "the deploy role's permissions (docs/runbooks/rotation.md, step 1)",
    "KMSDisabledException": "the key is disabled: `aws kms enable-key --key-id <stack output kmsKeyArn>`",
    "KMSInvalidStateException": "the key is in an invalid state for Decrypt, usually pending deletion: "
                                "`aws kms cancel-key-deletion --key-id <kmsKeyArn>`, then `aws kms enable-key`",
    "KMSNotFoundException": "the key was not found (deleted): the environment can no longer be decrypted; redeploy "
                            "the function with a key that exists (`pulumi up` sends its whole environment again)",
}


def invoke(function_name: str, action: str, *, lambda_client: Any) -> dict[str, Any]:
    """Synchronous invoke; raises OperationError when the function itself failed (timeout, crash)
    or could not start because its environment cannot be decrypted (KMS_INVOKE_ERRORS)."""
    from botocore.exceptions import ClientError

    from redisops.aws import error_code

    try:
        response = lambda_client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                                        Payload=json.dumps({"action": action}).encode())
    except ClientError as exc:
        code = error_code(exc)
        if code not in KMS_INVOKE_ERRORS:
            raise
        raise OperationError(f"the smoke function {function_name} did not start: {code}, Lambda could not decrypt "
                             f"its environment (encrypted with the stack key): {KMS_INVOKE_ERRORS[code]}") from None
    body = response["Payload"].read()
    if response.get("FunctionError"):
        raise OperationError(f"the smoke function {function_name} failed ({response['FunctionError']}): "
                             f"{body.decode(errors='replace')[:2000]}")
    reply = json.loads(body)
    if not isinstance(reply, dict) or "exitCode" not in reply:
        raise OperationError(f"the smoke function {function_name} answered without an exitCode: {body[:500]!r}")
    return reply


def _write_reports(reply: Mapping[str, Any], json_path: Path | None, junit_path: Path | None) -> None:
    if json_path is not None and "report" in reply:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(reply["report"], indent=2))
    if junit_path is not None and "junit" in reply:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit_path.write_text(str(reply["junit"]))


def _summary(reply: Mapping[str, Any]) -> str:
    lines = [f"{reply.get('command') or reply.get('action')}: exit {reply.get('exitCode')} "
             f"({reply.get('durationS', '?')} s in the VPC)"]
    for check in (reply.get("report") or {}).get("checks", []):
        lines.append(f"  {check.get('status', '?'):>5}  {check.get('name')}: {check.get('actual', '')}")
    for key in ("message", "error"):
        if reply.get(key):
            lines.append(f"  {key}: {reply[key]}")
    return "\n".join(lines)


def preflight(settings_file: Path) -> str:
    """Refuse, before `pulumi up`, a stack whose deploy nothing could verify, and a stack file that
    still holds the example network. Returns what will verify the deploy."""
    from infra.errors import SettingsErrors
    from infra.settings import parse_settings
    from redisops.mockrun import load_stack_config

    if not settings_file.is_file():
        raise UsageError(f"--settings {settings_file}: no such file; expected a Pulumi.<stack>.yaml")
    config, secret_keys = load_stack_config(settings_file)
    raw = {k: v for k, v in config.items() if ":" not in k}
    stack = settings_file.stem.split(".", 1)[-1]
    try:
        settings = parse_settings(raw, secret_keys=frozenset(secret_keys), stack=stack, allow_example_network=False)
    except SettingsErrors as exc:
        raise UsageError(f"--settings {settings_file}: {exc}") from None
    if settings.target == "local":
        return "target local: the runner reaches the containers it starts, `redisops smoke` runs there"
    if not settings.config.smoke.enabled:
        raise UsageError(f"--settings {settings_file}: redisstack:smoke.enabled is false on target "
                         f"{settings.target}: nothing could verify this deploy (the Redis endpoints answer only "
                         "inside the VPC). Expected: pulumi config set redisstack:smoke.enabled true")
    return f"target {settings.target}: the stack's smoke function runs `redisops smoke` inside the VPC"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redisops.vpc_smoke", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inv = sub.add_parser("invoke", help="invoke the stack's smoke function and write its reports")
    inv.add_argument("--stack-outputs", type=Path, required=True,
                     help="JSON of `pulumi stack output --json` (no secrets needed: smokeFunctionArn is read)")
    inv.add_argument("--action", choices=ACTIONS, default="smoke")
    inv.add_argument("--json", type=Path, dest="json_path", help="write the smoke report as JSON here")
    inv.add_argument("--junit", type=Path, help="write the smoke report as JUnit XML here")
    pre = sub.add_parser("preflight", help="fail when nothing could verify a deploy of this stack file")
    pre.add_argument("--settings", type=Path, required=True, help="Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    try:
        if args.command == "preflight":
            print(preflight(args.settings))
            return 0
        outputs = _outputs_file(args.stack_outputs)
        arn = outputs.get("smokeFunctionArn")
        if not arn:
            raise UsageError(f"--stack-outputs {args.stack_outputs}: no smokeFunctionArn output; the stack has no "
                             "smoke function (target local, or redisstack:smoke.enabled false)")
        reply = invoke(str(arn), args.action, lambda_client=lambda_client_for(str(arn)))
        _write_reports(reply, args.json_path, args.junit)
        print(_summary(reply))
        return int(reply["exitCode"])
    except (UsageError, OperationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
