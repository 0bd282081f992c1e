"""Redis Sentinel topology: one primary, replicas and three Sentinels, rendered from redis_conf.

The same functions render the files for the EC2 hosts (`infra.components.sentinel_hosts`), the
dev containers (`infra.components.local_sentinel`) and the loopback proofs
(tests/integration/test_sentinel_*.py), so what is tested is what is deployed.

Who authenticates how:

* every Redis node carries the ACL file of `redis_conf.acl` (app = default, monitor, replica,
  sentinel, admin) and `masteruser replica` + `masterauth`, the primary too: after a failover
  Sentinel turns the old primary into a replica with REPLICAOF only, it does not hand out
  credentials;
* Sentinel reaches the Redis nodes as the ACL user `sentinel` (`sentinel auth-user/auth-pass`);
* the Sentinels themselves require a password. Their `default` user, used by applications for
  discovery, authenticates with the application's password (REDIS_PASSWORD, so redis-py needs
  `sentinel_kwargs={"password": ...}`) and may only ask where the master is; peers talk to
  each other as `sentinel` (`sentinel sentinel-user/sentinel-pass`) and operators use `admin`
  (SENTINEL FAILOVER / SET / RESET).

`sentinel auth-pass`, `sentinel sentinel-pass` and `masterauth` are plaintext by Redis' design:
the files are written with mode 0600, owned by the redis user, never put into user data, argv
or a container's environment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis_conf.acl import password_digest
from redis_conf.render import ReplicaOf, TlsFiles, listener_lines, render_redis_conf
from redis_conf.schema import RedisConf

MASTER_NAME = "redisstack"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
NODE_COUNT = 3
SENTINEL_COUNT = 3

# What an application may do on a Sentinel: find the master and the replicas, and listen for
# +switch-master. Everything that changes Sentinel state (FAILOVER, SET, RESET, REMOVE,
# MONITOR, CONFIG) is the admin's.
SENTINEL_CLIENT_RULES = (
    "resetchannels &__sentinel__:* &+switch-master -@all +ping +hello +client|setname +subscribe +unsubscribe"
    " +sentinel|masters +sentinel|master +sentinel|get-master-addr-by-name +sentinel|replicas"
    " +sentinel|slaves +sentinel|sentinels +sentinel|ckquorum +role"
)
# Peers exchange hellos (PUBLISH/SUBSCRIBE), vote (SENTINEL IS-MASTER-DOWN-BY-ADDR) and PING.
SENTINEL_PEER_RULES = "allchannels +@all"
SENTINEL_ADMIN_RULES = "allchannels +@all"

Role = Literal["primary", "replica"]


class TopologyError(ValueError):
    """A Sentinel tuning or topology that cannot work: the setting, its value, what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key} = {value!r}: {allowed}")


@dataclass(frozen=True)
class SentinelTuning:
    """The Sentinel knobs, with the production defaults of docs/sentinel.md."""

    quorum: int = 2
    down_after_ms: int = 5000
    failover_timeout_ms: int = 60000
    parallel_syncs: int = 1
    min_replicas_to_write: int = 1
    min_replicas_max_lag: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.quorum <= SENTINEL_COUNT:
            raise TopologyError("sentinel.quorum", self.quorum, f"expected 1..{SENTINEL_COUNT} "
                                f"(a majority, 2 of {SENTINEL_COUNT}, is recommended)")
        if self.down_after_ms < 100:
            raise TopologyError("sentinel.downAfterMs", self.down_after_ms, "expected at least 100 ms")
        if self.failover_timeout_ms < self.down_after_ms:
            raise TopologyError("sentinel.failoverTimeoutMs", self.failover_timeout_ms,
                                f"expected at least sentinel.downAfterMs ({self.down_after_ms})")
        if self.parallel_syncs < 1:
            raise TopologyError("sentinel.parallelSyncs", self.parallel_syncs, "expected at least 1")
        if not 0 <= self.min_replicas_to_write < NODE_COUNT:
            raise TopologyError("sentinel.minReplicasToWrite", self.min_replicas_to_write,
                                f"expected 0..{NODE_COUNT - 1} (there are {NODE_COUNT - 1} replicas)")
        if self.min_replicas_max_lag < 1:
            raise TopologyError("sentinel.minReplicasMaxLag", self.min_replicas_max_lag, "expected >= 1 s")

    @classmethod
    def from_settings(cls, s: Any) -> SentinelTuning:
        """From `infra.settings.SentinelSettings` (duck-typed so this module stays Pulumi-free)."""
        return cls(quorum=s.quorum, down_after_ms=s.down_after_ms, failover_timeout_ms=s.failover_timeout_ms,
                   parallel_syncs=s.parallel_syncs, min_replicas_to_write=s.min_replicas_to_write,
                   min_replicas_max_lag=s.min_replicas_max_lag)


