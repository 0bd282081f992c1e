"""The versions table (infra/versions.py): defaults at or above their floors, settings and the policy
pack refuse anything below (naming key, value, CVE ids and the lowest allowed version), the
ElastiCache engine lines and parameter families come from it, Renovate's regex manager finds
every pin, and the docs that quote it are current."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import ResourceValidationArgs

from infra import versions as V
from infra.errors import SettingsErrors
from infra.settings import ENGINE_VERSIONS, Images, StackConfig, parse_settings
from policy import policies as P
from redis_conf.elasticache import FAMILIES, MODIFIABLE, family_for

ROOT = Path(__file__).resolve().parents[2]


def errors_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(SettingsErrors) as info:
        parse_settings(raw)
    return [str(e) for e in info.value.errors]


# Versions are read from the table, never spelled here, so a Renovate bump of a pin (or a floor
# moved by hand) keeps these tests meaningful instead of failing them.
def below(floor: str) -> str:
    """A version just below `floor`: '7.2.13' -> '7.2.12', '12.4.0' -> '12.3.99' (off the line)."""
    parts = list(V.parse_version(floor))
    i = max(j for j, p in enumerate(parts) if p > 0)
    parts[i] -= 1
    parts[i + 1:] = [99] * (len(parts) - i - 1)
    return ".".join(map(str, parts))


def image_of(component: V.Component, version: str) -> str:
    """`version` of `component`'s repository, spelled as its tags are: ('prometheus', '3.13.1') -> prom/prometheus:v3.13.1."""
    return f"{V.split_image(V.default_pin(component)).repository}:{V.TAG_PREFIX.get(component, '')}{version}"


# ---- the table itself ---------------------------------------------------------------------------
@pytest.mark.parametrize("line", V.LINES, ids=lambda v: f"{v.component}-{v.line}")
def test_every_pin_is_on_its_line_and_at_or_above_its_floor(line: V.VersionLine) -> None:
    pin, floor = V.parse_version(line.pin), V.parse_version(line.floor)
    prefix = V.parse_version(line.line)
    assert pin[:len(prefix)] == prefix and floor[:len(prefix)] == prefix
    assert pin >= floor
    assert V.version_problem(line.component, line.pin) is None
    assert line.why(), "a floor needs its CVE ids or, when none is published, the reason"
    for cve in line.cves:
        assert re.fullmatch(r"CVE-\d{4}-\d{4,}", cve), cve


def test_default_images_are_the_pins_of_the_default_lines() -> None:
    assert Images().model_dump() == V.DEFAULT_IMAGES
    assert set(V.DEFAULT_IMAGES) == {"redis", "exporter", "prometheus", "grafana"}
    for spec in V.IMAGES:
        image, line = V.DEFAULT_IMAGES[spec.key], V.line(spec.component, spec.default_line)
        ref = V.split_image(image)
        assert (ref.repository, ref.tag, ref.digest) == (spec.repository, f"{spec.tag_prefix}{line.pin}", None)
        assert V.image_problem(image) is None, spec.key
    assert V.split_image(V.DEFAULT_VALKEY_IMAGE).repository == V.VALKEY_IMAGE.repository == "valkey/valkey"


def test_default_lines_are_supported_past_the_review() -> None:
    # Support ends from the vendors' policies (cited in infra/versions.py); a default line that
    # ends before the next review must be replaced now.
    for spec in (*V.IMAGES, V.VALKEY_IMAGE):
        end = V.line(spec.component, spec.default_line).support_end
        if re.match(r"\d{4}-\d{2}-\d{2}$", end):
            assert end > f"{V.REVIEWED}-31", (spec.component, end)


@pytest.mark.parametrize("line", V.LINES, ids=lambda v: f"{v.component}-{v.line}")
def test_a_version_just_below_each_floor_is_refused_with_its_cves(line: V.VersionLine) -> None:
    problem = V.version_problem(line.component, below(line.floor))
    assert problem is not None
    if below(line.floor).startswith(f"{line.line}."):
        assert f"below the floor {line.floor} of its {line.line}.x line ({line.why()})" in problem
        assert f"e.g. {line.image}" in problem
    else:  # the floor is the line's first release: one below is on no line
        assert "on no reviewed line" in problem and f"{line.line}.x >= {line.floor}" in problem


