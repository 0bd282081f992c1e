"""The ops docs keep up with the code: an anchor per alert (the rules' runbook_url points there),
every smoke check and every CLI command documented."""

from __future__ import annotations

import re
from pathlib import Path

from infra.monitoring.prometheus import DEFAULT_RUNBOOK_BASE
from infra.thresholds import DEFAULT_THRESHOLDS
from ratelimit.tiers import DEFAULT_TIERS
from redisops import connection as rc
from redisops.cli import app
from redisops.smoke import SmokeRun

REPO = Path(__file__).resolve().parents[2]


def test_every_alert_has_a_troubleshooting_section() -> None:
    text = (REPO / DEFAULT_RUNBOOK_BASE).read_text()
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', text))
    for t in DEFAULT_THRESHOLDS:
        assert t.runbook_anchor in anchors, t.name
        section = text.split(f'<a id="{t.runbook_anchor}"></a>', 1)[1].split("<a id=", 1)[0]
        assert t.alert in section.splitlines()[1], (t.alert, section.splitlines()[1])
    # Links inside the runbook point at anchors that exist.
    for target in re.findall(r"\]\(#([a-z0-9-]+)\)", text):
        assert target in anchors, target


def test_every_smoke_check_and_command_is_documented() -> None:
    doc = (REPO / "docs/redisops.md").read_text()
    spec = rc.spec_from_env({"REDIS_URL": "redis://127.0.0.1:1"})
    for name in SmokeRun(spec).planned():
        generic = re.sub(r":(.+)$", ":<", name) if name.startswith(("forbidden:", "ratelimit:")) else name
        assert f"`{generic}" in doc, name
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands  # type: ignore[union-attr]
                } | {str(g.name) for g in app.registered_groups}
    assert {"smoke", "health", "backup", "restore", "env", "bench", "render", "snapshot", "rotate-token", "alarms",
            "endpoint", "dev"} <= commands
    for command in commands:
        assert f"`{command}" in doc or f"redisops {command}" in doc, command
    assert len(DEFAULT_TIERS) == 6  # the example output shows all six tiers
    for tier in DEFAULT_TIERS:
        assert f"ratelimit:{tier.name}" in doc
