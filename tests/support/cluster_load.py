"""Decision load against a cluster, for the cluster proofs and bench/cluster_*.py.

* `keys_in_slot(slot, n)`: limiter keys (what `ratelimit.make_key` hashes) that land in one slot,
  so a test can move exactly the slot its keys live in;
* `SteadyLoad`: threads calling a limiter in a loop until stopped, every decision recorded with
  its monotonic time (what the failover and durability figures are computed from);
* `hammer_cluster_in_process`: a child-process body (spawn) for the multi-process proof.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.crc import key_slot

from ratelimit import Decision, make_key


def keys_in_slot(slot: int, n: int, prefix: str = "rl", algorithm: str = "gcra", stem: str = "c") -> list[str]:
    """`n` limiter key names (the `key` argument of hit()) whose Redis key lands in `slot`.
    The hash tag is the whole logical key, so the slot does not depend on prefix/algorithm."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        name = f"{stem}{i}"
        if key_slot(make_key(prefix, name, algorithm).encode()) == slot:
            out.append(name)
        i += 1
    return out


@dataclass
class Sample:
    t: float  # time.monotonic() when the decision came back
    allowed: bool
    fallback: bool
    error: str = ""  # an exception the limiter let through (a defect: it must decide)


@dataclass
class SteadyLoad:
    """`threads` workers each calling `decide()` until `stop()`; samples in arrival order."""

    decide: Callable[[], Decision]
    threads: int = 4
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                d = self.decide()
                s = Sample(time.monotonic(), d.allowed, d.fallback)
            except Exception as e:  # recorded, judged by the caller
                s = Sample(time.monotonic(), False, False, f"{type(e).__name__}: {e}")
            with self._lock:
                self.samples.append(s)

    def start(self) -> SteadyLoad:
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for w in self._workers:
            w.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def count(self) -> int:
        with self._lock:
            return len(self.samples)


def wait_for_samples(load: SteadyLoad, predicate: Callable[[list[Sample]], bool], timeout: float,
                     what: str) -> list[Sample]:
    """Until the recorded samples satisfy `predicate` (checked as they arrive)."""
    from tests.support.procs import wait_until

    return wait_until(lambda: (lambda s: s if predicate(s) else None)(load.snapshot()), timeout, what,
                      interval=0.01)


def hammer_cluster_in_process(ports: list[int], password: str, algorithm: str, key: str, limit: int,
                              window_s: float, n: int, threads: int) -> tuple[int, int, int]:
    """Child-process body: (allowed, denied, fallbacks) of `n` hits through a RedisCluster."""
    from redis.cluster import ClusterNode, RedisCluster

    from ratelimit import decision_client_kwargs
    from tests.support.ratelimit_fixtures import hammer_with

    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports], password=password,
                          **decision_client_kwargs(5.0))
    return hammer_with(client, algorithm, key, limit, window_s, n, threads)


def summary(values: list[float]) -> dict[str, Any]:
    """min / median / max of repeated measurements (and the runs themselves)."""
    s = sorted(values)
    if not s:
        return {"runs": 0}
    return {"runs": len(s), "min": s[0], "median": statistics.median(s), "max": s[-1], "values": values}


# ---- fault runs: shared by tests/integration/test_cluster_failover.py and bench/cluster_*.py ----

BIG_LIMIT = 1_000_000_000  # a fixed_window counter that never fills: `limit - remaining` is the count
COUNTER_WINDOW_S = 3600


def admitted(samples: list[Sample], since: float | None = None) -> int:
    return sum(1 for s in samples if s.allowed and not s.fallback and (since is None or s.t >= since))


def counter_on_server(limiter: Any, key: str) -> int:
    """How many admissions the server remembers for a BIG_LIMIT fixed_window key (a peek)."""
    d = limiter.peek(key, BIG_LIMIT, COUNTER_WINDOW_S)
    assert not d.fallback, "the server did not answer the peek"
    return int(BIG_LIMIT - d.remaining)


