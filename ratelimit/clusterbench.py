"""Scaling benchmark: server cost per decision on 1 and 3 shards, and memory per client at 1M/10M keys.

`run_cluster_benchmark()` starts its own loopback servers (a standalone redis-server, and Redis
Cluster nodes with `cluster-enabled yes`), measures, and writes `<out_dir>/cluster.json`, the
file `redisops plan` sizes from. Measured:

* server cost per decision for each algorithm on a standalone server, a 1-shard cluster and a
  3-shard cluster: `INFO commandstats` usec per EVALSHA (time inside the script) and the main
  thread's CPU time per decision (`INFO cpu` used_cpu_{user,sys}_main_thread: parsing, the
  script, the reply and the syscalls), both pipelined and one request per round trip (the worst
  case, what an API server that sends one decision at a time costs); plus bytes in and out per
  decision on the wire. Summed over every primary, so 3 shards are compared like with like;
* memory per tracked client: `used_memory` delta over N keys filled by the real scripts
  (through `redis-cli --pipe`), standalone and cluster-enabled, split into the per-key part and
  the two hash tables' bucket arrays (main keyspace and expires, 8 bytes per bucket, a power of
  two), which is what changes between 1M and 10M keys.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from ratelimit.limiter import make_key
from ratelimit.scripts import script
from ratelimit.server import LocalRedis, memory_in_use
from ratelimit.tiers import ALGORITHMS

SCHEMA = 1
LIMIT, WINDOW_S = 120, 60
# Bytes per bucket of a Redis dict (one pointer), and the tables every limiter key is in: the
# keyspace and the expires dict (every limiter key has a TTL). src/dict.c: the table size is
# the next power of two >= the number of entries once a resize completes.
BUCKET_BYTES = 8
TABLES_PER_KEY = 2
CLIENT_ID_FORMAT = "c{:08d}"  # 9 characters: the key is rl:{general:c00000001}:g (24 bytes)


def next_pow2(n: int) -> int:
    return 1 << max(2, (max(1, n) - 1).bit_length())


def bucket_bytes(keys: int) -> int:
    """The two bucket arrays for `keys` limiter keys (main keyspace + expires)."""
    return TABLES_PER_KEY * BUCKET_BYTES * next_pow2(keys)


class LocalCluster:
    """`with LocalCluster(3) as c: c.ports`: N cluster-enabled primaries on loopback ports from the
    OS, slots spread evenly (1 primary: all 16384 slots), cluster_state ok; every server stopped
    on exit. No TLS and no password: it measures the limiter's cost, like LocalRedis."""

    def __init__(self, shards: int, extra_args: list[str] | None = None) -> None:
        if shards < 1:
            raise ValueError(f"shards {shards}: expected >= 1")
        self.shards = shards
        self.extra_args = list(extra_args or [])
        self.nodes: list[LocalRedis] = []

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def _start_node(self) -> LocalRedis:
        # The cluster bus listens on port + 10000, which the OS did not reserve for us: a node
        # that cannot bind it exits, and gets another port.
        last: Exception | None = None
        for _ in range(5):
            node = LocalRedis(extra_args=["--cluster-enabled", "yes", "--cluster-node-timeout", "5000",
                                          *self.extra_args])
            try:
                return node.start()
            except RuntimeError as exc:
                last = exc
        raise RuntimeError(f"no cluster node could start: {last}")

    def start(self, timeout: float = 60.0) -> LocalCluster:
        try:
            self.nodes = [self._start_node() for _ in range(self.shards)]
            if self.shards == 1:
                redis.Redis(port=self.ports[0]).execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
            else:
                cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
                subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                                "--cluster-replicas", "0", "--cluster-yes"],
                               check=True, capture_output=True, timeout=timeout)
            self._wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = [redis.Redis(port=p).cluster("INFO") for p in self.ports]
            if all(s.get("cluster_state") == "ok" and int(s.get("cluster_known_nodes", 0)) == self.shards
                   for s in states):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster on ports {self.ports} not ok within {timeout} s")

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports])

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


