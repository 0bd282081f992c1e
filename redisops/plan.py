"""`redisops plan`: size the rate-limiting Redis from measured figures.

Every number comes from one of two files, and the plan says which:
* bench/results/cluster.json (ratelimit/clusterbench.py): bytes per key per algorithm (per-key part
  and hash-table buckets, standalone and cluster-enabled), server CPU per decision and bytes on the
  wire per decision, on 1 and 3 shards;
* redisops/data/elasticache_prices.json: node types (memory, vCPUs, baseline bandwidth) and dated
  on-demand prices.
Plus the stack: tiers (ratelimit/tiers.py, overridden by `rateLimits`), reserved-memory-percent and
replicas (infra/settings.py), and the alarm lines a shard must stay under: CPU (infra/thresholds.py
`engine_cpu` warn) and memory (`memory_usage` warn, percent of maxmemory): a plan that fills a node
to its maxmemory would page on day one and evict under any growth.

The model (docs/sizing.md):
  memory = sum over tiers of clients x per_key_bytes(algorithm, entries) + shards x buckets(keys/shard)
  buckets(k) = 2 tables (keyspace, expires) x 8 B x next_pow2(k)
  sliding log entries = the tier's limit (a client at its limit holds `limit` members)
  shards = max(memory / (usable node memory x memory budget (memory_usage warn %)),
               decisions/s / per-shard capacity, network / baseline)
  per-shard capacity = CPU budget (engine_cpu warn %) x 1e6 / CPU us per decision
Clients and decisions/s are grown by --headroom before sizing.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ratelimit.clusterbench import bucket_bytes
from ratelimit.tiers import ALGORITHMS, Tier
from redisops.errors import UsageError

TARGETS = ("elasticache", "sentinel", "local-cluster")
DEFAULT_BENCH = Path(__file__).resolve().parents[1] / "bench" / "results" / "cluster.json"
PRICES_RESOURCE = "data/elasticache_prices.json"
# ElastiCache for Redis OSS >= 5.0.6 (cluster mode): at most 500 shards and 500 nodes per cluster
# (ElastiCache docs, "Scaling clusters in Redis OSS (cluster mode enabled)"); settings cap numShards at 500.
MAX_SHARDS = 500
MAX_NODES = 500
# The sentinel topology: one primary and two replicas, a sentinel beside each (docs/sentinel.md).
SENTINEL_HOSTS = 3
LOAD = "concurrent_50"  # clusterbench: 50 connections, one decision per round trip, server saturated
CHART_CLIENTS = (10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000)


@dataclass(frozen=True)
class NodeType:
    name: str
    memory_gib: float
    vcpus: int
    baseline_gbps: float
    hourly_usd: float
    burstable_cpu_baseline_percent: float | None = None


@dataclass
class Plan:
    target: str
    region: str
    clients: int
    decisions_per_s: float
    headroom: float
    memory_bytes: int
    memory_per_tier: dict[str, int]
    hashtable_bytes: int
    cluster_mode: bool
    shards: int
    replicas_per_shard: int
    nodes: int
    node_type: str
    node_usable_memory_bytes: int
    node_memory_budget_bytes: int
    memory_per_shard_bytes: int
    limiting_factor: str
    decisions_per_s_capacity: int
    cpu_us_per_decision: float
    network_per_primary_bytes_s: int
    monthly_cost_usd: float
    # "UNVERIFIED" unless the price table says `verified: true`; "derived" for a region whose
    # prices are computed from another's (redisops/data/elasticache_prices.json `regions`).
    monthly_cost_status: str = ""
    clusters: int = 1
    sources: dict[str, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_prices() -> dict[str, Any]:
    return json.loads(resources.files("redisops").joinpath(PRICES_RESOURCE).read_text(encoding="utf-8"))


def load_bench(path: Path | None = None) -> dict[str, Any]:
    p = Path(path) if path is not None else DEFAULT_BENCH
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"--bench {p}: no such file; run `python bench/cluster.py` to measure") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--bench {p}: not readable JSON ({exc})") from None
    for key in ("memory", "cost"):
        if key not in doc:
            raise UsageError(f"--bench {p}: no `{key}` section; expected the output of bench/cluster.py")
    return doc


def node_types(prices: dict[str, Any], target: str, region: str) -> list[NodeType]:
    table = prices["ec2" if target == "sentinel" else "elasticache"]
    out = []
    for name, row in table.items():
        hourly = row["hourly_usd"].get(region)
        if hourly is None:
            continue
        out.append(NodeType(name, float(row["memory_gib"]), int(row["vcpus"]), float(row["baseline_gbps"]),
                            float(hourly), row.get("burstable_cpu_baseline_percent")))
    return out


def price_status(prices: dict[str, Any], region: str) -> str:
    """How far the table's prices for a region can be trusted: empty only for verified, read ones."""
    flags = []
    if not prices.get("verified", False):
        flags.append("UNVERIFIED")
    region_info = prices.get("regions", {}).get(region, {"derived": True})
    if region_info.get("derived", True):
        flags.append(f"derived from {region_info.get('from', 'another region')}")
    return ", ".join(flags)


