"""Validate `redisops plan`'s model against a real redis-server holding 1M limiter keys: the
predicted memory and server cost per decision, both within 10 % (the issue's bar).

The prediction comes from the committed measurements (bench/results/cluster.json) through the same
code `redisops plan` runs; the real figures from a fresh server filled by the real scripts. Both
figures are printed (pytest -s) and carried in the assertion message."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from ratelimit.clusterbench import LIMIT, WINDOW_S, _cpu_main, pipe_fill
from ratelimit.scripts import script
from ratelimit.server import LocalRedis
from ratelimit.tiers import Tier
from redisops import plan as pl
from tests.support.ratelimit_fixtures import requires_redis

pytestmark = [pytest.mark.slow, requires_redis]

CLIENTS = 500_000  # x 2 tiers = 1M keys
TIERS = (Tier("general", LIMIT, WINDOW_S, "gcra"), Tier("mfa", 5, 60, "sliding_log"))


def _fill_tier(port: int, tier: Tier) -> None:
    cost = tier.limit if tier.algorithm == "sliding_log" else LIMIT
    pipe_fill(port, tier.algorithm, CLIENTS, cost, limit=tier.limit if tier.algorithm == "sliding_log" else LIMIT,
              start=0 if tier.name == "general" else CLIENTS)


def test_plan_predicts_memory_and_server_cost_of_1m_keys_within_10_percent() -> None:
    predicted = pl.plan(pl.Inputs(clients=CLIENTS, decisions_per_s=1000, tiers=TIERS, headroom=0.0),
                        pl.load_bench(), pl.load_prices())
    assert predicted.shards == 1 and not predicted.cluster_mode
    with LocalRedis() as srv:
        r = redis.Redis(port=srv.port)
        before = int(r.info("memory")["used_memory"])
        for tier in TIERS:
            _fill_tier(srv.port, tier)
        assert r.dbsize() == 2 * CLIENTS
        measured = int(r.info("memory")["used_memory"]) - before

        mem_ratio = measured / predicted.memory_bytes
        mem_report = (f"1M keys ({CLIENTS} gcra + {CLIENTS} sliding_log x 5 entries): memory predicted "
                      f"{predicted.memory_bytes} B, measured {measured} B (ratio {mem_ratio:.3f})")
        print(mem_report)
        assert 0.9 <= mem_ratio <= 1.1, mem_report

        # Server cost: the plan's figure is the dearest tier's CPU per decision under 50 connections
        # (clusterbench "concurrent_50": the least disturbed of its rounds of 20k requests); measure
        # the same load on this 1M-key server. Other tenants of a shared machine only ever add CPU per
        # decision (cache misses, preemption), so the least disturbed round is kept, as the benchmark
        # does: at least 3 rounds, more (up to 6) only while even the best one reads high.
        dearest = max(TIERS, key=lambda t: pl.Model(pl.load_bench(), "").cpu_us(t.algorithm, False)[0])
        s = script(dearest.algorithm)
        r.script_load(s.source)
        exe = shutil.which("redis-benchmark")
        if exe is None:
            pytest.skip("redis-benchmark not installed: the server-cost half needs it")
        samples: list[float] = []
        while len(samples) < 3 or (len(samples) < 6 and min(samples) > 1.1 * predicted.cpu_us_per_decision):
            r.config_resetstat()
            cpu0 = _cpu_main([r])
            subprocess.run([exe, "-p", str(srv.port), "-n", "40000", "-c", "50", "-r", str(CLIENTS), "-q",
                            "evalsha", s.sha, "1", "rl:{general:c__rand_int__}:" + dearest.algorithm[0],
                            str(dearest.limit), str(dearest.window_s * 1000), "1", "0"],
                           check=True, capture_output=True, timeout=120)
            calls = int(r.info("commandstats")["cmdstat_evalsha"]["calls"])
            samples.append((_cpu_main([r]) - cpu0) * 1e6 / calls)
        real_cpu = min(samples)
        r.close()
    cpu_ratio = real_cpu / predicted.cpu_us_per_decision
    report = (f"{mem_report}; server CPU per decision ({dearest.algorithm}) predicted "
              f"{predicted.cpu_us_per_decision:.2f} us, measured {real_cpu:.2f} us (ratio {cpu_ratio:.3f}, "
              f"rounds {[round(x, 2) for x in samples]})")
    print(report)
    assert 0.9 <= cpu_ratio <= 1.1, report
