"""redisops.cluster: CLUSTER NODES / INFO parsing and the coverage summary."""

from __future__ import annotations

import pytest

from redisops.cluster import Coverage, parse_cluster_info, parse_cluster_nodes

NODES = """\
a1 10.0.0.1:6379@16379,redis-0 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 10.0.0.2:6379@16379 master - 0 1700000000000 2 connected 5461-10922 [5461-<-a1]
c3 10.0.0.3:6379@16379 master,fail - 0 1700000000000 3 disconnected 10923-16383
d4 10.0.0.4:6379@16379 slave a1 0 1700000000000 1 connected
e5 10.0.0.5:6379@16379 slave,fail? b2 0 1700000000000 2 connected
"""


def test_parse_nodes_roles_flags_and_slots() -> None:
    nodes = {n.node_id: n for n in parse_cluster_nodes(NODES)}
    # The announced hostname is what a TLS certificate names: it wins over the IP.
    assert nodes["a1"].address == ("redis-0", 6379) and nodes["a1"].role == "primary"
    assert nodes["b2"].address == ("10.0.0.2", 6379)
    assert nodes["a1"].slots == ((0, 5460),)  # a slot being migrated is not counted twice
    assert nodes["b2"].slots == ((5461, 10922),)
    assert nodes["c3"].failed and not nodes["c3"].suspected
    assert nodes["e5"].suspected and not nodes["e5"].failed and nodes["e5"].role == "replica"
    assert nodes["d4"].primary_id == "a1"


def test_coverage_summary_and_lines() -> None:
    info = parse_cluster_info("cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10922\r\n"
                              "cluster_slots_pfail:0\r\ncluster_slots_fail:5462\r\n")
    cov = Coverage(info["cluster_state"], 16384, int(info["cluster_slots_ok"]), 0, 5462,
                   tuple(parse_cluster_nodes(NODES)))
    assert cov.summary() == ("cluster_state ok, 10922/16384 slots ok (16384 assigned, 0 pfail, 5462 fail); "
                             "3 primaries, 2 replicas, 2 node(s) failing")
    lines = cov.lines()
    assert lines[1] == "  primary redis-0:6379 slots 0-5460 (5461)"
    assert lines[2] == "    replica 10.0.0.4:6379"
    assert "  primary 10.0.0.3:6379 slots 10923-16383 (5461) [fail]" in lines


def test_malformed_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="CLUSTER NODES line with 3 fields"):
        parse_cluster_nodes("a b c")


def test_hostname_field_empty_or_followed_by_aux_fields() -> None:
    """`ip:port@cport,` (no hostname announced) keeps the IP; nodes.conf of Redis 7.2+ carries
    `,hostname,shard-id=...` or `,,shard-id=...` (no hostname) after the address."""
    text = ("a1 10.0.0.1:6379@16379, myself,master - 0 0 1 connected 0-16383\n"
            "b2 10.0.0.2:6379@16379,node-b.example.cache.amazonaws.com,shard-id=ff slave a1 0 0 1 connected\n"
            "c3 10.0.0.3:6379@16379,,shard-id=ee slave a1 0 0 1 connected\n")
    nodes = {n.node_id: n for n in parse_cluster_nodes(text)}
    assert nodes["a1"].address == ("10.0.0.1", 6379)
    assert nodes["b2"].address == ("node-b.example.cache.amazonaws.com", 6379)
    assert nodes["c3"].address == ("10.0.0.3", 6379)
