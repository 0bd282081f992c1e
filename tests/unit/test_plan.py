"""`redisops plan` sizes from the committed measurements (bench/results/cluster.json) and the dated
price table; bad flags exit 2 naming flag, value and what is allowed."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from typer.testing import CliRunner

from ratelimit.clusterbench import bucket_bytes
from ratelimit.tiers import DEFAULT_TIERS, Tier
from redisops import plan as pl
from redisops.cli import app

runner = CliRunner()
BENCH = pl.load_bench()
PRICES = pl.load_prices()


def _inputs(clients: int, rps: float, **kw: object) -> pl.Inputs:
    args: dict[str, object] = {"target": "elasticache", "headroom": 0.3, "region": None, "replicas": None,
                               "tiers": [], "node_type": None, "node_memory": None, "stack": None, "settings": None}
    args.update(kw)
    return pl.inputs_from(clients=clients, rps=rps, **args)  # type: ignore[arg-type]


def test_json_holds_the_issue_fields_with_their_sources(tmp_path) -> None:
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["plan", "--clients", "1000000", "--rps", "50000", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    for key in ("memory_bytes", "shards", "replicas_per_shard", "node_type", "monthly_cost_usd",
                "decisions_per_s_capacity"):
        assert key in doc, key
    assert doc["node_type"] in PRICES["elasticache"]
    assert doc["decisions_per_s_capacity"] >= 50_000 * 1.3
    # Every tier's memory and the cost name their source file.
    assert set(doc["memory_per_tier"]) == {t.name for t in DEFAULT_TIERS}
    for t in DEFAULT_TIERS:
        assert "cluster.json memory." in doc["sources"][f"memory_per_tier.{t.name}"]
    assert "elasticache_prices.json" in doc["sources"]["monthly_cost_usd"]
    # The table's prices are transcribed, not read back: every cost says so (table, JSON, docs).
    assert doc["monthly_cost_status"] == "UNVERIFIED"
    assert "UNVERIFIED" in next(line for line in result.output.splitlines() if "monthly cost" in line)
    assert "engine_cpu" in doc["sources"]["cpu_budget_percent"]
    assert "memory_usage" in doc["sources"]["memory_budget_percent"]
    assert "memory total" in result.output and "monthly cost" in result.output


def test_memory_is_per_key_bytes_times_clients_plus_buckets() -> None:
    tiers = (Tier("general", 120, 60, "gcra"),)
    p = pl.plan(pl.Inputs(clients=1_000_000, decisions_per_s=100, tiers=tiers, headroom=0.0), BENCH, PRICES)
    per_key, _ = pl.Model(BENCH, "x").per_key_bytes("gcra", 1, cluster=False)
    assert p.shards == 1 and not p.cluster_mode
    assert p.memory_per_tier["general"] == round(per_key * 1_000_000)
    assert p.memory_bytes == round(per_key * 1_000_000) + bucket_bytes(1_000_000)
    # Bytes per client land where the issue put them (~133 B per client and tier).
    assert 90 < p.memory_bytes / 1_000_000 < 200


def test_more_clients_never_need_fewer_shards_or_less_money() -> None:
    plans = pl.sweep(_inputs(10_000, 200), BENCH, PRICES)
    assert [p.clients for p in plans] == list(pl.CHART_CLIENTS)
    for small, big in itertools.pairwise(plans):
        assert big.memory_bytes > small.memory_bytes
        assert big.shards >= small.shards and big.monthly_cost_usd >= small.monthly_cost_usd
    assert plans[0].shards == 1 and plans[-1].shards > 1 and plans[-1].cluster_mode


def test_shards_cover_memory_cpu_and_the_reserved_memory() -> None:
    p = pl.plan(_inputs(100_000_000, 1_000_000), BENCH, PRICES)
    node = PRICES["elasticache"][p.node_type]
    usable = int(node["memory_gib"] * 2**30 * 0.75)  # the stack default reserved-memory-percent 25
    # Memory is budgeted at the memory_usage alarm line (80 % of maxmemory), not at maxmemory.
    budget = int(usable * 0.80)
    assert p.node_usable_memory_bytes == usable and p.node_memory_budget_bytes == budget
    assert p.memory_per_shard_bytes <= budget
    assert "memory_usage warn (80 %" in p.sources["node_memory_budget_bytes"]
    assert p.decisions_per_s_capacity >= 1_000_000 * 1.3
    assert p.nodes == p.shards * (1 + p.replicas_per_shard)
    assert p.monthly_cost_usd == pytest.approx(p.nodes * node["hourly_usd"]["us-east-1"] * 730, abs=0.005)  # rounded to cents


def test_sentinel_cannot_shard_and_says_so() -> None:
    result = runner.invoke(app, ["plan", "--clients", "1000000000", "--rps", "1000000", "--target", "sentinel"])
    assert result.exit_code == 2
    assert "--target sentinel" in result.output and "cluster mode" in result.output


def test_local_cluster_needs_node_memory_and_costs_nothing() -> None:
    result = runner.invoke(app, ["plan", "--clients", "1000", "--rps", "10", "--target", "local-cluster"])
    assert result.exit_code == 2 and "--node-memory" in result.output
    p = pl.plan(_inputs(10_000_000, 10_000, target="local-cluster", node_memory=512 * 2**20), BENCH, PRICES)
    assert p.monthly_cost_usd == 0 and p.shards >= math.ceil(p.memory_bytes / (512 * 2**20))


def test_stack_settings_feed_tiers_replicas_and_region() -> None:
    inp = _inputs(1000, 10, stack="prod")
    assert inp.region == "eu-west-1" and inp.replicas == 2  # Pulumi.prod.yaml: numCacheClusters 3
    assert "Pulumi.prod.yaml" in inp.sources["replicas_per_shard"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--clients", "0", "--rps", "1"], "--clients 0"),
    (["--clients", "10", "--rps", "-1"], "--rps -1.0"),
    (["--clients", "10", "--rps", "1", "--target", "memcached"], "--target 'memcached': expected one of elasticache"),
    (["--clients", "10", "--rps", "1", "--region", "mars-1"], "--region 'mars-1'"),
    (["--clients", "10", "--rps", "1", "--headroom", "-0.5"], "--headroom -0.5"),
    (["--clients", "10", "--rps", "1", "--node-type", "cache.x9.huge"], "--node-type 'cache.x9.huge': expected one of"),
    (["--clients", "10", "--rps", "1", "--tier", "general=lru:10,60"], "--tier 'general=lru:10,60'"),
    (["--clients", "10", "--rps", "1", "--replicas", "9"], "--replicas 9"),
])
def test_bad_flags_exit_2_naming_flag_value_and_allowed(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code == 2, result.output
    assert needle in " ".join(result.output.split()), result.output


def test_sizing_doc_examples_are_generated_from_plan() -> None:
    text = pl.SIZING_DOC.read_text()
    assert pl.render_sizing(text, BENCH, PRICES) == text, "run python -m redisops.plan --write"


def test_png_charts_cost_and_shards_from_10k_to_1b_clients(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "plan.png"
    result = runner.invoke(app, ["plan", "--clients", "10000", "--rps", "200", "--png", str(png), "--json", "-"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.stdout)["clients"] == 10_000  # --json - prints only the JSON


def test_sentinel_plans_one_primary_with_its_two_replicas_on_ec2_prices() -> None:
    p = pl.plan(_inputs(100_000, 2_000, target="sentinel", stack="prod-sentinel"), BENCH, PRICES)
    assert p.shards == 1 and p.replicas_per_shard == 2 and p.nodes == 3 and not p.cluster_mode
    assert p.node_type in PRICES["ec2"] and "sentinel topology" in p.sources["replicas_per_shard"]
    assert p.monthly_cost_usd == pytest.approx(3 * PRICES["ec2"][p.node_type]["hourly_usd"][p.region] * 730, abs=0.005)  # rounded to cents


def test_a_shard_that_fits_maxmemory_but_not_the_memory_alarm_line_gets_split() -> None:
    """local-cluster with a node memory just above one shard's data: at 100 % it would fit one node,
    under the 80 % alarm line it needs two."""
    one = pl.plan(_inputs(1_000_000, 100, target="local-cluster", node_memory=10 * 2**30), BENCH, PRICES)
    assert one.shards == 1
    tight = int(one.memory_per_shard_bytes / 0.9)  # holds the data at 90 %: above the 80 % line
    p = pl.plan(_inputs(1_000_000, 100, target="local-cluster", node_memory=tight), BENCH, PRICES)
    assert p.shards == 2 and p.limiting_factor == "memory"
    assert p.memory_per_shard_bytes <= p.node_memory_budget_bytes == int(tight * 0.8)


def test_costs_say_unverified_and_derived_as_the_price_table_flags_them() -> None:
    assert PRICES["verified"] is False and set(PRICES["regions"]) == set(pl.regions(PRICES, "elasticache"))
    assert pl.plan(_inputs(10_000, 200, region="eu-west-1"), BENCH, PRICES).monthly_cost_status == (
        "UNVERIFIED, derived from us-east-1 x 1.11")
    verified = {**PRICES, "verified": True}
    assert pl.plan(_inputs(10_000, 200), BENCH, verified).monthly_cost_status == ""
    assert pl.plan(_inputs(10_000, 200, region="us-west-2"), BENCH, verified).monthly_cost_status == (
        "derived from us-east-1")
    doc = pl.SIZING_DOC.read_text()
    costs = [line for line in doc.splitlines() if line.startswith("| monthly cost |")]
    assert len(costs) == len(pl.EXAMPLES) and all("UNVERIFIED" in line for line in costs)
