# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""TTL hygiene, script-cache loss (SCRIPT FLUSH, restart) and Redis stalled or down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from ratelimit import (
    ALGORITHMS,
    DEFAULT_TIERS,
    AsyncRateLimiter,
    RateLimiter,
    Tier,
    async_decision_client,
    decision_client,
    make_key,
    tier_key,
)
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server, scan_keys, start_server  # noqa: F401
from tests.support.redisproc import RedisProcess

pytestmark = [pytest.mark.slow, requires_redis]

# Socket timeout 100 ms (the default decision budget); a call must come back well within
# 0.5 s even on a loaded 2-core machine: 100 ms timeout + connect/teardown + scheduling.
DECISION_TIMEOUT = 0.1
MARGIN_S = 0.5

GENERAL = next(t for t in DEFAULT_TIERS if t.name == "general")  # fail open
AUTH = next(t for t in DEFAULT_TIERS if t.name == "auth")  # fail closed


@pytest.fixture
def own_server(tmp_path) -> Iterator[RedisProcess]:
    rp = start_server(tmp_path / "redis")
    try:
        yield rp
    finally:
        rp.resume() if rp.running() else None
        rp.stop()


def test_every_key_written_has_a_bounded_ttl(rl_redis: redis.Redis) -> None:
    limiter = RateLimiter(rl_redis)
    windows: dict[str, int] = {}  # key -> the longest life it may have, in ms
    for i in range(30):
        for tier in DEFAULT_TIERS:
            for _ in range(1 + i % 4):
                limiter.hit_tier(tier, f"c{i}")
                limiter.peek_tier(tier, f"c{i}")
            windows[make_key("rl", tier_key(tier, f"c{i}"), tier.algorithm)] = tier.window_s * 1000
    # Short windows and a burst larger than the limit (GCRA keys may live burst/limit windows).
    for a in ALGORITHMS:
        limiter.hit(f"short-{a}", 3, 0.5, algorithm=a)
        windows[make_key("rl", f"short-{a}", a)] = 500
    limiter.hit("bursty", 2, 1, cost=5, burst=6)
    windows[make_key("rl", "bursty", "gcra")] = 3000
    # A counter someone created without a TTL is given one by the next hit, never left immortal.
    stray = make_key("rl", "stray", "fixed_window")
    rl_redis.set(stray, 1)
    limiter.hit("stray", 10, 2, algorithm="fixed_window")
    windows[stray] = 2000
    # Denied requests and peeks write nothing.
    for a in ALGORITHMS:
        limiter.peek(f"never-{a}", 3, 1, algorithm=a)

    keys = {k.decode() for k in scan_keys(rl_redis)}
    assert keys <= set(windows), keys - set(windows)
    # A GCRA key lives only until its TAT drains (200 ms after one admin hit), so on a loaded
    # machine some may already be gone; the window-long keys of the other algorithms may not.
    long_lived = {k for k in windows if windows[k] >= 60_000 and not k.endswith(":g")}
    assert long_lived and long_lived <= keys, long_lived - keys
    for key in keys:
        pttl = rl_redis.pttl(key)
        # +1: expiry is rounded up to Redis' millisecond clock so a key never dies early.
        assert 0 < pttl <= windows[key] + 1, (key, pttl)
    gcra_key = make_key("rl", tier_key(GENERAL, "c3"), "gcra")
    reset = limiter.peek_tier(GENERAL, "c3").reset_after
    assert abs(rl_redis.pttl(gcra_key) / 1000 - reset) < 0.01, "gcra TTL must equal the TAT drain time"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_script_flush_mid_use_is_invisible_to_the_caller(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    first = [limiter.hit("f", 5, 60) for _ in range(3)]
    loads = limiter.script_loads  # 0 or 1: the module's server may already know the script
    rl_redis.script_flush()
    second = [limiter.hit("f", 5, 60) for _ in range(3)]
    assert [d.allowed for d in first + second] == [True] * 5 + [False]
    assert not any(d.fallback for d in first + second)
    assert [d.remaining for d in first + second] == [4, 3, 2, 1, 0, 0]
    assert limiter.script_loads == loads + 1


def test_restart_mid_use_recovers_through_evalsha(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=1.0)
    limiter = RateLimiter(client)
    before = [limiter.hit_tier(AUTH, "ip1").allowed for _ in range(3)]
    assert limiter.script_loads == 1  # a fresh server: the first EVALSHA met NOSCRIPT
    own_server.restart()
    after = [limiter.hit_tier(AUTH, "ip1") for _ in range(3)]
    assert before == [True] * 3
    # No persistence in this config: the restarted server forgot the client, and the empty
    # script cache (NOSCRIPT) was reloaded without the caller seeing an error or a fallback.
    assert [d.allowed for d in after] == [True] * 3 and not any(d.fallback for d in after)
    assert after[0].remaining == AUTH.limit - 1
    assert limiter.script_loads == 2
    client.close()


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    t = time.monotonic()
    out = fn(*args)
    return out, time.monotonic() - t


@pytest.mark.parametrize("tier", [GENERAL, AUTH], ids=["fail-open", "fail-closed"])
def test_stalled_redis_answers_within_the_timeout_with_the_tier_policy(own_server: RedisProcess,
                                                                       tier: Tier) -> None:
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client)
    assert limiter.hit_tier(tier, "x").fallback is False  # connection established, script loaded
    own_server.pause()
    try:
        d, elapsed = _timed(limiter.hit_tier, tier, "x")
        fresh = RateLimiter(decision_client(port=own_server.port, timeout=DECISION_TIMEOUT))
        d2, elapsed2 = _timed(fresh.hit_tier, tier, "y")  # stalled during connect/handshake
    finally:
        own_server.resume()
    for dec, took in ((d, elapsed), (d2, elapsed2)):
        assert took < MARGIN_S, took
        assert dec.fallback is True
        assert dec.allowed is tier.fail_open
        assert dec.retry_after == (0.0 if tier.fail_open else 1.0)
    assert limiter.fallbacks == 1
    # Back to normal once Redis answers again; the timed-out connection was discarded, so no
    # stale reply is read as this request's answer.
    after = limiter.hit_tier(tier, "z")
    assert after.fallback is False and after.allowed and after.remaining == tier.limit - 1
    client.close()


