"""Every `redisops` command that reads stack settings refuses bad ones with the list alone (exit 2,
no traceback); an unexpected error is one line plus the --debug hint (exit 70), with the
traceback only under --debug. Each case runs `python -m redisops` as a real subprocess.

The table has one row per validated key family. Rows of one batch go into one stack file and one
run: the settings report every problem at once, and each row adds exactly one line, so a batch
also proves the rows do not mask each other. Cross-field checks only run once every field is
valid, component checks once the settings pass, so those come in batches of their own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.errors import SettingsErrors
from infra.settings import parse_settings
from redisops.cli import DEBUG_ENV, EXIT_BUG
from redisops.mockrun import load_stack_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BASES = {"local": "Pulumi.dev.yaml", "elasticache": "Pulumi.prod.yaml", "sentinel": "Pulumi.prod-sentinel.yaml"}
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]


@dataclass(frozen=True)
class Bad:
    family: str
    patch: dict[str, Any]
    key: str  # as printed after the namespace
    shown: str  # the value as printed
    allowed: str  # a fragment of what the line says is allowed


# Field checks: the settings model, the redis.conf schema, the tier and threshold parsers.
FIELDS = [
    Bad("memory size", {"redis": {"maxmemory": "lots"}}, "redis.maxmemory", '"lots"', "expected a memory size"),
    Bad("eviction policy", {"redis": {"maxmemory-policy": "drop-oldest"}}, "redis.maxmemory-policy",
        '"drop-oldest"', "expected one of volatile-lru, allkeys-lru"),
    Bad("rate limit not a number", {"rateLimits": {"auth": "thirty,60"}}, "rateLimits.auth", '"thirty,60"',
        '"<limit>,<window_seconds>" with positive integers'),
    Bad("rate limit zero", {"rateLimits": {"general": "0,60"}}, "rateLimits.general", '"0,60"',
        '"<limit>,<window_seconds>" with positive integers'),
    Bad("port out of range", {"local": {"ports": {"redis": 70000}}}, "local.ports.redis", "70000",
        "less than or equal to 65535"),
    Bad("bind address", {"local": {"bindAddress": "localhost"}}, "local.bindAddress", '"localhost"',
        "expected an IPv4 address"),
    Bad("image tag", {"local": {"images": {"grafana": "grafana/grafana:latest"}}}, "local.images.grafana",
        '"grafana/grafana:latest"', "pinned to an exact version"),
    Bad("secret stored plain", {"password": "plain-text-password-123"}, "password", "<secret>",
        "must be stored as a secret"),
    Bad("unknown key", {"colour": "blue"}, "colour", '"blue"', "unknown key; allowed keys here: target"),
    Bad("threshold order", {"thresholds": {"memory_usage": {"warn": 95, "crit": 80}}},
        "thresholds.memory_usage.warn", "95.0", "must be below crit (80)"),
    # Pulumi hands top-level values over as text, so the engine (and every command) shows "0".
    Bad("timeout", {"timeoutMs": 0}, "timeoutMs", '"0"', "greater than or equal to 1"),
    Bad("node type", {"elasticache": {"nodeType": "r7g.large"}}, "elasticache.nodeType", '"r7g.large"',
        'node type like "cache.r7g.large"'),
    Bad("maintenance window < 1h", {"elasticache": {"maintenanceWindow": "sun:05:00-sun:05:30"}},
        "elasticache.maintenanceWindow", '"sun:05:00-sun:05:30"', "at least 60 minutes"),
    Bad("sentinel quorum", {"sentinel": {"quorum": 5}}, "sentinel.quorum", "5", "less than or equal to 3"),
    Bad("open CIDR", {"network": {"allowedCidrs": ["0.0.0.0/0"]}}, "network.allowedCidrs", "['0.0.0.0/0']",
        "opens Redis to the whole internet"),
    Bad("backup retention", {"backup": {"retentionDays": 40}}, "backup.retentionDays", "40",
        "less than or equal to 35"),
    Bad("log retention", {"alerting": {"logRetentionDays": 8}}, "alerting.logRetentionDays", "8",
        "CloudWatch's retention values"),
]
LOCAL_CROSS = [
    Bad("duplicate ports", {"local": {"ports": {"grafana": 9090}}}, "local.ports.grafana", "9090",
        "already used by local.ports.prometheus"),
]
ELASTICACHE_CROSS = [
    Bad("TLS off on ElastiCache", {"tls": False}, "tls", "False", "the elasticache target requires TLS"),
    Bad("one subnet with Multi-AZ", {"network": {"subnetIds": SUBNETS[:1]}}, "network.subnetIds",
        f"['{SUBNETS[0]}']", "Multi-AZ needs at least 2 subnets"),
    Bad("backup inside maintenance", {"backup": {"window": "05:30-06:30"}}, "backup.window", '"05:30-06:30"',
        "must not overlap elasticache.maintenanceWindow"),
]
SENTINEL_CROSS = [
    Bad("TLS off on Sentinel", {"tls": False}, "tls", "False", "the sentinel target requires TLS"),
    Bad("quorum 3 on shared hosts", {"sentinel": {"quorum": 3}}, "sentinel.quorum", "3", "blocks failover"),
]
# Refused by the component once the settings pass (SentinelHostsArgs.from_settings).
SENTINEL_COMPONENT = [
    Bad("failover timeout below down-after", {"sentinel": {"downAfterMs": 9000, "failoverTimeoutMs": 5000}},
        "sentinel.failoverTimeoutMs", "5000", "at least sentinel.downAfterMs (9000)"),
]
# Refused inside an apply once the subnets' zones are known (the mocks put ...1, ...5, ...9 in one
# zone); the SDK re-wraps it in a plain ValueError on the way out.
SENTINEL_APPLY = [
    Bad("subnets in one zone", {"network": {"subnetIds": [s[:-1] + d for s, d in zip(SUBNETS, "159", strict=True)]}},
        "network.subnetIds", "['subnet-0a1b2c3d4e5f60001', 'subnet-0a1b2c3d4e5f60005', 'subnet-0a1b2c3d4e5f60009']",
        "different availability zones"),
]
BATCHES = {
    "fields": ("local", FIELDS),
    "local-cross": ("local", LOCAL_CROSS),
    "elasticache-cross": ("elasticache", ELASTICACHE_CROSS),
    "sentinel-cross": ("sentinel", SENTINEL_CROSS),
    "sentinel-component": ("sentinel", SENTINEL_COMPONENT),
    "sentinel-apply": ("sentinel", SENTINEL_APPLY),
}


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _stack_doc(target: str, rows: list[Bad]) -> dict[str, Any]:
    """A committed example stack with the rows' mistakes merged in (secure: entries kept as they are)."""
    doc = yaml.safe_load((REPO / BASES[target]).read_text())
    config = {k.removeprefix("redisstack:"): v for k, v in doc["config"].items()}
    for row in rows:
        config = _merge(config, row.patch)
    return {"config": {k if ":" in k else f"redisstack:{k}": v for k, v in config.items()}}


