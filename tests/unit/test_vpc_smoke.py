"""redisops.vpc_smoke without a server: the function's configuration, the handler's refusals, the
CI side of the invoke (against botocore's Stubber) and the preflight that runs before `pulumi up`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.response import StreamingBody
from botocore.stub import Stubber
from typer.main import get_command

from infra.components.smoke_function import TIMEOUT_S
from redisops import vpc_smoke
from redisops.cli import app
from redisops.errors import OperationError, UsageError
from redisops.smoke import SmokeOptions

ROOT = Path(__file__).resolve().parents[2]
ARN = "arn:aws:lambda:eu-central-1:123456789012:function:smoke-fn-1a2b3c4"
OUTPUTS = {"env": {"REDIS_URL": "rediss://master.x.cache.amazonaws.com:6379/0", "REDIS_PASSWORD": "s3cret-s3cret-s3cret",
                   "REDIS_TLS": "true", "RATE_LIMIT_AUTH": "30,60"},
           "rateLimits": {"auth": {"limit": 30, "windowSeconds": 60, "algorithm": "gcra", "failOpen": False}},
           "expectations": {"maxmemoryPolicy": "allkeys-lru", "appendonly": False},
           "redisPassword": "s3cret-s3cret-s3cret", "authSecretArn": "arn:...:secret:x", "authMode": "token"}


# ---- configuration -------------------------------------------------------------------------------
def test_configuration_keeps_what_smoke_needs_and_no_secret() -> None:
    config = vpc_smoke.function_config(OUTPUTS, app_secret_arn="arn:app", admin_secret_arn=None)
    assert "s3cret-s3cret-s3cret" not in json.dumps(config)
    assert set(config["outputs"]) == {"env", "rateLimits", "expectations"}
    assert config["fillFromAppSecret"] == ["REDIS_PASSWORD"]
    assert config["appSecretArn"] == "arn:app" and "adminSecretArn" not in config
    # ElastiCache token mode: the token is the only credential, with full access.
    assert config["adminIsApp"] is True
    rbac = vpc_smoke.function_config({**OUTPUTS, "authMode": "rbac"}, app_secret_arn="a", admin_secret_arn="b")
    assert rbac["adminSecretArn"] == "b" and "adminIsApp" not in rbac


def test_a_secret_variable_it_could_not_fill_is_refused() -> None:
    outputs = {**OUTPUTS, "env": {**OUTPUTS["env"], "REDIS_MONITOR_PASSWORD": "x"}}
    with pytest.raises(ValueError, match="REDIS_MONITOR_PASSWORD"):
        vpc_smoke.function_config(outputs, app_secret_arn="a", admin_secret_arn=None)


def test_secrets_fill_the_outputs_in_both_secret_formats() -> None:
    config = vpc_smoke.function_config({**OUTPUTS, "env": {**OUTPUTS["env"], "REDIS_SENTINEL_PASSWORD": "x"},
                                        "authMode": "rbac"}, app_secret_arn="app", admin_secret_arn="admin")
    secrets = {"app": json.dumps({"username": "app", "password": "app-pw-0123456789"}), "admin": "admin-pw-0123456789"}
    outputs, found = vpc_smoke.stack_outputs(config, "functions-load", secrets.__getitem__)
    assert outputs["env"]["REDIS_PASSWORD"] == outputs["env"]["REDIS_SENTINEL_PASSWORD"] == "app-pw-0123456789"
    assert outputs["adminPassword"] == "admin-pw-0123456789"
    assert set(found) == {"app-pw-0123456789", "admin-pw-0123456789"}
    # smoke does not read the admin secret at all.
    asked: list[str] = []
    vpc_smoke.stack_outputs(config, "smoke", lambda arn: asked.append(arn) or secrets[arn])
    assert asked == ["app"]


def test_the_lambda_runs_smoke_with_the_clis_defaults() -> None:
    smoke = get_command(app).commands["smoke"]  # type: ignore[attr-defined]
    defaults = {p.name: p.default for p in smoke.params}
    options = SmokeOptions()
    assert options.concurrency == defaults["concurrency"]
    assert set(defaults) >= {"concurrency"} and "no_script_flush" not in defaults  # dropped with issue 12



def test_the_reply_is_redacted_of_every_secret_not_just_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    # The last line of defence of run_action: whatever a runner puts in its reply (a message quoting
    # a server error, say), no credential the invocation read may leave the function.
    secrets = {"arn:app": "app-pass-0123456789abcdef", "arn:admin": "admin-pass-0123456789abcdef"}
    config = vpc_smoke.function_config(OUTPUTS, app_secret_arn="arn:app", admin_secret_arn="arn:admin")

    def leaky(_spec: Any, _role: Any) -> dict[str, Any]:
        return {"exitCode": 1, "passed": False, "message": "ERR app-pass-0123456789abcdef / admin-pass-0123456789abcdef"}

    monkeypatch.setitem(vpc_smoke.RUNNERS, "functions-load", leaky)  # type: ignore[index]
    reply = vpc_smoke.run_action("functions-load", config, secrets.__getitem__)
    text = json.dumps(reply)
    assert reply["message"] == "ERR **** / ****", text
    assert not [s for s in secrets.values() if s in text]

# ---- the handler's refusals ----------------------------------------------------------------------
def test_handler_without_its_configuration_answers_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(vpc_smoke.CONFIG_VARIABLE, raising=False)
    reply = vpc_smoke.handler({"action": "smoke"})
    assert reply["exitCode"] == 2 and vpc_smoke.CONFIG_VARIABLE in reply["error"]


def test_handler_refuses_an_unknown_action(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(vpc_smoke.CONFIG_VARIABLE, json.dumps({"outputs": {}, "appSecretArn": "a"}))
    reply = vpc_smoke.handler({"action": "flushall"})
    assert reply["exitCode"] == 2 and "expected one of smoke, functions-load" in reply["error"]


# ---- the CI side -------------------------------------------------------------------------------
def stubbed(reply: dict[str, Any] | None, *, function_error: str | None = None) -> tuple[Any, Stubber]:
    client = boto3.client("lambda", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    body = json.dumps(reply).encode()
    response: dict[str, Any] = {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}
    if function_error:
        response["FunctionError"] = function_error
    stub.add_response("invoke", response, {"FunctionName": ARN, "InvocationType": "RequestResponse",
                                           "Payload": json.dumps({"action": "smoke"}).encode()})
    return client, stub


REPORT = {"command": "smoke", "checks": [{"name": "tls", "status": "pass", "actual": "TLSv1.3 verified"}]}


def test_invoke_returns_the_reply_and_the_reports_are_written(tmp_path: Path) -> None:
    client, stub = stubbed({"action": "smoke", "exitCode": 1, "passed": False, "report": REPORT,
                            "junit": "<?xml version='1.0'?>\n<testsuite/>\n"})
    with stub:
        reply = vpc_smoke.invoke(ARN, "smoke", lambda_client=client)
    stub.assert_no_pending_responses()
    vpc_smoke._write_reports(reply, tmp_path / "r" / "smoke.json", tmp_path / "r" / "smoke.xml")
    assert json.loads((tmp_path / "r" / "smoke.json").read_text()) == REPORT
    assert (tmp_path / "r" / "smoke.xml").read_text().endswith("<testsuite/>\n")
    assert "TLSv1.3 verified" in vpc_smoke._summary(reply)


def test_a_function_error_fails_the_step_with_its_message() -> None:
    client, stub = stubbed({"errorMessage": "Task timed out after 300.00 seconds"}, function_error="Unhandled")
    with stub, pytest.raises(OperationError, match="Task timed out"):
        vpc_smoke.invoke(ARN, "smoke", lambda_client=client)


@pytest.mark.parametrize("code", sorted(vpc_smoke.KMS_INVOKE_ERRORS))
def test_an_environment_lambda_cannot_decrypt_fails_the_step_with_the_fix(code: str) -> None:
    client = boto3.client("lambda", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")
    # The codes are Invoke's own errors in the shipped botocore model (Lambda API Reference, Invoke).
    assert code in {shape.name for shape in client.meta.service_model.operation_model("Invoke").error_shapes}
    stub = Stubber(client)
    stub.add_client_error("invoke", service_error_code=code, http_status_code=502,
                          service_message="Lambda was unable to decrypt the environment variables")
    with stub, pytest.raises(OperationError) as err:
        vpc_smoke.invoke(ARN, "smoke", lambda_client=client)
    assert str(err.value) == (f"the smoke function {ARN} did not start: {code}, Lambda could not decrypt its "
                              f"environment (encrypted with the stack key): {vpc_smoke.KMS_INVOKE_ERRORS[code]}")
    assert err.value.exit_code == OperationError("x").exit_code


def test_other_invoke_errors_are_not_dressed_up_as_kms() -> None:
    from botocore.exceptions import ClientError

    client = boto3.client("lambda", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    stub.add_client_error("invoke", service_error_code="ResourceNotFoundException", http_status_code=404)
    with stub, pytest.raises(ClientError, match="ResourceNotFoundException"):
        vpc_smoke.invoke(ARN, "smoke", lambda_client=client)


def test_the_client_never_retries_and_outwaits_the_function() -> None:
    client = vpc_smoke.lambda_client_for(ARN)
    # botocore retries read timeouts by default; a second invoke would run the checks twice.
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert client.meta.config.read_timeout > TIMEOUT_S
    assert client.meta.region_name == "eu-central-1"  # the function's own region, from its ARN
    with pytest.raises(UsageError, match="smokeFunctionArn"):
        vpc_smoke.lambda_client_for("smoke-fn")


def test_main_without_a_smoke_function_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"target": "local"}))
    assert vpc_smoke.main(["invoke", "--stack-outputs", str(outputs)]) == 2
    assert "no smokeFunctionArn output" in capsys.readouterr().err


# ---- preflight (before `pulumi up`) -------------------------------------------------------------
def stack_file(tmp_path: Path, **changes: Any) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    doc["config"]["redisstack:network"] = {"vpcId": "vpc-0123456789abcdef0",
                                           "subnetIds": ["subnet-0123456789abcdef1", "subnet-0123456789abcdef2"],
                                           "appSecurityGroupIds": ["sg-0123456789abcdef4"]}
    for key, value in changes.items():
        doc["config"][f"redisstack:{key}"] = value
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_preflight_passes_a_real_network_with_the_smoke_function(tmp_path: Path) -> None:
    assert "smoke function" in vpc_smoke.preflight(stack_file(tmp_path))


def test_preflight_refuses_a_deploy_nothing_could_verify(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"smoke\.enabled is false .* nothing could verify"):
        vpc_smoke.preflight(stack_file(tmp_path, smoke={"enabled": False}))


def test_preflight_names_the_keys_of_the_example_network() -> None:
    with pytest.raises(UsageError) as exc:
        vpc_smoke.preflight(ROOT / "Pulumi.prod.yaml")
    for key in ("network.vpcId", "network.subnetIds", "network.appSecurityGroupIds"):
        assert f"redisstack:{key}" in str(exc.value)


def test_preflight_of_the_local_target_needs_no_function() -> None:
    assert "runner" in vpc_smoke.preflight(ROOT / "Pulumi.dev.yaml")
