"""Proof 3: `min-replicas-to-write` bounds write loss when the primary is cut off.

A primary isolated from its replicas keeps accepting writes only while a replica has
acknowledged within `min-replicas-max-lag` seconds; after that it answers NOREPLICAS, so a
primary on the wrong side of a partition stops taking decisions that would be lost when
Sentinel promotes a replica on the other side. Sentinels are not started here: nothing may
fail over while the primary is being isolated.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from ratelimit import RateLimiter, decision_client_kwargs
from tests.integration._sentinel_topology import (
    SETTLE_S,
    STEADY,
    TIGHT_LAG,
    Topology,
    sentinel_topology,
    wait_until,
)
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]

LAG = TIGHT_LAG.min_replicas_max_lag
assert STEADY.min_replicas_max_lag > LAG and TIGHT_LAG.min_replicas_to_write == STEADY.min_replicas_to_write == 1


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    """For the tests that measure the lag: TIGHT_LAG's 2 s keeps them quick."""
    with sentinel_topology(tmp_path, tls=False, start_sentinels=False, tuning=TIGHT_LAG) as t:
        yield t  # type: ignore[misc]


@pytest.fixture
def steady_topo(tmp_path: Path) -> Topology:
    """For the tests that stop the replicas (a closed link is dropped from the count at once, no
    lag involved) and write first: the product's 10 s lag, so that a replica starved of CPU for
    ~2 s on a busy machine does not refuse that first write (_sentinel_topology.py)."""
    with sentinel_topology(tmp_path, tls=False, start_sentinels=False, tuning=STEADY) as t:
        yield t  # type: ignore[misc]


def _writes_refused(c: redis.Redis) -> bool:
    try:
        c.set("proof:probe", "x")
    except redis.exceptions.ResponseError as exc:
        assert str(exc).startswith("NOREPLICAS"), exc
        return True
    return False


def test_settings_are_rendered_on_every_node(topo: Topology) -> None:
    for node in topo.nodes:
        conf = node.config_path.read_text()
        assert f"min-replicas-to-write {TIGHT_LAG.min_replicas_to_write}\n" in conf
        assert f"min-replicas-max-lag {LAG}\n" in conf
    cfg = topo.node_client(0).config_get("min-replicas-*")
    assert cfg == {"min-replicas-to-write": "1", "min-replicas-max-lag": str(LAG)}


def _replication(c: redis.Redis) -> tuple[int, list[int]]:
    """(replicas the primary counts as good for min-replicas-to-write, each replica's lag in s)
    from one INFO: one consistent view."""
    info: dict[str, Any] = c.info("replication")
    lags = [int(v["lag"]) for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
    return int(info["min_slaves_good_slaves"]), lags


def test_silent_replicas_stop_writes_after_the_lag(topo: Topology) -> None:
    primary = topo.node_client(0)
    primary.set("proof:write", "before")
    # A partition looks like silence, not a closed connection: freeze both replicas.
    t0 = time.monotonic()
    for n in topo.nodes[1:]:
        n.pause()
    try:
        # Within the lag the primary still believes its replicas are there: while it counts a
        # good replica (before and after the write; no ack can raise the count now), it writes.
        good_before, _ = _replication(primary)
        refused = _writes_refused(primary)
        good_after, _ = _replication(primary)
        if good_after >= 1:  # always, unless this process was starved for the whole lag
            assert good_before >= 1 and not refused
        # Redis drops a replica from the count once its last ack is more than `lag` seconds old;
        # with none left it refuses writes. Judged on the primary's own view, not on our clock.
        _, lags = wait_until(lambda: (v := _replication(primary))[0] == 0 and v, LAG + SETTLE_S,
                             "no replica counted as good")
        assert len(lags) == 2 and all(lag > LAG for lag in lags), lags
        assert _writes_refused(primary)
        print(f"\nMIN_REPLICAS writes refused {time.monotonic() - t0:.2f}s after the replicas went silent (lag {LAG}s)")
        assert primary.get("proof:write") == b"before"  # reads still work
    finally:
        for n in topo.nodes[1:]:
            n.resume()
    wait_until(lambda: not _writes_refused(primary), SETTLE_S, "writes accepted once a replica acknowledges")


def test_limiter_applies_fail_policy_when_writes_are_refused(steady_topo: Topology) -> None:
    topo = steady_topo
    # A generous decision budget: the fallback must come from NOREPLICAS, not from a slow answer.
    limiter = RateLimiter(redis.Redis("127.0.0.1", topo.nodes[0].port, password=topo.passwords["app"],
                                      **decision_client_kwargs(5.0)), timeout=5.0)
    assert limiter.hit("proof", 10, 60).fallback is False
    for n in topo.nodes[1:]:
        n.stop()
    primary = topo.node_client(0)
    wait_until(lambda: _writes_refused(primary), SETTLE_S, "NOREPLICAS after the replicas stopped")
    closed = limiter.hit("proof", 10, 60, fail_open=False)
    opened = limiter.hit("proof", 10, 60, fail_open=True)
    assert closed.fallback and not closed.allowed
    assert opened.fallback and opened.allowed


def test_stopped_replicas_stop_writes_at_once(steady_topo: Topology) -> None:
    topo = steady_topo
    primary = topo.node_client(0)
    for n in topo.nodes[1:]:
        n.stop()
    # A cleanly closed link is noticed immediately, no lag to wait out: as soon as the primary
    # has dropped both links, it counts no good replica and refuses writes, though the last
    # acks are recent (every replica's lag was within `lag` when the links closed).
    wait_until(lambda: primary.info("replication")["connected_slaves"] == 0, SETTLE_S, "both links dropped")
    assert _replication(primary)[0] == 0
    assert _writes_refused(primary)
    topo.nodes[1].restart()
    wait_until(lambda: not _writes_refused(primary), SETTLE_S, "writes accepted with one replica back")
    assert primary.info("replication")["connected_slaves"] == 1


def test_concurrent_callers_all_get_the_policy_when_writes_are_refused(steady_topo: Topology) -> None:
    topo = steady_topo
    # NOREPLICAS makes the limiter drop its pooled connections (the primary may be a stale one,
    # already replaced): that must not close a connection another thread is using mid-call.
    client = redis.Redis("127.0.0.1", topo.nodes[0].port, password=topo.passwords["app"],
                         **{**decision_client_kwargs(5.0), "max_connections": 64})
    limiter = RateLimiter(client, timeout=5.0)
    assert limiter.hit("proof", 10, 60).fallback is False
    for n in topo.nodes[1:]:
        n.stop()
    wait_until(lambda: _writes_refused(topo.node_client(0)), SETTLE_S, "NOREPLICAS after the replicas stopped")
    escaped: list[BaseException] = []
    answered: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(100):
            try:
                d = limiter.hit("proof", 10, 60, fail_open=False)
            except Exception as exc:  # what the limiter must never let through
                with lock:
                    escaped.append(exc)
                continue
            with lock:
                answered.append(d.fallback and not d.allowed)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert escaped == [], escaped[:3]
    assert len(answered) == 800 and all(answered)