@dataclass(frozen=True)
class Endpoint:
    """An address as the other members see it (IP or DNS name) and its port."""

    host: str
    port: int

    @property
    def is_hostname(self) -> bool:
        return any(c.isalpha() for c in self.host) and ":" not in self.host


def _require(passwords: Mapping[str, str], *names: str) -> None:
    missing = [n for n in names if not passwords.get(n)]
    if missing:
        raise TopologyError("passwords", missing, "every credential is required")
    for n in names:
        if any(c in passwords[n] for c in '"\\\n\r '):
            raise TopologyError(f"passwords.{n}", "<secret>", "no quotes, backslashes, spaces or newlines "
                                "(it is written into redis.conf / sentinel.conf)")


def node_conf(
    conf: RedisConf,
    *,
    role: Role,
    primary: Endpoint,
    passwords: Mapping[str, str],
    tuning: SentinelTuning,
    bind: str,
    port: int = REDIS_PORT,
    data_dir: str = "/var/lib/redis",
    aclfile: str = "/etc/redis/users.acl",
    tls: TlsFiles | None = None,
    announce: Endpoint | None = None,
) -> str:
    """redis.conf of one data node (primary or replica).

    Every node gets the replication credentials and `min-replicas-*`, because Sentinel may
    promote any of them: the settings must already be in place on the node that becomes the
    primary, and the old primary must be able to follow the new one.
    """
    _require(passwords, "replica")
    conf = conf.with_overrides({
        "min-replicas-to-write": tuning.min_replicas_to_write,
        "min-replicas-max-lag": tuning.min_replicas_max_lag,
    })
    replica_of = (ReplicaOf(primary.host, primary.port, "replica", passwords["replica"])
                  if role == "replica" else None)
    text = render_redis_conf(conf, bind=bind, port=port, data_dir=data_dir, aclfile=aclfile, tls=tls,
                             replica_of=replica_of,
                             announce=(announce.host, announce.port) if announce else None)
    if role == "primary":
        text += f'masteruser replica\nmasterauth "{passwords["replica"]}"\n'
    # A replica that lost its primary keeps answering reads from stale data; rate-limit
    # decisions are writes, so nothing is lost by refusing.
    text += "replica-serve-stale-data no\n"
    return text


