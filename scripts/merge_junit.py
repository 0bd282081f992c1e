"""Merge the JUnit files of scripts/pytest_passes.sh's two pytest passes into the one file .ci/run keeps.

usage: merge_junit.py TARGET PART...  (each PART read is deleted once merged)

A PART that is missing (its pass crashed, was killed or could not start) or unreadable (cut short)
is recorded in TARGET as a suite with one error naming the pass, so the kept evidence never
looks complete when a pass left none; an unreadable PART is kept beside TARGET for inspection.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def missing_pass(part: Path, why: str) -> ET.Element:
    """A <testsuite> with one errored <testcase> standing for a pass that left no readable JUnit XML."""
    suite = ET.Element("testsuite", name=part.name, tests="1", errors="1", failures="0", skipped="0")
    case = ET.SubElement(suite, "testcase", classname="scripts.pytest_passes", name=part.name)
    ET.SubElement(case, "error", message=f"{part.name}: {why}; its output is in the run's log")
    return suite


def merge(target: Path, parts: list[Path]) -> int:
    """Writes every <testsuite> of `parts` under one <testsuites> in `target`; returns how many
    parts had no readable JUnit XML (each recorded as an errored suite)."""
    merged = ET.Element("testsuites")
    broken = 0
    for part in parts:
        if not part.is_file():
            merged.append(missing_pass(part, "this pass wrote no JUnit XML (it crashed, was killed or did not start)"))
            broken += 1
            continue
        try:
            root = ET.parse(part).getroot()  # noqa: S314 - pytest wrote it in this run
        except ET.ParseError as err:
            merged.append(missing_pass(part, f"this pass's JUnit XML is unreadable ({err}), kept as {part}"))
            broken += 1
            continue
        merged.extend(list(root) if root.tag == "testsuites" else [root])
        part.unlink()
    ET.ElementTree(merged).write(target, encoding="utf-8", xml_declaration=True)
    return broken


if __name__ == "__main__":
    sys.exit(1 if merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]) else 0)
