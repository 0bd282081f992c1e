"""AsyncRateLimiter over redis-py's asyncio RedisCluster: the client's bare AttributeError from a
connection torn down by a concurrent initialize() gets the tier's failure policy, while the same
exception from any other client is still a bug that surfaces."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ratelimit import AsyncRateLimiter


async def _broken(*args: Any, **kwargs: Any) -> Any:
    raise AttributeError("'NoneType' object has no attribute 'writelines'")


@pytest.mark.parametrize("fail_open", [False, True])
def test_async_cluster_attribute_error_applies_the_policy(fail_open: bool) -> None:
    async def run() -> None:
        client = RedisCluster(host="127.0.0.1", port=1)  # never connects: the send is replaced
        client.execute_command = _broken  # type: ignore[method-assign]
        # Unpipelined, a decision is one execute_command (auto-pipelining fails the same way per caller).
        limiter = AsyncRateLimiter(client, fail_open=fail_open, auto_pipeline=False)
        d = await limiter.hit("k", 10, 60)
        assert d.fallback and d.allowed is fail_open and limiter.fallbacks == 1

    asyncio.run(run())


def test_other_clients_attribute_error_is_raised() -> None:
    async def run() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=1)
        client.execute_command = _broken  # type: ignore[method-assign]
        with pytest.raises(AttributeError):
            await AsyncRateLimiter(client, auto_pipeline=False).hit("k", 10, 60)

    asyncio.run(run())
