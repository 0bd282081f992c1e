"""Check results and how they are shown: a rich table on a terminal, JSON and JUnit XML for CI.

Every report passes through `redact()` with the run's secrets before it is written, so a
server error that echoes a password cannot leak it into a CI artifact.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Status = Literal["pass", "fail", "warn", "skip"]
# Nagios-style levels of `health`; a smoke check is pass/fail (+ warn/skip that do not fail).
Level = Literal["OK", "WARNING", "CRITICAL"]
LEVEL_EXIT = {"OK": 0, "WARNING": 1, "CRITICAL": 2}
_STYLE = {"pass": "green", "OK": "green", "fail": "bold red", "CRITICAL": "bold red", "warn": "yellow",
          "WARNING": "yellow", "skip": "dim"}


@dataclass
class Check:
    name: str
    status: str  # Status for smoke, Level for health
    expected: str = ""
    actual: str = ""
    detail: str = ""
    duration_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "CRITICAL")


@dataclass
class Report:
    command: str
    target: str
    checks: list[Check] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    def get(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def passed(self) -> bool:
        return not self.failed

    def level(self) -> str:
        """Worst health level (OK < WARNING < CRITICAL)."""
        worst = "OK"
        for c in self.checks:
            if c.status == "CRITICAL":
                return "CRITICAL"
            if c.status == "WARNING":
                worst = "WARNING"
        return worst

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "target": self.target,
            "passed": self.passed,
            "level": self.level() if self.command == "health" else None,
            "duration_s": round(self.duration_s, 3),
            "started": self.started,
            "meta": self.meta,
            "checks": [asdict(c) for c in self.checks],
        }


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "****")
    return text


def to_json(report: Report, secrets: tuple[str, ...] = ()) -> str:
    return redact(json.dumps(report.as_dict(), indent=2, default=str), secrets)


def to_junit(report: Report, secrets: tuple[str, ...] = ()) -> str:
    """JUnit XML: one testcase per check; fail/CRITICAL -> <failure>, skip -> <skipped>."""
    suite = ET.Element("testsuite", {
        "name": f"redisops.{report.command}",
        "tests": str(len(report.checks)),
        "failures": str(len(report.failed)),
        "errors": "0",
        "skipped": str(sum(1 for c in report.checks if c.status == "skip")),
        "time": f"{report.duration_s:.3f}",
    })
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "target", "value": report.target})
    for key, value in report.meta.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        ET.SubElement(props, "property", {"name": str(key), "value": text})
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", {"classname": f"redisops.{report.command}", "name": c.name,
                                                 "time": f"{c.duration_ms / 1000:.3f}"})
        message = f"expected {c.expected}; actual {c.actual}"
        if c.failed:
            fail = ET.SubElement(case, "failure", {"message": message, "type": c.status})
            fail.text = c.detail
        elif c.status == "skip":
            ET.SubElement(case, "skipped", {"message": c.detail or message})
        elif c.detail or c.status in ("warn", "WARNING"):
            out = ET.SubElement(case, "system-out")
            out.text = f"[{c.status}] {message}. {c.detail}".strip()
    ET.indent(suite)
    return redact(ET.tostring(suite, encoding="unicode", xml_declaration=True), secrets) + "\n"


def write_outputs(report: Report, *, json_path: Path | None, junit_path: Path | None,
                  secrets: tuple[str, ...]) -> None:
    if json_path is not None:
        Path(json_path).write_text(to_json(report, secrets))
    if junit_path is not None:
        Path(junit_path).write_text(to_junit(report, secrets))


def render_table(report: Report, console: Any, secrets: tuple[str, ...] = ()) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = f"redisops {report.command} - {report.target}"
    table = Table(title=escape(redact(title, secrets)), title_justify="left", show_lines=False)
    for col in ("check", "status", "expected", "actual", "detail"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        style = _STYLE.get(c.status, "")
        table.add_row(escape(c.name), f"[{style}]{c.status}[/]", escape(redact(c.expected, secrets)),
                      escape(redact(c.actual, secrets)), escape(redact(c.detail, secrets)))
    console.print(table)


def summary_line(report: Report) -> str:
    failed = report.failed
    if report.command == "health":
        counts = {lvl: sum(1 for c in report.checks if c.status == lvl) for lvl in LEVEL_EXIT}
        return (f"health {report.level()}: {counts['OK']} ok, {counts['WARNING']} warning, "
                f"{counts['CRITICAL']} critical in {report.duration_s:.2f} s")
    word = "PASSED" if not failed else "FAILED"
    names = f" ({', '.join(c.name for c in failed)})" if failed else ""
    counts = {s: sum(1 for c in report.checks if c.status == s) for s in ("pass", "warn", "skip")}
    extra = "".join(f", {counts[s]} {label}" for s, label in (("warn", "warning"), ("skip", "skipped")) if counts[s])
    return (f"{report.command} {word}: {counts['pass']} passed, {len(failed)} failed{names}{extra} "
            f"in {report.duration_s:.2f} s")
