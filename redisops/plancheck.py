"""The check of `redisops plan`'s model against a real redis-server holding 1M limiter keys.

Memory is deterministic for a given Redis build and is asserted by
tests/integration/test_plan_model.py. Server CPU per decision is a timing: it is measured and
written by `python bench/plan_model.py` (bench/results/plan_model.json), never asserted in a test
(docs/decisions.md, "A deterministic CI")."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from ratelimit.clusterbench import LIMIT, WINDOW_S, _cpu_main, pipe_fill
from ratelimit.scripts import script
from ratelimit.server import LocalRedis, memory_in_use
from ratelimit.tiers import Tier
from redisops import plan as pl

CLIENTS = 500_000  # x 2 tiers = 1M keys
TIERS = (Tier("general", LIMIT, WINDOW_S, "gcra"), Tier("mfa", 5, 60, "sliding_log"))
CPU_REQUESTS = 40_000


def _fill_tier(port: int, tier: Tier, clients: int) -> None:
    sliding = tier.algorithm == "sliding_log"
    pipe_fill(port, tier.algorithm, clients, tier.limit if sliding else LIMIT,
              limit=tier.limit if sliding else LIMIT, start=0 if tier.name == "general" else clients)


def _cpu_rounds(r: redis.Redis, port: int, tier: Tier, clients: int, rounds: int) -> list[float]:
    """Main-thread CPU per decision of `tier`'s script under 50 connections (as clusterbench's
    "concurrent_50", the figure plan uses), one figure per round."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark not installed (Debian package redis-tools): the CPU half needs it")
    s = script(tier.algorithm)
    r.script_load(s.source)
    samples = []
    for _ in range(rounds):
        r.config_resetstat()
        cpu0 = _cpu_main([r])
        subprocess.run([exe, "-p", str(port), "-n", str(CPU_REQUESTS), "-c", "50", "-r", str(clients), "-q",
                        "evalsha", s.sha, "1", "rl:{general:c__rand_int__}:" + tier.algorithm[0],
                        str(tier.limit), str(tier.window_s * 1000), "1", "0"],
                       check=True, capture_output=True, timeout=300)
        calls = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])
        samples.append((_cpu_main([r]) - cpu0) * 1e6 / calls)
    return samples


def model_check(*, clients: int = CLIENTS, cpu_rounds: int = 0) -> dict[str, Any]:
    """Fill a fresh server with `clients` keys per tier of TIERS; return the plan's prediction beside
    what the server holds, and (cpu_rounds > 0) the measured CPU per decision of the dearest tier."""
    bench = pl.load_bench()
    predicted = pl.plan(pl.Inputs(clients=clients, decisions_per_s=1000, tiers=TIERS, headroom=0.0),
                        bench, pl.load_prices())
    out: dict[str, Any] = {"clients_per_tier": clients, "keys": 2 * clients,
                           "tiers": [f"{t.name}:{t.algorithm}:{t.limit}/{t.window_s}s" for t in TIERS],
                           "predicted_shards": predicted.shards, "predicted_cluster_mode": predicted.cluster_mode,
                           "memory_predicted_bytes": predicted.memory_bytes}
    with LocalRedis() as srv:
        r = redis.Redis(port=srv.port)
        before = memory_in_use(r)
        for tier in TIERS:
            _fill_tier(srv.port, tier, clients)
        out["dbsize"] = int(r.dbsize())
        out["memory_measured_bytes"] = memory_in_use(r) - before
        out["memory_ratio"] = round(out["memory_measured_bytes"] / predicted.memory_bytes, 4)
        if cpu_rounds:
            model = pl.Model(bench, "")
            dearest = max(TIERS, key=lambda t: model.cpu_us(t.algorithm, False)[0])
            samples = _cpu_rounds(r, srv.port, dearest, clients, cpu_rounds)
            # Other tenants of a shared machine only add CPU per decision (cache misses,
            # preemption): the least disturbed round is the figure, as clusterbench does.
            out["cpu"] = {"tier": dearest.name, "algorithm": dearest.algorithm,
                          "predicted_us": round(predicted.cpu_us_per_decision, 2),
                          "rounds_us": [round(x, 2) for x in samples],
                          "measured_us": round(min(samples), 2),
                          "ratio": round(min(samples) / predicted.cpu_us_per_decision, 3)}
        out["redis_version"] = r.info("server")["redis_version"]
        r.close()
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results", help="directory of plan_model.json")
    p.add_argument("--rounds", type=int, default=5, help="CPU rounds (the least disturbed is kept)")
    ns = p.parse_args(argv)
    if ns.rounds < 1:
        p.error(f"--rounds {ns.rounds}: expected at least 1")
    start = time.monotonic()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    result = {"machine": {"load_avg_at_start": load}, **model_check(cpu_rounds=ns.rounds)}
    result["duration_s"] = round(time.monotonic() - start, 1)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan_model.json").write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0