@pytest.mark.parametrize("version", ["8.0.6", "8.6.1", "7.0.15"])
def test_redis_versions_off_the_reviewed_lines_are_refused(version: str) -> None:
    problem = V.version_problem("redis", version)
    assert problem is not None and "on no reviewed line" in problem


# ---- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", V.IMAGES, ids=lambda i: i.key)
def test_settings_refuse_an_image_below_its_floor(spec: V.ImageSpec) -> None:
    line = V.line(spec.component, spec.default_line)
    image = image_of(spec.component, below(line.floor))
    (err,) = errors_of({"target": "local", "local": {"images": {spec.key: image}}})
    assert err.startswith(f'redisstack:local.images.{spec.key} = "{image}": ')
    assert line.floor in err
    if below(line.floor).startswith(f"{line.line}."):
        assert line.why() in err and V.DEFAULT_IMAGES[spec.key] in err


def test_settings_refuse_the_images_the_review_found() -> None:
    # The versions issue 12 named (historical, never a pin again): each is refused.
    for key, image in {"redis": "redis:7.2.5", "exporter": "oliver006/redis_exporter:v1.62.0",
                       "prometheus": "prom/prometheus:v2.53.0", "grafana": "grafana/grafana:11.1.0"}.items():
        (err,) = errors_of({"target": "local", "local": {"images": {key: image}}})
        assert err.startswith(f'redisstack:local.images.{key} = "{image}": '), err
    (err,) = errors_of({"target": "local", "local": {"images": {"redis": "redis:7.2.5"}}})
    assert "CVE-2025-49844" in err


def test_settings_error_names_every_cve_of_the_floor() -> None:
    line = V.line("redis", "7.2")
    (err,) = errors_of({"target": "local", "local": {"images": {"redis": image_of("redis", below(line.floor))}}})
    for cve in line.cves:
        assert cve in err
    assert f"expected {line.floor} or later, e.g. {line.image}" in err


def accepted_redis_images() -> list[str]:
    pin, floor = V.line("redis", "7.2").pin, V.line("redis", "7.2").floor
    others = [v.image for v in V.lines_of("redis") if v.line != "7.2"]
    return [f"redis:{pin}-alpine", f"redis:{floor}", f"mirror.example.com/library/redis:{pin}",
            f"redis:{pin}@sha256:" + "a" * 64, f"{others[0]}-bookworm", *others[1:]]


@pytest.mark.parametrize("image", accepted_redis_images())
def test_settings_accept_patched_tags_with_or_without_digest(image: str) -> None:
    assert parse_settings({"target": "local", "local": {"images": {"redis": image}}}).config.local.images.redis == image


def test_settings_refuse_a_digest_without_a_version_and_a_foreign_image() -> None:
    digest_only = "redis@sha256:" + "b" * 64
    (err,) = errors_of({"target": "local", "local": {"images": {"redis": digest_only}}})
    assert "expected a version tag so the floor can be checked" in err
    (err,) = errors_of({"target": "local", "local": {"images": {"prometheus": V.DEFAULT_IMAGES["redis"]}}})
    assert "expected an image of prom/prometheus" in err


def test_engine_and_image_must_agree_on_the_local_target() -> None:
    (err,) = errors_of({"target": "local", "engine": "valkey", "engineVersion": "8.1"})
    assert err == (f'redisstack:local.images.redis = "{V.DEFAULT_IMAGES["redis"]}": engine valkey runs valkey-server: '
                   f'expected a valkey image, e.g. {V.DEFAULT_VALKEY_IMAGE}')
    ok = parse_settings({"target": "local", "engine": "valkey", "engineVersion": "8.1",
                         "local": {"images": {"redis": V.DEFAULT_VALKEY_IMAGE}}})
    assert ok.config.local.images.redis == V.DEFAULT_VALKEY_IMAGE
    line = V.line("valkey", "8.1")
    (err,) = errors_of({"target": "local", "engine": "valkey", "engineVersion": "8.1",
                        "local": {"images": {"redis": image_of("valkey", below(line.floor))}}})
    assert f"below the floor {line.floor}" in err and "CVE-2026-56684" in err


def test_engine_versions_and_families_come_from_the_table() -> None:
    assert dict(ENGINE_VERSIONS) == {"redis": ("7.0", "7.1"), "valkey": ("7.2", "8.0", "8.1", "8.2")}
    assert set(FAMILIES) == {e.family for e in V.ENGINE_LINES} == set(MODIFIABLE)
    for e in V.ENGINE_LINES:
        assert family_for(e.engine, e.version) == e.family
    assert StackConfig.model_fields["engine_version"].description == (
        "ElastiCache engine version (redis 7.0/7.1, valkey 7.2/8.0/8.1/8.2)")


