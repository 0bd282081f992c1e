"""The rendered cluster node on a real 3x1 cluster with TLS: clients, replication and the bus on
TLS, the ACL model holds (the application routes, it cannot reshape the cluster), and the harness
stops every process."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest
import redis

from redis_conf.cluster import SLOTS
from tests.support.redis_cluster import redis_cluster
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]


def test_tls_cluster_with_acl(tmp_path: Path) -> None:
    with redis_cluster(tmp_path, 3, 1, tls=True) as c:
        assert c.tls is not None
        pids = [n.proc.pid for n in c.nodes]
        primaries = c.primaries()
        assert len(primaries) == 3 and len(c.alive()) == 6
        for p in primaries:
            (replica,) = c.replicas_of(p)
            assert c.info(replica, "replication")["master_link_status"] == "up"
        info = c.cluster_info(c.nodes[0])
        assert (info["cluster_state"], int(info["cluster_slots_ok"]), int(info["cluster_known_nodes"])) == \
            ("ok", SLOTS, 6)

        rc = c.app_client()
        for i in range(60):
            rc.set(f"harness:{{{i}}}", i)
        # Keys spread over the three primaries, each holding only its own slots.
        counts = [int(c.node_client(p).dbsize()) for p in primaries]
        assert sum(counts) == 60 and all(n > 0 for n in counts), counts

        # The application may route (CLUSTER SLOTS above) but not reshape the cluster.
        app = c.node_client(primaries[0], user="default")
        for cmd in (("CLUSTER", "ADDSLOTS", "1"), ("CLUSTER", "FAILOVER"), ("CLUSTER", "RESET"),
                    ("MIGRATE", "127.0.0.1", "1", "k", "0", "100")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*cmd)

        # The plain port is closed and the bus speaks TLS with the stack's certificates.
        node = c.nodes[0]
        ctx = ssl.create_default_context(cafile=str(c.tls.ca_cert))
        with socket.create_connection(("127.0.0.1", node.bus_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock:
            assert tls_sock.version() in ("TLSv1.2", "TLSv1.3")
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            try:
                answer = raw.recv(64)
            except ConnectionResetError:  # the TLS server drops a plaintext client
                answer = b""
            assert not answer.startswith(b"+PONG")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_processes_are_stopped_when_building_fails(tmp_path: Path) -> None:
    started: list[int] = []
    with pytest.raises(ZeroDivisionError), redis_cluster(tmp_path, 3, 0) as c:
        started = [n.proc.pid for n in c.nodes]
        1 / 0  # noqa: B018 - any failure inside the block
    assert len(started) == 3
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
