"""README's generated tables match the settings model and the env contract."""

from __future__ import annotations

from infra.docgen import README, config_table, render_readme
from infra.settings import StackConfig


def test_readme_generated_blocks_are_current() -> None:
    text = README.read_text()
    assert render_readme(text) == text, "README.md is stale: run `python -m infra.docgen --write`"


def test_every_setting_is_documented() -> None:
    table = config_table()
    for name, field in StackConfig.model_fields.items():
        assert f"redisstack:{field.alias or name}" in table
    assert "`redisstack:elasticache.nodeType`" in table and "`redisstack:local.ports.grafana`" in table


def test_every_stack_output_is_documented() -> None:
    from infra.docgen import OUTPUT_DOCS, stack_outputs

    outputs = stack_outputs()
    assert {"env", "redisUrl", "primaryEndpoint", "sentinelUrl"} <= set(outputs)
    assert sorted(set(outputs) - set(OUTPUT_DOCS)) == [], "document new outputs in infra/docgen.py OUTPUT_DOCS"
    assert outputs["env"] == {"dev": True, "prod": True, "prod-sentinel": True, "prod (clusterMode)": True}, \
        "env is secret everywhere"
    # Cluster mode exports the configuration endpoint and no primary/reader endpoint (ElastiCache has
    # none there); the README table says so per output.
    assert "prod (clusterMode)" not in outputs["primaryEndpoint"] and "prod" in outputs["primaryEndpoint"]
    assert "prod (clusterMode)" not in outputs["readerEndpoint"]
    assert set(outputs["configurationEndpoint"]) == {"prod (clusterMode)"}
