# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""TTL hygiene, library loss (FUNCTION FLUSH, restart), the EVALSHA opt-in's script-cache loss, and
Redis stalled or down."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from ratelimit import (
    ALGORITHMS,
    DEFAULT_TIERS,
    LIBRARY_RELEASE,
    AsyncRateLimiter,
    RateLimiter,
    Tier,
    async_decision_client,
    decision_client,
    make_key,
    tier_key,
)
from tests.support.procs import wait_until
from tests.support.ratelimit_fixtures import own_server, requires_redis, rl_redis, rl_server  # noqa: F401
from tests.support.redisproc import RedisProcess

pytestmark = [pytest.mark.slow, requires_redis]

# Socket timeout 100 ms (the default decision budget). How long a decision takes while Redis is
# stalled or down is a figure of `redisops bench` (bench/results/ratelimit.json, "fallback"),
# not an assertion here: these tests hold the behaviour, i.e. the call comes back with the
# tier's policy while Redis is still stalled, through the timeout (its log names the
# TimeoutError), instead of waiting for Redis. DEADLINE_S only turns a hang into a failure.
DECISION_TIMEOUT = 0.1
DEADLINE_S = 30.0
# Where the decision's own deadline is not what a test is about (the limiter's default is 0.1 s,
# which a descheduled test process can overrun before Redis is even asked).
RELAXED_TIMEOUT = 10.0

GENERAL = next(t for t in DEFAULT_TIERS if t.name == "general")  # fail open
AUTH = next(t for t in DEFAULT_TIERS if t.name == "auth")  # fail closed


# Every key with its PTTL at one instant: a script runs atomically, and Redis judges expiry at
# the script's start time, so no key can expire between being listed and being measured.
_KEYS_WITH_PTTL = """
local out = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('PTTL', k)
end
return out
"""


def keys_with_pttl(r: redis.Redis) -> dict[str, int]:
    flat = r.eval(_KEYS_WITH_PTTL, 0)
    return {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}


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

    snapshot = keys_with_pttl(rl_redis)
    assert set(snapshot) <= set(windows), set(snapshot) - set(windows)
    # A GCRA key lives only until its TAT drains (200 ms after one admin hit), so on a loaded
    # machine some may already be gone; the window-long keys of the other algorithms may not.
    long_lived = {k for k in windows if windows[k] >= 60_000 and not k.endswith(":g")}
    assert long_lived and long_lived <= set(snapshot), long_lived - set(snapshot)
    for key, pttl in snapshot.items():
        # -1 would be a key without a TTL. 0: expiring at this very millisecond. +1: expiry is
        # rounded up to Redis' millisecond clock so a key never dies early.
        assert 0 <= pttl <= windows[key] + 1, (key, pttl)


def test_gcra_ttl_is_the_tat_drain_time(rl_redis: redis.Redis) -> None:
    limiter = RateLimiter(rl_redis)
    for _ in range(3):
        limiter.hit_tier(GENERAL, "drain")
    key = make_key("rl", tier_key(GENERAL, "drain"), "gcra")
    # The TTL read before and after the peek brackets its reset_after. PTTL is whole ms against
    # an expiry rounded up to the ms: at one instant reset_after <= PTTL < reset_after + 2 ms.
    before = rl_redis.pttl(key)
    reset_ms = limiter.peek_tier(GENERAL, "drain").reset_after * 1000
    after = rl_redis.pttl(key)
    assert 0 < after <= before, (before, after)
    assert after - 2 <= reset_ms <= before + 0.001, (before, reset_ms, after)


# The default mode loses its library to FUNCTION FLUSH; the EVALSHA opt-in its scripts to SCRIPT FLUSH.
FLUSHES = {"functions": ("function_flush", "library_loads", "script_loads"),
           "scripts": ("script_flush", "script_loads", "library_loads")}


@pytest.mark.parametrize("mode", sorted(FLUSHES))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flush_mid_use_is_invisible_to_a_credential_that_may_load(rl_redis: redis.Redis, algorithm: str,
                                                                  mode: str) -> None:
    flush, loads_attr, other_attr = FLUSHES[mode]
    limiter = RateLimiter(rl_redis, algorithm, mode=mode)  # type: ignore[arg-type]
    first = [limiter.hit("f", 5, 60) for _ in range(3)]
    loads = getattr(limiter, loads_attr)  # 0 or 1: the module's server may already hold it
    getattr(rl_redis, flush)()
    second = [limiter.hit("f", 5, 60) for _ in range(3)]
    assert [d.allowed for d in first + second] == [True] * 5 + [False]
    assert not any(d.fallback for d in first + second)
    assert [d.remaining for d in first + second] == [4, 3, 2, 1, 0, 0]
    assert getattr(limiter, loads_attr) == loads + 1 and getattr(limiter, other_attr) == 0


