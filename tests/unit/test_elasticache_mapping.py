"""The ElastiCache parameter group and the report of what cannot map, per family."""

from __future__ import annotations

import pytest

from redis_conf import load_base
from redis_conf.elasticache import FAMILIES, MODIFIABLE, elasticache_parameters, family_for, mapping_report
from redis_conf.schema import SPECS

# Parameters AWS documents as not present / not modifiable on current engines (FIELD-NOTES).
NEVER_MODIFIABLE = {"maxmemory", "appendonly", "appendfsync", "save", "lua-time-limit", "maxclients",
                    "busy-reply-threshold", "rename-command", "protected-mode", "cluster-enabled"}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_emitted_parameter_is_modifiable(family: str) -> None:
    params = elasticache_parameters(load_base(), family)  # type: ignore[arg-type]
    assert params, "the guide's policy and slowlog settings must map"
    assert set(params) <= MODIFIABLE[family]  # type: ignore[index]
    assert not set(params) & NEVER_MODIFIABLE
    assert params["maxmemory-policy"] == "allkeys-lru"
    assert params["maxmemory-samples"] == "5"
    assert params["reserved-memory-percent"] == "25"
    assert params["timeout"] == "0"


@pytest.mark.parametrize("family", FAMILIES)
def test_overrides_reach_parameters(family: str) -> None:
    conf = load_base().with_overrides({"maxmemory-policy": "volatile-ttl", "timeout": 300,
                                       "min-replicas-to-write": 1})
    params = elasticache_parameters(conf, family, reserved_memory_percent=30)  # type: ignore[arg-type]
    assert params["maxmemory-policy"] == "volatile-ttl"
    assert params["timeout"] == "300"
    assert params["min-replicas-to-write"] == "1"
    assert params["reserved-memory-percent"] == "30"


def test_family_for_engine_versions() -> None:
    assert family_for("redis", "7.1") == "redis7"
    assert family_for("valkey", "7.2") == "valkey7"
    assert family_for("valkey", "8.0") == "valkey8"
    with pytest.raises(ValueError, match=r"supported: redis 7\.0, redis 7\.1, valkey 7\.2"):
        family_for("redis", "6.2")


def test_report_covers_every_directive_with_an_equivalent() -> None:
    conf = load_base()
    report = mapping_report(conf)
    by_directive: dict[str, list[object]] = {}
    for entry in report:
        by_directive.setdefault(entry.directive, []).append(entry)
    assert set(by_directive) == set(conf.values) | {"rename-command"}
    for entry in report:
        if entry.status == "managed":
            assert entry.reason and entry.equivalent, entry
            assert entry.parameter is None
        else:
            assert entry.parameter == SPECS[entry.directive].elasticache.parameter
    appendonly = by_directive["appendonly"][0]
    assert "Multi-AZ" in appendonly.equivalent  # type: ignore[attr-defined]
    save = by_directive["save"][0]
    assert "snapshot" in save.equivalent  # type: ignore[attr-defined]
    maxmemory = by_directive["maxmemory"][0]
    assert "node type" in maxmemory.equivalent and "reserved-memory-percent" in maxmemory.equivalent  # type: ignore[attr-defined]
    renames = by_directive["rename-command"]
    assert len(renames) == 4
    assert all("-@dangerous" in r.equivalent for r in renames)  # type: ignore[attr-defined]
