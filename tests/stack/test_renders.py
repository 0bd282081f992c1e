"""Reviewable renders: committed renders are current, stable, secret-free; the example stacks
pass the policy pack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationArgs

from policy.policies import POLICIES
from redisops import mockrun
from redisops.render import SECRET, RenderError, available_stacks, render_path, render_stack

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "python -m redisops.render --write"


@pytest.fixture(scope="module")
def renders() -> dict[str, str]:
    return {stack: render_stack(stack, "yaml", root=ROOT) for stack in available_stacks(ROOT)}


def test_example_stacks_exist() -> None:
    assert {"dev", "prod"} <= set(available_stacks(ROOT))


def test_committed_renders_are_up_to_date(renders: dict[str, str]) -> None:
    stale = []
    for stack, text in renders.items():
        path = render_path(ROOT, stack)
        if not path.is_file() or path.read_text() != text:
            stale.append(str(path.relative_to(ROOT)))
    assert not stale, (f"out of date: {', '.join(stale)}. The infrastructure (or its config) changed; "
                       f"regenerate with `{REGENERATE}` and commit the diff so reviewers see it.")


def test_no_render_for_a_stack_that_does_not_exist() -> None:
    committed = {p.stem for p in (ROOT / "docs" / "stacks").glob("*.yaml")}
    assert committed == set(available_stacks(ROOT)), f"remove stale renders or run `{REGENERATE}`"


def test_prod_render_is_stable_across_runs_and_processes(renders: dict[str, str]) -> None:
    again = render_stack("prod", "yaml", root=ROOT)
    assert again == renders["prod"]
    # A fresh interpreter with another hash seed: nothing may depend on set/dict-of-str order.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-m", "redisops.render", "--stack", "prod"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=180, check=True).stdout
    assert out == renders["prod"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_render_lists_every_resource_with_type_name_parent_inputs(stack: str, renders: dict[str, str]) -> None:
    config, secret_keys = mockrun.load_stack_config(ROOT / f"Pulumi.{stack}.yaml")
    run = mockrun.run_program(config, stack=stack, secret_keys=secret_keys, deterministic=True)
    data = yaml.safe_load(renders[stack])
    assert data["stack"] == stack and data["resourceCount"] == len(run.resources) > 5
    listed = [(r["type"], r["name"]) for r in data["resources"]]
    assert sorted(listed) == sorted((r.type, r.name) for r in run.resources)
    seen: set[str] = set()
    for entry in data["resources"]:
        # Tree order: a parent is listed before its children.
        if "parent" in entry:
            assert entry["parent"] in seen, entry
        seen.add(f"{entry['type']}::{entry['name']}")
    custom = [e for e in data["resources"] if not e["type"].startswith("redisstack:")]
    assert all("inputs" in e for e in custom)


def test_secrets_and_generated_values_never_appear(renders: dict[str, str]) -> None:
    for stack, text in renders.items():
        config, secret_keys = mockrun.load_stack_config(ROOT / f"Pulumi.{stack}.yaml")
        run = mockrun.run_program(config, stack=stack, secret_keys=secret_keys, deterministic=True)
        assert run.generated, "the stack generates passwords/keys; the mocks should have recorded them"
        for raw, placeholder in run.generated.items():
            assert raw not in text, f"{stack}: generated value behind {placeholder} leaked into the render"
        for key in secret_keys:
            assert str(config[key]) not in text
        assert "-----BEGIN" not in text or "PRIVATE KEY" not in text


def test_prod_render_shows_the_security_relevant_facts(renders: dict[str, str]) -> None:
    data = yaml.safe_load(renders["prod"])
    rg = next(r for r in data["resources"] if r["type"] == "aws:elasticache/replicationGroup:ReplicationGroup")
    inputs = rg["inputs"]
    assert inputs["transitEncryptionEnabled"] is True and inputs["atRestEncryptionEnabled"] is True
    assert inputs["multiAzEnabled"] is True and inputs["automaticFailoverEnabled"] is True
    assert inputs["numCacheClusters"] == 3 and inputs["snapshotRetentionLimit"] == 14
    # RBAC (the default): a user group, no AUTH token; the users' passwords render as secrets.
    assert "authToken" not in inputs and len(inputs["userGroupIds"]) == 1
    users = [r for r in data["resources"] if r["type"] == "aws:elasticache/user:User"]
    assert users and all(u["inputs"]["authenticationMode"] == SECRET for u in users)
    assert any(v == SECRET for v in data["outputs"].values())


def test_generated_secret_config_renders_as_secret(tmp_path: Path) -> None:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    doc = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())
    doc["config"]["redisstack:authToken"] = {"secure": "AAABAJ4pretend-ciphertext"}
    doc["config"]["redisstack:elasticache"]["authMode"] = "token"
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    text = render_stack("prod", "yaml", root=tmp_path)
    assert mockrun.placeholder_secret("authToken") not in text
    rg = next(r for r in yaml.safe_load(text)["resources"] if r["name"].endswith("-rg"))
    assert SECRET in (rg["inputs"].get("authToken"), rg["inputs"].get("authTokenWo"))


def test_a_config_change_shows_up_in_the_render(tmp_path: Path, renders: dict[str, str]) -> None:
    for name in ("Pulumi.yaml", "Pulumi.prod.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    doc = yaml.safe_load((tmp_path / "Pulumi.prod.yaml").read_text())
    doc["config"]["redisstack:elasticache"]["numCacheClusters"] = 2
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    changed = render_stack("prod", "yaml", root=tmp_path)
    assert changed != renders["prod"]
    assert "numCacheClusters: 2" in changed and "numCacheClusters: 3" in renders["prod"]


def test_json_and_markdown_formats(renders: dict[str, str]) -> None:
    as_json = json.loads(render_stack("dev", "json", root=ROOT))
    as_yaml = yaml.safe_load(renders["dev"])
    assert [(r["type"], r["name"]) for r in as_json["resources"]] == [
        (r["type"], r["name"]) for r in as_yaml["resources"]]
    assert as_json["outputs"] == as_yaml["outputs"]
    md = render_stack("dev", "md", root=ROOT)
    assert md.startswith(f"# Stack `dev`: {as_yaml['resourceCount']} resources")
    for r in as_yaml["resources"]:
        assert f"## `{r['name']}` ({r['type']})" in md


def test_bad_stack_or_format_names_what_is_allowed() -> None:
    with pytest.raises(RenderError, match=r"stack 'staging'.*allowed: dev, prod"):
        render_stack("staging", "yaml", root=ROOT)
    with pytest.raises(RenderError, match=r"format 'toml'.*allowed: yaml, json, md"):
        render_stack("prod", "toml", root=ROOT)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_pass_the_mandatory_policies(stack: str) -> None:
    config, secret_keys = mockrun.load_stack_config(ROOT / f"Pulumi.{stack}.yaml")
    run = mockrun.run_program(config, stack=stack, secret_keys=secret_keys, deterministic=True)
    mandatory: list[str] = []
    advisory: list[str] = []
    for r in run.resources:
        for policy in POLICIES:
            found: list[str] = []
            args = ResourceValidationArgs(r.type, mockrun.unwrap(r.inputs), r.urn, r.name, None,  # type: ignore[arg-type]
                                          None, {}, {})
            try:
                policy.validate(args, lambda message, urn=None, out=found: out.append(message))
            except Exception as exc:
                assert type(exc).__name__ == "_NotApplicableError", exc
                continue
            target = advisory if policy.enforcement_level == EnforcementLevel.ADVISORY else mandatory
            target += found
    assert mandatory == []
    # The committed stacks keep the guide's allkeys-lru; the advisory must say so.
    assert any("allkeys-lru" in m and "RedisKeysEvicted" in m for m in advisory), advisory
