"""A Redis Cluster as one node sees it: slot coverage, every node's role and state.

Reading is CLUSTER INFO and CLUSTER NODES, which the application user (`default`) and admin may
send (the monitor user only CLUSTER INFO): `redisops health` (cluster mode judges the cluster and
then every node), `redisops dev status` (slot coverage). `create_cluster` builds one from fresh
nodes as admin (the dev stack's cluster topology, the loopback test harness), the limiter's
Functions library loaded on every primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

SLOTS = 16384


@dataclass(frozen=True)
class NodeView:
    """One line of CLUSTER NODES."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    primary_id: str  # "-" for a primary
    link: str
    slots: tuple[tuple[int, int], ...]

    @property
    def role(self) -> str:
        return "primary" if "master" in self.flags else "replica"

    @property
    def failed(self) -> bool:
        return "fail" in self.flags

    @property
    def suspected(self) -> bool:
        return "fail?" in self.flags

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def slot_count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.slots)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def parse_cluster_nodes(text: str) -> list[NodeView]:
    """CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch>
    <link> <slot> ...`; slots being moved (`[slot->-id]`, `[slot-<-id]`) are not owned yet.

    The node's host is its announced hostname when it has one (cluster-announce-hostname;
    ElastiCache 7 announces them): a TLS certificate names the host, not the IP, so dialing the
    IP fails hostname verification. nodes.conf (7.2+) may carry `key=value` aux fields after it."""
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            raise ValueError(f"CLUSTER NODES line with {len(parts)} fields: {line!r}")
        addr, *extra = parts[1].split(",")
        host, _, port = addr.split("@", 1)[0].rpartition(":")
        hostname = extra[0] if extra and "=" not in extra[0] else ""
        host = hostname or host
        slots = []
        for s in parts[8:]:
            if s.startswith("["):
                continue
            lo, _, hi = s.partition("-")
            slots.append((int(lo), int(hi or lo)))
        out.append(NodeView(parts[0], host, int(port or 0), frozenset(parts[2].split(",")), parts[3], parts[7],
                            tuple(slots)))
    return out


def parse_cluster_info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)


@dataclass(frozen=True)
class Coverage:
    """CLUSTER INFO + CLUSTER NODES of one node."""

    state: str
    slots_assigned: int
    slots_ok: int
    slots_pfail: int
    slots_fail: int
    nodes: tuple[NodeView, ...]

    @property
    def primaries(self) -> list[NodeView]:
        return [n for n in self.nodes if n.role == "primary" and n.slots]

    @property
    def replicas(self) -> list[NodeView]:
        return [n for n in self.nodes if n.role == "replica"]

    def replicas_of(self, primary: NodeView) -> list[NodeView]:
        return [n for n in self.nodes if n.primary_id == primary.node_id]

    def summary(self) -> str:
        bad = [n for n in self.nodes if n.failed or n.suspected]
        return (f"cluster_state {self.state}, {self.slots_ok}/{SLOTS} slots ok ({self.slots_assigned} assigned, "
                f"{self.slots_pfail} pfail, {self.slots_fail} fail); {len(self.primaries)} primaries, "
                f"{len(self.replicas)} replicas" + (f", {len(bad)} node(s) failing" if bad else ""))

    def lines(self) -> list[str]:
        """Per shard: the primary, its slot ranges and its replicas, with flags that matter."""
        out = [self.summary()]
        for p in sorted(self.primaries, key=lambda n: n.slots[0]):
            ranges = ",".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in p.slots)
            out.append(f"  primary {p.host}:{p.port} slots {ranges} ({p.slot_count}){_state(p)}")
            for r in self.replicas_of(p):
                out.append(f"    replica {r.host}:{r.port}{_state(r)}")
        for n in self.nodes:
            if n.role == "primary" and not n.slots:
                out.append(f"  primary without slots {n.host}:{n.port}{_state(n)}")
        return out


def _state(n: NodeView) -> str:
    flags = sorted(f for f in n.flags if f in ("fail", "fail?", "handshake", "noaddr"))
    return f" [{', '.join(flags)}]" if flags else ""


def coverage(client: Any) -> Coverage:
    """From a plain client to one cluster node."""
    info = parse_cluster_info(_text(client.execute_command("CLUSTER", "INFO")))
    nodes = parse_cluster_nodes(_text(client.execute_command("CLUSTER", "NODES")))
    # A node that has never met another one (a one-node cluster) lists itself without an
    # address: it is the one this client dialed.
    dialed = str(getattr(client, "connection_pool", None) and client.connection_pool.connection_kwargs.get("host", ""))
    nodes = [replace(n, host=dialed) if not n.host and "myself" in n.flags else n for n in nodes]
    return Coverage(info.get("cluster_state", "?"), int(info.get("cluster_slots_assigned", 0)),
                    int(info.get("cluster_slots_ok", 0)), int(info.get("cluster_slots_pfail", 0)),
                    int(info.get("cluster_slots_fail", 0)), tuple(nodes))


def _settled(clients: Sequence[Any], primaries: int) -> bool:
    for c in clients:
        cov = coverage(c)
        if cov.state != "ok" or cov.slots_ok != SLOTS or len(cov.nodes) != len(clients):
            return False
        if any(f in n.flags for n in cov.nodes for f in ("handshake", "noaddr", "fail", "fail?")):
            return False
        if len(cov.primaries) != primaries or len(cov.replicas) != len(clients) - primaries:
            return False
        repl = c.info("replication")
        if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
            return False
    return True


def _poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:  # a node still starting up
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"the cluster did not settle within {timeout:.0f} s: {what}" + (f" (last: {last})" if last else ""))


def create_cluster(clients: Sequence[Any], addresses: Sequence[tuple[str, int, int]], primaries: int, *,
                   timeout: float = 60.0) -> None:
    """Build a cluster from fresh nodes the way `redis-cli --cluster create` does, as admin.

    `clients[i]` talks to the node announced as `addresses[i]` = (host, port, bus port); nodes
    0..primaries-1 become the primaries with contiguous slot ranges, node primaries + k the
    replica of primary k % primaries. Returns once every node agrees: state ok, every slot
    served, the roles in place, every replica's link up, and the `ratelimit` Functions library on
    every node.

    Functions are per node in a cluster: "it is also necessary to load functions to all cluster
    nodes. This is not handled automatically by Redis Cluster" (redis.io, Introduction to Redis
    Functions, "Functions in cluster"). Each primary loads it before its replicas attach, so their
    first full sync (an RDB, which carries functions) brings it: once the replica links are up,
    every node has it. The application user cannot load it (`-@scripting +fcall +fcall_ro`).
    """
    from ratelimit.functions import load_library
    from redis_conf.cluster import slot_ranges

    ids = [_text(c.execute_command("CLUSTER", "MYID")) for c in clients]
    # Distinct epochs up front, so that no two primaries start with the same configEpoch.
    for i, c in enumerate(clients[:primaries]):
        c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
    for (lo, hi), c in zip(slot_ranges(primaries), clients[:primaries], strict=True):
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
    for host, port, bus in addresses[1:]:
        clients[0].execute_command("CLUSTER", "MEET", host, port, bus)
    _poll(lambda: all(len(parse_cluster_nodes(_text(c.execute_command("CLUSTER", "NODES")))) == len(clients)
                      for c in clients), timeout, "every node knows every other")
    for c in clients[:primaries]:
        load_library(c)
    for k, c in enumerate(clients[primaries:]):
        c.execute_command("CLUSTER", "REPLICATE", ids[k % primaries])
    _poll(lambda: _settled(clients, primaries), timeout, "state ok, 16384 slots served, roles and replica links")