def _project(tmp_path: Path, stack: str, doc: dict[str, Any]) -> Path:
    """A project directory as a user has it: Pulumi.yaml, the program, one stack file."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / "infra").symlink_to(REPO / "infra", target_is_directory=True)
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return tmp_path


def _redisops(*args: str, cwd: Path, code: str | None = None, module: str = "redisops",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV and not k.startswith(("REDIS_", "PULUMI_"))}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, check=False)


def _expected_list(doc: dict[str, Any], stack_file: Path) -> str:
    """The list the settings module itself produces for this stack file (in-process)."""
    config, secret_keys = load_stack_config(stack_file)
    with pytest.raises(SettingsErrors) as info:
        parse_settings({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items() if ":" not in k},
                       secret_keys=frozenset(secret_keys))
    return str(info.value)


def _assert_refused(proc: subprocess.CompletedProcess[str], rows: list[Bad]) -> list[str]:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: invalid stack configuration:\n"), proc.stderr
    items = [line for line in proc.stderr.splitlines() if line.startswith("  - ")]
    assert len(items) == len(rows), "one line per mistake, nothing else refused:\n" + proc.stderr
    for row in rows:
        prefix = f"  - redisstack:{row.key} = {row.shown}: "
        assert any(line.startswith(prefix) and row.allowed in line for line in items), (row.family, proc.stderr)
    return items


@pytest.mark.parametrize("batch", list(BATCHES))
def test_render_refuses_each_bad_key_by_name_without_a_traceback(tmp_path: Path, batch: str) -> None:
    target, rows = BATCHES[batch]
    project = _project(tmp_path, "bad", _stack_doc(target, rows))
    proc = _redisops("render", "--stack", "bad", cwd=project)
    _assert_refused(proc, rows)
    assert proc.stdout == "", "nothing rendered"


def test_every_settings_command_prints_the_same_list(tmp_path: Path) -> None:
    doc = _stack_doc("local", FIELDS)
    project = _project(tmp_path, "bad", doc)
    stack_file = project / "Pulumi.bad.yaml"
    expected = _expected_list(doc, stack_file)
    runs = {
        "render": _redisops("render", "--stack", "bad", cwd=project),
        "python -m redisops.render": _redisops("--stack", "bad", cwd=project, module="redisops.render"),
        "dev up": _redisops("dev", "up", "--stack", "bad", "--mode", "processes", "--no-smoke", cwd=project),
        # A closed loopback port: the settings are refused before anything connects.
        "smoke": _redisops("smoke", "--settings", str(stack_file), cwd=project, env={"REDIS_URL": "redis://127.0.0.1:1"}),
        "health": _redisops("health", "--settings", str(stack_file), cwd=project,
                            env={"REDIS_URL": "redis://127.0.0.1:1"}),
        "plan": _redisops("plan", "--clients", "1000", "--rps", "100", "--stack", "bad", cwd=project),
    }
    prefixes = {"smoke": f"--settings {stack_file}: ", "health": f"--settings {stack_file}: ",
                "plan": f"--settings {stack_file.name}: "}
    for name, proc in runs.items():
        assert "Traceback" not in proc.stdout + proc.stderr, (name, proc.stderr)
        assert proc.returncode == 2, (name, proc.stderr)
        prefix = prefixes.get(name, "")
        assert proc.stderr == f"error: {prefix}{expected}\n", name
    _assert_refused(runs["render"], FIELDS)
    assert not (project / ".run" / "bad").exists(), "dev up left no run directory behind"


# A bug injected into the real CLI: the renderer raises.
BUGGY = """
import sys
import redisops.render