def test_restart_mid_use_recovers_through_fcall(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=1.0)
    limiter = RateLimiter(client)
    before = [limiter.hit_tier(AUTH, "ip1").allowed for _ in range(3)]
    assert limiter.library_loads == 1  # a fresh server: the first FCALL met "Function not found"
    own_server.restart()
    after = [limiter.hit_tier(AUTH, "ip1") for _ in range(3)]
    assert before == [True] * 3
    # No persistence in this config: the restarted server forgot the client and the library, which
    # was loaded again without the caller seeing an error or a fallback.
    assert [d.allowed for d in after] == [True] * 3 and not any(d.fallback for d in after)
    assert after[0].remaining == AUTH.limit - 1
    assert limiter.library_loads == 2
    client.close()


def returns(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` run in a thread: it must return (or raise) within DEADLINE_S, else the test
    fails instead of hanging with it."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call(*args))
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    assert outcome, f"{getattr(call, '__name__', call)} did not return within {DEADLINE_S} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def answered(limiter: RateLimiter, tier: Tier, client_id: str) -> Any:
    """The first peek Redis answers. A peek consumes nothing, so one that ran out of the 0.1 s
    budget on a busy machine (a fallback) is simply tried again."""
    def peek() -> Any:
        d = limiter.peek_tier(tier, client_id)
        return None if d.fallback else d

    return wait_until(peek, DEADLINE_S, "a peek answered by Redis")


def warmed_up(limiter: RateLimiter, tier: Tier, client_id: str) -> None:
    """Connected and the script loaded."""
    answered(limiter, tier, client_id)


def timeouts_logged(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "ratelimit.limiter" and "(TimeoutError:" in r.getMessage())


@pytest.mark.parametrize("tier", [GENERAL, AUTH], ids=["fail-open", "fail-closed"])
def test_stalled_redis_answers_through_the_timeout_with_the_tier_policy(
        own_server: RedisProcess, tier: Tier, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ratelimit.limiter")
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client)
    warmed_up(limiter, tier, "x")
    caplog.clear()
    fallbacks = limiter.fallbacks
    own_server.pause()
    try:
        # Both come back while the server is still stopped: neither waited for Redis.
        d = returns(limiter.hit_tier, tier, "x")
        fresh = RateLimiter(decision_client(port=own_server.port, timeout=DECISION_TIMEOUT))
        d2 = returns(fresh.hit_tier, tier, "y")  # stalled during connect/handshake
        assert own_server.paused()
    finally:
        own_server.resume()
    assert timeouts_logged(caplog) == 2, caplog.text
    for dec in (d, d2):
        assert dec.fallback is True
        assert dec.allowed is tier.fail_open
        assert dec.retry_after == (0.0 if tier.fail_open else 1.0)
    assert limiter.fallbacks == fallbacks + 1
    # Back to normal once Redis answers again; the timed-out connection was discarded, so no
    # stale reply (the stalled hit's on "x": one unit consumed) is read as this request's answer.
    after = answered(limiter, tier, "z")
    assert after.allowed and after.remaining == tier.limit
    client.close()


def test_timed_out_script_is_not_retried(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client, "fixed_window")
    key = make_key("rl", "once", "fixed_window")
    wait_until(lambda: not limiter.peek("once", 100, 60).fallback, DEADLINE_S, "a peek answered by Redis")
    own_server.pause()
    try:
        d = returns(limiter.hit, "once", 100, 60)
    finally:
        client.close()  # the request was written to the socket before the timeout
        own_server.resume()
    assert d.fallback
    admin = redis.Redis(port=own_server.port)
    # Once the server has read the limiter's closed connections to the end (and freed them),
    # it has run whatever was sent on them: the script ran exactly once, never twice.
    wait_until(lambda: admin.client_list() and len(admin.client_list()) == 1, DEADLINE_S,
               "the limiter's connections drained and closed")
    assert admin.get(key) == b"1"
    admin.close()


def test_redis_down_answers_with_the_policy(own_server: RedisProcess) -> None:
    client = decision_client(port=own_server.port, timeout=DECISION_TIMEOUT)
    limiter = RateLimiter(client)
    warmed_up(limiter, AUTH, "k")
    fallbacks = limiter.fallbacks
    own_server.kill9()
    for tier in (GENERAL, AUTH):
        d = returns(limiter.hit_tier, tier, "k")
        assert d.fallback and d.allowed is tier.fail_open
    # An explicit per-call policy overrides the limiter's default (closed).
    assert limiter.hit("k", 5, 1, fail_open=True).allowed is True
    assert limiter.hit("k", 5, 1).allowed is False
    assert limiter.fallbacks == fallbacks + 4
    client.close()


def test_async_library_and_noscript_recovery_and_stall(own_server: RedisProcess,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ratelimit.limiter")

    async def run() -> None:
        client = async_decision_client(port=own_server.port, timeout=RELAXED_TIMEOUT)
        limiter = AsyncRateLimiter(client, timeout=RELAXED_TIMEOUT)
        for a in ALGORITHMS:
            assert (await limiter.hit("n", 3, 60, algorithm=a)).remaining == 2
        assert limiter.library_loads == 1  # fresh server: one library holds every algorithm
        assert await limiter.check_library() == LIBRARY_RELEASE
        await client.function_flush()
        for a in ALGORITHMS:
            d = await limiter.hit("n", 3, 60, algorithm=a)
            assert d.allowed and not d.fallback and d.remaining == 1
        assert limiter.library_loads == 2 and limiter.script_loads == 0
        # The EVALSHA opt-in, through NOSCRIPT after a SCRIPT FLUSH.
        scripts = AsyncRateLimiter(client, timeout=RELAXED_TIMEOUT, mode="scripts")
        for a in ALGORITHMS:
            assert (await scripts.hit("m", 3, 60, algorithm=a)).remaining == 2
        await client.script_flush()
        for a in ALGORITHMS:
            assert (await scripts.hit("m", 3, 60, algorithm=a)).remaining == 1
        assert scripts.script_loads == 6 and scripts.library_loads == 0
        await client.aclose()

        # A client with redis-py's default 5 s timeouts and retries: the limiter's own deadline
        # still bounds the decision (the "wrap the call yourself" option).
        slow_client = redis.asyncio.Redis(port=own_server.port)
        bounded = AsyncRateLimiter(slow_client, timeout=DECISION_TIMEOUT)
        # Connected first, as `warmed_up` does for the sync client: a peek that overran the
        # 0.1 s budget on a busy machine (CI run 1 of 2026-12-03) is a fallback, tried again.
        for _ in range(300):
            if not (await bounded.peek_tier(AUTH, "s")).fallback:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"no peek answered by Redis within 300 tries: {caplog.text}")
        caplog.clear()
        own_server.pause()
        try:
            # DEADLINE_S only turns a hang into a failure; the limiter's own deadline ends it.
            d = await asyncio.wait_for(bounded.hit_tier(AUTH, "s"), DEADLINE_S)
            assert own_server.paused()
        finally:
            own_server.resume()
        assert d.fallback and d.allowed is False
        assert timeouts_logged(caplog) == 1, caplog.text
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


def test_hit_many_drops_idle_connections_to_a_primary_refusing_writes(own_server: RedisProcess) -> None:
    """NOREPLICAS (min-replicas-to-write unmet: often a primary Sentinel already replaced) makes
    hit_many fall back and drop the pool's idle connections, as hit does, so a Sentinel-managed
    client looks the master up again instead of reusing them."""
    admin = redis.Redis(port=own_server.port)
    client = decision_client(port=own_server.port, timeout=RELAXED_TIMEOUT)
    limiter = RateLimiter(client, timeout=RELAXED_TIMEOUT)
    try:
        answered(limiter, AUTH, "w")  # connected, library loaded
        admin.config_set("min-replicas-to-write", 1)  # no replica here: every write is refused
        d = limiter.hit_many([("nr", 5, 60), ("nr2", 5, 60)])
        assert [x.fallback for x in d] == [True, True] and d.allowed is False
        me = admin.client_id()
        wait_until(lambda: [c for c in admin.client_list() if int(c["id"]) != me] == [], DEADLINE_S,
                   "the limiter's idle connection dropped")
    finally:
        admin.config_set("min-replicas-to-write", 0)
        client.close()
        admin.close()
