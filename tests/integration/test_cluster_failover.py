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
from redisops.backup import aof_written
from tests.support.cluster_load import counter_on_server, durability_run, failover_run
from tests.support.procs import wait_until
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

        reader = RateLimiter(c.app_client(**decision_client_kwargs(5.0)), "fixed_window", timeout=5.0)
        on_file: dict[str, int] = {}

        def kill() -> None:
            # What the AOF certainly holds at the kill: the counter read now, once the node shows
            # its AOF buffer written. Not a share of the acknowledged admissions: with everysec
            # Redis acknowledges writes it postpones writing for up to 2 s while an fsync runs
            # (redisops.backup.aof_written), so a kill -9 then loses all of them (the whole
            # ~0.3 s run here when a loaded disk makes the fsync slow).
            on_file["counter"] = counter_on_server(reader, "durable")
            wait_until(lambda: aof_written(c.info(victim, "persistence")), 10, "the victim's AOF buffer written")
            c.kill9(victim)

        r = durability_run(limiter, "durable", kill, restart, settle_samples=500)
        assert r["errors"] == [], r["errors"]
        assert r["admitted_acknowledged"] >= 500 and on_file["counter"] > 0, (r, on_file)
        # The restarted node reloaded its AOF: it is the same node with the same counter, not an
        # empty one (the loss itself is a figure: bench/cluster_failover.py).
        assert r["remembered_after_restart"] >= on_file["counter"], (r, on_file)
        assert isinstance(c.node_client(victim).ping(), bool)


def test_load_harness_records_what_the_limiter_lets_through() -> None:
    """Sanity of the load harness itself: an exception the limiter lets through is recorded."""
    from tests.support.cluster_load import SteadyLoad, wait_for_samples

    def boom() -> object:
        raise redis.exceptions.ResponseError("ERR boom")

    with SteadyLoad(boom, threads=1) as load:  # type: ignore[arg-type]
        wait_for_samples(load, lambda s: len(s) >= 3, 10, "samples")
    assert all(s.error == "ResponseError: ERR boom" for s in load.snapshot())
