"""The smoke test's per-tier bounds (allowance, key TTL, slack), without a server."""

from __future__ import annotations

import pytest

from ratelimit import Tier
from redisops.smoke import _allowance, _pttl_bound_ms, _slack, _ttl_bound_ms


@pytest.mark.parametrize(("tier", "cap", "ttl_ms"), [
    (Tier("g", 120, 60), 120, 60_000),
    (Tier("b", 10, 10, "gcra", burst=25), 25, 25_000),  # TTL = burst emission intervals > window
    (Tier("s", 10, 10, "gcra", burst=3), 3, 3_000),
    (Tier("r", 7, 60, "gcra", burst=2), 2, 17_143),  # interval rounded up to whole us, like gcra.lua
    (Tier("f", 10, 30, "fixed_window"), 10, 30_000),
    (Tier("l", 10, 30, "sliding_log"), 10, 30_000),
])
def test_allowance_and_ttl_bound(tier: Tier, cap: int, ttl_ms: int) -> None:
    assert _allowance(tier) == cap
    assert _ttl_bound_ms(tier) == ttl_ms
    # Absolute expiries rounded up to the ms read up to 1 ms more in PTTL; a relative PEXPIRE not.
    assert _pttl_bound_ms(tier) == ttl_ms + (0 if tier.algorithm == "fixed_window" else 1)


@pytest.mark.parametrize(("elapsed", "slack"), [(0.0, 0), (0.999, 0), (1.0, 10), (2.5, 10)])
def test_fixed_window_slack_counts_from_the_first_hit_not_the_epoch(elapsed: float, slack: int) -> None:
    # The key's window starts at its first hit: a burst shorter than the window cannot see a
    # second window, whatever epoch-aligned boundary it crosses.
    assert _slack(Tier("f", 10, 1, "fixed_window"), elapsed) == slack


def test_gcra_slack_is_the_refill_during_the_burst() -> None:
    tier = Tier("b", 10, 10, "gcra", burst=25)
    assert _slack(tier, 0.5) == 0 and _slack(tier, 1.0) == 1 and _slack(tier, 3.2) == 3
    assert _slack(Tier("l", 10, 10, "sliding_log"), 30.0) == 0
