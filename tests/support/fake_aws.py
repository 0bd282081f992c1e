"""A stand-in for the AWS CLI in host scripts under test, checked against botocore's models.

Host scripts (user data, the TLS renewal timer) call `aws <service> <operation> --flag value ...`.
Here there is no AWS, so tests put this on PATH as `aws`: it answers from a JSON state file and
records every call, and it refuses any call the real CLI would send as an invalid request - the
operation and every parameter are validated against the botocore service model that ships with
boto3 (botocore/data/<service>/.../service-2.json), so a misspelt flag or a malformed
`--metric-data` fails the test instead of failing on a host.

State file: {"ssm": {"<name>": "<value>"}, "secretsmanager": {"<id>": "<string>"}}.
Calls are appended to the log as JSON lines {"service", "operation", "params"}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Options of the CLI itself, not API parameters.
GLOBAL_OPTIONS = {"region", "query", "output", "profile", "no-cli-pager"}


def _operation(service_model: Any, command: str) -> Any:
    from botocore import xform_name

    for name in service_model.operation_names:
        if xform_name(name, "-") == command:
            return service_model.operation_model(name)
    raise SystemExit(f"aws: invalid choice: {command!r} for {service_model.service_name}")


def _params(operation: Any, args: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    from botocore import xform_name
    from botocore.validate import ParamValidator

    shape = operation.input_shape
    by_flag = {xform_name(m, "-"): m for m in shape.members}
    params: dict[str, Any] = {}
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag = args[i]
        if not flag.startswith("--"):
            raise SystemExit(f"aws: unexpected argument {flag!r}")
        key = flag[2:]
        if key in GLOBAL_OPTIONS:
            options[key] = args[i + 1]
            i += 2
            continue
        negated = key.startswith("no-") and key[3:] in by_flag
        member = by_flag.get(key[3:] if negated else key)
        if member is None:
            raise SystemExit(f"aws: unknown option {flag} for {operation.name}")
        mshape = shape.members[member]
        if mshape.type_name == "boolean":
            params[member] = not negated
            i += 1
            continue
        raw = args[i + 1]
        params[member] = json.loads(raw) if mshape.type_name in ("list", "structure", "map") else (
            float(raw) if mshape.type_name in ("double", "float") else raw)
        i += 2
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise SystemExit(f"aws: invalid request for {operation.name}: {report.generate_report()}")
    return params, options


def install(bindir: Path) -> Path:
    """Put this double on a PATH directory as `aws` (state and log: FAKE_AWS_STATE, FAKE_AWS_LOG)."""
    root = Path(__file__).resolve().parents[2]
    fake = bindir / "aws"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(root)!r})\n"
                    "from tests.support.fake_aws import main\nsys.exit(main(sys.argv[1:]))\n")
    fake.chmod(0o755)
    return fake


def main(argv: list[str]) -> int:
    import botocore.session

    state_path = Path(os.environ["FAKE_AWS_STATE"])
    log_path = Path(os.environ["FAKE_AWS_LOG"])
    service, command, *rest = argv
    model = botocore.session.get_session().get_service_model(service)
    operation = _operation(model, command)
    params, options = _params(operation, rest)
    with log_path.open("a") as log:
        log.write(json.dumps({"service": service, "operation": operation.name, "params": params,
                              "options": options}) + "\n")
    state = json.loads(state_path.read_text())
    if operation.name == "GetParameter":
        value = state["ssm"].get(params["Name"])
        if value is None:
            sys.stderr.write(f"An error occurred (ParameterNotFound): {params['Name']}\n")
            return 254
        assert options.get("query") == "Parameter.Value" and options.get("output") == "text", options
        sys.stdout.write(value + "\n")
    elif operation.name == "GetSecretValue":
        assert options.get("query") == "SecretString" and options.get("output") == "text", options
        sys.stdout.write(state["secretsmanager"][params["SecretId"]] + "\n")
    elif operation.name == "PutMetricData":
        pass
    else:
        raise SystemExit(f"fake aws: {operation.name} has no answer in this test double")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
