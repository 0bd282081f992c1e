# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""Exactly `limit` admissions when many threads, processes or tasks race on one key.

Each race runs twice: on a plain server with a credential that may load the library, and as the
application user of a server started from the rendered redis.conf + ACL file (`-@scripting
+fcall +fcall_ro`), where the admin loaded the library and the limiter may only FCALL it."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from ratelimit import (
    ALGORITHMS,
    AsyncRateLimiter,
    Decision,
    RateLimiter,
    async_decision_client,
    decision_client_kwargs,
)
from tests.integration._redisops_servers import rendered_server
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


@dataclass
class Target:
    """Where a race runs and as whom."""

    port: int
    auth: dict[str, Any] = field(default_factory=dict)  # client kwargs (the app password)
    may_load: bool = True
    admin: redis.Redis | None = None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(port=self.port, **{**decision_client_kwargs(timeout), "max_connections": 128,
                                              **self.auth})


@pytest.fixture(scope="module")
def app_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with rendered_server(tmp_path_factory.mktemp("exact-acl")) as srv:
        yield srv


@pytest.fixture(params=["plain", "app-acl"])
def target(request: pytest.FixtureRequest, rl_server: Any, app_acl_server: Any) -> Iterator[Target]:
    # Both module servers are named here (not looked up lazily) so they start before the test's
    # process accounting begins (tests/conftest.py).
    if request.param == "plain":
        admin = redis.Redis(port=rl_server.port)
        admin.flushall()
        yield Target(rl_server.port, admin=admin)
    else:
        srv = app_acl_server
        admin = srv.admin()
        admin.flushall()  # the admin may; the app user may not
        yield Target(srv.port, {"password": srv.passwords["app"]}, may_load=False, admin=admin)
    admin.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fifty_threads_admit_exactly_limit(target: Target, algorithm: str) -> None:
    client = target.client()
    limiter = RateLimiter(client, algorithm, timeout=1.0, load_library=target.may_load)
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
    assert limiter.library_problem is None
    client.close()


def test_several_processes_admit_exactly_limit(target: Target) -> None:
    procs, threads, per_proc = 4, 5, 100  # 400 requests per algorithm for 100 slots
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        for algorithm in ALGORITHMS:
            jobs = [pool.apply_async(hammer_in_process,
                                     (target.port, algorithm, "mp", LIMIT, WINDOW_S, per_proc, threads,
                                      target.auth, target.may_load))
                    for _ in range(procs)]
            counts = [j.get(timeout=60) for j in jobs]
            allowed = sum(c[0] for c in counts)
            denied = sum(c[1] for c in counts)
            fallbacks = sum(c[2] for c in counts)
            assert fallbacks == 0, algorithm
            assert allowed + denied == procs * per_proc
            assert allowed == LIMIT, f"{algorithm}: {allowed} admitted"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_tasks_admit_exactly_limit(target: Target, algorithm: str) -> None:
    async def run() -> list[tuple[bool, bool]]:
        # Generous deadlines: a fallback here would be the loaded machine, not the limiter.
        client = async_decision_client(port=target.port, timeout=10.0, **target.auth)
        limiter = AsyncRateLimiter(client, algorithm, timeout=10.0, load_library=target.may_load)
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
