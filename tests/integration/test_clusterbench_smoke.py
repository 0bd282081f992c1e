"""The scaling benchmark runs end to end at toy sizes on real servers (standalone, 1- and 3-shard
clusters) and writes every field `redisops plan` reads; no timing is asserted."""

from __future__ import annotations

import json
import shutil

import pytest

from ratelimit.clusterbench import LocalCluster, bucket_bytes, next_pow2, run_cluster_benchmark
from ratelimit.tiers import ALGORITHMS
from tests.support.ratelimit_fixtures import requires_redis

pytestmark = [pytest.mark.slow, requires_redis]


def test_cluster_benchmark_writes_what_plan_reads(tmp_path) -> None:
    sizes = {"gcra": [3_000, 6_000], "fixed_window": [3_000], "sliding_log": [3_000]}
    result = run_cluster_benchmark(tmp_path, decisions=600, clients=300, rounds=1, sizes=sizes,
                                   log_entries=(1, 10), log_clients=1_000, targets=(6_000, 100_000))
    doc = json.loads((tmp_path / "cluster.json").read_text())
    assert doc == json.loads(json.dumps(result))
    assert set(doc["cost"]) == {"standalone", "cluster_1_shard", "cluster_3_shards"}
    assert doc["cost"]["cluster_3_shards"]["shards"] == 3
    loads = {"pipelined", "one_at_a_time"} | ({"concurrent_50"} if shutil.which("redis-benchmark") else set())
    for topo, row in doc["cost"].items():
        assert set(row["algorithms"]) == set(ALGORITHMS), topo
        for algorithm, by_load in row["algorithms"].items():
            assert set(by_load) == loads, (topo, algorithm)
            for load, m in by_load.items():
                # Sane, not fast: a decision costs the server something, and well under 10 ms.
                assert 0 < m["cpu_us_per_decision"] < 10_000 and 0 < m["usec_per_call"] < 10_000, (topo, load)
            # The request carries the script's SHA and a 24-byte key: more than 60 bytes in,
            # and a 4-integer reply out.
            assert by_load["one_at_a_time"]["net_in_bytes_per_decision"] > 60
            assert by_load["one_at_a_time"]["net_out_bytes_per_decision"] > 10
    for mode in ("standalone", "cluster"):
        gcra = doc["memory"][mode]["gcra"]
        for n, row in gcra.items():
            assert row["keys"] == int(n) and row["bucket_bytes"] == bucket_bytes(int(n))
            # GCRA keeps one string per client: tens to a few hundred bytes each.
            assert 40 < row["per_key_bytes"] < 400 and row["memory_usage_sample_key"] > 0
        log = doc["memory"][mode]["sliding_log_entries"]
        assert log["10"]["per_key_bytes"] > log["1"]["per_key_bytes"], "ten log entries cost more than one"
        assert doc["bytes_per_client"][mode]["gcra"]["6000"]["source"] == "measured"
        assert doc["bytes_per_client"][mode]["gcra"]["100000"]["source"].startswith("extrapolated")
    # Cluster mode keeps per-slot key lists in Redis 7.0: never fewer bytes per key than standalone.
    assert (doc["memory"]["cluster"]["gcra"]["6000"]["per_key_bytes"]
            >= doc["memory"]["standalone"]["gcra"]["6000"]["per_key_bytes"])


def test_next_pow2_matches_the_dict_sizes() -> None:
    # src/dict.c _dictNextExp: the smallest power of two >= the size asked for, at least 4.
    assert [next_pow2(n) for n in (1, 4, 5, 1_000_000, 1_048_576, 1_048_577)] == [4, 4, 8, 1_048_576, 1_048_576,
                                                                                  2_097_152]


def test_local_cluster_serves_every_slot_and_stops(tmp_path) -> None:
    with LocalCluster(3) as cl:
        ports = cl.ports
        client = cl.client()
        slots = client.cluster_slots()
        assert sum(end - start + 1 for (start, end) in slots) == 16384
        client.close()
    import socket

    for port in ports:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
