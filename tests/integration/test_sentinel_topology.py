"""Proof 1: the rendered files start 1 primary + 2 replicas + 3 Sentinels, plain and TLS.

Replication authenticates as the `replica` ACL user, Sentinel reaches Redis as `sentinel`, the
Sentinels require a password and hand clients nothing but discovery.
"""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_conf.sentinel import MASTER_NAME
from tests.integration._sentinel_topology import SETTLE_S, STEADY, Topology, sentinel_topology, wait_until
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]


# One topology per mode for the module: every test here only reads or writes test keys. STEADY:
# no test here fails over, so a primary briefly starved of CPU must not be replaced.
@pytest.fixture(scope="module", params=[False, True], ids=["plain", "tls"])
def topo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Topology:
    with sentinel_topology(tmp_path_factory.mktemp("sentinel"), tls=request.param, tuning=STEADY) as t:
        yield t  # type: ignore[misc]


def test_replicas_follow_the_primary_as_the_replication_user(topo: Topology) -> None:
    primary = topo.node_client(0)
    info = primary.info("replication")
    assert info["role"] == "master"
    assert info["connected_slaves"] == 2
    assert {info[f"slave{i}"]["port"] for i in range(2)} == {topo.nodes[1].port, topo.nodes[2].port}
    # The links were authenticated by the replica user: it is the only client named so on the primary.
    users = {c["user"] for c in primary.client_list() if "S" in c["flags"]}
    assert users == {"replica"}
    for i in (1, 2):
        rinfo = topo.node_client(i).info("replication")
        assert rinfo["role"] == "slave" and rinfo["master_link_status"] == "up"
        assert rinfo["master_port"] == topo.nodes[0].port
    primary.set("proof:replicated", "yes")
    for i in (1, 2):
        wait_until(lambda i=i: topo.node_client(i).get("proof:replicated") == b"yes", SETTLE_S, f"the write on node{i}")


def test_replication_is_tls_exactly_when_tls_is_on(topo: Topology) -> None:
    conf = topo.nodes[1].config_path.read_text()
    if topo.tls is None:
        assert "tls-port" not in conf and "tls-replication" not in conf
        # Plain port is the only one.
        redis.Redis("127.0.0.1", topo.nodes[1].port, password=topo.passwords["app"]).ping()
    else:
        assert "port 0" in conf and "tls-replication yes" in conf
        # Nothing speaks plain text: a non-TLS client cannot even read the greeting.
        with pytest.raises(redis.ConnectionError):  # dropped at once; the timeout only bounds a hang
            redis.Redis("127.0.0.1", topo.nodes[0].port, password=topo.passwords["app"],
                        socket_timeout=30, retry=Retry(NoBackoff(), 0)).ping()
        # The primary sees its replicas as TLS connections (the replica user on the TLS port).
        assert topo.node_client(1).info("replication")["master_link_status"] == "up"


def test_replication_user_can_do_nothing_else(topo: Topology) -> None:
    repl = topo.node_client(0, "replica")
    repl.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        repl.get("anything")
    with pytest.raises(redis.exceptions.NoPermissionError):
        repl.execute_command("REPLICAOF", "NO", "ONE")


def test_sentinels_agree_and_require_a_password(topo: Topology) -> None:
    topo.wait_sentinels_agree(topo.nodes[0].port)
    for i in range(3):
        # Replicas are learnt from the primary's INFO, peers from hello messages (every 2 s).
        def complete(i: int = i) -> bool:
            m = topo.sentinel_client(i, "admin").sentinel_master(MASTER_NAME)
            return bool(m["num-slaves"] == 2 and m["num-other-sentinels"] == 2)

        wait_until(complete, SETTLE_S, f"sentinel{i} knowing 2 replicas and 2 peers")
        master = topo.sentinel_client(i, "admin").sentinel_master(MASTER_NAME)
        assert master["quorum"] == 2 and master["down-after-milliseconds"] == topo.tuning.down_after_ms
        assert master["is_master"] and not master["is_odown"] and not master["is_sdown"]
    # No password, no answer.
    anon = redis.Redis("127.0.0.1", topo.sentinels[0].port, socket_timeout=30, retry=Retry(NoBackoff(), 0),
                       **topo.ssl_kwargs())
    with pytest.raises(redis.exceptions.AuthenticationError):
        anon.sentinel_get_master_addr_by_name(MASTER_NAME)
    # The application's password gives discovery only: it cannot steer Sentinel.
    app = topo.sentinel_client(0)
    assert int(app.sentinel_get_master_addr_by_name(MASTER_NAME)[1]) == topo.nodes[0].port
    for cmd in (("SENTINEL", "FAILOVER", MASTER_NAME), ("SENTINEL", "SET", MASTER_NAME, "quorum", "1"),
                ("SENTINEL", "RESET", "*"), ("SENTINEL", "REMOVE", MASTER_NAME)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command(*cmd)


def test_sentinel_reaches_redis_as_the_sentinel_user(topo: Topology) -> None:
    users = {c["user"] for c in topo.node_client(0).client_list() if c["name"].startswith("sentinel-")}
    assert users == {"sentinel"}


def test_application_discovers_the_master_through_authenticated_sentinels(topo: Topology) -> None:
    s = topo.sentinel()
    assert s.discover_master(MASTER_NAME) == ("127.0.0.1", topo.nodes[0].port)
    assert sorted(p for _, p in s.discover_slaves(MASTER_NAME)) == sorted(n.port for n in topo.nodes[1:])
    m = s.master_for(MASTER_NAME)
    m.set("proof:via-sentinel", "1")
    assert topo.node_client(0).get("proof:via-sentinel") == b"1"
    # The app user is denied what the guide disables, through Sentinel as directly.
    with pytest.raises(redis.exceptions.NoPermissionError):
        m.flushall()
