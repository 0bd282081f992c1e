"""The same limiter through a Redis Cluster client and a Sentinel master_for client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from ratelimit import ALGORITHMS, RateLimiter, decision_client_kwargs
from tests.support.procs import ProcessGroup, wait_until
from tests.support.ratelimit_fixtures import requires_redis, start_server
from tests.support.redisproc import RedisProcess, free_port

pytestmark = [pytest.mark.slow, requires_redis]


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    # One node owning all 16384 slots is a real cluster to the client: it routes by slot,
    # follows MOVED, and fans SCRIPT LOAD out to the primaries.
    rp = start_server(tmp_path_factory.mktemp("rl-cluster"),
                      'save ""\nappendonly no\ncluster-enabled yes\ncluster-config-file nodes.conf\n',
                      cluster_bus=True)
    try:
        admin = redis.Redis(port=rp.port)
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(lambda: b"cluster_state:ok" in admin.execute_command("CLUSTER", "INFO"), 30, "cluster state ok")
        admin.close()
        yield rp
    finally:
        rp.stop()


def test_cluster_client_hash_tags_and_library_reload(cluster_node: RedisProcess) -> None:
    rc = RedisCluster(host="127.0.0.1", port=cluster_node.port, **decision_client_kwargs(1.0))
    try:
        for a in ALGORITHMS:
            limiter = RateLimiter(rc, a)
            ds = [limiter.hit(f"tier:client{i % 7}", 3, 60) for i in range(28)]
            assert sum(d.allowed for d in ds) == 7 * 3 and not any(d.fallback for d in ds)
        # Every key carries its hash tag, so all keys of one client share one slot.
        keys = [k.decode() for k in rc.scan_iter()]
        assert len(keys) == 7 * len(ALGORITHMS)
        for k in keys:
            tag = k[k.index("{") + 1:k.index("}")]
            assert rc.keyslot(k) == rc.keyslot(tag)
        rc.function_flush()  # every primary: redis-py sends FUNCTION FLUSH/LOAD to all of them
        limiter = RateLimiter(rc)
        d = limiter.hit("tier:client0", 3, 60)
        assert not d.fallback and not d.allowed and limiter.library_loads == 1
        scripts = RateLimiter(rc, mode="scripts")  # the EVALSHA opt-in on a cluster
        assert scripts.peek("tier:client0", 3, 60).remaining == 0 and scripts.script_loads == 1
        assert limiter.reset("tier:client0") is True  # one multi-key DEL, same slot
        assert limiter.hit("tier:client0", 3, 60).remaining == 2
    finally:
        rc.close()


def test_sentinel_master_for_client(tmp_path) -> None:
    with ProcessGroup() as group:
        master = start_server(tmp_path / "master")
        group.on_exit(master.stop)
        sport = free_port()
        # down-after a minute: nothing here fails over, and a master starved of CPU for a second
        # on a busy machine must not be judged down.
        sentinel = RedisProcess(workdir=tmp_path / "sentinel", port=sport, sentinel=True,
                                config_text=(f"port {sport}\nsentinel monitor rl 127.0.0.1 {master.port} 1\n"
                                             "sentinel down-after-milliseconds rl 60000\n"))
        group.on_exit(sentinel.stop)
        sentinel.start()
        s = Sentinel([("127.0.0.1", sport)], socket_timeout=5)
        client = s.master_for("rl", **decision_client_kwargs(1.0))
        limiter = RateLimiter(client, "sliding_log")
        assert [limiter.hit("m", 2, 60).allowed for _ in range(3)] == [True, True, False]
        assert redis.Redis(port=master.port).zcard("rl:{m}:s") == 2
        client.close()
