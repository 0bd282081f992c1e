"""`redisops smoke` and `redisops health` on a real 3x1 cluster with TLS: smoke passes through
RedisCluster; health judges the cluster (state, slots served) and then every node on its own
INFO, and names the node or the slots that break."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit import functions as fn
from ratelimit.functions import LIBRARY_NAME, LIBRARY_RELEASE
from redisops import connection as rc
from redisops import functions
from redisops.cluster import SLOTS, coverage
from redisops.health import HealthOptions, run_health
from redisops.smoke import run_smoke
from tests.integration._redisops_servers import REPO, SETTINGS
from tests.support.procs import wait_until
from tests.support.redis_cluster import FAST_NODE_TIMEOUT_MS, redis_cluster
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]


def test_smoke_and_per_node_health_on_a_tls_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path, 3, 1, tls=True) as c:
        env = c.env(**{t.env_name: t.spec for t in SETTINGS.tiers})
        spec = rc.resolve(environ=env, settings_file=REPO / "Pulumi.dev.yaml")
        assert spec.mode == "cluster" and spec.tls
        smoke = run_smoke(spec)
        assert smoke.passed, [(x.name, x.actual) for x in smoke.failed]
        assert smoke.get("cluster-nodes").actual == "6 nodes (3 primaries, 3 replicas), 16384/16384 slots ok"
        # The harness built it as the dev stack does: the library on every node (functions are per node).
        assert smoke.get("function-library").actual == f"ratelimit_version {LIBRARY_RELEASE} on 6 nodes"
        status = functions.status(spec)
        assert status["passed"] and len(status["nodes"]) == 6, status
        assert {n["state"] for n in status["nodes"]} == {"current"}

        # One shard loses the library (FUNCTION DELETE replicates to its replica): status and smoke
        # name both of its nodes; `redisops functions load` puts it back on every primary.
        shard = next(n for n in c.primaries() if n is not c.alive()[0])
        c.node_client(shard).function_delete(LIBRARY_NAME)
        members = [shard, *c.replicas_of(shard)]
        shard_nodes = {f"127.0.0.1:{n.port}" for n in members}
        assert len(shard_nodes) == 2
        wait_until(lambda: all(fn.read_version(c.node_client(n)) is None for n in members), 30,
                   "the delete replicated")
        status = functions.status(spec)
        assert not status["passed"] and status["state"] == "missing", status
        assert {n["node"] for n in status["nodes"] if n["state"] == "missing"} == shard_nodes
        assert all(a in status["message"] for a in shard_nodes) and "2 of 6 cluster nodes" in status["message"]
        smoke = run_smoke(spec)
        lib = smoke.get("function-library")
        assert lib.status == "fail" and all(a in lib.actual for a in shard_nodes), lib.actual
        assert "redisops functions load" in lib.detail
        loaded = functions.load(spec)
        assert loaded["passed"] and {n["state"] for n in loaded["nodes"]} == {"current"}, loaded
        assert len(loaded["nodes"]) == 6

        options = HealthOptions(sample_seconds=0.2)
        health = run_health(spec, options=options)
        assert health.level() == "OK", [(x.name, x.status, x.actual) for x in health.checks if x.status != "OK"]
        seed = c.alive()[0]
        others = {f"127.0.0.1:{n.port}" for n in c.nodes if n is not seed}
        assert {x.name for x in health.checks if x.name.startswith("memory_usage[")} == \
            {f"memory_usage[{a}]" for a in others}
        assert len([x for x in health.checks if x.name.startswith("replication_link_down[")]) in (2, 3)
        assert health.get("cluster_slots_not_ok").actual.startswith(f"0 of {SLOTS} slots not served")
        view = coverage(c.node_client(seed))
        assert len(view.primaries) == 3 and len(view.replicas) == 3 and view.slots_ok == SLOTS
        assert len(view.lines()) == 1 + 6

        # The seed node gives up 100 of its slots: those slots are named, the state stays ok.
        c.node_client(seed).execute_command("CLUSTER", "DELSLOTSRANGE", 0, 99)
        health = run_health(spec, options=options)
        assert health.get("cluster_slots_not_ok").status == "CRITICAL"
        assert health.get("cluster_slots_not_ok").actual.startswith(f"100 of {SLOTS} slots not served (100 unassigned")
        assert health.get("cluster_state").status == "OK"
        smoke = run_smoke(spec)  # a report that says why, not a traceback
        assert not smoke.passed
        assert any("16284 of 16384 covered" in x.actual or "16284/16384 slots ok" in x.actual for x in smoke.failed), \
            [(x.name, x.actual) for x in smoke.failed]
        c.node_client(seed).execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 99)

        # A replica dies: once the cluster flags it, health names it.
        c.tune(FAST_NODE_TIMEOUT_MS)
        victim = next(n for n in c.alive() if n is not seed and c.info(n, "replication")["role"] == "slave")
        c.kill9(victim)
        where = f"127.0.0.1:{victim.port}"
        wait_until(lambda: any(n.failed and n.port == victim.port for n in coverage(c.node_client(seed)).nodes),
                   60, "the dead replica flagged fail")
        health = run_health(spec, options=options)
        failed = health.get(f"cluster_node_failed[{where}]")
        assert failed.status == "CRITICAL" and "flagged fail" in failed.actual
        assert health.level() == "CRITICAL"