@pytest.mark.parametrize(("engine", "version", "needle"), [
    ("redis", "6.2", "below the floor 7.0 (Redis Functions and ACL v2 (7.0+)); expected one of 7.0, 7.1"),
    ("redis", "7.2", "expected one of 7.0, 7.1 for engine redis"),
    ("valkey", "9.0", "expected one of 7.2, 8.0, 8.1, 8.2 for engine valkey"),
])
def test_settings_refuse_engine_versions_off_the_table(engine: str, version: str, needle: str) -> None:
    (err,) = errors_of({"target": "local", "engine": engine, "engineVersion": version,
                        "local": {"images": {"redis": V.default_pin(engine)}}})  # type: ignore[arg-type]
    assert err.startswith(f'redisstack:engineVersion = "{version}": ') and err.endswith(needle)


# ---- policy pack --------------------------------------------------------------------------------
def run_policy(type_: str, props: dict[str, Any]) -> list[str]:
    out: list[str] = []
    args = ResourceValidationArgs(type_, props, f"urn:pulumi:dev::redisstack::{type_}::x", "x",
                                  None, None, None, None)  # type: ignore[arg-type]
    P.VERSION_FLOORS.validate(args, lambda message, urn=None: out.append(message))
    return out


def test_policy_refuses_the_same_floors() -> None:
    for image in V.DEFAULT_IMAGES.values():
        assert run_policy(P.REMOTE_IMAGE, {"name": image}) == []
    line = V.line("redis", "7.2")
    (v,) = run_policy(P.REMOTE_IMAGE, {"name": image_of("redis", below(line.floor))})
    assert f"below the floor {line.floor}" in v and "CVE-2025-67733" in v
    (v,) = run_policy(P.CONTAINER, {"image": "grafana/grafana:11.1.0"})
    assert "on no reviewed line" in v
    # Image ids and digests name no version; other components are not judged.
    assert run_policy(P.CONTAINER, {"image": "sha256:" + "0" * 64}) == []
    assert run_policy(P.REMOTE_IMAGE, {"name": "redis@sha256:" + "a" * 64}) == []
    assert run_policy(P.REMOTE_IMAGE, {"name": "nginx:1.27.0"}) == []


def test_policy_refuses_engine_versions_below_the_floor() -> None:
    assert run_policy(P.REPLICATION_GROUP, {"engine": "redis", "engineVersion": "7.1"}) == []
    assert run_policy(P.REPLICATION_GROUP, {"engine": "valkey", "engineVersion": "8.2"}) == []
    (v,) = run_policy(P.REPLICATION_GROUP, {"engine": "redis", "engineVersion": "6.2"})
    assert "below the floor 7.0" in v
    (v,) = run_policy(P.CACHE_CLUSTER, {"engine": "valkey", "engineVersion": "9.0"})
    assert "expected one of 7.2, 8.0, 8.1, 8.2" in v


# ---- Renovate -----------------------------------------------------------------------------------
def renovate() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((ROOT / "renovate.json").read_text())
    return config


def js_regex(pattern: str) -> re.Pattern[str]:
    """Renovate's (RE2/JavaScript) named groups `(?<name>` are Python's `(?P<name>`."""
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern))


def renovate_versioning_regex(versioning: str) -> re.Pattern[str]:
    assert versioning.startswith("regex:"), versioning
    return js_regex(versioning.removeprefix("regex:"))


def test_renovate_finds_every_pin_of_the_table() -> None:
    """Renovate's custom regex manager (renovate.json) applied to infra/versions.py, as Renovate
    would: every pin must be extracted with its repository and tag, and its versioning regex
    must keep updates on the pin's line (docs.renovatebot.com/modules/manager/regex)."""
    config = renovate()
    managers = [m for m in config["customManagers"] if m["customType"] == "regex"]
    path = "infra/versions.py"
    text = (ROOT / path).read_text()
    found: dict[str, dict[str, str]] = {}
    for manager in managers:
        patterns = [js_regex(p.strip("/")) for p in manager["managerFilePatterns"]]
        if not any(p.search(path) for p in patterns):
            continue
        for match_string in manager["matchStrings"]:
            for m in js_regex(match_string).finditer(text):
                pinned = re.search(r'"([^"]+)",$', m.group(0))
                assert pinned is not None
                found[pinned.group(1)] = m.groupdict()
    for (component, line_name), image in V.PINS.items():
        ref = V.split_image(image)
        assert image in found, f"no Renovate manager matches the pin {image}"
        dep = found[image]
        assert (dep["datasource"], dep["depName"], dep["currentValue"]) == ("docker", ref.repository, ref.tag)
        versioning = renovate_versioning_regex(dep["versioning"])
        assert versioning.fullmatch(ref.tag or ""), (image, dep["versioning"])
        for other in V.LINES:  # never proposes a tag of another line of the same component
            if other.component == component and other.line != line_name:
                assert not versioning.fullmatch(V.split_image(other.image).tag or ""), (image, other.image)
    assert len(found) == len(V.PINS)


