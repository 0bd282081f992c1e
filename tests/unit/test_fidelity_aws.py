"""docs/fidelity.md, AWS section: every check it names exists, so the table cannot point at a
test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## AWS (mocks/moto vs real APIs)"


def aws_section() -> str:
    text = (ROOT / "docs" / "fidelity.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end == -1 else text[start:end]


def test_every_named_check_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", aws_section())
    assert len(named) >= 20
    for path, name in named:
        tree = ast.parse((ROOT / path).read_text())
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in functions, f"docs/fidelity.md names {path}::{name}, which does not exist"


def test_every_row_has_all_columns() -> None:
    rows = [line for line in aws_section().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5 and all(cells), row
