"""The thresholds table: the guide's numbers, overrides, and the errors bad overrides give."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from infra.errors import SettingError
from infra.thresholds import (
    DEFAULT_THRESHOLDS,
    apply_overrides,
    fmt_number,
    thresholds_by_name,
    thresholds_markdown,
)

# The deployment guide's "Critical Metrics to Watch", copied by hand on purpose: the table in
# code must not be the only record of what the guide says.
GUIDE = {
    "memory_usage": (80, 90),
    "command_rate": (1000, 5000),
    "connected_clients": (1000, 5000),
    "blocked_clients": (10, 50),
    "keyspace_miss_ratio": (30, 50),
}


def test_defaults_equal_the_guide() -> None:
    table = thresholds_by_name()
    for name, (warn, crit) in GUIDE.items():
        assert (table[name].warn, table[name].crit) == (warn, crit), name
        assert table[name].from_guide
    assert {t.name for t in DEFAULT_THRESHOLDS if t.from_guide} == set(GUIDE)


def test_rate_limiter_rows_present_with_expected_lines() -> None:
    table = thresholds_by_name()
    # Any eviction / rejected connection is critical at once: no warning stage.
    for name in ("evicted_keys", "rejected_connections"):
        assert table[name].lines() == (("critical", 0.0),), name
        assert table[name].direction == "above"
    for name, metric in (
        ("redis_down", "redis_up"),
        ("rdb_last_bgsave_failed", "redis_rdb_last_bgsave_status"),
        ("aof_last_write_failed", "redis_aof_last_write_status"),
        ("replication_link_down", "redis_master_link_up"),
    ):
        t = table[name]
        assert t.lines() == (("critical", 1.0),), name
        assert t.direction == "below" and t.expr == metric and not t.tunable
    assert "redis_rdb_last_save_timestamp_seconds" in table["rdb_last_save_age"].expr


def test_table_is_consistent() -> None:
    names = [t.name for t in DEFAULT_THRESHOLDS]
    assert len(names) == len(set(names))
    for t in DEFAULT_THRESHOLDS:
        assert t.lines(), t.name
        if t.warn is not None and t.crit is not None:
            assert (t.warn < t.crit) if t.direction == "above" else (t.warn > t.crit), t.name


def test_promql_line_comparison() -> None:
    t = thresholds_by_name()["memory_usage"]
    assert t.promql(80) == "(100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)) > 80"
    assert thresholds_by_name()["redis_down"].promql(1) == "(redis_up) < 1"
    assert fmt_number(0.5) == "0.5" and fmt_number(80.0) == "80"


def test_no_overrides_is_the_default_table() -> None:
    assert apply_overrides(None) == DEFAULT_THRESHOLDS
    assert apply_overrides({}) == DEFAULT_THRESHOLDS


def test_overrides_apply_only_named_fields() -> None:
    table = thresholds_by_name(
        apply_overrides({"memory_usage": {"warn": 75, "crit": 85.5}, "connected_clients": {"crit": 8000}})
    )
    assert (table["memory_usage"].warn, table["memory_usage"].crit) == (75, 85.5)
    assert (table["connected_clients"].warn, table["connected_clients"].crit) == (1000, 8000)
    assert (table["command_rate"].warn, table["command_rate"].crit) == (1000, 5000)
    # Order is preserved so rendered files stay diff-stable.
    assert [t.name for t in apply_overrides({"memory_usage": {"warn": 70}})] == [t.name for t in DEFAULT_THRESHOLDS]


def test_override_can_drop_a_line_or_tolerate_some_evictions() -> None:
    table = thresholds_by_name(apply_overrides({"blocked_clients": {"warn": None}, "evicted_keys": {"crit": 10}}))
    assert table["blocked_clients"].lines() == (("critical", 50.0),)
    assert table["evicted_keys"].lines() == (("critical", 10.0),)


BAD: list[tuple[Any, str, Any, str]] = [
    # overrides, expected key, expected value, fragment of `allowed`
    ({"memory": {"warn": 1}}, "thresholds.memory", {"warn": 1}, "known: aof_last_write_failed, blocked_clients"),
    ({"memory_usage": {"warn": "eighty"}}, "thresholds.memory_usage.warn", "eighty", "expected a number in %"),
    ({"memory_usage": {"warn": True}}, "thresholds.memory_usage.warn", True, "expected a number"),
    ({"command_rate": {"warn": -5}}, "thresholds.command_rate.warn", -5, "must be >= 0"),
    ({"memory_usage": {"crit": 120}}, "thresholds.memory_usage.crit", 120, "must be <= 100 %"),
    ({"memory_usage": {"warn": 95}}, "thresholds.memory_usage.warn", 95.0, "must be below crit (90)"),
    ({"connected_clients": {"warn": 5000, "crit": 5000}}, "thresholds.connected_clients.warn", 5000.0, "must be below crit"),
    ({"memory_usage": {"critical": 95}}, "thresholds.memory_usage.critical", 95, "unknown field; allowed: warn, crit"),
    ({"memory_usage": 85}, "thresholds.memory_usage", 85, "expected a mapping with warn and/or crit"),
    ({"redis_down": {"crit": 0}}, "thresholds.redis_down", {"crit": 0}, "not tunable"),
    ({"blocked_clients": {"warn": None, "crit": None}}, "thresholds.blocked_clients.crit", None, "at least one"),
    ({"engine_cpu": {"crit": math.inf}}, "thresholds.engine_cpu.crit", math.inf, "finite"),
    (["memory_usage"], "thresholds", ["memory_usage"], "expected a mapping of threshold name"),
]


@pytest.mark.parametrize(("overrides", "key", "value", "allowed"), BAD, ids=[b[1] + ":" + b[3][:20] for b in BAD])
def test_bad_overrides_raise_setting_error(overrides: Any, key: str, value: Any, allowed: str) -> None:
    with pytest.raises(SettingError) as err:
        apply_overrides(overrides)
    assert err.value.key == key
    assert err.value.value == value
    assert allowed in err.value.allowed
    assert str(err.value).startswith(f"redisstack:{key} = ")


def test_markdown_table_lists_every_row_with_its_lines() -> None:
    md = thresholds_markdown()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(DEFAULT_THRESHOLDS)
    mem = next(line for line in lines if line.startswith("| memory_usage (guide)"))
    assert "| > 80 | > 90 |" in mem
    assert "DatabaseMemoryUsagePercentage Average > 80 / > 90 (5 x 60s)" in mem
    hit = next(line for line in lines if line.startswith("| keyspace_miss_ratio"))
    assert "CacheHitRate Average < 70 / < 50" in hit
    churn = next(line for line in lines if line.startswith("| new_connections"))
    assert "NewConnections Sum > 3000 / > 12000" in churn
    assert all(line.count("|") >= 10 for line in lines)


def test_docs_table_is_generated_from_the_code() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    begin, end = "<!-- thresholds:begin -->\n", "<!-- thresholds:end -->"
    assert begin in doc and end in doc
    between = doc.split(begin, 1)[1].split(end, 1)[0]
    assert between == thresholds_markdown(), "docs/monitoring.md is stale: regenerate with python -m infra.thresholds"