def sentinel_conf(
    *,
    primary: Endpoint,
    passwords: Mapping[str, str],
    tuning: SentinelTuning,
    bind: str,
    port: int = SENTINEL_PORT,
    data_dir: str = "/var/lib/redis-sentinel",
    tls: TlsFiles | None = None,
    announce: Endpoint | None = None,
    master_name: str = MASTER_NAME,
    hostnames: bool | None = None,
) -> str:
    """sentinel.conf of one Sentinel. Sentinel rewrites this file (state, epochs, known peers):
    it must stay writable by the redis user and is rendered only at first boot.

    `passwords` needs app (client discovery), sentinel (Sentinel -> Redis and Sentinel ->
    Sentinel) and admin (operators). `hostnames` turns on resolve/announce-hostnames; by default
    it is on when the primary or the announced address is a DNS name.
    """
    _require(passwords, "app", "sentinel", "admin")
    if hostnames is None:
        hostnames = primary.is_hostname or (announce is not None and announce.is_hostname)
    lines = [
        "# Rendered by redisstack (redis_conf/sentinel.py); Sentinel rewrites the state below.",
        f"bind {bind}",
        # Sentinel defaults protected-mode to no; with a bind address and passwords it can be on.
        "protected-mode yes",
        f"dir {data_dir}",
    ]
    lines += listener_lines(port, tls)
    lines += [
        f"user default on #{password_digest(passwords['app'])} {SENTINEL_CLIENT_RULES}",
        f"user sentinel on #{password_digest(passwords['sentinel'])} {SENTINEL_PEER_RULES}",
        f"user admin on #{password_digest(passwords['admin'])} {SENTINEL_ADMIN_RULES}",
        "sentinel sentinel-user sentinel",
        f"sentinel sentinel-pass {passwords['sentinel']}",
    ]
    if hostnames:
        lines += ["sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"]
    if announce is not None:
        lines += [f"sentinel announce-ip {announce.host}", f"sentinel announce-port {announce.port}"]
    m = master_name
    lines += [
        f"sentinel monitor {m} {primary.host} {primary.port} {tuning.quorum}",
        f"sentinel auth-user {m} sentinel",
        f"sentinel auth-pass {m} {passwords['sentinel']}",
        f"sentinel down-after-milliseconds {m} {tuning.down_after_ms}",
        f"sentinel failover-timeout {m} {tuning.failover_timeout_ms}",
        f"sentinel parallel-syncs {m} {tuning.parallel_syncs}",
        # Nobody may point Sentinel at scripts through SENTINEL SET.
        "sentinel deny-scripts-reconfig yes",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class NodeFiles:
    """The files of one host (or container set): its Redis node and its Sentinel."""

    index: int
    role: Role
    redis_conf: str
    sentinel_conf: str


def topology_files(
    conf: RedisConf,
    nodes: Sequence[Endpoint],
    sentinels: Sequence[Endpoint],
    *,
    passwords: Mapping[str, str],
    tuning: SentinelTuning,
    binds: Sequence[str] | None = None,
    sentinel_binds: Sequence[str] | None = None,
    tls: TlsFiles | None = None,
    data_dirs: Sequence[str] | None = None,
    sentinel_dirs: Sequence[str] | None = None,
    aclfile: str | Sequence[str] = "/etc/redis/users.acl",
    announce: bool = True,
    master_name: str = MASTER_NAME,
) -> list[NodeFiles]:
    """Files for node i (0 = initial primary) and Sentinel i. Binds default to the announced
    hosts (the private interface); `announce` adds replica-announce / sentinel announce so that
    what Sentinel hands to clients is the address they can reach."""
    if len(nodes) != NODE_COUNT or len(sentinels) != SENTINEL_COUNT:
        raise TopologyError("nodes/sentinels", (len(nodes), len(sentinels)),
                            f"expected {NODE_COUNT} nodes and {SENTINEL_COUNT} Sentinels")
    if tuning.quorum <= SENTINEL_COUNT // 2:
        raise TopologyError("sentinel.quorum", tuning.quorum, f"with {SENTINEL_COUNT} Sentinels a quorum below "
                            f"{SENTINEL_COUNT // 2 + 1} lets a minority declare the primary down")
    binds = list(binds or [n.host for n in nodes])
    sentinel_binds = list(sentinel_binds or [s.host for s in sentinels])
    acls = [aclfile] * NODE_COUNT if isinstance(aclfile, str) else list(aclfile)
    out = []
    for i, (node, sent) in enumerate(zip(nodes, sentinels, strict=True)):
        role: Role = "primary" if i == 0 else "replica"
        out.append(NodeFiles(
            index=i,
            role=role,
            redis_conf=node_conf(conf, role=role, primary=nodes[0], passwords=passwords, tuning=tuning,
                                 bind=binds[i], port=node.port, tls=tls, aclfile=acls[i],
                                 data_dir=(data_dirs[i] if data_dirs else "/var/lib/redis"),
                                 announce=node if announce else None),
            sentinel_conf=sentinel_conf(primary=nodes[0], passwords=passwords, tuning=tuning,
                                        bind=sentinel_binds[i], port=sent.port, tls=tls,
                                        data_dir=(sentinel_dirs[i] if sentinel_dirs else "/var/lib/redis-sentinel"),
                                        announce=sent if announce else None, master_name=master_name),
        ))
    return out
