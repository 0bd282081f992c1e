# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""Exactly `limit` admissions when many threads, processes or tasks race on one key."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest
import redis

from ratelimit import ALGORITHMS, AsyncRateLimiter, Decision, RateLimiter, async_decision_client
from tests.support.ratelimit_fixtures import (  # noqa: F401
    hammer_in_process,
    requires_redis,
    rl_redis,
    rl_server,
)

pytestmark = [pytest.mark.slow, requires_redis]

# A long window keeps GCRA's refill (one unit per window/limit = 36 s here) out of the test,
# so "exactly limit" is the true expected count, not an approximation.
LIMIT = 100
WINDOW_S = 3600


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fifty_threads_admit_exactly_limit(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    threads, per_thread = 50, 10  # 500 requests for 100 slots
    results: list[tuple[bool, bool, int]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            d = limiter.hit("race", LIMIT, WINDOW_S)
            with lock:
                results.append((d.allowed, d.fallback, d.remaining))

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()

    assert len(results) == threads * per_thread
    assert not any(fb for _, fb, _ in results), "a request fell back: the test measured nothing"
    assert sum(1 for ok, _, _ in results if ok) == LIMIT
    # Each admitted request saw a distinct remaining count: no two decisions shared a state.
    assert sorted(rem for ok, _, rem in results if ok) == list(range(LIMIT))
    assert limiter.peek("race", LIMIT, WINDOW_S).allowed is False


def test_several_processes_admit_exactly_limit(rl_redis: redis.Redis, rl_server) -> None:
    procs, threads, per_proc = 4, 5, 100  # 400 requests per algorithm for 100 slots
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        for algorithm in ALGORITHMS:
            jobs = [pool.apply_async(hammer_in_process,
                                     (rl_server.port, algorithm, "mp", LIMIT, WINDOW_S, per_proc, threads))
                    for _ in range(procs)]
            counts = [j.get(timeout=60) for j in jobs]
            allowed = sum(c[0] for c in counts)
            denied = sum(c[1] for c in counts)
            fallbacks = sum(c[2] for c in counts)
            assert fallbacks == 0, algorithm
            assert allowed + denied == procs * per_proc
            assert allowed == LIMIT, f"{algorithm}: {allowed} admitted"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_tasks_admit_exactly_limit(rl_server, rl_redis: redis.Redis, algorithm: str) -> None:
    async def run() -> list[tuple[bool, bool]]:
        # Generous deadlines: a fallback here would be the loaded machine, not the limiter.
        client = async_decision_client(port=rl_server.port, timeout=10.0)
        limiter = AsyncRateLimiter(client, algorithm, timeout=10.0)
        gate = asyncio.Semaphore(60)  # 60 requests in flight on 60 connections

        async def one() -> Decision:
            async with gate:
                return await limiter.hit("arace", LIMIT, WINDOW_S)

        try:
            ds = await asyncio.gather(*(one() for _ in range(400)))
            return [(d.allowed, d.fallback) for d in ds]
        finally:
            await client.aclose()

    results = asyncio.run(run())
    assert not any(fb for _, fb in results)
    assert sum(ok for ok, _ in results) == LIMIT


def test_costs_are_counted_exactly(rl_redis: redis.Redis) -> None:
    # Weighted requests: 7 units each against 100 -> 14 admitted (98 units), the 15th does not fit,
    # but a 2-unit request still does.
    for algorithm in ALGORITHMS:
        limiter = RateLimiter(rl_redis, algorithm)
        decisions = [limiter.hit("w", LIMIT, WINDOW_S, cost=7) for _ in range(20)]
        assert sum(d.allowed for d in decisions) == 14, algorithm
        assert decisions[13].remaining == 2
        assert limiter.hit("w", LIMIT, WINDOW_S, cost=2).allowed
        assert not limiter.hit("w", LIMIT, WINDOW_S, cost=1).allowed
