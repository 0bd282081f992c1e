"""The deny cache against reference models of the three scripts: it never changes a decision.

The models below restate ratelimit/lua/*.lua in Python over an explicit microsecond clock (the
server's TIME / the key's expiry). Two worlds run the same schedule in lockstep: Redis alone
(the model answers everything) and Redis behind the cache (the model answers only what the
cache lets through). The property: every decision's `allowed` is identical in both worlds, i.e.
the cache never admits what Redis would deny and never denies what Redis would admit, as long
as resets happen in this process. A reset made elsewhere is the documented staleness, shown
exactly in its own test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit.denycache import DRIFT_MARGIN, DenyCache
from ratelimit.limiter import Decision, RateLimitError, _decision
from ratelimit.tiers import ALGORITHMS

Reply = tuple[int, int, int, int]


@dataclass
class Model:
    """Redis with the three scripts, reduced to their state and arithmetic."""

    algorithm: str
    state: dict[str, object] = field(default_factory=dict)
    calls: int = 0

    def decide(self, now: int, key: str, limit: int, window_ms: int, cost: int, peek: bool,
               burst: int | None) -> Reply:
        self.calls += 1
        return getattr(self, self.algorithm)(now, key, limit, window_ms, cost, peek, burst)

    def reset(self, key: str) -> None:
        self.state.pop(key, None)

    def gcra(self, now: int, key: str, limit: int, window_ms: int, cost: int, peek: bool,
             burst: int | None) -> Reply:
        interval = -(-window_ms * 1000 // limit)
        tolerance = (burst or limit) * interval
        tat = max(int(self.state.get(key, 0)), now)  # type: ignore[call-overload]
        new_tat = tat + cost * interval
        if new_tat - tolerance > now:
            return 0, (tolerance - (tat - now)) // interval, new_tat - tolerance - now, tat - now
        if peek:
            return 1, (tolerance - (tat - now)) // interval, 0, tat - now
        self.state[key] = new_tat
        return 1, (tolerance - (new_tat - now)) // interval, 0, new_tat - now

    def fixed_window(self, now: int, key: str, limit: int, window_ms: int, cost: int, peek: bool,
                     burst: int | None) -> Reply:
        now_ms = now // 1000
        used, expire_at = self.state.get(key, (0, None))  # type: ignore[misc]
        if expire_at is not None and now_ms > expire_at:  # Redis: expired once now > when
            used, expire_at = 0, None
        pttl = 0 if expire_at is None else expire_at - now_ms
        if used + cost > limit:
            return 0, max(0, limit - used), pttl * 1000, pttl * 1000
        if peek:
            return 1, limit - used, 0, pttl * 1000
        if expire_at is None:
            expire_at, pttl = now_ms + window_ms, window_ms
        self.state[key] = (used + cost, expire_at)
        return 1, limit - used - cost, 0, pttl * 1000

    def sliding_log(self, now: int, key: str, limit: int, window_ms: int, cost: int, peek: bool,
                    burst: int | None) -> Reply:
        window_us = window_ms * 1000
        live = sorted(s for s in self.state.get(key, []) if s > now - window_us)  # type: ignore[attr-defined]
        reset_after = max(0, live[-1] + window_us - now) if live else 0
        if len(live) + cost > limit:
            return 0, limit - len(live), live[len(live) + cost - limit - 1] + window_us - now, reset_after
        if peek:
            return 1, limit - len(live), 0, reset_after
        self.state[key] = live + [now] * cost
        return 1, limit - len(live) - cost, 0, window_us


SHAPES = [(3, 1000, None), (5, 2000, None), (3, 1000, 4)]


def _shape(algorithm: str, i: int) -> tuple[int, int, int | None]:
    limit, window_ms, burst = SHAPES[i]
    return limit, window_ms, burst if algorithm == "gcra" else None


class World:
    def __init__(self, algorithm: str, cached: bool) -> None:
        self.model = Model(algorithm)
        self.now = 0
        self.cache = DenyCache(4, clock=lambda: self.now / 1e6) if cached else None

    def hit(self, key: str, shape: int, cost: int, peek: bool) -> Decision:
        limit, window_ms, burst = _shape(self.model.algorithm, shape)
        sig = (str(limit), str(window_ms)) + ((str(burst),) if burst else ())
        if self.cache is not None:
            local = self.cache.check(key, sig, cost)
            if local is not None:
                return local
            sent = self.cache.now()
        decision = _decision(self.model.decide(self.now, key, limit, window_ms, cost, peek, burst), limit)
        if self.cache is not None:
            self.cache.record(key, sig, cost, decision, sent)
        return decision

    def reset(self, key: str) -> None:
        self.model.reset(key)
        if self.cache is not None:
            self.cache.forget([key])


OPS = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 1_500_000)),
    st.tuples(st.just("hit"), st.sampled_from("ab"), st.integers(0, 2), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("reset"), st.sampled_from("ab")),
), min_size=1, max_size=120)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_cache_never_changes_a_decision(algorithm: str, ops: list[tuple]) -> None:
    alone, shielded = World(algorithm, cached=False), World(algorithm, cached=True)
    for op in ops:
        if op[0] == "advance":
            alone.now += op[1]
            shielded.now += op[1]
        elif op[0] == "reset":
            alone.reset(op[1])
            shielded.reset(op[1])
        else:
            _, key, shape, cost, peek = op
            expected = alone.hit(key, shape, cost, peek)
            got = shielded.hit(key, shape, cost, peek)
            assert got.allowed == expected.allowed, (op, expected, got)
            if got.cached:
                assert not got.allowed and got.limit == expected.limit
                # Never promises a wait longer than Redis' own, nor one that is already over.
                assert 0 < got.retry_after <= expected.retry_after + 1e-9, (op, expected, got)
            else:
                assert got == expected
    assert shielded.model.state == alone.model.state
    assert shielded.model.calls <= alone.model.calls


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flood_is_answered_locally_until_retry_after(algorithm: str) -> None:
    world = World(algorithm, cached=True)
    admitted = [world.hit("k", 0, 1, False).allowed for _ in range(1000)]
    assert sum(admitted) == 3 and admitted[:3] == [True] * 3
    assert world.model.calls == 4 and world.cache is not None and world.cache.denials == 996
    retry_us = world.model.decide(world.now, "k", 3, 1000, 1, True, None)[2]
    world.model.calls -= 1  # that peek was the test's, not the client's
    world.now += math.ceil(retry_us * (1 - DRIFT_MARGIN)) - 1  # just before the cached deadline
    assert world.hit("k", 0, 1, False).cached
    # Redis' own moment (fixed_window: its key expires once now > expiry, 1 ms later).
    world.now += retry_us - math.ceil(retry_us * (1 - DRIFT_MARGIN)) + 1 + (algorithm == "fixed_window") * 1000
    assert world.hit("k", 0, 1, False).allowed is True
    assert world.model.calls == 5


def test_smaller_cost_other_shape_and_local_reset_bypass_the_entry() -> None:
    world = World("gcra", cached=True)
    assert world.hit("k", 0, 3, False).allowed  # 3 of 3 spent
    world.now += 700_000  # 2/3 of a unit back (interval 333,334 us): a cost of 3 waits
    assert not world.hit("k", 0, 3, False).allowed
    calls = world.model.calls
    assert world.hit("k", 0, 3, False).cached
    assert not world.hit("k", 0, 2, False).cached  # smaller cost: asked Redis
    assert not world.hit("k", 1, 3, False).cached  # another limit and window: asked Redis
    assert not world.hit("k", 2, 3, False).cached  # another burst: asked Redis
    assert world.model.calls == calls + 3
    world.reset("k")
    assert world.hit("k", 0, 3, False).allowed  # reset in this process: cleared at once


def test_a_reset_elsewhere_is_seen_after_retry_after() -> None:
    """The one staleness: another process resets the key; this cache still denies, and only
    until the cached retry_after."""
    world = World("fixed_window", cached=True)
    for _ in range(3):
        world.hit("k", 0, 1, False)
    denial = world.hit("k", 0, 1, False)
    assert not denial.allowed and not denial.cached and denial.retry_after == 1.0
    world.model.reset("k")  # another process: this cache is not told
    world.now += 500_000
    stale = world.hit("k", 0, 1, False)
    assert stale.cached and not stale.allowed and stale.retry_after == pytest.approx(0.499, abs=1e-6)
    world.now += 499_000
    assert world.hit("k", 0, 1, False).allowed


def test_lru_is_bounded_and_admission_clears_a_stale_entry() -> None:
    now = [0.0]
    cache = DenyCache(2, clock=lambda: now[0])
    denied = Decision(False, 0, 10.0, 10.0, 3)
    for key in ("a", "b", "c"):
        cache.record(key, ("3", "1000"), 1, denied, 0.0)
    assert len(cache) == 2 and cache.check("a", ("3", "1000"), 1) is None  # evicted, oldest first
    assert cache.check("b", ("3", "1000"), 1) is not None
    cache.record("b", ("3", "1000"), 1, Decision(True, 2, 0.0, 1.0, 3), 1.0)  # reset elsewhere, seen
    assert cache.check("b", ("3", "1000"), 1) is None
    cache.record("c", ("3", "1000"), 1, Decision(False, 0, 1.0, 1.0, 3, fallback=True), 0.0)
    assert cache.check("c", ("3", "1000"), 1) is not None  # the fallback did not overwrite
    cache.forget(["c"])
    cache.record("c", ("3", "1000"), 1, denied, -1.0)  # sent before the reset: may predate it
    assert cache.check("c", ("3", "1000"), 1) is None


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "10"])
def test_bad_size_is_refused(size: object) -> None:
    from ratelimit import RateLimiter

    with pytest.raises(RateLimitError, match="deny_cache_size must be a positive integer"):
        RateLimiter(object(), deny_cache_size=size)  # type: ignore[arg-type]
