"""Generate the README's config reference from the settings model, and docs/security.md's
versions table from infra/versions.py, so they cannot drift.

    python -m infra.docgen          # print the tables
    python -m infra.docgen --write  # rewrite the generated blocks in README.md and docs/security.md
A test fails when either is out of date.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from infra import versions
from infra.envcontract import env_contract, redis_url
from infra.errors import NAMESPACE
from infra.settings import StackConfig
from ratelimit.tiers import DEFAULT_TIERS

README = Path(__file__).resolve().parent.parent / "README.md"
SECURITY = README.parent / "docs" / "security.md"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin is None:
        if isinstance(annotation, type):
            return {"str": "string", "int": "integer", "bool": "boolean", "SecretStr": "secret string"}.get(
                annotation.__name__, annotation.__name__)
        return str(annotation)
    name = getattr(origin, "__name__", str(origin))
    if name == "Literal":
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if name in ("tuple", "list"):
        return "list of " + _type_name(args[0]).removeprefix("Annotated")
    if name == "dict":
        return "map"
    if name in ("Union", "UnionType"):
        return " or ".join(_type_name(a) for a in args)
    if name == "Annotated":
        return _type_name(args[0])
    return name


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(object)"
    if value is None:
        return "-"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, tuple | list | dict) and not value:
        return "-"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, key + "."))
            continue
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{NAMESPACE}:{key}` | {_type_name(annotation)} | {_default(field)} | {desc} |")
    return rows


def config_table() -> str:
    head = ["| key | type | default | meaning |", "|---|---|---|---|"]
    return "\n".join(head + _rows(StackConfig, ""))


def env_table() -> str:
    env = env_contract(url=redis_url("<host>", 6379, tls=True), password="<secret>", tls=True, timeout_ms=5000,
                       tiers=DEFAULT_TIERS)
    meaning = {
        "REDIS_ENABLED": "Enable/disable Redis", "REDIS_URL": "Connection URL (rediss:// with TLS); never "
        "holds the password", "REDIS_PASSWORD": "Password / AUTH token (a Pulumi secret)",
        "REDIS_TLS": "TLS on/off", "REDIS_TIMEOUT": "Connection timeout (ms)",
        "RATE_LIMIT_MODE": "Rate limit implementation",
    }
    rows = ["| variable | example | meaning |", "|---|---|---|"]
    for key, value in env.items():
        tier = next((t for t in DEFAULT_TIERS if t.env_name == key), None)
        text = meaning.get(key) or (f"{tier.name} tier: {tier.limit} requests per {tier.window_s} s "
                                    f"({tier.algorithm}, fail-{'open' if tier.fail_open else 'closed'})"
                                    if tier else "")
        rows.append(f"| `{key}` | `{value}` | {text} |")
    return "\n".join(rows)


# What each stack output means; a test fails when an output has no entry here.
OUTPUT_DOCS: dict[str, str] = {
    "env": "the env contract above (holds REDIS_PASSWORD)",
    "redisUrl": "REDIS_URL without credentials",
    "target": "the target this stack deploys",
    "rateLimits": "the effective tiers (limit, window, algorithm, fail policy)",
    "expectations": "what `redisops smoke/health` hold the server to (policy, AOF, maxmemory)",
    "tls": "TLS on/off",
    "engine": "redis or valkey", "engineVersion": "engine version",
    "caCertPem": "CA that signed the server certificate (clients verify against it)",
    "adminPassword": "operator (ACL `admin`) password, for `redisops backup/restore` and loading functions",
    "monitorPassword": "read-only introspection (ACL `monitor`) password: redis_exporter, monitoring tools",
    "redisPassword": "the app password (RBAC user `app`) or the AUTH token",
    "sentinelPassword": "password Sentinels require from clients",
    "bindAddress": "host address the local ports are published on",
    "exposedBeyondLoopback": "true when a local port is reachable from other machines",
    "exporterUrl": "redis_exporter metrics URL", "prometheusUrl": "Prometheus URL",
    "grafanaUrl": "Grafana URL", "grafanaAdminUser": "Grafana admin user",
    "grafanaAdminPassword": "Grafana admin password",
    "networkName": "the private Docker network",
    "redisConf": "the redis.conf the container reads (no secrets; shown so reviews see its diff)", "topology": "single or sentinel",
    "primaryEndpoint": "primary endpoint (cluster mode off; cluster mode has `configurationEndpoint` only)",
    "configurationEndpoint": "cluster mode: the configuration endpoint cluster clients start from "
                             "(REDIS_CLUSTER=true)", "readerEndpoint": "reader endpoint over the replicas (cluster mode off)",
    "port": "Redis port", "replicationGroupId": "replication group id (auto-named)",
    "memberClusterIds": "member clusters the alarms watch", "clusterMode": "cluster mode on/off",
    "authMode": "rbac (default) or token", "username": "ACL user the app logs in as (RBAC) or default",
    "rbacUsers": "RBAC users: credential, user id, user name and access string (ACL model minus ElastiCache's "
                 "restricted commands); no passwords",
    "monitorSecretArn": "Secrets Manager secret of the monitor password (RBAC)",
    "authSecretArn": "Secrets Manager secret holding the app credential",
    "securityGroupId": "the Redis security group", "subnetGroupName": "cache subnet group",
    "parameterGroupName": "parameter group (auto-named)", "parameterFamily": "redis7 / valkey7 / valkey8",
    "parameters": "parameters derived from redis_conf/redis.conf",
    "redisConfReport": "every redis.conf directive and its ElastiCache fate (parameter or managed equivalent)",
    "kmsKeyArn": "customer KMS key (at-rest encryption, secrets, logs, Lambda environment variables, alarm topic)",
    "alarmNames": "CloudWatch alarms from the thresholds table",
    "alarmTopicArn": "SNS topic alarms notify (KMS-encrypted)",
    "eventsTopicArn": "SNS topic of ElastiCache events: failover, node replacement, snapshot failure (unencrypted: "
                      "ElastiCache cannot publish to an encrypted topic)",
    "logGroups": "every KMS-encrypted CloudWatch Logs group of the stack (slow and engine log or the hosts' "
                 "metrics; the smoke function's)",
    "sentinelUrl": "REDIS_URL for Sentinel discovery", "sentinelEndpoints": "host:port of each Sentinel",
    "masterName": "the name Sentinels monitor", "sentinelTuning": "down-after, failover timeout, quorum, ...",
    "redisNodes": "host:port of each Redis node", "instanceIds": "EC2 instances",
    "availabilityZones": "AZ of each host", "appSecretArn": "Secrets Manager secret of the app password",
    "adminSecretArn": "Secrets Manager secret of the admin password (RBAC, sentinel)",
    "smokeFunctionName": "Lambda CI invokes after `pulumi up`: `redisops smoke` inside the VPC (docs/delivery.md)",
    "smokeFunctionArn": "ARN of the smoke function (grant `lambda:InvokeFunction` on it to the deploy role)",
    "rotationFunctionName": "Lambda Secrets Manager calls to rotate the credential secrets (docs/runbooks/rotation.md)",
    "rotationDays": "Days between automatic rotations of every credential secret (`rotation.days`)",
    "parameterPrefix": "SSM path holding the hosts' rendered files (SecureString)",
    "metricNamespace": "CloudWatch namespace of the hosts' own metrics (`redisstack/<project>/<stack>`: one per stack)",
}
EXAMPLE_STACKS = ("dev", "prod", "prod-sentinel")
# Variants whose outputs differ from their stack's, shown as their own column value.
EXAMPLE_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "prod (clusterMode)": ("prod", {"elasticache": {"clusterMode": True}}),
}


def stack_outputs() -> dict[str, dict[str, bool]]:
    """output name -> {stack: secret?} from the example stacks run under mocks."""
    from redisops.mockrun import load_stack_config, run_program

    found: dict[str, dict[str, bool]] = {}
    runs: list[tuple[str, str, dict[str, Any]]] = [(stack, stack, {}) for stack in EXAMPLE_STACKS]
    runs += [(label, stack, changes) for label, (stack, changes) in EXAMPLE_VARIANTS.items()]
    for label, stack, changes in runs:
        config, secret_keys = load_stack_config(README.parent / f"Pulumi.{stack}.yaml")
        for key, sub in changes.items():
            config[key] = {**config.get(key, {}), **sub}
        run = run_program(config, stack=stack, secret_keys=secret_keys, deterministic=True)
        for name in run.outputs:
            found.setdefault(name, {})[label] = name in run.secret_outputs
    return found


def _stack_labels(stacks: dict[str, bool]) -> list[str]:
    """A variant is named only where its outputs differ from its stack's: `prod (clusterMode)` for an
    output only it has, `prod (clusterMode off)` for one only the plain stack has."""
    labels = list(stacks)
    for label, (stack, _) in EXAMPLE_VARIANTS.items():
        if label in stacks and stack in stacks:
            labels.remove(label)
        elif stack in stacks:
            labels[labels.index(stack)] = label.replace(")", " off)")
    return labels


def outputs_table() -> str:
    rows = ["| output | stacks | secret | meaning |", "|---|---|---|---|"]
    for name, stacks in sorted(stack_outputs().items()):
        secret = "yes" if any(stacks.values()) else "no"
        rows.append(f"| `{name}` | {', '.join(_stack_labels(stacks))} | {secret} | "
                    f"{OUTPUT_DOCS.get(name, '**undocumented**')} |")
    return "\n".join(rows)


BLOCKS = {"config": config_table, "env": env_table, "outputs": outputs_table}


def render_readme(text: str) -> str:
    return _render(text, BLOCKS, "README.md")


def versions_table() -> str:
    """docs/security.md: every image line and ElastiCache engine line of infra/versions.py."""
    defaults = {(i.component, i.default_line) for i in (*versions.IMAGES, versions.VALKEY_IMAGE)}
    rows = ["| component | line | pinned | floor | why the floor (CVE ids) | support ends |", "|---|---|---|---|---|---|"]
    for v in versions.LINES:
        mark = " (default)" if (v.component, v.line) in defaults else ""
        rows.append(f"| {v.component} | {v.line}.x{mark} | `{v.image}` | {v.floor} | {v.why()} | {v.support_end} |")
    rows += ["", "| ElastiCache engine | version | parameter family | why accepted | support ends |",
             "|---|---|---|---|---|"]
    for e in versions.ENGINE_LINES:
        mark = " (default)" if e.engine == "redis" and e.version == versions.DEFAULT_ENGINE_VERSION else ""
        rows.append(f"| {e.engine} | {e.version}{mark} | {e.family} | {e.reason} | {e.support_end} |")
    rows += ["", "| Debian release (sentinel hosts) | package | floor (checked at boot) | why the floor (CVE ids) |",
             "|---|---|---|---|"]
    for f in versions.DEBIAN_FLOORS:
        rows.append(f"| {f.release} ({f.number}) | {f.package} | `{f.floor}` | {f.why()} |")
    return "\n".join(rows)


SECURITY_BLOCKS = {"versions": versions_table}


def _render(text: str, blocks: Mapping[str, Callable[[], str]], where: str) -> str:
    for name, fn in blocks.items():
        pattern = re.compile(rf"(<!-- BEGIN GENERATED: {name} -->\n).*?(<!-- END GENERATED: {name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"{where} lacks the generated block {name!r}")
        body = fn()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text)  # type: ignore[misc]
    return text


def render_security(text: str) -> str:
    return _render(text, SECURITY_BLOCKS, "docs/security.md")


def main(argv: list[str]) -> int:
    if "--write" in argv:
        README.write_text(render_readme(README.read_text()))
        SECURITY.write_text(render_security(SECURITY.read_text()))
        return 0
    for fn in (*BLOCKS.values(), *SECURITY_BLOCKS.values()):
        print(fn() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
