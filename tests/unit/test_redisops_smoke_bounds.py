"""The smoke test's per-tier bounds (allowance, key TTL, slack), without a server."""

from __future__ import annotations

import pytest

from ratelimit import Tier
from redisops.smoke import _allowance, _pttl_bound_ms, _slack, _ttl_bound_ms


@pytest.mark.parametrize(("tier", "cap", "ttl_ms", "pttl_ms"), [
    (Tier("g", 120, 60), 120, 60_000, 60_001),
    (Tier("b", 10, 10, "gcra", burst=25), 25, 25_000, 25_001),  # TTL = burst emission intervals > window
    (Tier("s", 10, 10, "gcra", burst=3), 3, 3_000, 3_001),
    (Tier("r", 7, 60, "gcra", burst=2), 2, 17_143, 17_144),  # interval rounded up to whole us, like gcra.lua
    # A relative PEXPIRE reads at most the window; absolute expiries rounded up to the ms 1 ms more.
    (Tier("f", 10, 30, "fixed_window"), 10, 30_000, 30_000),
    (Tier("l", 10, 30, "sliding_log"), 10, 30_000, 30_001),
])
def test_allowance_ttl_and_pttl_bounds(tier: Tier, cap: int, ttl_ms: int, pttl_ms: int) -> None:
    assert _allowance(tier) == cap
    assert _ttl_bound_ms(tier) == ttl_ms
    assert _pttl_bound_ms(tier) == pttl_ms


@pytest.mark.parametrize(("elapsed", "slack"), [(0.0, 0), (0.999, 0), (1.0, 10), (2.5, 10)])
def test_fixed_window_slack_counts_from_the_first_hit_not_the_epoch(elapsed: float, slack: int) -> None:
    # The key's window starts at its first hit: a burst shorter than the window cannot see a
    # second window, whatever epoch-aligned boundary it crosses.
    assert _slack(Tier("f", 10, 1, "fixed_window"), elapsed) == slack


def test_gcra_slack_is_the_refill_during_the_burst() -> None:
    tier = Tier("b", 10, 10, "gcra", burst=25)
    assert _slack(tier, 0.5) == 0 and _slack(tier, 1.0) == 1 and _slack(tier, 3.2) == 3
    assert _slack(Tier("l", 10, 10, "sliding_log"), 30.0) == 0