def regions(prices: dict[str, Any], target: str) -> list[str]:
    table = prices["ec2" if target == "sentinel" else "elasticache"]
    return sorted({r for row in table.values() for r in row["hourly_usd"]})


class Model:
    """Bytes per key and CPU per decision read from the benchmark file."""

    def __init__(self, bench: dict[str, Any], source: str) -> None:
        self.bench = bench
        self.source = source

    def _mode(self, cluster: bool) -> str:
        return "cluster" if cluster else "standalone"

    def per_key_bytes(self, algorithm: str, entries: int, cluster: bool) -> tuple[float, str]:
        """Per-key bytes (without the bucket arrays): the largest measured key count for GCRA and
        the fixed window; for the sliding log, the per-entry slope from the entries series."""
        mem = self.bench["memory"][self._mode(cluster)]
        series = mem[algorithm]
        size = max(series, key=int)
        base = float(series[size]["per_key_bytes"])
        where = f"{self.source} memory.{self._mode(cluster)}.{algorithm}.{size}"
        if algorithm != "sliding_log":
            return base, where
        measured_entries = int(series[size]["entries"])
        points = sorted((int(e), float(v["per_key_bytes"])) for e, v in mem["sliding_log_entries"].items())

        def at(e: int) -> float:
            if e <= points[0][0]:
                return points[0][1]
            for (e0, b0), (e1, b1) in itertools.pairwise(points):
                if e <= e1:
                    return b0 + (b1 - b0) * (e - e0) / (e1 - e0)
            (e0, b0), (e1, b1) = points[-2], points[-1]
            return b1 + (b1 - b0) * (e - e1) / (e1 - e0)

        note = "" if entries <= points[-1][0] else f", extrapolated beyond {points[-1][0]} entries"
        return (base + at(entries) - at(measured_entries),
                f"{where} + per-entry slope {self.source} memory.{self._mode(cluster)}.sliding_log_entries{note}")

    def cpu_us(self, algorithm: str, cluster: bool) -> tuple[float, str]:
        # A shard of a multi-shard cluster: the 3-shard figure (all primaries' CPU over all decisions),
        # a few per cent above one shard's in the benchmark.
        topo = "cluster_3_shards" if cluster and "cluster_3_shards" in self.bench["cost"] else (
            "cluster_1_shard" if cluster else "standalone")
        row = self.bench["cost"][topo]["algorithms"][algorithm]
        load = LOAD if LOAD in row else "one_at_a_time"
        return float(row[load]["cpu_us_per_decision"]), f"{self.source} cost.{topo}.{algorithm}.{load}"

    def wire_bytes(self, algorithm: str) -> tuple[float, float, str]:
        row = self.bench["cost"]["standalone"]["algorithms"][algorithm]["one_at_a_time"]
        return (float(row["net_in_bytes_per_decision"]), float(row["net_out_bytes_per_decision"]),
                f"{self.source} cost.standalone.{algorithm}.one_at_a_time")


