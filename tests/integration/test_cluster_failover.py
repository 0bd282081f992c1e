"""Failover of a shard's primary on a real 3x1 cluster: kill -9 under steady load. Correctness
only (the timings and losses are measured by bench/cluster_failover.py into
bench/results/cluster_failover.json): every request gets a decision, never an exception; the
fallbacks follow each tier's policy; decisions succeed again on the promoted replica; the old
primary rejoins as its replica. And durability: kill -9 with AOF everysec under load, restart,
the counter is still there."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from ratelimit import RateLimiter, decision_client_kwargs
from tests.support.cluster_load import durability_run, failover_run
from tests.support.redis_cluster import redis_cluster
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]


def test_shard_primary_killed_under_load(tmp_path: Path) -> None:
    with redis_cluster(tmp_path, 3, 1) as c:
        run = failover_run(c)
        for name in ("fail_closed", "fail_open"):
            r = run[name]
            assert r["errors"] == [], (name, r["errors"])
            assert r["fallbacks"] > 0, f"{name}: no decision fell back: the kill was not observed"
            # The policy, and nothing else, decides while the shard has no primary.
            assert r["fallbacks_allowed"] == (r["fallbacks"] if name == "fail_open" else 0), (name, r)
            assert r["recovery_s"] is not None and r["remembered"] > 0, (name, r)
        # The replica took over and the old primary follows it.
        promoted = c.by_port(run["promoted_port"])
        victim = c.by_port(run["victim_port"])
        assert c.info(promoted, "replication")["role"] == "master"
        assert c.info(victim, "replication")["role"] == "slave"
        assert c.info(victim, "replication")["master_port"] == promoted.port


def test_aof_everysec_keeps_admissions_across_kill9_on_a_cluster_shard(tmp_path: Path) -> None:
    with redis_cluster(tmp_path, 3, 0) as c:
        limiter = RateLimiter(c.app_client(**decision_client_kwargs(0.5)), "fixed_window", timeout=0.5)
        victim = c.primary_of_key("rl:{durable}:f")

        def restart() -> RateLimiter:
            victim.proc.start(write_config=False)
            c.wait_stable(expect_replicas=False)
            return RateLimiter(c.app_client(**decision_client_kwargs(5.0)), "fixed_window", timeout=5.0)

        r = durability_run(limiter, "durable", lambda: c.kill9(victim), restart, settle_samples=500)
        assert r["errors"] == [], r["errors"]
        assert r["admitted_acknowledged"] >= 500 and r["remembered_after_restart"] > 0, r
        # The restarted node reloaded its AOF: it is the same node with the same counter, not an
        # empty one (the loss itself is a figure: bench/cluster_failover.py).
        assert r["remembered_after_restart"] >= r["admitted_acknowledged"] // 2, r
        assert isinstance(c.node_client(victim).ping(), bool)


def test_load_harness_records_what_the_limiter_lets_through() -> None:
    """Sanity of the load harness itself: an exception the limiter lets through is recorded."""
    from tests.support.cluster_load import SteadyLoad, wait_for_samples

    def boom() -> object:
        raise redis.exceptions.ResponseError("ERR boom")

    with SteadyLoad(boom, threads=1) as load:  # type: ignore[arg-type]
        wait_for_samples(load, lambda s: len(s) >= 3, 10, "samples")
    assert all(s.error == "ResponseError: ERR boom" for s in load.snapshot())