def broken_renderer(stack, fmt="yaml", **_):
    raise RuntimeError(f"renderer exploded on {stack}")

redisops.render.render_stack = broken_renderer
from redisops.cli import main
sys.argv = ["redisops", *sys.argv[1:]]
main()
"""


def test_a_bug_is_one_line_and_a_hint(tmp_path: Path) -> None:
    proc = _redisops("render", "--stack", "dev", cwd=REPO, code=BUGGY)
    assert proc.returncode == EXIT_BUG, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    summary, hint = proc.stderr.splitlines()
    assert summary.startswith("bug: RuntimeError: renderer exploded on dev at "), summary
    assert summary.endswith(" in broken_renderer"), summary
    assert "--debug" in hint and DEBUG_ENV in hint
    assert f"\n{hint}\n" in (REPO / "docs/redisops.md").read_text(), "docs/redisops.md shows the hint as printed"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(tmp_path: Path, how: str) -> None:
    args = ["--debug", "render", "--stack", "dev"] if how == "flag" else ["render", "--stack", "dev"]
    proc = _redisops(*args, cwd=REPO, code=BUGGY, env={DEBUG_ENV: "1"} if how == "env" else None)
    assert proc.returncode == EXIT_BUG, proc.stderr
    assert proc.stderr.startswith("Traceback (most recent call last):"), proc.stderr
    assert re.search(r"in broken_renderer\n(.*\n)?RuntimeError: renderer exploded on dev\n", proc.stderr), proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("bug: RuntimeError: renderer exploded on dev"), proc.stderr
    assert "--debug" not in proc.stderr.splitlines()[-1]


def _readme_example() -> tuple[dict[str, Any], list[str], str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("Bad config is refused before any resource is declared"):]
    output, stack_yaml = re.findall(r"```(?:yaml)?\n(.*?)```", section, re.S)[:2]
    command, *printed = output.splitlines()
    assert command.startswith("$ redisops "), command
    return yaml.safe_load(stack_yaml), shlex.split(command[2:])[1:], "\n".join(printed) + "\n"


def test_readme_error_example_is_what_the_command_prints(tmp_path: Path) -> None:
    doc, args, printed = _readme_example()
    stack = args[args.index("--stack") + 1]
    project = _project(tmp_path, stack, doc)
    proc = _redisops(*args, cwd=project)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == printed, "README.md 'Deploying for real' shows other output than the command prints"