def tier_entries(t: Tier) -> int:
    # A sliding-log client at its limit holds one member per admitted unit in the window.
    return t.limit if t.algorithm == "sliding_log" else 1


@dataclass
class Inputs:
    clients: int
    decisions_per_s: float
    tiers: tuple[Tier, ...]
    target: str = "elasticache"
    headroom: float = 0.3
    region: str = "us-east-1"
    replicas: int = 1
    reserved_memory_percent: int = 25
    cpu_budget_percent: float = 70.0
    memory_budget_percent: float = 80.0
    node_type: str | None = None
    node_memory_bytes: int | None = None  # local-cluster: memory per node
    sources: dict[str, str] = field(default_factory=dict)


def validate(inp: Inputs, prices: dict[str, Any]) -> None:
    """Every bad input named with its flag, value and what is allowed, before anything is computed."""
    if not isinstance(inp.clients, int) or inp.clients < 1:
        raise UsageError(f"--clients {inp.clients!r}: expected a positive integer")
    if not (inp.decisions_per_s >= 0 and math.isfinite(inp.decisions_per_s)):
        raise UsageError(f"--rps {inp.decisions_per_s!r}: expected a number >= 0 (decisions per second at peak)")
    if inp.target not in TARGETS:
        raise UsageError(f"--target {inp.target!r}: expected one of {', '.join(TARGETS)}")
    if not 0 <= inp.headroom <= 10:
        raise UsageError(f"--headroom {inp.headroom!r}: expected a fraction between 0 and 10 (0.3 = 30 % growth)")
    if not 0 < inp.memory_budget_percent <= 100:
        raise UsageError(f"memory budget {inp.memory_budget_percent!r} %: expected 0 < percent <= 100 "
                         "(thresholds.memory_usage.warn)")
    if not 0 <= inp.replicas <= 5:
        raise UsageError(f"--replicas {inp.replicas!r}: expected 0-5 replicas per shard (ElastiCache's range)")
    if not inp.tiers:
        raise UsageError("--tier: no tiers to size; expected at least one NAME=ALGORITHM:LIMIT,WINDOW")
    if inp.target == "local-cluster":
        if not inp.node_memory_bytes or inp.node_memory_bytes <= 0:
            raise UsageError(f"--node-memory {inp.node_memory_bytes!r}: expected a size like 4gb for local-cluster")
        return
    known = regions(prices, inp.target)
    if inp.region not in known:
        raise UsageError(f"--region {inp.region!r}: no prices for it in redisops/{PRICES_RESOURCE}; "
                         f"expected one of {', '.join(known)}")
    names = [n.name for n in node_types(prices, inp.target, inp.region)]
    if inp.node_type is not None and inp.node_type not in names:
        raise UsageError(f"--node-type {inp.node_type!r}: expected one of {', '.join(names)}")


def _usable(node: NodeType, reserved_percent: int) -> int:
    return int(node.memory_gib * 2**30 * (1 - reserved_percent / 100))