# Memory fills use a one-day window: a 10M-key fill takes minutes on a shared machine, and keys of a
# 60 s window would expire under it. The bytes a key holds do not depend on the window (GCRA keeps
# one timestamp, the fixed window one counter, the log timestamp-scored members).
FILL_WINDOW_S = 86_400


def _args(algorithm: str, client: int, cost: int, limit: int = LIMIT, window_s: int = WINDOW_S) -> list[str]:
    return [make_key("rl", "general:" + CLIENT_ID_FORMAT.format(client), algorithm),
            str(limit), str(window_s * 1000), str(cost), "0"]


def _resp(parts: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _commands(sha: str, algorithm: str, clients: range, cost: int, limit: int) -> Iterator[bytes]:
    """RESP for one EVALSHA per client; ids have a fixed width, so one template serves them all
    (formatting each command in full would make Python, not Redis, the bottleneck at 10M keys)."""
    marker = 99_999_999
    template = _resp([b"EVALSHA", sha.encode(), b"1",
                      *(a.encode() for a in _args(algorithm, marker, cost, limit, FILL_WINDOW_S))])
    head, tail = template.split(str(marker).encode())
    for i in clients:
        yield b"%s%08d%s" % (head, i, tail)


def pipe_fill(port: int, algorithm: str, clients: int, cost: int, limit: int = LIMIT, start: int = 0) -> None:
    """One EVALSHA per client through `redis-cli --pipe` (the mass-insertion path of the Redis
    docs): fast enough for 10M keys, and every reply is checked (errors: 0, replies: N)."""
    s = script(algorithm)
    redis.Redis(port=port).script_load(s.source)
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    proc = subprocess.Popen([cli, "-p", str(port), "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    buf: list[bytes] = []
    for cmd in _commands(s.sha, algorithm, range(start, start + clients), cost, limit):
        buf.append(cmd)
        if len(buf) == 10_000:
            proc.stdin.write(b"".join(buf))
            buf = []
    proc.stdin.write(b"".join(buf))
    proc.stdin.close()
    report = proc.stdout.read().decode(errors="replace")
    proc.wait()
    if proc.returncode != 0 or "errors: 0," not in report or f"replies: {clients}" not in report:
        raise RuntimeError(f"redis-cli --pipe filling {algorithm}: {report.strip()[-300:]}")


def _htstats(r: redis.Redis) -> str:
    stats = r.execute_command("DEBUG", "HTSTATS", "0")
    return stats.decode() if isinstance(stats, bytes) else str(stats)


def _wait_rehash_done(r: redis.Redis, timeout: float = 900.0) -> int:
    """A dict grows by incremental rehashing: until it ends both tables are allocated. Wait for the
    event (DEBUG HTSTATS no longer shows a rehashing target table) rather than sleeping; the memory
    servers run with a high `hz` so that serverCron's active rehashing finishes 10M keys in seconds.
    Returns the bucket bytes allocated (8 per slot of every table of the keyspace and expires)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = _htstats(r)
        if "rehashing target" not in text.lower():
            return BUCKET_BYTES * sum(int(n) for n in re.findall(r"table size: (\d+)", text))
        time.sleep(0.05)
    raise RuntimeError("keyspace rehashing did not finish")


def measure_memory(port: int, algorithm: str, clients: int, entries: int) -> dict[str, Any]:
    """Bytes per tracked client after `entries` requests each (GCRA and fixed window: the
    allowance spent, so the key lives the whole window; sliding log: `entries` members)."""
    r = redis.Redis(port=port)
    r.flushall()
    _wait_rehash_done(r)
    before = memory_in_use(r)
    limit = max(LIMIT, entries) if algorithm == "sliding_log" else LIMIT
    cost = entries if algorithm == "sliding_log" else LIMIT
    t = time.monotonic()
    pipe_fill(port, algorithm, clients, cost, limit)
    fill_s = time.monotonic() - t
    allocated_buckets = _wait_rehash_done(r)
    after = memory_in_use(r)
    keys = int(r.dbsize())
    if keys != clients:
        raise RuntimeError(f"{algorithm}: {keys} of {clients} keys alive: memory per client would be wrong")
    sample = make_key("rl", "general:" + CLIENT_ID_FORMAT.format(clients // 2), algorithm)
    sample_usage = int(r.memory_usage(sample, samples=0) or 0)
    delta = after - before
    buckets = bucket_bytes(keys)
    if allocated_buckets != buckets:
        raise RuntimeError(f"{algorithm}: {allocated_buckets} bucket bytes allocated for {keys} keys, the model "
                           f"says {buckets}: the model of the hash tables is wrong")
    r.flushall()
    return {"keys": keys, "entries": entries, "used_memory_delta": delta,
            "bytes_per_client": round(delta / keys, 2),
            "bucket_bytes": buckets, "per_key_bytes": round((delta - buckets) / keys, 2),
            "memory_usage_sample_key": sample_usage, "fill_s": round(fill_s, 1)}


def predict_memory(per_key_bytes: float, keys: int) -> int:
    """The memory model: per-key bytes (measured) times keys, plus the bucket arrays."""
    return round(per_key_bytes * keys) + bucket_bytes(keys)


def _cpu_main(nodes: list[redis.Redis]) -> float:
    total = 0.0
    for n in nodes:
        cpu = n.info("cpu")
        total += float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])
    return total


def _stats(nodes: list[redis.Redis]) -> tuple[float, int, int, int]:
    usec, calls, net_in, net_out = 0.0, 0, 0, 0
    for n in nodes:
        cs = n.info("commandstats").get("cmdstat_evalsha", {})
        usec += float(cs.get("usec", 0))
        calls += int(cs.get("calls", 0))
        st = n.info("stats")
        net_in += int(st["total_net_input_bytes"])
        net_out += int(st["total_net_output_bytes"])
    return usec, calls, net_in, net_out


def _slot_owner(nodes: list[redis.Redis]) -> list[int]:
    """slot -> index in `nodes` of the primary serving it (a standalone server serves all)."""
    if len(nodes) == 1:
        return [0] * 16384
    ports = [int(n.connection_pool.connection_kwargs["port"]) for n in nodes]
    owner = [-1] * 16384
    for first, last, primary, *_ in nodes[0].execute_command("CLUSTER", "SLOTS"):
        for slot in range(int(first), int(last) + 1):
            owner[slot] = ports.index(int(primary[1]))
    if -1 in owner:
        raise RuntimeError("a slot has no primary among the measured nodes")
    return owner


def _cost_round(client: redis.Redis | RedisCluster, nodes: list[redis.Redis], algorithm: str, decisions: int,
                clients: int, pipelined: bool) -> dict[str, float]:
    s = script(algorithm)
    for n in nodes:
        n.flushall()
        n.script_load(s.source)
        n.config_resetstat()
    net0 = _stats(nodes)
    cpu0 = _cpu_main(nodes)
    if pipelined:
        # redis-py refuses EVALSHA in a cluster pipeline: group by owning primary ourselves
        # (CLUSTER SLOTS), as a pipelining cluster client would.
        owner = _slot_owner(nodes)
        for start in range(0, decisions, 1000):
            pipes = [n.pipeline(transaction=False) for n in nodes]
            for i in range(start, min(decisions, start + 1000)):
                args = _args(algorithm, i % clients, 1)
                pipes[owner[key_slot(args[0].encode())]].evalsha(s.sha, 1, *args)
            for pipe in pipes:
                pipe.execute()
    else:
        for i in range(decisions):
            client.evalsha(s.sha, 1, *_args(algorithm, i % clients, 1))
    cpu = _cpu_main(nodes) - cpu0
    usec, calls, net_in, net_out = _stats(nodes)
    if calls != decisions:
        raise RuntimeError(f"{algorithm}: {calls} EVALSHA counted on the primaries for {decisions} decisions")
    # INFO itself is counted in the net bytes: subtract nothing, it is the same few hundred
    # bytes per round on every topology and vanishes per decision.
    return {"usec_per_call": usec / calls, "cpu_us_per_decision": cpu * 1e6 / decisions,
            "net_in_bytes_per_decision": (net_in - net0[2]) / decisions,
            "net_out_bytes_per_decision": (net_out - net0[3]) / decisions}


def _concurrent_round(ports: list[int], nodes: list[redis.Redis], algorithm: str, requests: int,
                      connections: int) -> dict[str, float] | None:
    """redis-benchmark with `connections` clients, no pipelining, saturating the server(s): the
    realistic cost of many API servers each sending one decision at a time. In cluster mode
    redis-benchmark replaces `{tag}` with a hash tag of each primary. None without redis-benchmark."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    s = script(algorithm)
    for n in nodes:
        n.flushall()
        n.script_load(s.source)
        n.config_resetstat()
    cluster = len(nodes) > 1  # redis-benchmark --cluster refuses a 1-node cluster, which needs no routing
    key = f"rl:{{tag}}general:__rand_int__:{algorithm[0]}" if cluster else make_key(
        "rl", "general:__rand_int__", algorithm)
    cpu0 = _cpu_main(nodes)
    t = time.monotonic()
    subprocess.run([exe, "-h", "127.0.0.1", "-p", str(ports[0]), "-n", str(requests), "-c", str(connections),
                    "-r", "1000000", "-q", *(["--cluster"] if cluster else []),
                    "evalsha", s.sha, "1", key, str(LIMIT), str(WINDOW_S * 1000), "1", "0"],
                   check=True, capture_output=True, timeout=300)
    elapsed = time.monotonic() - t
    cpu = _cpu_main(nodes) - cpu0
    usec, calls, _, _ = _stats(nodes)
    if calls < requests:
        raise RuntimeError(f"{algorithm}: redis-benchmark sent {requests}, the primaries counted {calls}")
    return {"usec_per_call": usec / calls, "cpu_us_per_decision": cpu * 1e6 / calls,
            "decisions_per_s_this_machine": calls / elapsed}


def measure_cost(client: redis.Redis | RedisCluster, nodes: list[redis.Redis], decisions: int, clients: int,
                 rounds: int, ports: list[int] | None = None) -> dict[str, Any]:
    """Per algorithm: pipelined and one-at-a-time, interleaved rounds, the least disturbed kept
    (other tenants of a shared machine only ever slow a round down)."""
    out: dict[str, Any] = {}
    samples: dict[tuple[str, bool | None], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for a in ALGORITHMS:
            for pipelined in (True, False):
                n = decisions if pipelined else max(500, decisions // 4)
                samples.setdefault((a, pipelined), []).append(
                    _cost_round(client, nodes, a, n, clients, pipelined))
        if ports:
            for a in ALGORITHMS:
                got = _concurrent_round(ports, nodes, a, decisions * 2, 50)
                if got is not None:
                    samples.setdefault((a, None), []).append(got)
    names = {True: "pipelined", False: "one_at_a_time", None: "concurrent_50"}
    for (a, mode), rs in samples.items():
        best = {k: round(max(r[k] for r in rs) if k.startswith("decisions_per_s") else min(r[k] for r in rs), 3)
                for k in rs[0]}
        best["cpu_us_per_decision_all_rounds"] = [round(r["cpu_us_per_decision"], 3) for r in rs]  # type: ignore[assignment]
        out.setdefault(a, {})[names[mode]] = best
    return out


def _topology_costs(decisions: int, clients: int, rounds: int) -> dict[str, Any]:
    costs: dict[str, Any] = {}
    with LocalRedis() as srv:
        r = redis.Redis(port=srv.port)
        costs["standalone"] = {"shards": 1, "cluster_enabled": False,
                               "algorithms": measure_cost(r, [r], decisions, clients, rounds, [srv.port])}
        r.close()
    for shards in (1, 3):
        with LocalCluster(shards) as cl:
            rc = cl.client()
            nodes = [redis.Redis(port=p) for p in cl.ports]
            costs[f"cluster_{shards}_shard{'s' if shards > 1 else ''}"] = {
                "shards": shards, "cluster_enabled": True,
                "algorithms": measure_cost(rc, nodes, decisions, clients, rounds, cl.ports)}
            rc.close()
            for n in nodes:
                n.close()
    return costs


def _memory_series(sizes: dict[str, list[int]], log_entries: list[int], log_clients: int,
                   cluster_max_keys: int) -> dict[str, Any]:
    """Each algorithm at each size in `sizes[algorithm]` (sliding log: 10 entries, the stack's
    sensitive tier), on a standalone server and on a cluster-enabled one (Redis 7.0 keeps per-slot
    key lists: more bytes per key in cluster mode), plus the sliding log's cost per entry at
    `log_clients` keys."""
    memory: dict[str, Any] = {}
    # DEBUG HTSTATS: wait for rehashing to end; hz 500: serverCron rehashes 1 ms per run.
    debug = ["--enable-debug-command", "local", "--hz", "500"]
    for mode in ("standalone", "cluster"):
        cluster = LocalCluster(1, extra_args=debug) if mode == "cluster" else None
        srv = cluster.start().nodes[0] if cluster else LocalRedis(extra_args=debug).start()
        try:
            per_mode: dict[str, Any] = {}
            for algorithm, counts in sizes.items():
                entries = 10 if algorithm == "sliding_log" else LIMIT
                kept = [n for n in counts if mode == "standalone" or n <= cluster_max_keys] or [min(counts)]
                per_mode[algorithm] = {str(n): measure_memory(srv.port, algorithm, n, entries) for n in kept}
            per_mode["sliding_log_entries"] = {str(e): measure_memory(srv.port, "sliding_log", log_clients, e)
                                               for e in log_entries}
            memory[mode] = per_mode
        finally:
            if cluster:
                cluster.stop()
            else:
                srv.stop()
    return memory


def _extrapolations(memory: dict[str, Any], sizes: dict[str, list[int]], targets: tuple[int, ...]) -> dict[str, Any]:
    """bytes per client at each target key count: measured where the run had that many keys,
    else the model (per-key bytes at the largest measured size + bucket arrays), said so."""
    out: dict[str, Any] = {}
    for mode, per_mode in memory.items():
        for algorithm in sizes:
            counts = [int(n) for n in per_mode[algorithm]]
            largest = per_mode[algorithm][str(max(counts))]
            row: dict[str, Any] = {}
            for target in targets:
                measured = per_mode[algorithm].get(str(target))
                predicted = predict_memory(largest["per_key_bytes"], target)
                row[str(target)] = {
                    "bytes_per_client": measured["bytes_per_client"] if measured else round(predicted / target, 2),
                    "source": "measured" if measured else
                    f"extrapolated: per_key_bytes {largest['per_key_bytes']} measured at {max(counts)} keys "
                    f"x {target} keys + bucket arrays {bucket_bytes(target)} B",
                    "model_bytes_per_client": round(predicted / target, 2),
                }
            out.setdefault(mode, {})[algorithm] = row
    return out


def _per_shard_summary(costs: dict[str, Any]) -> dict[str, Any]:
    per_shard = {}
    for a in ALGORITHMS:
        mode = "concurrent_50" if "concurrent_50" in costs["cluster_1_shard"]["algorithms"][a] else "one_at_a_time"
        one = costs["cluster_1_shard"]["algorithms"][a][mode]["cpu_us_per_decision"]
        three = costs["cluster_3_shards"]["algorithms"][a][mode]["cpu_us_per_decision"]
        per_shard[a] = {"cpu_us_per_decision_1_shard": one, "cpu_us_per_decision_3_shards": three,
                        "ratio_3_vs_1": round(three / one, 3), "load": mode}
    return per_shard


def run_cluster_benchmark(out_dir: str | Path = "bench/results", *, decisions: int = 20_000, clients: int = 10_000,
                          rounds: int = 3, sizes: dict[str, list[int]] | None = None,
                          log_entries: tuple[int, ...] = (1, 10, 60, 120), log_clients: int = 20_000,
                          targets: tuple[int, ...] = (1_000_000, 10_000_000),
                          cluster_max_keys: int = 1_000_000) -> dict[str, Any]:
    """Measure everything and write `<out_dir>/cluster.json`; return the dict. 10M keys are measured
    for GCRA on a standalone server; the other algorithms and cluster mode stop at
    `cluster_max_keys` / 1M and are extrapolated to 10M by the model (each row says which)."""
    sizes = sizes or {"gcra": [1_000_000, 10_000_000], "fixed_window": [1_000_000], "sliding_log": [1_000_000]}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    costs = _topology_costs(decisions, clients, rounds)
    memory = _memory_series(sizes, list(log_entries), log_clients, cluster_max_keys)
    with LocalRedis() as srv:
        version = str(redis.Redis(port=srv.port).info("server")["redis_version"])
    per_shard = _per_shard_summary(costs)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {"redis_version": version, "python": platform.python_version(),
                        "redis_py": redis.__version__, "cpus": os.cpu_count(), "machine": platform.machine()},
        "parameters": {"limit": LIMIT, "window_s": WINDOW_S, "decisions": decisions, "clients": clients,
                       "rounds": rounds, "sizes": sizes, "log_entries": list(log_entries),
                       "log_clients": log_clients, "targets": list(targets), "cluster_max_keys": cluster_max_keys,
                       "fill_window_s": FILL_WINDOW_S,
                       "key_example": make_key("rl", "general:" + CLIENT_ID_FORMAT.format(1), "gcra"),
                       "bucket_bytes": BUCKET_BYTES, "tables_per_key": TABLES_PER_KEY},
        "cost": costs,
        "cost_per_shard_summary": per_shard,
        "memory": memory,
        "bytes_per_client": _extrapolations(memory, sizes, targets),
    }
    result["duration_s"] = round(time.monotonic() - t0, 1)
    (out / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--decisions", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--small", action="store_true", help="CI size: 20k/40k keys instead of 1M/10M")
    p.add_argument("--cost-only", action="store_true",
                   help="Re-measure only the server cost, keeping the memory figures of <out>/cluster.json")
    ns = p.parse_args(argv)
    if ns.cost_only:
        path = Path(ns.out) / "cluster.json"
        doc = json.loads(path.read_text())
        t0 = time.monotonic()
        doc["cost"] = _topology_costs(ns.decisions, doc["parameters"]["clients"], ns.rounds)
        doc["cost_per_shard_summary"] = _per_shard_summary(doc["cost"])
        doc["parameters"].update({"decisions": ns.decisions, "rounds": ns.rounds})
        doc["cost_generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        doc["cost_duration_s"] = round(time.monotonic() - t0, 1)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        json.dump(doc["cost_per_shard_summary"], sys.stdout, indent=1)
        return 0
    kwargs: dict[str, Any] = {}
    if ns.small:
        kwargs = {"sizes": {"gcra": [20_000, 40_000], "fixed_window": [20_000], "sliding_log": [20_000]},
                  "log_entries": (1, 10), "log_clients": 5_000, "targets": (20_000, 100_000), "clients": 2_000}
    result = run_cluster_benchmark(ns.out, decisions=ns.decisions, rounds=ns.rounds, **kwargs)
    json.dump({"cost_per_shard_summary": result["cost_per_shard_summary"], "duration_s": result["duration_s"]},
              sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
