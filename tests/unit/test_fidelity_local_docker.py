"""docs/fidelity.md, section "Local Docker target": it names every pinned image, and every check
it cites exists. A pin that changes without this table changing fails here."""

from __future__ import annotations

import re
from pathlib import Path

from infra.settings import Images

ROOT = Path(__file__).resolve().parents[2]


def section() -> str:
    text = (ROOT / "docs" / "fidelity.md").read_text()
    start = text.index("## Local Docker target")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def test_every_pinned_image_is_named() -> None:
    text = section()
    missing = [image for image in Images().model_dump().values() if f"`{image}`" not in text]
    assert not missing, f"docs/fidelity.md (Local Docker target) does not name the pinned images {missing}"


def test_every_cited_check_exists() -> None:
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", section())
    assert len(cited) >= 10
    for path, name in cited:
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is cited but does not exist"
