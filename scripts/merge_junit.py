"""Merge the JUnit files of scripts/test.sh's two pytest passes into the one file .ci/run keeps.

usage: merge_junit.py TARGET PART...  (each PART is deleted once merged; a missing PART, from a
pass that could not start, is skipped: its output is in the log)
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def merge(target: Path, parts: list[Path]) -> int:
    """Writes every <testsuite> of `parts` under one <testsuites> in `target`; returns how many."""
    merged = ET.Element("testsuites")
    for part in parts:
        if not part.is_file():
            continue
        root = ET.parse(part).getroot()  # noqa: S314 - pytest wrote it in this run
        merged.extend(list(root) if root.tag == "testsuites" else [root])
    ET.ElementTree(merged).write(target, encoding="utf-8", xml_declaration=True)
    for part in parts:
        part.unlink(missing_ok=True)
    return len(merged)


if __name__ == "__main__":
    merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