def test_renovate_also_keeps_pip_requirements_and_actions_fresh() -> None:
    config = renovate()
    assert {"custom.regex", "pip_requirements", "github-actions"} <= set(config["enabledManagers"])
    assert "helpers:pinGitHubActionDigests" in config["extends"]
    # pip_requirements' default managerFilePatterns (docs.renovatebot.com/modules/manager/pip_requirements):
    default = js_regex(r"(^|/)[\w-]*requirements([-.]\w+)?\.(txt|pip)$")
    for path in ("requirements.txt", "requirements-dev.txt", "policy/requirements.txt"):
        assert (ROOT / path).exists() and default.search(path), path
    image_rules = [r for r in config["packageRules"] if r.get("matchManagers") == ["custom.regex"]]
    assert image_rules and all(r["pinDigests"] is False for r in image_rules)


def test_renovate_moves_the_workflows_pulumi_cli_with_the_sdk() -> None:
    """The workflows install the Pulumi CLI at env PULUMI_VERSION; pip_requirements bumps only the
    SDK (`pulumi==` in requirements.txt and policy/requirements.txt). The CLI and the SDK are
    released together under one version (github.com/pulumi/pulumi releases), so a custom manager
    must extract every workflow's pin, from the SDK's datasource, into the same grouped PR
    (docs.renovatebot.com/modules/manager/regex: managerFilePatterns, *Template fields)."""
    config = renovate()
    sdk = {re.search(r"^pulumi==(\S+)$", (ROOT / f).read_text(), re.M).group(1)  # type: ignore[union-attr]
           for f in ("requirements.txt", "policy/requirements.txt")}
    assert len(sdk) == 1, sdk
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    extracted: dict[str, list[str]] = {}
    for manager in config["customManagers"]:
        for wf in workflows:
            path = str(wf.relative_to(ROOT))
            if not any(js_regex(p.strip("/")).search(path) for p in manager["managerFilePatterns"]):
                continue
            for ms in manager["matchStrings"]:
                for m in js_regex(ms).finditer(wf.read_text()):
                    assert (manager.get("datasourceTemplate"), manager.get("depNameTemplate")) == ("pypi", "pulumi")
                    extracted.setdefault(path, []).append(m.group("currentValue"))
    pinned = {str(wf.relative_to(ROOT)) for wf in workflows if "PULUMI_VERSION:" in wf.read_text()}
    assert pinned and set(extracted) == pinned, (pinned, extracted)
    assert {v for values in extracted.values() for v in values} == sdk
    group = [r for r in config["packageRules"] if r.get("groupName") == "pulumi packages"]
    assert group and {"pip_requirements", "custom.regex"} <= set(group[0]["matchManagers"])
    assert js_regex(group[0]["matchPackageNames"][0].strip("/")).search("pulumi")


# ---- docs that quote the table ------------------------------------------------------------------
def test_security_doc_is_generated_from_the_table() -> None:
    from infra.docgen import SECURITY, render_security

    text = SECURITY.read_text()
    assert render_security(text) == text, "docs/security.md is stale: run `python -m infra.docgen --write`"
    for line in V.LINES:
        assert f"`{line.image}`" in text and line.floor in text


def test_fidelity_doc_names_every_shipped_pin() -> None:
    """docs/fidelity.md says what ships against what the proofs run; a pin change without a
    fidelity update fails here."""
    text = (ROOT / "docs" / "fidelity.md").read_text()
    for image in (*V.DEFAULT_IMAGES.values(), V.DEFAULT_VALKEY_IMAGE):
        assert f"`{image}`" in text, f"docs/fidelity.md does not name the shipped {image}"
