"""Proof 3: `min-replicas-to-write` bounds write loss when the primary is cut off.

A primary isolated from its replicas keeps accepting writes only while a replica has
acknowledged within `min-replicas-max-lag` seconds; after that it answers NOREPLICAS, so a
primary on the wrong side of a partition stops taking decisions that would be lost when
Sentinel promotes a replica on the other side. Sentinels are not started here: nothing may
fail over while the primary is being isolated.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from ratelimit import RateLimiter, decision_client_kwargs
from tests.integration._sentinel_topology import FAST, Topology, sentinel_topology, wait_until
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed")]

LAG = FAST.min_replicas_max_lag


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    with sentinel_topology(tmp_path, tls=False, start_sentinels=False) as t:
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
        assert f"min-replicas-to-write {FAST.min_replicas_to_write}\n" in conf
        assert f"min-replicas-max-lag {LAG}\n" in conf
    cfg = topo.node_client(0).config_get("min-replicas-*")
    assert cfg == {"min-replicas-to-write": "1", "min-replicas-max-lag": str(LAG)}


def test_silent_replicas_stop_writes_after_the_lag(topo: Topology) -> None:
    primary = topo.node_client(0)
    primary.set("proof:write", "before")
    # A partition looks like silence, not a closed connection: freeze both replicas.
    t0 = time.monotonic()
    for n in topo.nodes[1:]:
        n.pause()
    try:
        # Within the lag the primary still believes its replicas are there.
        assert not _writes_refused(primary)
        wait_until(lambda: _writes_refused(primary), LAG + 3, "NOREPLICAS on the isolated primary")
        refused_after = time.monotonic() - t0
        print(f"\nMIN_REPLICAS writes refused {refused_after:.2f}s after the replicas went silent (lag {LAG}s)")
        # Redis counts whole seconds since the last ACK (sent each second): refusal comes after
        # more than `lag` and at most lag + 2 s.
        assert LAG - 0.5 <= refused_after <= LAG + 2.5
        assert primary.get("proof:write") == b"before"  # reads still work
    finally:
        for n in topo.nodes[1:]:
            n.resume()
    wait_until(lambda: not _writes_refused(primary), LAG + 5, "writes accepted once a replica acknowledges")


def test_limiter_applies_fail_policy_when_writes_are_refused(topo: Topology) -> None:
    limiter = RateLimiter(redis.Redis("127.0.0.1", topo.nodes[0].port, password=topo.passwords["app"],
                                      **decision_client_kwargs(0.2)))
    assert limiter.hit("proof", 10, 60).fallback is False
    for n in topo.nodes[1:]:
        n.stop()
    primary = topo.node_client(0)
    wait_until(lambda: _writes_refused(primary), 1.0, "NOREPLICAS after the replicas stopped")
    closed = limiter.hit("proof", 10, 60, fail_open=False)
    opened = limiter.hit("proof", 10, 60, fail_open=True)
    assert closed.fallback and not closed.allowed
    assert opened.fallback and opened.allowed


def test_stopped_replicas_stop_writes_at_once(topo: Topology) -> None:
    primary = topo.node_client(0)
    for n in topo.nodes[1:]:
        n.stop()
    # A cleanly closed link is noticed immediately, no lag to wait out.
    wait_until(lambda: _writes_refused(primary), 1.0, "NOREPLICAS after the replicas stopped")
    topo.nodes[1].restart()
    wait_until(lambda: not _writes_refused(primary), 15, "writes accepted with one replica back")
    assert primary.info("replication")["connected_slaves"] == 1
