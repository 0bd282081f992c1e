"""A real N x M Redis Cluster of Debian redis-server processes on loopback, for tests and benchmarks.

Every node is rendered by `redis_conf.cluster.node_conf` (the stack's renderer) with the ACL file
of `redis_conf.acl`, listens on an OS-assigned loopback port (its bus port, port + 10000, is held
free too: see `redisproc.free_port`) and, with `tls=True`, speaks TLS on clients, replication and
the cluster bus. The cluster is built the way `redis-cli --cluster create` builds it (distinct
config epochs, MEET, contiguous slot ranges, REPLICATE), as `admin`, and handed over only once
every node agrees: state ok, all slots assigned, every replica's link up.

    with redis_cluster(tmp_path, primaries=3, replicas=1, tls=True) as c:
        rc = c.app_client()                 # redis.cluster.RedisCluster as the application
        c.kill9(c.primary_of_key("rl:{k}"))  # then c.wait_stable() after the failover

Every process started is stopped on exit, whatever happened (also when building the cluster
fails half-way). Waits poll for a state (wait_until), never sleep for a guessed time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from redis_conf import CREDENTIALS, TlsFiles, load_base, render_acl_file
from redis_conf.cluster import BUS_PORT_OFFSET, SLOTS, Announce, ClusterLayout, ClusterTuning, node_conf
from redisops.cluster import create_cluster
from tests.support.certs import TlsFiles as CertFiles
from tests.support.certs import make_tls_files
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess, free_port, stop_all

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
HOST = "127.0.0.1"
# Like the Sentinel topologies (docs/decisions.md, "A deterministic CI"): a cluster starts
# STEADY, so a node starved of CPU on a busy machine is not failed over under a test; a test that
# fails a primary over switches every node to FAST just before its kill (Cluster.tune).
STEADY_NODE_TIMEOUT_MS = 30_000
FAST_NODE_TIMEOUT_MS = 1000
# Test-only, on the command line so the rendered file stays the stack's: a replica's first sync
# starts at once instead of after Redis' 5 s wait for more replicas to share one transfer.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def new_passwords() -> dict[str, str]:
    return {c: f"{c}-{secrets.token_urlsafe(18)}" for c in CREDENTIALS}


@dataclass
class Node:
    index: int
    proc: RedisProcess
    bus_port: int

    @property
    def port(self) -> int:
        return self.proc.port


@dataclass
class Cluster:
    layout: ClusterLayout
    workdir: Path
    passwords: dict[str, str]
    tls: CertFiles | None
    nodes: list[Node] = field(default_factory=list)
    _clients: list[Any] = field(default_factory=list)
    _node_clients: dict[tuple[int, str], redis.Redis] = field(default_factory=dict)

    # ---- clients -------------------------------------------------------------------------

    def ssl_kwargs(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)} if self.tls is not None else {}

    def node_client(self, node: Node, user: str = "admin") -> redis.Redis:
        """A plain client to one node, one per node and user, closed with the cluster. `user`: an
        ACL user name; the application is `default` (password `app`)."""
        key = (node.index, user)
        if key not in self._node_clients:
            password = self.passwords["app" if user == "default" else user]
            self._node_clients[key] = redis.Redis(host=HOST, port=node.port, username=user, password=password,
                                                  socket_timeout=10, **self.ssl_kwargs())
        return self._node_clients[key]

    def app_client(self, **kw: Any) -> RedisCluster:
        """redis-py's RedisCluster as the application (`default` user), seeded with every node."""
        client = RedisCluster(startup_nodes=[ClusterNode(HOST, n.port) for n in self.alive()],
                              password=self.passwords["app"], **self.ssl_kwargs(), **kw)
        self._clients.append(client)
        return client

    def seed_url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{HOST}:{self.alive()[0].port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The env contract redisops / the limiter read (REDIS_CLUSTER=true)."""
        env = {"REDIS_URL": self.seed_url(), "REDIS_PASSWORD": self.passwords["app"], "REDIS_CLUSTER": "true",
               "REDIS_TLS": "true" if self.tls else "false", "REDIS_ADMIN_PASSWORD": self.passwords["admin"],
               "REDIS_TIMEOUT": "10000"}
        if self.tls is not None:
            env["REDIS_CA_CERT"] = str(self.tls.ca_cert)
        env.update(overrides)
        return env

    def redis_cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """redis-cli as admin (the password goes through REDISCLI_AUTH, not argv)."""
        tls = ["--tls", "--cacert", str(self.tls.ca_cert)] if self.tls is not None else []
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REDISCLI_AUTH": self.passwords["admin"]}
        return subprocess.run([REDIS_CLI, *tls, "--user", "admin", *args], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    # ---- state ---------------------------------------------------------------------------

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.running()]

    def info(self, node: Node, section: str = "") -> dict[str, Any]:
        return dict(self.node_client(node).info(section) if section else self.node_client(node).info())

    def cluster_info(self, node: Node) -> dict[str, str]:
        raw = self.node_client(node).execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    def cluster_nodes(self, node: Node) -> list[dict[str, Any]]:
        """CLUSTER NODES as node sees it: id, port, flags, master id, link state, slot ranges."""
        raw = self.node_client(node).execute_command("CLUSTER", "NODES")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        out = []
        for line in text.strip().splitlines():
            parts = line.split()
            addr = parts[1].split("@")[0]
            out.append({"id": parts[0], "port": int(addr.rsplit(":", 1)[1] or 0), "flags": set(parts[2].split(",")),
                        "master": parts[3], "link": parts[7], "slots": parts[8:]})
        return out

    def by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def primaries(self) -> list[Node]:
        """The nodes that are primaries now (as the first live node sees it)."""
        view = self.cluster_nodes(self.alive()[0])
        ports = {e["port"] for e in view if "master" in e["flags"] and "fail" not in e["flags"] and e["slots"]}
        return [n for n in self.alive() if n.port in ports]

    def slot_of(self, key: str) -> int:
        return int(self.node_client(self.alive()[0]).execute_command("CLUSTER", "KEYSLOT", key))

    def primary_of_slot(self, slot: int) -> Node:
        for entry in self.node_client(self.alive()[0]).execute_command("CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                return self.by_port(int(entry[2][1]))
        raise LookupError(f"slot {slot} is not served")

    def primary_of_key(self, key: str) -> Node:
        return self.primary_of_slot(self.slot_of(key))

    def replicas_of(self, primary: Node) -> list[Node]:
        view = self.cluster_nodes(primary)
        me = next(e["id"] for e in view if "myself" in e["flags"])
        ports = {e["port"] for e in view if e["master"] == me and "fail" not in e["flags"]}
        return [n for n in self.alive() if n.port in ports]

    def stable(self, expect_replicas: bool = True) -> bool:
        """Every live node: state ok, every slot assigned and ok, the same node count; every live
        replica's link to its primary up; no slot open for migration."""
        alive = self.alive()
        for n in alive:
            ci = self.cluster_info(n)
            if ci.get("cluster_state") != "ok" or int(ci.get("cluster_slots_ok", 0)) != SLOTS:
                return False
            view = self.cluster_nodes(n)
            if any("handshake" in e["flags"] or "noaddr" in e["flags"] for e in view):
                return False
            if any(s.startswith("[") for e in view for s in e["slots"]):  # [slot->-id] migrating/importing
                return False
            live = [e for e in view if "fail" not in e["flags"] and "fail?" not in e["flags"]]
            if len(live) < len(alive):
                return False
            # Every node sees the same roles: N primaries with slots, the rest replicas.
            if len([e for e in live if "master" in e["flags"] and e["slots"]]) != self.layout.primaries:
                return False
            if expect_replicas and len([e for e in live if "slave" in e["flags"]]) != len(alive) - self.layout.primaries:
                return False
            role = self.info(n, "replication")
            if role.get("role") == "slave" and role.get("master_link_status") != "up":
                return False
        return True

    def wait_slot_owner(self, slot: int, owner: Node, timeout: float = 60.0) -> None:
        """Until every live node serves `slot` from `owner` (and nothing is left half-moved)."""
        def agreed() -> bool:
            for n in self.alive():
                entry = next((e for e in self.node_client(n).execute_command("CLUSTER", "SLOTS")
                              if int(e[0]) <= slot <= int(e[1])), None)
                if entry is None or int(entry[2][1]) != owner.port:
                    return False
            return self.stable(expect_replicas=False)

        wait_until(agreed, timeout, f"every node agrees slot {slot} is on port {owner.port}", interval=0.05)

    def wait_stable(self, timeout: float = 60.0, expect_replicas: bool = True) -> None:
        wait_until(lambda: self.stable(expect_replicas), timeout, "cluster state ok on every node", interval=0.05)

    # ---- faults --------------------------------------------------------------------------

    def tune(self, node_timeout_ms: int) -> None:
        """cluster-node-timeout on every live node, at run time (CONFIG SET as admin)."""
        for n in self.alive():
            self.node_client(n).config_set("cluster-node-timeout", node_timeout_ms)

    def kill9(self, node: Node) -> None:
        node.proc.kill9()

    def stop(self) -> None:
        for c in [*self._clients, *self._node_clients.values()]:
            with contextlib.suppress(Exception):  # a client of a killed node: stopping the rest matters more
                c.close()
        self._clients.clear()
        self._node_clients.clear()
        stop_all([n.proc for n in self.nodes])


def _node_text(c: Cluster, port: int, bus_port: int, workdir: Path, tuning: ClusterTuning,
               overrides: Mapping[str, Any]) -> str:
    acl = workdir / "users.acl"
    acl.write_text(render_acl_file(c.passwords))
    acl.chmod(0o600)
    tls = None
    if c.tls is not None:
        tls = TlsFiles(str(c.tls.cert), str(c.tls.key), str(c.tls.ca_cert))
    return node_conf(load_base().with_overrides(dict(overrides)), passwords=c.passwords, bind=HOST, port=port,
                     bus_port=bus_port, data_dir=str(workdir), aclfile=str(acl), tls=tls,
                     announce=Announce(HOST, port, bus_port), tuning=tuning)


def _create(c: Cluster) -> None:
    """What `redis-cli --cluster create` does, as admin (the dev stack's own builder), then the
    harness' stricter agreement check."""
    create_cluster([c.node_client(n) for n in c.nodes], [(HOST, n.port, n.bus_port) for n in c.nodes],
                   c.layout.primaries)
    c.wait_stable()


@contextmanager
def redis_cluster(workdir: Path, primaries: int = 3, replicas: int = 1, *, tls: bool = False,
                  node_timeout_ms: int = STEADY_NODE_TIMEOUT_MS, overrides: Mapping[str, Any] | None = None,
                  passwords: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Start, build and hand over a cluster; stop every node on exit.

    `overrides`: redis.conf settings on top of the shipped base (e.g. {"appendonly": False} for
    a pure-throughput run). The base's `maxmemory`/AOF apply per node as they would in the stack.
    """
    layout = ClusterLayout(primaries, replicas)
    tuning = ClusterTuning(node_timeout_ms=node_timeout_ms)
    workdir.mkdir(parents=True, exist_ok=True)
    certs = make_tls_files(workdir / "tls") if tls else None
    c = Cluster(layout, workdir, passwords or new_passwords(), certs)
    try:
        for i in range(layout.size):
            port = free_port(cluster_bus=True)
            bus = port + BUS_PORT_OFFSET
            d = workdir / f"node-{i}"
            d.mkdir(parents=True, exist_ok=True)
            text = _node_text(c, port, bus, d, tuning, overrides or {})
            node = Node(i, RedisProcess(workdir=d, config_text=text, port=port,
                                                            extra_args=list(FAST_SYNC)), bus)
            c.nodes.append(node)
            node.proc.start()
        _create(c)
        yield c
    finally:
        c.stop()
