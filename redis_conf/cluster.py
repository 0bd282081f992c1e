"""Redis Cluster: the one renderer of a cluster node's redis.conf.

Every cluster node (the dev stack's process and Docker modes, the loopback proofs in
tests/support/redis_cluster.py, the benchmarks) is rendered here from the same typed settings
as a single node (`redis_conf.render.render_redis_conf`) plus the cluster lines, so what is
tested is what is run.

Who authenticates how (the ACL model of `redis_conf.acl`, unchanged):

* every node carries the same ACL file; the application is `default`, whose `+@all -@dangerous`
  keeps the routing commands a cluster client needs (CLUSTER SLOTS/SHARDS/NODES, ASKING,
  READONLY are not @dangerous) and denies the ones that change the cluster (CLUSTER
  ADDSLOTS/SETSLOT/FAILOVER/..., MIGRATE are @dangerous);
* every node carries `masteruser replica` + `masterauth`: the cluster itself turns a primary into
  a replica (failover, replica migration, CLUSTER REPLICATE), and a replica is promoted without
  anyone handing it credentials;
* operators create, reshard and fail over as `admin`; MIGRATE carries `AUTH2 admin <password>`
  to the target node (redis-cli --cluster does this with --user/--pass);
* the cluster bus has no authentication in Redis 7 (redis.io "Redis cluster specification"): it
  is protected by binding to a private/loopback address and, with TLS, by `tls-cluster yes`,
  which puts the bus on TLS with the same certificates (a node presents its server certificate as
  a client, so it must carry the clientAuth usage).

`masterauth` is plaintext by Redis' design: the file is written with mode 0600.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis_conf.render import TlsFiles, render_redis_conf
from redis_conf.schema import RedisConf
from redis_conf.sentinel import TopologyError

SLOTS = 16384
REDIS_PORT = 6379
BUS_PORT_OFFSET = 10000  # Redis' default: the bus listens on port + 10000 unless cluster-port says otherwise
MAX_PRIMARIES = 100  # far beyond what a rate limiter needs; guards a typo such as 1000
MAX_REPLICAS = 5


class ClusterError(TopologyError):
    """A cluster layout or tuning that cannot work: the setting, its value, what is allowed."""


@dataclass(frozen=True)
class ClusterTuning:
    """The cluster knobs.

    * `node_timeout_ms`: how long a primary may be unreachable before the majority of primaries
      marks it failed and its replica starts an election; the failover time is about this plus
      an election (a few hundred ms). Redis' default is 15000; 5000 matches Sentinel's
      down-after-milliseconds here (docs/sentinel.md).
    * `require_full_coverage` off: when one shard has no primary, the other shards keep serving
      their slots. A limiter key lives in exactly one slot, so only the clients hashed to the
      lost shard see errors (and get their tier's failure policy), not every client.
    * `replica_validity_factor`: a replica does not fail over when its last interaction with the
      primary is older than node-timeout x factor + repl-ping-replica-period (redis.conf, "cluster-
      replica-validity-factor": "If the last interaction is too old, the replica will not try to
      failover at all"; 0 means "replicas will always try to failover the master regardless of the
      last time they interacted with the master"). 0 would let a replica cut off for hours become
      primary with hours-old counters (every window reset); 10 (Redis' default) bounds it to
      5 s x 10 + 10 s = 60 s with the default timeout, while a replica that was in sync when the
      primary died is still elected.
    """

    node_timeout_ms: int = 5000
    require_full_coverage: bool = False
    replica_validity_factor: int = 10
    allow_replica_migration: bool = True

    def __post_init__(self) -> None:
        if not 100 <= self.node_timeout_ms <= 120_000:
            raise ClusterError("cluster.nodeTimeoutMs", self.node_timeout_ms, "expected 100..120000 ms")
        if not 0 <= self.replica_validity_factor <= 100:
            raise ClusterError("cluster.replicaValidityFactor", self.replica_validity_factor, "expected 0..100")


@dataclass(frozen=True)
class ClusterLayout:
    """N primaries with M replicas each."""

    primaries: int = 3
    replicas: int = 1

    def __post_init__(self) -> None:
        # 3 is the smallest count at which a majority of primaries survives the loss of one and
        # can vote a replica in: with 1 or 2 primaries a failed primary is never replaced.
        if isinstance(self.primaries, bool) or not isinstance(self.primaries, int) \
                or not 3 <= self.primaries <= MAX_PRIMARIES:
            raise ClusterError("local.cluster.primaries", self.primaries,
                               f"expected an integer 3..{MAX_PRIMARIES} (a failover needs a majority of "
                               "primaries, so fewer than 3 cannot fail over)")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                or not 0 <= self.replicas <= MAX_REPLICAS:
            raise ClusterError("local.cluster.replicas", self.replicas,
                               f"expected an integer 0..{MAX_REPLICAS} replicas per primary "
                               "(0 means no failover)")

    @property
    def size(self) -> int:
        return self.primaries * (1 + self.replicas)

    def slot_ranges(self) -> list[tuple[int, int]]:
        """Contiguous, inclusive slot ranges, primary i gets the i-th (as `redis-cli --cluster
        create` splits them)."""
        return slot_ranges(self.primaries)

    def shard_of(self, node_index: int) -> int:
        """Nodes 0..N-1 are the primaries, then the replicas of shard 0, 1, ... in turn."""
        if node_index < self.primaries:
            return node_index
        return (node_index - self.primaries) % self.primaries


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    if shards < 1:
        raise ClusterError("shards", shards, "expected at least 1")
    bounds = [round(i * SLOTS / shards) for i in range(shards + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(shards)]


@dataclass(frozen=True)
class Announce:
    """What the other nodes and the clients are told: address, client port, bus port."""

    host: str
    port: int
    bus_port: int


def _check_port(key: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise ClusterError(key, port, "expected a TCP port 1..65535")


def node_conf(
    conf: RedisConf,
    *,
    passwords: Mapping[str, str],
    bind: str,
    port: int = REDIS_PORT,
    bus_port: int | None = None,
    data_dir: str = "/data",
    aclfile: str = "/usr/local/etc/redis/users.acl",
    tls: TlsFiles | None = None,
    announce: Announce | None = None,
    tuning: ClusterTuning | None = None,
    config_file: str = "nodes.conf",
) -> str:
    """redis.conf of one cluster node (every node: which are primaries is decided at creation and
    changed by failovers, not by the file).

    `bus_port` sets `cluster-port` (default port + 10000). With `tls`, the client port speaks TLS
    only, and replication and the cluster bus use TLS (`tls-replication`, `tls-cluster`), so the
    node announces its TLS port in MOVED/ASK redirections and CLUSTER SLOTS.
    """
    tuning = tuning or ClusterTuning()
    replica_password = passwords.get("replica")
    if not replica_password:
        raise ClusterError("passwords.replica", None, "the replication user's password is required: every "
                           "cluster node may become a replica")
    if any(c in replica_password for c in '"\\\n\r '):
        raise ClusterError("passwords.replica", "<secret>", "no quotes, backslashes, spaces or newlines "
                           "(it is written into redis.conf)")
    _check_port("port", port)
    if bus_port is not None:
        _check_port("bus_port", bus_port)
        if bus_port == port:
            raise ClusterError("bus_port", bus_port, "must differ from the client port")
    if "/" in config_file:
        raise ClusterError("config_file", config_file, "a file name inside the data dir, no path")
    text = render_redis_conf(conf, bind=bind, port=port, data_dir=data_dir, aclfile=aclfile, tls=tls)
    yes_no = {True: "yes", False: "no"}
    lines = [
        "cluster-enabled yes",
        # Written by the node itself (its id, epochs, the slot map); lives in `dir`, kept across
        # restarts: a node that loses it comes back as a stranger.
        f"cluster-config-file {config_file}",
        f"cluster-node-timeout {tuning.node_timeout_ms}",
        f"cluster-require-full-coverage {yes_no[tuning.require_full_coverage]}",
        f"cluster-replica-validity-factor {tuning.replica_validity_factor}",
        f"cluster-allow-replica-migration {yes_no[tuning.allow_replica_migration]}",
        # Decisions are writes: a shard without primary refuses reads as well, rather than
        # answering from a replica that may be behind.
        "cluster-allow-reads-when-down no",
        "masteruser replica",
        f'masterauth "{replica_password}"',
        "replica-serve-stale-data no",
    ]
    if bus_port is not None:
        lines.append(f"cluster-port {bus_port}")
    if tls is not None:
        lines.append("tls-cluster yes")
    if announce is not None:
        _check_port("announce.port", announce.port)
        _check_port("announce.bus_port", announce.bus_port)
        lines.append(f"cluster-announce-ip {announce.host}")
        # With tls-cluster the node announces its TLS port; the plain port is closed (port 0).
        lines.append(f"cluster-announce-{'tls-' if tls is not None else ''}port {announce.port}")
        lines.append(f"cluster-announce-bus-port {announce.bus_port}")
    return text + "\n".join(lines) + "\n"
