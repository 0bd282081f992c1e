"""redis_conf.cluster: the cluster node's redis.conf, the layout and its validation."""

from __future__ import annotations

import pytest

from redis_conf import CREDENTIALS, load_base
from redis_conf.cluster import (
    SLOTS,
    Announce,
    ClusterError,
    ClusterLayout,
    ClusterTuning,
    node_conf,
    slot_ranges,
)
from redis_conf.render import TlsFiles

PASSWORDS = {c: f"{c}-password-0123456789" for c in CREDENTIALS}
TLS = TlsFiles("/tls/redis.crt", "/tls/redis.key", "/tls/ca.crt")


def directives(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            assert name not in out, f"{name} rendered twice"
            out[name] = value
    return out


def test_plain_node_is_a_cluster_node_with_replication_credentials() -> None:
    d = directives(node_conf(load_base(), passwords=PASSWORDS, bind="10.0.0.5", port=7000, data_dir="/data",
                             aclfile="/etc/redis/users.acl"))
    assert d["cluster-enabled"] == "yes"
    assert d["cluster-config-file"] == "nodes.conf"
    assert d["cluster-node-timeout"] == "5000"
    assert d["cluster-require-full-coverage"] == "no"
    # Bounded (redis.conf: 0 = a replica always fails over, however stale its data).
    assert d["cluster-replica-validity-factor"] == "10"
    assert d["cluster-allow-reads-when-down"] == "no"
    assert d["masteruser"] == "replica"
    assert d["masterauth"] == f'"{PASSWORDS["replica"]}"'
    assert d["replica-serve-stale-data"] == "no"
    # The single-node settings are all there: the cluster adds, it does not replace.
    assert d["port"] == "7000" and d["bind"] == "10.0.0.5" and d["aclfile"] == "/etc/redis/users.acl"
    assert d["maxmemory-policy"] == "allkeys-lru" and d["appendonly"] == "yes"
    assert "tls-cluster" not in d and "cluster-port" not in d and "cluster-announce-ip" not in d
    assert "replicaof" not in d  # roles are set by the cluster, not the file


def test_tls_node_puts_clients_replication_and_bus_on_tls_and_announces_the_tls_port() -> None:
    d = directives(node_conf(load_base(), passwords=PASSWORDS, bind="127.0.0.1", port=7001, bus_port=17501,
                             tls=TLS, announce=Announce("127.0.0.1", 7001, 17501)))
    assert d["port"] == "0" and d["tls-port"] == "7001"
    assert d["tls-cluster"] == "yes" and d["tls-replication"] == "yes"
    assert d["cluster-port"] == "17501"
    assert d["cluster-announce-ip"] == "127.0.0.1"
    assert d["cluster-announce-tls-port"] == "7001" and "cluster-announce-port" not in d
    assert d["cluster-announce-bus-port"] == "17501"


def test_plain_announce_uses_the_plain_port() -> None:
    d = directives(node_conf(load_base(), passwords=PASSWORDS, bind="0.0.0.0", port=6379,
                             announce=Announce("172.20.0.3", 16379, 26379)))
    assert d["cluster-announce-port"] == "16379" and "cluster-announce-tls-port" not in d


def test_tuning_is_rendered() -> None:
    t = ClusterTuning(node_timeout_ms=1500, require_full_coverage=True, replica_validity_factor=0,
                      allow_replica_migration=False)
    d = directives(node_conf(load_base(), passwords=PASSWORDS, bind="127.0.0.1", tuning=t))
    assert (d["cluster-node-timeout"], d["cluster-require-full-coverage"], d["cluster-replica-validity-factor"],
            d["cluster-allow-replica-migration"]) == ("1500", "yes", "0", "no")


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"passwords": {"app": "x"}}, "passwords.replica"),
    ({"passwords": {**PASSWORDS, "replica": 'has "quote'}}, "passwords.replica"),
    ({"port": 70000}, "port"),
    ({"bus_port": 0}, "bus_port"),
    ({"port": 7000, "bus_port": 7000}, "bus_port"),
    ({"config_file": "/etc/nodes.conf"}, "config_file"),
    ({"announce": Announce("127.0.0.1", 7000, 99999)}, "announce.bus_port"),
])
def test_bad_node_inputs_name_the_key(kwargs: dict[str, object], key: str) -> None:
    args: dict[str, object] = {"passwords": PASSWORDS, "bind": "127.0.0.1", **kwargs}
    with pytest.raises(ClusterError) as e:
        node_conf(load_base(), **args)  # type: ignore[arg-type]
    assert e.value.key == key
    assert "<secret>" in str(e.value) or PASSWORDS["replica"] not in str(e.value)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"node_timeout_ms": 50}, "cluster.nodeTimeoutMs"),
    ({"replica_validity_factor": -1}, "cluster.replicaValidityFactor"),
])
def test_bad_tuning(kwargs: dict[str, int], key: str) -> None:
    with pytest.raises(ClusterError) as e:
        ClusterTuning(**kwargs)
    assert e.value.key == key and "expected" in str(e.value)


def test_layout_default_and_shards() -> None:
    layout = ClusterLayout()
    assert (layout.primaries, layout.replicas, layout.size) == (3, 1, 6)
    assert [layout.shard_of(i) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert ClusterLayout(3, 2).size == 9 and [ClusterLayout(3, 2).shard_of(i) for i in range(3, 9)] == [0, 1, 2] * 2


@pytest.mark.parametrize(("primaries", "replicas", "key"), [
    (2, 1, "local.cluster.primaries"), (101, 1, "local.cluster.primaries"), ("3", 1, "local.cluster.primaries"),
    (True, 1, "local.cluster.primaries"), (3, -1, "local.cluster.replicas"), (3, 6, "local.cluster.replicas"),
])
def test_bad_layouts(primaries: object, replicas: object, key: str) -> None:
    with pytest.raises(ClusterError) as e:
        ClusterLayout(primaries, replicas)  # type: ignore[arg-type]
    assert e.value.key == key and repr(primaries if "primaries" in key else replicas) in str(e.value)


@pytest.mark.parametrize("shards", [1, 3, 5, 7, 100])
def test_slot_ranges_cover_every_slot_once(shards: int) -> None:
    ranges = slot_ranges(shards)
    covered = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    assert covered == list(range(SLOTS))
    sizes = [hi - lo + 1 for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_three_shards_split_like_redis_cli() -> None:
    # redis-cli --cluster create on 3 primaries: 0-5460, 5461-10922, 10923-16383.
    assert slot_ranges(3) == [(0, 5460), (5461, 10922), (10923, 16383)]