def test_timed_out_script_is_not_retried(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client, "fixed_window")
    key = make_key("rl", "once", "fixed_window")
    limiter.peek("once", 100, 60)
    own_server.pause()
    try:
        d = limiter.hit("once", 100, 60)
    finally:
        own_server.resume()
    assert d.fallback
    time.sleep(0.1)  # let the resumed server drain what was sent before the timeout
    admin = redis.Redis(port=own_server.port)
    # The script may have run once (it was sent before the timeout) but never twice.
    assert admin.get(key) in (None, b"1")
    admin.close()
    client.close()


def test_redis_down_fails_fast_with_the_policy(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client)
    assert not limiter.hit_tier(AUTH, "k").fallback
    own_server.kill9()
    for tier in (GENERAL, AUTH):
        d, took = _timed(limiter.hit_tier, tier, "k")
        assert took < MARGIN_S and d.fallback and d.allowed is tier.fail_open
    # An explicit per-call policy overrides the limiter's default (closed).
    assert limiter.hit("k", 5, 1, fail_open=True).allowed is True
    assert limiter.hit("k", 5, 1).allowed is False
    assert limiter.fallbacks == 4
    client.close()


def test_async_noscript_recovery_and_stall(own_server: RedisProcess) -> None:
    async def run() -> None:
        client = async_decision_client(port=own_server.port, timeout=1.0)
        limiter = AsyncRateLimiter(client)
        for a in ALGORITHMS:
            assert (await limiter.hit("n", 3, 60, algorithm=a)).remaining == 2
        assert limiter.script_loads == 3  # fresh server
        await client.script_flush()
        for a in ALGORITHMS:
            d = await limiter.hit("n", 3, 60, algorithm=a)
            assert d.allowed and not d.fallback and d.remaining == 1
        assert limiter.script_loads == 6
        await client.aclose()

        # A client with redis-py's default 5 s timeouts and retries: the limiter's own deadline
        # still bounds the decision (the "wrap the call yourself" option).
        slow_client = redis.asyncio.Redis(port=own_server.port)
        bounded = AsyncRateLimiter(slow_client, timeout=DECISION_TIMEOUT)
        assert not (await bounded.hit_tier(AUTH, "s")).fallback
        own_server.pause()
        try:
            t = time.monotonic()
            d = await bounded.hit_tier(AUTH, "s")
            took = time.monotonic() - t
        finally:
            own_server.resume()
        assert took < MARGIN_S and d.fallback and d.allowed is False
        await slow_client.aclose()

    asyncio.run(run())


def test_sliding_log_takes_a_cost_beyond_luas_unpack_limit(rl_redis: redis.Redis) -> None:
    # unpack() of more than ~8000 values overflows Lua's C stack; the script adds in chunks.
    limiter = RateLimiter(rl_redis)
    first = limiter.hit("bulk", 10_000, 60, cost=6_000, algorithm="sliding_log")
    assert first.allowed and first.remaining == 4_000 and not first.fallback
    assert rl_redis.zcard(make_key("rl", "bulk", "sliding_log")) == 6_000
    second = limiter.hit("bulk", 10_000, 60, cost=6_000, algorithm="sliding_log")
    assert not second.allowed and second.remaining == 4_000
