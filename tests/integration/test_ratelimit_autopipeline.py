# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""Async auto-pipelining on a real redis-server: one pipeline per event-loop turn, own decisions."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import ResponseError

from ratelimit import DEFAULT_TIERS, AsyncRateLimiter, async_decision_client, make_key
from tests.support.ratelimit_fixtures import own_server, requires_redis, rl_redis, rl_server  # noqa: F401
from tests.support.redisproc import RedisProcess

pytestmark = [pytest.mark.slow, requires_redis]

RELAXED = 10.0  # a descheduled test process must not trip the deadline where it is not the subject
DEADLINE_S = 30.0  # only turns a hang into a failure
TIERS = {t.name: t for t in DEFAULT_TIERS}


def connections_named(admin: redis.Redis, name: str) -> int:
    return sum(1 for c in admin.client_list() if c.get("name") == name)


def test_one_turn_is_one_pipeline_with_a_decision_per_caller(rl_server: RedisProcess, rl_redis: redis.Redis) -> None:
    admin = redis.Redis(port=rl_server.port)

    async def run() -> list:
        client = async_decision_client(port=rl_server.port, timeout=RELAXED, client_name="autopipe")
        limiter = AsyncRateLimiter(client, "sliding_log", timeout=RELAXED, deny_cache=False)
        await limiter.hit("warm", 1, 60)  # library loaded
        assert limiter.pipeline is not None
        before = (limiter.pipeline.pipelines, limiter.pipeline.commands)
        admin.config_resetstat()
        decisions = await asyncio.gather(*(limiter.hit("one-key", 50, 60) for _ in range(200)))
        assert (limiter.pipeline.pipelines - before[0], limiter.pipeline.commands - before[1]) == (1, 200)
        assert connections_named(admin, "autopipe") == 1  # one connection carried all 200
        await client.aclose()
        return decisions

    decisions = asyncio.run(run())
    assert int(admin.info("commandstats")["cmdstat_fcall"]["calls"]) == 200
    assert sum(d.allowed for d in decisions) == 50 and not any(d.fallback for d in decisions)
    # Each caller got its own reply: the admitted ones saw 49, 48, ..., 0 remaining, in order.
    assert [d.remaining for d in decisions if d.allowed] == list(range(49, -1, -1))
    admin.close()


def test_one_failing_command_fails_only_its_caller(rl_server: RedisProcess, rl_redis: redis.Redis) -> None:
    rl_redis.rpush(make_key("rl", "wrongtype", "gcra"), "x")  # GCRA's GET meets a list: WRONGTYPE

    async def run() -> list:
        client = async_decision_client(port=rl_server.port, timeout=RELAXED)
        limiter = AsyncRateLimiter(client, timeout=RELAXED)
        await limiter.hit("warm", 1, 60)
        await client.function_flush()  # every command of the next turn: "Function not found"; each heals
        results = await asyncio.gather(*(limiter.hit(f"k{i}", 5, 60) for i in range(10)),
                                       limiter.hit("wrongtype", 5, 60), return_exceptions=True)
        await client.aclose()
        return results

    *fine, broken = asyncio.run(run())
    assert isinstance(broken, ResponseError) and "WRONGTYPE" in str(broken)
    assert all(not isinstance(d, BaseException) and d.allowed and d.remaining == 4 and not d.fallback
               for d in fine), fine


def test_stalled_server_each_caller_gets_its_policy_then_recovers(own_server: RedisProcess) -> None:
    async def run() -> None:
        client = async_decision_client(port=own_server.port, timeout=0.2)
        limiter = AsyncRateLimiter(client, timeout=0.2)
        first = await asyncio.wait_for(limiter.hit_tier(TIERS["auth"], "x"), DEADLINE_S)
        if first.fallback:  # a descheduled test process, not the subject: connect again
            first = await limiter.hit_tier(TIERS["auth"], "x")
        assert not first.fallback and first.remaining == 29
        own_server.pause()
        try:
            stalled = await asyncio.wait_for(asyncio.gather(
                *(limiter.hit_tier(TIERS[name], "x") for name in ("auth", "general", "auth", "admin"))), DEADLINE_S)
            assert own_server.paused()
        finally:
            own_server.resume()
        assert all(d.fallback for d in stalled)
        assert [d.allowed for d in stalled] == [False, True, False, True]  # each tier's own policy
        # The timed-out pipeline dropped its connection: its late replies are read by nobody, and
        # the next decisions are the right ones (the stalled calls consumed nothing or were lost).
        after = await limiter.hit_tier(TIERS["auth"], "y")
        assert not after.fallback and after.remaining == 29
        await client.aclose()

    asyncio.run(run())


def test_auto_pipeline_can_be_turned_off(rl_server: RedisProcess, rl_redis: redis.Redis) -> None:
    async def run() -> None:
        client = async_decision_client(port=rl_server.port, timeout=RELAXED)
        limiter = AsyncRateLimiter(client, timeout=RELAXED, auto_pipeline=False)
        assert limiter.pipeline is None
        ds = await asyncio.gather(*(limiter.hit("off", 3, 60) for _ in range(5)))
        assert sum(d.allowed for d in ds) == 3
        await client.aclose()

    asyncio.run(run())
