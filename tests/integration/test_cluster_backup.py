"""`redisops backup` / `restore` per shard of a real 3-primary cluster: each shard's manifest
records its slot ranges; a restore into a node serving other slots, or into a server outside the
cluster, is refused before anything is touched; a shard restored into its own node brings back
exactly its keys and the cluster is whole again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from ratelimit import RateLimiter
from ratelimit import functions as fn
from redisops import backup as bk
from redisops import connection as rc
from redisops.errors import OperationError, UsageError
from tests.support.procs import wait_until
from tests.support.redis_cluster import Cluster, Node, redis_cluster
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]


def _spec(c: Cluster, node: Node, cluster: bool = True) -> rc.ConnectionSpec:
    return rc.resolve(environ=c.env(REDIS_URL=f"redis://127.0.0.1:{node.port}",
                                    REDIS_CLUSTER="true" if cluster else "false"))


def test_backup_and_restore_per_shard_with_slot_layout(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster", 3, 0) as c:
        app = c.app_client()
        for i in range(300):
            app.set(f"shard-key:{i}", i)
        primaries = sorted(c.primaries(), key=lambda n: c.cluster_nodes(n)[0]["id"])
        results = {}
        for p in primaries:
            results[p.index] = bk.backup(_spec(c, p), tmp_path / "backups" / f"shard-{p.index}")
        for p in primaries:
            m = results[p.index].manifest
            mine = next(e for e in c.cluster_nodes(p) if "myself" in e["flags"])
            assert m["cluster"]["slots"] == [[int(x) for x in r.split("-")] for r in mine["slots"]]
            assert m["cluster"]["role"] == "primary" and len(m["cluster"]["shards"]) == 3
            assert m["keys"] == int(c.node_client(p).dbsize())
        # Each shard's marker key (no TTL) is hash-tagged into a slot the shard owns.
        assert sum(r.manifest["keys"] for r in results.values()) == 303
        for r in results.values():
            slot = key_slot(r.manifest["marker"]["key"].encode())
            assert any(lo <= slot <= hi for lo, hi in r.manifest["cluster"]["slots"])

        a, b = primaries[0], primaries[1]
        b_keys = int(c.node_client(b).dbsize())
        # A's shard into B: refused while B runs, before anything is stopped or written.
        with pytest.raises(OperationError, match="slot layout mismatch, nothing was changed"):
            bk.restore(_spec(c, b), results[a.index].path, force=True)
        assert b.proc.running() and int(c.node_client(b).dbsize()) == b_keys
        # A shard's backup is not a single server's.
        with pytest.raises(UsageError, match="backup of one cluster shard"):
            bk.restore(_spec(c, a, cluster=False), results[a.index].path, data_dir=a.proc.workdir)

        # A loses its data; its own backup brings exactly its keys back.
        lost = int(c.node_client(a).dbsize())
        c.node_client(a).flushall()
        # FLUSHALL keeps functions; FUNCTION FLUSH drops them: the library comes back only from the
        # shard's RDB, which carries functions (the backup was taken with the library loaded).
        c.node_client(a).function_flush()
        assert fn.read_version(c.node_client(a)) is None
        restored = bk.restore(_spec(c, a), results[a.index].path, force=True)
        assert restored.data_dir == a.proc.workdir
        a.proc.proc.wait(10)  # type: ignore[union-attr]
        a.proc.start(write_config=False)
        # `restore --verify-only` at once: the restarted primary answers DBSIZE during its writable
        # delay but its marker key only once its cluster_state is ok (verify_server waits for that).
        # With app credentials only (no REDIS_ADMIN_PASSWORD) every read, CLUSTER INFO/NODES included,
        # goes as the app user under the rendered ACL; then once more as admin.
        app_only = rc.resolve(environ=c.env(REDIS_URL=f"redis://127.0.0.1:{a.port}", REDIS_ADMIN_PASSWORD=""))
        assert app_only.admin_password is None
        assert bk.verify_server(app_only, results[a.index].manifest, 60) == f"{lost} keys, as in the backup"
        assert bk.verify_server(_spec(c, a), results[a.index].manifest, 60) == f"{lost} keys, as in the backup"
        c.wait_stable(expect_replicas=False)
        assert int(c.node_client(a).dbsize()) == lost
        app = c.app_client()
        assert [int(app.get(f"shard-key:{i}")) for i in range(300)] == list(range(300))
        assert fn.read_version(c.node_client(a, "default")) == fn.LIBRARY_RELEASE
        on_a = next(k for k in (f"rl:{{t{i}}}" for i in range(1000)) if c.primary_of_key(k) is a)
        limiter = RateLimiter(app, "fixed_window", timeout=5.0, load_library=False)
        assert [limiter.hit(on_a, 2, 60).allowed for _ in range(3)] == [True, True, False]
        assert limiter.library_problem is None

        # Stopped node, wrong shard: the node's nodes.conf decides, nothing is replaced.
        b.proc.stop()
        before = sorted(p.name for p in b.proc.workdir.iterdir())
        with pytest.raises(OperationError, match="slot layout mismatch"):
            bk.restore(_spec(c, b), results[a.index].path, data_dir=b.proc.workdir)
        assert sorted(p.name for p in b.proc.workdir.iterdir()) == before


def test_restore_refuses_a_replica_and_keeps_the_primary_with_replicas_present(tmp_path: Path) -> None:
    """With replicas present the restored primary stays primary: its replicas' automatic failover is
    held while it is down (a promoted replica would win the slots with a higher configEpoch and the
    restored node would full-sync its data away, redis/redis#8614), and released afterwards."""
    with redis_cluster(tmp_path / "cluster", 3, 1) as c:
        c.wait_stable()
        app = c.app_client()
        for i in range(200):
            app.set(f"held:{i}", i)
        a = c.primary_of_key("held:0")
        replica = c.replicas_of(a)[0]
        c.node_client(a).execute_command("WAIT", 1, 5000)
        taken = bk.backup(_spec(c, a), tmp_path / "backups")
        keys = taken.manifest["keys"]
        assert "replicas" not in taken.manifest["cluster"]

        # Into the replica: refused before anything is stopped.
        with pytest.raises(OperationError, match="not `myself,master`"):
            bk.restore(_spec(c, replica), taken.path, force=True)
        assert replica.proc.running() and a.proc.running()

        c.node_client(a).flushall()
        # Failover as fast as the harness allows: without the hold the replica would be promoted
        # while the primary is down.
        c.tune(1000)
        loading = threading.Event()

        def seen(msg: str, _frac: float | None) -> None:
            if msg.startswith("waiting for Redis"):
                loading.set()

        done: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: done.update(
            r=_call(lambda: bk.restore(_spec(c, a), taken.path, force=True, wait=60, progress=seen))))
        worker.start()
        try:
            assert loading.wait(60), "restore never reached the restart"
            assert c.node_client(replica).config_get("cluster-replica-no-failover") == {
                "cluster-replica-no-failover": "yes"}
            # The replica has marked its primary failed: past the point it would have been elected.
            a_id = taken.manifest["cluster"]["node_id"]
            wait_until(lambda: any(e["id"] == a_id and "fail" in e["flags"] for e in c.cluster_nodes(replica)),
                       30, "the replica marks the stopped primary FAIL", interval=0.05)
            a.proc.proc.wait(10)  # type: ignore[union-attr]
            a.proc.start(write_config=False)
        finally:
            worker.join(90)
        result = done["r"]
        assert not isinstance(result, BaseException), result
        assert result.verified_keys == keys
        c.wait_stable()
        me = next(e for e in c.cluster_nodes(a) if "myself" in e["flags"])
        assert "master" in me["flags"]
        assert [[int(x) for x in r.split("-")] for r in me["slots"]] == taken.manifest["cluster"]["slots"]
        assert next(e for e in c.cluster_nodes(replica) if "myself" in e["flags"])["master"] == me["id"]
        assert c.node_client(replica).config_get("cluster-replica-no-failover") == {
            "cluster-replica-no-failover": "no"}
        app = c.app_client()
        assert [int(app.get(f"held:{i}")) for i in range(200)] == list(range(200))


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BaseException as exc:  # handed to the test thread
        return exc
