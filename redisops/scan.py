"""`redisops scan`: checkov on the committed stack renders, offline, with one suppression file.

    scan(stacks, root=None) -> list[StackScan]
    load_suppressions(path) -> list[Suppression]

Each committed render (docs/stacks/<stack>.yaml) is converted to a Terraform plan JSON
(redisops.tfplan) and all of them are scanned by one run of checkov 3.x (framework
terraform_plan, `--skip-download`, BC_SKIP_MAPPING=TRUE: no platform, no network). checkov lives
in its own virtualenv, .venv-checkov (`bash scripts/setup.sh --checkov`, pinned in
requirements-checkov.txt): its dependencies would otherwise pin the project's.

Every failed check is either fixed in the infrastructure code or listed in
policy/checkov-suppressions.yaml with the reason the rule cannot apply. A scan fails (exit 1)
on a failure no suppression covers and on a stale suppression: one that, for a stack it names,
matches no failure any more (the fix landed; the entry must go). See docs/security-scan.md.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from redisops import tfplan
from redisops.render import RENDER_DIR, available_stacks, repo_root

CHECKOV_VENV = Path(".venv-checkov")
SUPPRESSIONS = Path("policy/checkov-suppressions.yaml")
SUPPRESSION_KEYS = ("check", "resource", "stacks", "reason")
CHECK_ID = re.compile(r"CKV2?_[A-Z0-9]+_\d+")
CHECKOV_TIMEOUT_S = 600
# Offline: no guideline/mapping download (BC_SKIP_MAPPING, checkov main.py) and no platform
# upload even where the caller's environment carries an API key (--bc-api-key reads BC_API_KEY;
# set but empty, checkov refuses to start, so it is removed instead).
CHECKOV_ENV = {"BC_SKIP_MAPPING": "TRUE"}
CHECKOV_ENV_REMOVED = ("BC_API_KEY", "BC_API_URL", "PRISMA_API_URL")


class ScanError(ValueError):
    """A scan that cannot run: checkov missing, a bad suppression file, an unknown stack."""


@dataclass(frozen=True)
class Suppression:
    check: str
    resource: str  # fnmatch pattern on the plan address, e.g. aws_secretsmanager_secret.*
    stacks: tuple[str, ...]
    reason: str

    def covers(self, stack: str, finding: Finding) -> bool:
        return (stack in self.stacks and finding.check_id == self.check
                and fnmatch.fnmatchcase(finding.resource, self.resource))

    def label(self) -> str:
        return f"{self.check} {self.resource}"


@dataclass(frozen=True)
class Finding:
    check_id: str
    check_name: str
    resource: str


@dataclass
class StackScan:
    stack: str
    resources: int
    passed: list[Finding] = field(default_factory=list)
    failed: list[Finding] = field(default_factory=list)  # not covered by a suppression
    suppressed: list[tuple[Finding, Suppression]] = field(default_factory=list)
    stale: list[Suppression] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stale

    def as_dict(self) -> dict[str, Any]:
        def f(x: Finding) -> dict[str, str]:
            return {"check": x.check_id, "name": x.check_name, "resource": x.resource}
        return {"stack": self.stack, "resources": self.resources, "passed": len(self.passed),
                "failed": [f(x) for x in self.failed],
                "suppressed": [{**f(x), "reason": s.reason} for x, s in self.suppressed],
                "stale": [{"check": s.check, "resource": s.resource, "reason": s.reason} for s in self.stale],
                "ok": self.ok}


# ---------------------------------------------------------------------------------------------
# suppressions
# ---------------------------------------------------------------------------------------------
def load_suppressions(path: Path, known_stacks: Sequence[str]) -> list[Suppression]:
    """Parse and validate the suppression file; errors name the entry, the key and what is allowed."""
    if not path.is_file():
        return []
    doc = yaml.safe_load(path.read_text()) or {}
    entries = doc.get("suppressions") if isinstance(doc, Mapping) else None
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ScanError(f"{path}: 'suppressions' must be a list of entries with keys {', '.join(SUPPRESSION_KEYS)}")
    found: list[Suppression] = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: suppression #{i}"
        if not isinstance(entry, Mapping):
            raise ScanError(f"{where} is {entry!r}; expected a mapping with keys {', '.join(SUPPRESSION_KEYS)}")
        unknown = sorted(set(entry) - set(SUPPRESSION_KEYS))
        missing = [k for k in SUPPRESSION_KEYS if not entry.get(k)]
        if unknown or missing:
            raise ScanError(f"{where}: unknown keys {unknown}, missing or empty keys {missing}; "
                            f"allowed and required: {', '.join(SUPPRESSION_KEYS)}")
        stacks = entry["stacks"]
        if isinstance(stacks, str) or not isinstance(stacks, list):
            raise ScanError(f"{where}: stacks={stacks!r}; expected a list of stack names from: "
                            f"{', '.join(known_stacks)}")
        bad = [s for s in stacks if s not in known_stacks]
        if bad:
            raise ScanError(f"{where}: stacks {bad} have no Pulumi.<stack>.yaml; allowed: {', '.join(known_stacks)}")
        checks = entry["check"] if isinstance(entry["check"], list) else [entry["check"]]
        if not all(isinstance(c, str) and CHECK_ID.fullmatch(c) for c in checks):
            raise ScanError(f"{where}: check={entry['check']!r}; expected a checkov check id such as CKV2_AWS_57 "
                            "(or a list of them)")
        if len(str(entry["reason"]).split()) < 4:
            raise ScanError(f"{where}: reason={entry['reason']!r} is too short; say why the rule cannot apply")
        # One entry may name several checks with one reason; each must still match a failure.
        found += [Suppression(c, str(entry["resource"]), tuple(str(s) for s in stacks),
                              " ".join(str(entry["reason"]).split())) for c in checks]
    return found


def apply_suppressions(stack: str, resources: int, passed: Sequence[Finding], failed: Sequence[Finding],
                       suppressions: Sequence[Suppression]) -> StackScan:
    result = StackScan(stack, resources, passed=list(passed))
    used: set[Suppression] = set()
    for finding in failed:
        match = next((s for s in suppressions if s.covers(stack, finding)), None)
        if match is None:
            result.failed.append(finding)
        else:
            result.suppressed.append((finding, match))
            used.add(match)
    result.stale = [s for s in suppressions if stack in s.stacks and s not in used]
    return result


# ---------------------------------------------------------------------------------------------
# checkov
# ---------------------------------------------------------------------------------------------
def checkov_bin(root: Path) -> Path:
    path = root / CHECKOV_VENV / "bin" / "checkov"
    if not path.exists():
        raise ScanError(f"checkov is not installed ({path} is missing); run: bash scripts/setup.sh --checkov")
    return path


def run_checkov(binary: Path, plans: Sequence[Path]) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per file/framework run) for the given plan files."""
    cmd = [str(binary), "--framework", "terraform_plan", "--skip-download", "--output", "json", "--soft-fail",
           "--compact"]
    for plan in plans:
        cmd += ["--file", str(plan)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S,
                          env={**{k: v for k, v in os.environ.items() if k not in CHECKOV_ENV_REMOVED},
                               **CHECKOV_ENV})
    if proc.returncode != 0:
        raise ScanError(f"checkov exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise ScanError(f"checkov printed no JSON report: {proc.stdout[-500:]}{proc.stderr[-1500:]}") from None
    return data if isinstance(data, list) else [data]


def _findings(reports: Sequence[Mapping[str, Any]], plan: Path, kind: str) -> list[Finding]:
    found = []
    for report in reports:
        results = report.get("results") or {}
        if results.get("parsing_errors"):
            raise ScanError(f"checkov could not parse {results['parsing_errors']}")
        for item in results.get(kind, []):
            if Path(item.get("file_abs_path") or item.get("file_path", "")).name == plan.name:
                found.append(Finding(item["check_id"], item.get("check_name", ""), item["resource"]))
    return sorted(found, key=lambda f: (f.check_id, f.resource))


def scan(stacks: Sequence[str] | None = None, *, root: Path | None = None,
         suppressions_path: Path | None = None) -> list[StackScan]:
    root = root or repo_root()
    known = available_stacks(root)
    chosen = list(stacks) if stacks else known
    bad = [s for s in chosen if s not in known]
    if bad:
        raise ScanError(f"stacks {bad} have no Pulumi.<stack>.yaml; allowed: {', '.join(known)} or all")
    suppressions = load_suppressions(suppressions_path or root / SUPPRESSIONS, known)
    binary = checkov_bin(root)
    with tempfile.TemporaryDirectory(prefix="redisops-scan-") as tmp:
        plans: dict[str, tuple[Path, int]] = {}
        for stack in chosen:
            render = root / RENDER_DIR / f"{stack}.yaml"
            if not render.is_file():
                raise ScanError(f"{render} is missing; run: python -m redisops.render --write")
            plan = tfplan.render_to_plan(tfplan.load_render(render))
            path = Path(tmp) / f"{stack}.tfplan.json"
            path.write_text(json.dumps(plan))
            plans[stack] = (path, len(plan["planned_values"]["root_module"]["resources"]))
        reports = run_checkov(binary, [p for p, _ in plans.values()])
        return [apply_suppressions(stack, count, _findings(reports, path, "passed_checks"),
                                   _findings(reports, path, "failed_checks"), suppressions)
                for stack, (path, count) in plans.items()]


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------
def _by_reason(results: Sequence[StackScan]) -> dict[str, dict[str, set[str]]]:
    """reason -> check id -> stacks, for printing each reason once."""
    reasons: dict[str, dict[str, set[str]]] = {}
    for r in results:
        for f, s in r.suppressed:
            reasons.setdefault(s.reason, {}).setdefault(f.check_id, set()).add(r.stack)
    return reasons


def summary_text(results: Sequence[StackScan]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.stack}: {len(r.passed)} passed, {len(r.failed)} failed, {len(r.suppressed)} suppressed, "
                     f"{len(r.stale)} stale suppressions ({r.resources} resources)")
        lines += [f"  FAILED     {f.check_id} {f.resource}: {f.check_name}" for f in r.failed]
        lines += [f"  suppressed {f.check_id} {f.resource}" for f, _ in r.suppressed]
        lines += [f"  STALE      {s.label()}: matches no failure on {r.stack}; remove it from {SUPPRESSIONS}"
                  for s in r.stale]
    reasons = _by_reason(results)
    if reasons:
        lines.append(f"reasons ({SUPPRESSIONS}):")
        lines += [f"  {', '.join(sorted(checks))}: {reason}" for reason, checks in reasons.items()]
    return "\n".join(lines) + "\n"


def summary_markdown(results: Sequence[StackScan]) -> str:
    lines = ["| stack | passed | failed | suppressed | stale suppressions |", "|---|---|---|---|---|"]
    lines += [f"| {r.stack} | {len(r.passed)} | {len(r.failed)} | {len(r.suppressed)} | {len(r.stale)} |"
              for r in results]
    problems = [f"- **{r.stack}: failed** `{f.check_id}` `{f.resource}`: {f.check_name}"
                for r in results for f in r.failed]
    problems += [f"- **{r.stack}: stale suppression** `{s.label()}`: remove it from `{SUPPRESSIONS}`"
                 for r in results for s in r.stale]
    if problems:
        lines += ["", *problems]
    reasons = _by_reason(results)
    if reasons:
        lines += ["", f"<details><summary>Suppressed ({SUPPRESSIONS})</summary>", ""]
        for reason, checks in reasons.items():
            where = "; ".join(f"`{c}` ({', '.join(sorted(st))})" for c, st in sorted(checks.items()))
            lines.append(f"- {where}: {reason}")
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"