def failover_run(cluster: Any, *, threads_per_key: int = 2, timeout_s: float = 0.25,
                 load_samples: int = 1000, settle_samples: int = 50) -> dict[str, Any]:
    """Kill -9 the primary serving two limiter keys (one fail-closed, one fail-open) under steady
    load and follow the failover to its end; then bring the old primary back as a replica.

    Returns the observations: promotion (kill -> a replica of the shard is primary),
    outage (kill -> last fallback), first success after the kill, fallbacks by policy, lost
    admissions (admitted by the old primary, unknown to the promoted one) and any exception
    the limiter let through."""
    from redis.cluster import RedisCluster

    from ratelimit import RateLimiter, decision_client_kwargs
    from tests.support.procs import wait_until
    from tests.support.redis_cluster import FAST_NODE_TIMEOUT_MS, STEADY_NODE_TIMEOUT_MS

    c = cluster
    slot = c.slot_of("failover-probe")
    victim = c.primary_of_slot(slot)
    closed_key, open_key = keys_in_slot(slot, 2, algorithm="fixed_window", stem=f"fo-{time.monotonic_ns()}-")
    (replica,) = c.replicas_of(victim)
    client: RedisCluster = c.app_client(**decision_client_kwargs(timeout_s))
    closed = RateLimiter(client, "fixed_window", fail_open=False, timeout=timeout_s)
    opened = RateLimiter(client, "fixed_window", fail_open=True, timeout=timeout_s)
    loads = {
        "fail_closed": SteadyLoad(lambda: closed.hit(closed_key, BIG_LIMIT, COUNTER_WINDOW_S), threads_per_key),
        "fail_open": SteadyLoad(lambda: opened.hit(open_key, BIG_LIMIT, COUNTER_WINDOW_S), threads_per_key),
    }
    c.tune(FAST_NODE_TIMEOUT_MS)
    for load in loads.values():
        load.start()
    try:
        for load in loads.values():
            wait_for_samples(load, lambda s: len(s) >= load_samples, 60, "steady load")
        # How far the replica was behind at the kill (bytes of replication stream): what an
        # asynchronous replica can lose.
        lag_bytes = _replica_lag(c, victim, replica)
        t_kill = time.monotonic()
        c.kill9(victim)
        replica_client = c.node_client(replica)
        wait_until(lambda: replica_client.info("replication")["role"] == "master", 60, "replica promoted",
                   interval=0.01)
        t_promoted = time.monotonic()
        for load in loads.values():
            # Recovered: the last `settle_samples` decisions all came from Redis again.
            wait_for_samples(load, lambda s: len(s) > settle_samples and s[-1].t > t_kill and
                             not any(x.fallback or x.error for x in s[-settle_samples:]), 60,
                             "decisions succeed on the promoted replica")
    finally:
        for load in loads.values():
            load.stop()
    out: dict[str, Any] = {"victim_port": victim.port, "promoted_port": replica.port,
                           "promotion_s": t_promoted - t_kill, "timeout_s": timeout_s,
                           "replica_lag_bytes_at_kill": lag_bytes}
    for name, load in loads.items():
        s = load.snapshot()
        after = [x for x in s if x.t >= t_kill]
        fallbacks = [x for x in after if x.fallback]
        successes = [x for x in after if not x.fallback and not x.error]
        key, limiter = (closed_key, closed) if name == "fail_closed" else (open_key, opened)
        remembered = counter_on_server(limiter, key)
        out[name] = {
            "decisions": len(s),
            "errors": [x.error for x in s if x.error][:5],
            "fallbacks": len(fallbacks),
            "fallbacks_allowed": sum(1 for x in fallbacks if x.allowed),
            "outage_s": (max(x.t for x in fallbacks) - t_kill) if fallbacks else 0.0,
            # The first decision Redis answered again after the outage began.
            "recovery_s": _first_success_after(successes, fallbacks, t_kill),
            "admitted": admitted(s),
            "remembered": remembered,
            # Admissions the promoted primary does not know about: each can be admitted again
            # (the over-admission a failover can cause).
            "lost_admissions": max(0, admitted(s) - remembered),
        }
    # Back to STEADY first (a starved node must not be failed over again), then the old primary
    # comes back as a replica of the promoted one (its own file says STEADY) and the cluster is whole.
    c.tune(STEADY_NODE_TIMEOUT_MS)
    victim.proc.start(write_config=False)
    c.wait_stable()
    return out


def _first_success_after(successes: list[Sample], fallbacks: list[Sample], t_kill: float) -> float | None:
    if not fallbacks:
        return None
    later = [x.t for x in successes if x.t > fallbacks[0].t]
    return (min(later) - t_kill) if later else None


def _replica_lag(c: Any, primary: Any, replica: Any) -> int | None:
    try:
        p = int(c.info(primary, "replication")["master_repl_offset"])
        r = int(c.info(replica, "replication")["slave_repl_offset"])
    except Exception:  # a figure, not a condition: missing is reported as None
        return None
    return max(0, p - r)


def durability_run(limiter: Any, key: str, kill: Callable[[], None], restart: Callable[[], Any],
                   *, threads: int = 4, settle_samples: int = 2000) -> dict[str, Any]:
    """kill -9 a node under steady decision load on `key` (a BIG_LIMIT fixed_window counter),
    restart it from its own files (AOF everysec) and count the admissions it forgot.
    `restart()` returns a limiter connected to the restarted node (the peek goes through it)."""
    load = SteadyLoad(lambda: limiter.hit(key, BIG_LIMIT, COUNTER_WINDOW_S), threads)
    with load:
        wait_for_samples(load, lambda s: len(s) >= settle_samples, 120, "steady load")
        t_kill = time.monotonic()
        kill()
    samples = load.snapshot()
    before = [x for x in samples if x.t < t_kill]
    span = before[-1].t - before[0].t if len(before) > 1 else 0.0
    rate = (len(before) - 1) / span if span > 0 else 0.0
    acked = admitted(samples)
    remembered = counter_on_server(restart(), key)
    lost = max(0, acked - remembered)
    return {"admitted_acknowledged": acked, "remembered_after_restart": remembered, "lost_admissions": lost,
            "decisions_per_s": rate, "lost_seconds_of_decisions": (lost / rate) if rate else None,
            "errors": [x.error for x in samples if x.error][:5]}
