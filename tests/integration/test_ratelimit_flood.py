# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""The flood shield on a real redis-server: 10,000 hits on one key, Redis calls counted by Redis."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from ratelimit import ALGORITHMS, AsyncRateLimiter, RateLimiter, async_decision_client
from ratelimit.functions import decision_calls
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server  # noqa: F401

pytestmark = [pytest.mark.slow, requires_redis]

FLOOD, THREADS = 10_000, 8
LIMIT, WINDOW_S = 30, 60  # the guide's auth tier


def limiter_calls(admin: redis.Redis) -> int:
    """Limiter calls the server received, from its own INFO commandstats."""
    return decision_calls(admin.info("commandstats"))


def flood(limiter: RateLimiter, key: str) -> tuple[int, int, float]:
    """(admitted, denied locally, seconds from the first admission to the last hit)."""
    counts = [0, 0]
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)
    first: list[float] = []

    def work() -> None:
        barrier.wait()
        admitted = cached = 0
        for _ in range(FLOOD // THREADS):
            d = limiter.hit(key, LIMIT, WINDOW_S)
            assert not d.fallback
            if d.allowed and not first:
                first.append(time.monotonic())
            admitted += d.allowed
            cached += d.cached
        with lock:
            counts[0] += admitted
            counts[1] += cached

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts[0], counts[1], time.monotonic() - first[0]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flood_admits_exactly_the_limit_and_spares_redis(rl_server, rl_redis: redis.Redis, algorithm: str) -> None:
    admin = redis.Redis(port=rl_server.port)
    limiter = RateLimiter(rl_redis, algorithm)
    limiter.hit("warm", LIMIT, WINDOW_S)  # script loaded, connection open: not part of the flood
    admin.config_resetstat()
    admitted, cached, elapsed = flood(limiter, "flood")
    calls = limiter_calls(admin)
    if algorithm == "gcra":
        # GCRA gives one unit back every window/limit = 2 s; Redis alone would admit those too.
        assert LIMIT <= admitted <= LIMIT + 1 + int(elapsed / (WINDOW_S / LIMIT)), (admitted, elapsed)
    else:
        assert admitted == LIMIT
    # Every request that reached Redis was counted by Redis: the rest were denied locally.
    assert calls == FLOOD - cached
    assert calls <= LIMIT + FLOOD // 100, calls
    assert limiter.cached_denials == cached
    # A reset in this process clears the entry at once.
    assert limiter.reset("flood")
    assert limiter.hit("flood", LIMIT, WINDOW_S).allowed
    admin.close()


def test_without_the_cache_every_hit_is_a_redis_call(rl_server, rl_redis: redis.Redis) -> None:
    admin = redis.Redis(port=rl_server.port)
    limiter = RateLimiter(rl_redis, "sliding_log", deny_cache=False)
    limiter.hit("warm", LIMIT, WINDOW_S)
    admin.config_resetstat()
    admitted, cached, _ = flood(limiter, "flood-off")
    assert (admitted, cached, limiter_calls(admin)) == (LIMIT, 0, FLOOD)
    admin.close()


def test_async_flood(rl_server, rl_redis: redis.Redis) -> None:
    admin = redis.Redis(port=rl_server.port)

    async def run() -> tuple[int, int]:
        client = async_decision_client(port=rl_server.port, timeout=10.0)
        limiter = AsyncRateLimiter(client, "sliding_log", timeout=10.0)
        await limiter.hit("warm", LIMIT, WINDOW_S)
        admin.config_resetstat()
        admitted = cached = 0
        for _ in range(20):  # waves of concurrent tasks, as requests arrive at a server
            wave = await asyncio.gather(*(limiter.hit("aflood", LIMIT, WINDOW_S) for _ in range(100)))
            assert not any(d.fallback for d in wave)
            admitted += sum(d.allowed for d in wave)
            cached += sum(d.cached for d in wave)
        await client.aclose()
        return admitted, cached

    admitted, cached = asyncio.run(run())
    calls = limiter_calls(admin)
    assert admitted == LIMIT and calls == 2000 - cached
    # The first wave reaches Redis whole (nothing is denied yet); the next ones stay local.
    assert calls <= 100 + 20, calls
    admin.close()