def plan(inp: Inputs, bench: dict[str, Any], prices: dict[str, Any], bench_source: str = "bench/results/cluster.json",
         ) -> Plan:
    validate(inp, prices)
    model = Model(bench, bench_source)
    clients = math.ceil(inp.clients * (1 + inp.headroom))
    rps = inp.decisions_per_s * (1 + inp.headroom)
    keys = clients * len(inp.tiers)
    budget = inp.cpu_budget_percent / 100
    # A Sentinel group is one primary and two replicas (SENTINEL_HOSTS), whatever --replicas says.
    replicas = SENTINEL_HOSTS - 1 if inp.target == "sentinel" else inp.replicas

    def sized(cluster: bool, node: NodeType | None) -> dict[str, Any]:
        per_tier: dict[str, int] = {}
        sources: dict[str, str] = {}
        for t in inp.tiers:
            b, src = model.per_key_bytes(t.algorithm, tier_entries(t), cluster)
            per_tier[t.name] = round(b * clients)
            sources[f"memory_per_tier.{t.name}"] = src
        data = sum(per_tier.values())
        # Conservative: every decision costs what the dearest algorithm in use costs.
        cpu, cpu_src = max(model.cpu_us(t.algorithm, cluster) for t in inp.tiers)
        w_in, w_out, w_src = max(model.wire_bytes(t.algorithm) for t in inp.tiers)
        if node is None:
            usable = int(inp.node_memory_bytes or 0)
            cpu_share = 1.0
            bandwidth = math.inf
        else:
            usable = _usable(node, inp.reserved_memory_percent if inp.target == "elasticache" else 25)
            cpu_share = (node.burstable_cpu_baseline_percent or 100) / 100
            bandwidth = node.baseline_gbps * 1e9 / 8
        mem_budget = int(usable * inp.memory_budget_percent / 100)
        per_shard_capacity = budget * cpu_share * 1e6 / cpu
        # Primary traffic: clients in + out, plus one copy of the writes per replica (upper bound:
        # the command's input size; Redis 7 replicates the script's effects, which are smaller).
        per_decision_net = w_in + w_out + replicas * w_in

        def short_of(n: int) -> list[str]:
            """What n shards lack: memory, cpu, network (empty: n shards suffice)."""
            mem = math.ceil(data / n) + bucket_bytes(math.ceil(keys / n))
            return [reason for reason, over in (
                ("memory", mem > mem_budget), ("cpu", rps / n > per_shard_capacity),
                ("network", rps / n * per_decision_net > budget * bandwidth)) if over]

        # Each shortfall shrinks as shards grow: double to a count that suffices, then bisect
        # to the smallest one.
        lo, hi = 0, 1
        while short_of(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if not short_of(mid) else (mid, hi)
        shards = hi
        mem_shard = math.ceil(data / shards) + bucket_bytes(math.ceil(keys / shards))
        last_reasons = short_of(shards - 1) if shards > 1 else []
        limiting = ",".join(last_reasons) if shards > 1 else "none (one primary suffices)"
        return {"per_tier": per_tier, "shards": shards, "mem_shard": mem_shard, "usable": usable, "mem_budget": mem_budget,
                "hashtable": shards * bucket_bytes(math.ceil(keys / shards)), "cpu": cpu,
                "capacity": int(per_shard_capacity * shards), "net": int(rps / shards * per_decision_net),
                "limiting": limiting, "sources": {**sources, "cpu_us_per_decision": cpu_src,
                                                  "network_per_primary_bytes_s": w_src}}

    candidates: list[tuple[float, int, NodeType | None, dict[str, Any], bool]] = []
    if inp.target == "local-cluster":
        s = sized(True, None)
        candidates.append((0.0, s["shards"], None, s, True))
    else:
        nodes = [n for n in node_types(prices, inp.target, inp.region) if inp.node_type in (None, n.name)]
        for nt in nodes:
            s = sized(False, nt)
            cluster = False
            if s["shards"] > 1:
                if inp.target == "sentinel":
                    continue  # one primary only: a sentinel group cannot shard
                if nt.burstable_cpu_baseline_percent is not None and inp.node_type is None:
                    # Dozens of burstable nodes living on CPU credits at peak is no cluster to run
                    # (docs/decisions.md); --node-type still allows it.
                    continue
                s = sized(True, nt)
                cluster = True
            per_node = 1 + replicas
            cost = s["shards"] * per_node * nt.hourly_usd * prices["hours_per_month"]
            candidates.append((cost, s["shards"], nt, s, cluster))
    if not candidates:
        raise UsageError(f"--target {inp.target}: no node type holds {inp.clients} clients at {inp.decisions_per_s} "
                         "decisions/s on one primary; a Sentinel group cannot shard: use --target elasticache "
                         "(cluster mode) or local-cluster")
    cost, shards, node, s, cluster = min(candidates, key=lambda c: (c[0], c[1]))
    clusters = max(1, math.ceil(shards / MAX_SHARDS), math.ceil(shards * (1 + replicas) / MAX_NODES)) \
        if inp.target == "elasticache" else 1
    sources = dict(inp.sources)
    sources.update(s["sources"])
    if inp.target == "sentinel":
        sources["replicas_per_shard"] = f"the sentinel topology: one primary, {SENTINEL_HOSTS - 1} replicas"
    table = f"redisops/{PRICES_RESOURCE} (prices as of {prices['as_of']})"
    if node is not None:
        sources.update({"node_type": table, "monthly_cost_usd": table,
                        "node_usable_memory_bytes": f"{table} memory_gib x (1 - reserved-memory-percent "
                        f"{inp.reserved_memory_percent if inp.target == 'elasticache' else 25} %)"})
    sources["node_memory_budget_bytes"] = (f"usable memory x {inp.memory_budget_percent:g} % (the memory alarm line, "
                                           f"{sources.get('memory_budget_percent', 'infra/thresholds.py memory_usage warn')})")
    sources["decisions_per_s_capacity"] = (f"{sources['cpu_us_per_decision']}; CPU budget {inp.cpu_budget_percent:g} "
                                           "% per shard")
    assumptions = [
        f"every client holds a key in each of the {len(inp.tiers)} tiers; sliding-log clients at their limit",
        f"clients and decisions/s grown by headroom {inp.headroom:g} before sizing",
        "a node's vCPU runs Redis' main thread as fast as one core of the benchmark machine "
        f"({bench.get('environment', {}).get('machine', '?')}, redis {bench.get('environment', {}).get('redis_version', '?')})",
        "every decision costs what the dearest algorithm among the tiers costs",
        f"a shard's data stays under the memory alarm line ({inp.memory_budget_percent:g} % of usable memory) "
        f"and its load under the CPU alarm line ({inp.cpu_budget_percent:g} %)",
        "replication traffic per replica bounded by the decision's request size",
        "client connection buffers and the replication backlog are not counted: they live in the "
        "reserved memory (reserved-memory-percent)",
        f"{prices['hours_per_month']} hours per month, on-demand, no reserved-node discount, no data transfer",
    ]
    if clusters > 1:
        assumptions.append(f"{shards} shards exceed one ElastiCache cluster ({MAX_SHARDS} shards / {MAX_NODES} nodes): "
                           f"split clients over {clusters} clusters by client id")
    return Plan(
        target=inp.target, region=inp.region, clients=inp.clients, decisions_per_s=inp.decisions_per_s,
        headroom=inp.headroom, memory_bytes=sum(s["per_tier"].values()) + s["hashtable"],
        memory_per_tier=s["per_tier"], hashtable_bytes=s["hashtable"], cluster_mode=cluster, shards=shards,
        replicas_per_shard=replicas, nodes=shards * (1 + replicas),
        node_type=node.name if node else "local", node_usable_memory_bytes=s["usable"], node_memory_budget_bytes=s["mem_budget"],
        memory_per_shard_bytes=s["mem_shard"], limiting_factor=s["limiting"],
        decisions_per_s_capacity=s["capacity"], cpu_us_per_decision=s["cpu"],
        network_per_primary_bytes_s=s["net"], monthly_cost_usd=round(cost, 2), clusters=clusters,
        monthly_cost_status=price_status(prices, inp.region) if node is not None else "",
        sources=sources, assumptions=assumptions)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def rows(p: Plan) -> list[tuple[str, str, str]]:
    """(figure, value, source) for the table and docs/sizing.md."""
    src = p.sources
    out = [(f"memory {name}", human_bytes(b), src.get(f"memory_per_tier.{name}", "")) for name, b in
           p.memory_per_tier.items()]
    out += [
        ("memory hash tables", human_bytes(p.hashtable_bytes), "model: 2 x 8 B x next_pow2(keys per shard) per shard"),
        ("memory total", human_bytes(p.memory_bytes), "sum of the above"),
        ("memory per shard", human_bytes(p.memory_per_shard_bytes), "total / shards + buckets"),
        ("node type", p.node_type, src.get("node_type", "--node-memory")),
        ("usable memory per node", human_bytes(p.node_usable_memory_bytes), src.get("node_usable_memory_bytes", "")),
        ("memory budget per node", human_bytes(p.node_memory_budget_bytes), src.get("node_memory_budget_bytes", "")),
        ("cluster mode", "yes" if p.cluster_mode else "no (one primary)", "shards > 1"),
        ("shards", str(p.shards), f"limited by {p.limiting_factor}"),
        ("replicas per shard", str(p.replicas_per_shard), src.get("replicas_per_shard", "")),
        ("nodes", str(p.nodes) + (f" in {p.clusters} clusters" if p.clusters > 1 else ""), "shards x (1 + replicas)"),
        ("CPU per decision", f"{p.cpu_us_per_decision:.1f} us", src.get("cpu_us_per_decision", "")),
        ("decisions/s capacity", f"{p.decisions_per_s_capacity:,}", src.get("decisions_per_s_capacity", "")),
        ("network per primary", f"{human_bytes(p.network_per_primary_bytes_s)}/s",
         src.get("network_per_primary_bytes_s", "")),
        ("monthly cost", f"${p.monthly_cost_usd:,.2f}" + (f" {p.monthly_cost_status}" if p.monthly_cost_status else ""),
         src.get("monthly_cost_usd", "local: no price")),
    ]
    return out


def sweep(inp: Inputs, bench: dict[str, Any], prices: dict[str, Any],
          clients: tuple[int, ...] = CHART_CLIENTS) -> list[Plan]:
    """The same decisions per client, from 10k to 1B clients."""
    per_client = inp.decisions_per_s / inp.clients
    out = []
    for n in clients:
        step = Inputs(**{**asdict(inp), "clients": n, "decisions_per_s": per_client * n, "tiers": inp.tiers})
        out.append(plan(step, bench, prices))
    return out


def chart(plans: list[Plan], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("--png: matplotlib is not installed (pip install -r requirements-dev.txt)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.clients for p in plans]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(xs, [max(p.monthly_cost_usd, 0.01) for p in plans], marker="o", color="#1f77b4", label="monthly cost (USD)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients")
    ax.set_ylabel("USD per month (on-demand)")
    ax2 = ax.twinx()
    ax2.plot(xs, [p.shards for p in plans], marker="s", linestyle="--", color="#ff7f0e", label="shards")
    ax2.set_yscale("log")
    ax2.set_ylabel("shards")
    for p in plans:
        ax.annotate(p.node_type.replace("cache.", ""), (p.clients, max(p.monthly_cost_usd, 0.01)), fontsize=7,
                    textcoords="offset points", xytext=(0, 6), ha="center")
    rps = plans[-1].decisions_per_s / plans[-1].clients
    ax.set_title(f"{plans[0].target} {plans[0].region}: {rps:g} decisions/s per client, "
                 f"{plans[0].replicas_per_shard} replica(s) per shard", fontsize=9)
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_tier(text: str) -> Tier:
    """NAME=ALGORITHM:LIMIT,WINDOW, e.g. general=gcra:120,60."""
    from ratelimit.tiers import parse_limit_spec

    try:
        name, rest = text.split("=", 1)
        algorithm, spec = rest.split(":", 1)
        limit, window = parse_limit_spec(spec)
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {algorithm!r} not one of {', '.join(ALGORITHMS)}")
        return Tier(name.strip(), limit, window, algorithm)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(f"--tier {text!r}: expected NAME=ALGORITHM:LIMIT,WINDOW like general=gcra:120,60 "
                         f"(algorithm one of {', '.join(ALGORITHMS)}): {exc}") from None


def inputs_from(*, clients: int, rps: float, target: str, headroom: float, region: str | None,
                replicas: int | None, tiers: list[str], node_type: str | None, node_memory: int | None,
                stack: str | None, settings: Path | None) -> Inputs:
    """The stack's defaults (tiers, reserved-memory-percent, replicas, region, CPU alarm line) under
    the flags; each default names where it came from."""
    from infra.thresholds import thresholds_by_name
    from ratelimit.tiers import DEFAULT_TIERS
    from redisops.connection import stack_file_settings

    if target not in TARGETS:
        raise UsageError(f"--target {target!r}: expected one of {', '.join(TARGETS)}")
    sources: dict[str, str] = {}
    path = settings if settings is not None else (Path(f"Pulumi.{stack}.yaml") if stack else None)
    if path is not None:
        st, config = stack_file_settings(path)
        where = path.name
        stack_tiers, thresholds = st.tiers, st.thresholds
        ec = st.config.elasticache
        stack_replicas = (ec.replicas_per_shard if ec.cluster_mode else ec.num_cache_clusters - 1)
        reserved = ec.reserved_memory_percent
        stack_region = config.get("aws:region")
        replicas_key = "replicasPerShard" if ec.cluster_mode else "numCacheClusters - 1"
    else:
        from infra.thresholds import DEFAULT_THRESHOLDS

        where = "defaults"
        stack_tiers, thresholds = DEFAULT_TIERS, DEFAULT_THRESHOLDS
        stack_replicas, reserved, stack_region, replicas_key = 1, 25, None, ""
    cpu = thresholds_by_name(thresholds)["engine_cpu"]
    mem = thresholds_by_name(thresholds)["memory_usage"]
    chosen_tiers = tuple(parse_tier(t) for t in tiers) if tiers else tuple(stack_tiers)
    sources["tiers"] = "--tier" if tiers else (f"{where} rateLimits over ratelimit/tiers.py" if path
                                                else "ratelimit/tiers.py DEFAULT_TIERS")
    sources["replicas_per_shard"] = "--replicas" if replicas is not None else (
        f"{where} elasticache.{replicas_key}" if path else "infra/settings.py replicasPerShard default")
    sources["reserved_memory_percent"] = f"{where} elasticache.reservedMemoryPercent ({reserved} %)" if path \
        else f"infra/settings.py reservedMemoryPercent default ({reserved} %)"
    sources["cpu_budget_percent"] = f"infra/thresholds.py engine_cpu warn ({cpu.warn:g} %)"
    sources["memory_budget_percent"] = f"infra/thresholds.py memory_usage warn ({mem.warn:g} % of maxmemory)"
    sources["region"] = "--region" if region else (f"{where} aws:region" if stack_region else "default us-east-1")
    return Inputs(clients=clients, decisions_per_s=rps, tiers=chosen_tiers, target=target, headroom=headroom,
                  region=region or (str(stack_region) if stack_region else "us-east-1"),
                  replicas=replicas if replicas is not None else stack_replicas,
                  reserved_memory_percent=reserved, cpu_budget_percent=float(cpu.warn or 70),
                  memory_budget_percent=float(mem.warn or 80),
                  node_type=node_type, node_memory_bytes=node_memory, sources=sources)


# docs/sizing.md's worked examples: the guide's tiers, ElastiCache us-east-1, defaults otherwise.
EXAMPLES: tuple[tuple[str, int, float], ...] = (
    ("10k", 10_000, 200.0),
    ("10m", 10_000_000, 100_000.0),
    ("1b", 1_000_000_000, 2_000_000.0),
)
SIZING_DOC = Path(__file__).resolve().parents[1] / "docs" / "sizing.md"


def example_block(clients: int, rps: float, bench: dict[str, Any], prices: dict[str, Any]) -> str:
    inp = inputs_from(clients=clients, rps=rps, target="elasticache", headroom=0.3, region="us-east-1",
                      replicas=None, tiers=[], node_type=None, node_memory=None, stack=None, settings=None)
    p = plan(inp, bench, prices)
    lines = [f"`redisops plan --clients {clients} --rps {rps:g} --target elasticache --region us-east-1`", "",
             "| figure | value | source |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {source} |" for name, value, source in rows(p)]
    return "\n".join(lines) + "\n"


def measured_block(bench: dict[str, Any]) -> str:
    """The benchmark's headline figures: CPU per decision by topology, bytes per client at 1M/10M."""
    env = bench.get("environment", {})
    lines = [f"Redis {env.get('redis_version', '?')}, {env.get('cpus', '?')} shared cores, generated "
             f"{bench.get('generated_at', '?')}.", "",
             "| server CPU per decision (us) | standalone | cluster, 1 shard | cluster, 3 shards |", "|---|---|---|---|"]
    for a in ALGORITHMS:
        cells = []
        for topo in ("standalone", "cluster_1_shard", "cluster_3_shards"):
            row = bench["cost"][topo]["algorithms"][a]
            load = LOAD if LOAD in row else "one_at_a_time"
            cells.append(f"{row[load]['cpu_us_per_decision']:.1f}")
        lines.append(f"| {a} (50 connections) | " + " | ".join(cells) + " |")
    lines += ["", "| bytes per client | standalone 1M | standalone 10M | cluster 1M | cluster 10M |",
              "|---|---|---|---|---|"]
    for a in ALGORITHMS:
        cells = []
        for mode in ("standalone", "cluster"):
            for n in ("1000000", "10000000"):
                got = bench["bytes_per_client"][mode][a].get(n)
                cells.append("-" if got is None else f"{got['bytes_per_client']:.1f}"
                             + ("" if got["source"] == "measured" else " (extrapolated)"))
        entries = " (10 entries)" if a == "sliding_log" else ""
        lines.append(f"| {a}{entries} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_sizing(text: str, bench: dict[str, Any] | None = None, prices: dict[str, Any] | None = None) -> str:
    import re

    bench = bench if bench is not None else load_bench()
    prices = prices if prices is not None else load_prices()
    measured = re.compile(r"(<!-- BEGIN GENERATED: measured -->\n).*?(<!-- END GENERATED: measured -->)", re.S)
    if not measured.search(text):
        raise ValueError("docs/sizing.md: no GENERATED block measured")
    text = measured.sub(lambda m: m.group(1) + measured_block(bench) + m.group(2), text)
    for name, clients, rps in EXAMPLES:
        pattern = re.compile(rf"(<!-- BEGIN GENERATED: plan-{name} -->\n).*?(<!-- END GENERATED: plan-{name} -->)",
                             re.S)
        if not pattern.search(text):
            raise ValueError(f"docs/sizing.md: no GENERATED block plan-{name}")
        block = example_block(clients, rps, bench, prices)
        text = pattern.sub(lambda m, b=block: m.group(1) + b + m.group(2), text)  # type: ignore[misc]
    return text


def main(argv: list[str] | None = None) -> int:
    """`python -m redisops.plan --write` regenerates docs/sizing.md's examples; `--check` fails on drift."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    text = SIZING_DOC.read_text()
    new = render_sizing(text)
    if "--write" in args:
        SIZING_DOC.write_text(new)
        return 0
    if new != text:
        print("docs/sizing.md is out of date: run python -m redisops.plan --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
