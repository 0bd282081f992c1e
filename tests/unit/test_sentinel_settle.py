"""Topology.settle_failover's loop, driven by scripted Sentinel answers (the loopback proofs rarely
take its second round: it needs a failover to start between an agreement and the hold)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration._sentinel_topology import FAST, Topology


class Scripted(Topology):
    """agreed_master() answers from a script; hold_failovers() is counted."""

    def __init__(self, answers: Iterator[int | None]) -> None:
        super().__init__(nodes=[], sentinels=[], passwords={}, tls=None, tuning=FAST)
        self.answers = answers
        self.holds = 0

    def agreed_master(self) -> int | None:
        return next(self.answers)

    def hold_failovers(self) -> None:
        self.holds += 1


def test_a_failover_started_before_the_hold_is_waited_out() -> None:
    # Agreement on 7001; after the hold a failover shows (None); then agreement on 7002, stable.
    topo = Scripted(iter([7001, None, None, 7002, 7002]))
    assert topo.settle_failover(killed_port=7000, timeout=5) == 7002
    assert topo.holds == 2


def test_the_killed_master_is_never_the_answer() -> None:
    # Sentinels still naming the killed master (not yet ODOWN) are not an agreement.
    topo = Scripted(iter([7000, 7000, 7001, 7001]))
    assert topo.settle_failover(killed_port=7000, timeout=5) == 7001
    assert topo.holds == 1


def test_no_settled_master_by_the_deadline_fails_with_the_sentinels_state() -> None:
    def flapping() -> Iterator[int | None]:
        while True:
            yield 7001  # agreement
            yield None  # a failover after every hold

    topo = Scripted(flapping())
    with pytest.raises(AssertionError, match=r"no settled master within 0\.3s"):
        topo.settle_failover(killed_port=7000, timeout=0.3)
    assert topo.holds >= 2
