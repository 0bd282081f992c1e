"""Decision load against a cluster, for the cluster proofs and bench/cluster_*.py.

* `keys_in_slot(slot, n)`: limiter keys (what `ratelimit.make_key` hashes) that land in one slot,
  so a test can move exactly the slot its keys live in;
* `SteadyLoad`: threads calling a limiter in a loop until stopped, every decision recorded with
  its monotonic time (what the failover and durability figures are computed from);
* `hammer_cluster_in_process`: a child-process body (spawn) for the multi-process proof.
"""

from __future__ import annotations

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
    mid = len(s) // 2
    median = s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
    return {"runs": len(s), "min": s[0], "median": median, "max": s[-1], "values": values}
