"""Proof 2: kill -9 the primary while threads run the rate limiter through Sentinel.

Measured and asserted: the limiter keeps answering (each tier's fail policy during the gap),
writes resume on the promoted replica, the time from the kill to the first decision on the
new master, and the over-admission (decisions allowed beyond what the tier permits). Then the
old primary is restarted and must rejoin as a replica of the new master.
The figures are printed (run with -s) and recorded in docs/runbooks/failover.md.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ratelimit import RateLimiter, Tier, decision_client_kwargs
from redis_conf.sentinel import MASTER_NAME
from tests.integration._sentinel_topology import Topology, sentinel_topology, wait_until
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]

THREADS = 4
# GCRA admits at most `burst + elapsed * limit / window` in any interval: with 20/s the key is
# being admitted continuously, so writes are in flight when the primary dies.
CLOSED = Tier("failover_closed", 200, 10, "gcra", fail_open=False)
OPEN = Tier("failover_open", 200, 10, "gcra", fail_open=True)
# The runbook's documented bound for a healthy failover on one host: what async replication
# may lose in the last moments before the kill (a few decisions), not a window's worth.
MAX_OVER_ADMISSION = 5
MAX_RECOVERY_S = 10.0  # down-after 1 s + election + promotion; FIELD-NOTES measured ~2.3 s


@dataclass
class Tally:
    # (call started, answered, allowed, fallback)
    events: list[tuple[float, float, bool, bool]] = field(default_factory=list)
    errors: list[tuple[float, BaseException]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, t0: float, t1: float, allowed: bool, fallback: bool) -> None:
        with self.lock:
            self.events.append((t0, t1, allowed, fallback))


def _worker(limiter: RateLimiter, tier: Tier, tally: Tally, stop: threading.Event) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            d = limiter.hit_tier(tier, "client-1")
        except Exception as exc:  # any escape is what the test must report
            tally.errors.append((time.monotonic(), exc))
            time.sleep(0.01)
            continue
        tally.add(t0, time.monotonic(), d.allowed, d.fallback)
        time.sleep(0.002)


def _gcra_bound(tier: Tier, start: float, end: float) -> float:
    return (tier.burst or tier.limit) + (end - start) * tier.limit / tier.window_s + 1


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    with sentinel_topology(tmp_path, tls=False) as t:
        yield t  # type: ignore[misc]


def test_kill_primary_under_load(topo: Topology) -> None:
    topo.wait_sentinels_agree(topo.nodes[0].port)
    sentinel = topo.sentinel()
    client = sentinel.master_for(MASTER_NAME, **decision_client_kwargs(0.1))
    limiter = RateLimiter(client)
    tallies = {CLOSED.name: Tally(), OPEN.name: Tally()}
    stop = threading.Event()
    threads = [threading.Thread(target=_worker, args=(limiter, tier, tallies[tier.name], stop), daemon=True)
               for tier in (CLOSED, OPEN) for _ in range(THREADS // 2)]
    t_start = time.monotonic()
    for th in threads:
        th.start()
    try:
        # Load long enough to exhaust the bursts, so that every later admission is paced.
        time.sleep(2.0)
        old = topo.nodes[0]
        t_kill = time.monotonic()
        old.kill9()

        # A call that started after the kill and got an answer from Redis was answered by the
        # new master: kill9() returns only once the old process is gone.
        def recovered() -> float | None:
            with tallies[CLOSED.name].lock:
                after = [t1 for t0, t1, _, fb in tallies[CLOSED.name].events if t0 > t_kill and not fb]
            return min(after) if after else None

        t_first = wait_until(recovered, MAX_RECOVERY_S + 5, "a decision on the new master")
        time.sleep(2.0)  # keep load on the new master
    finally:
        stop.set()
        for th in threads:
            th.join(5)
    t_end = time.monotonic()
    recovery = t_first - t_kill
    new_port = topo.master_port()
    assert new_port != old.port and new_port in (topo.nodes[1].port, topo.nodes[2].port)
    topo.wait_sentinels_agree(new_port)

    closed, opened = tallies[CLOSED.name], tallies[OPEN.name]
    errors = closed.errors + opened.errors
    # Right after promotion the new master has no replica attached yet and, with
    # min-replicas-to-write 1, refuses writes with NOREPLICAS until one is: the limiter treats
    # that as "Redis unavailable" and applies the tier's policy, so nothing escapes.
    assert errors == [], "the limiter must never raise"
    gap_closed = [e for e in closed.events if e[3]]
    gap_open = [e for e in opened.events if e[3]]
    # Fail policy in the gap, per tier, and only in the gap.
    assert gap_closed and all(not allowed for _, _, allowed, _ in gap_closed)
    assert gap_open and all(allowed for _, _, allowed, _ in gap_open)
    assert all(t1 >= t_kill for _, t1, _, _ in gap_closed + gap_open)
    # Writes resumed: decisions after recovery come from Redis, and are still limited.
    post = [e for e in closed.events if e[0] > t_first]
    assert post and sum(1 for e in post if not e[3]) > 0.9 * len(post)
    assert any(not allowed for _, _, allowed, fb in post if not fb), "the new master must still deny"

    allowed_by_redis = sum(1 for _, _, allowed, fb in closed.events if allowed and not fb)
    bound = _gcra_bound(CLOSED, t_start, t_end)
    over = max(0, allowed_by_redis - int(bound))
    open_admitted_blind = sum(1 for _, _, allowed, _ in gap_open if allowed)
    print(f"\nFAILOVER recovery_s={recovery:.2f} over_admission={over} (allowed {allowed_by_redis}, "
          f"bound {bound:.0f}) fail_closed_denials={len(gap_closed)} fail_open_blind_admissions="
          f"{open_admitted_blind} decisions={len(closed.events) + len(opened.events)}")
    assert recovery < MAX_RECOVERY_S
    assert over <= MAX_OVER_ADMISSION

    # The old primary comes back with its old config (it still thinks it is the master) and
    # Sentinel must demote it; it can follow because every node carries masteruser/masterauth.
    old.restart()
    c = topo.node_client(0)
    wait_until(lambda: c.info("replication")["role"] == "slave", 20, "old primary demoted")

    # Under CPU starvation a Sentinel can judge the just-promoted master down and fail over a
    # second time (seen once in ~20 runs with down-after 1 s on a shared 2-core machine): the
    # old primary must follow whatever master the Sentinels agree on now.
    def following_current_master() -> int | None:
        info = c.info("replication")
        ports = {topo.master_port(i) for i in range(3)}
        if info["master_link_status"] == "up" and ports == {info["master_port"]}:
            return int(info["master_port"])
        return None

    final_port = wait_until(following_current_master, 20, "old primary following the agreed master")
    if final_port != new_port:
        print(f"FAILOVER note: a second failover moved the master from :{new_port} to :{final_port}")
    primary = topo.node_client(topo.nodes.index(topo.node_by_port(final_port)))
    primary.set("proof:after-rejoin", "1")
    primary.wait(2, 3000)
    assert c.get("proof:after-rejoin") == b"1"
