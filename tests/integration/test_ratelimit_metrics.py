# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""The limiter's prometheus_client metrics against a real redis-server: every outcome, the latency
histogram, NOPERM from a real ACL refusal, and fallbacks when Redis is gone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import redis
from prometheus_client import CollectorRegistry

from infra.thresholds import LIMITER_DECISIONS_METRIC, LIMITER_ERRORS_METRIC
from ratelimit import AsyncRateLimiter, Decision, RateLimiter, Tier, async_decision_client, decision_client
from ratelimit.functions import load_library
from ratelimit.metrics import CUSTOM_TIER, LimiterMetrics, error_kind, outcome_of
from redisops.loadtest import run_on_private_loop
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server  # noqa: F401
from tests.support.redisproc import RedisProcess, free_port

pytestmark = [requires_redis]

TIER = Tier("auth", 3, 60, "gcra", fail_open=False)


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    value = reg.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_metric_name_is_the_one_the_rules_read() -> None:
    reg = CollectorRegistry()
    m = LimiterMetrics(reg)
    m.declare_tiers([TIER])
    assert reg.get_sample_value(LIMITER_DECISIONS_METRIC, {"tier": "auth", "outcome": "fallback"}) == 0.0
    assert reg.get_sample_value(LIMITER_ERRORS_METRIC, {"kind": "noperm"}) == 0.0
    assert reg.get_sample_value(LIMITER_ERRORS_METRIC, {"kind": "library_missing"}) == 0.0


def test_outcomes_and_error_kinds() -> None:
    assert outcome_of(Decision(True, 1, 0.0, 1.0, 3)) == "allowed"
    assert outcome_of(Decision(False, 0, 1.0, 1.0, 3)) == "denied"
    assert outcome_of(Decision(False, 0, 1.0, 1.0, 3, fallback=True)) == "fallback"
    assert outcome_of(Decision(True, 2, 0.0, 0.0, 3, fallback=True)) == "fallback"
    assert error_kind(redis.exceptions.NoPermissionError(
        "NOPERM User app has no permissions to run the 'evalsha' command")) == "noperm"
    assert error_kind(redis.exceptions.ResponseError("ERR Function not found")) == "library_missing"
    assert error_kind(redis.exceptions.ConnectionError("Connection refused")) is None

    class LibraryUnavailable(RuntimeError):  # the Functions client's error, matched by name
        pass

    assert error_kind(LibraryUnavailable("library ratelimit is not loaded; run redisops functions load")) \
        == "library_missing"

    class Cached(NamedTuple):  # a Decision with the deny cache's flag
        allowed: bool
        fallback: bool
        cached: bool

    assert outcome_of(Cached(False, False, True)) == "denied_locally"


@pytest.mark.slow
def test_sync_decisions_by_tier_and_outcome(rl_redis: redis.Redis) -> None:
    reg = CollectorRegistry()
    limiter = RateLimiter(rl_redis, metrics=LimiterMetrics(reg))
    got = [limiter.hit_tier(TIER, "1.2.3.4").allowed for _ in range(5)]
    assert got == [True, True, True, False, False]
    assert limiter.hit("custom-key", 10, 60).allowed
    assert sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="allowed") == 3
    # The first denial comes from Redis; a deny cache (Decision.cached) may answer the next one.
    denied = sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="denied")
    assert denied >= 1 and denied + sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="denied_locally") == 2
    assert sample(reg, LIMITER_DECISIONS_METRIC, tier=CUSTOM_TIER, outcome="allowed") == 1
    assert sample(reg, "ratelimit_decision_seconds_count", tier="auth") == 5
    # Every observation is a real round trip: above zero, below the 1 s client timeout.
    total = sample(reg, "ratelimit_decision_seconds_sum", tier="auth")
    assert 0 < total < 5
    assert sample(reg, "ratelimit_decision_seconds_bucket", tier="auth", le="+Inf") == 5


@pytest.mark.slow
def test_async_decisions_and_isolated_registries(rl_server: RedisProcess) -> None:
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()

    async def main() -> list[bool]:
        client = async_decision_client(port=rl_server.port, timeout=1.0)
        try:
            # The decision's own deadline is not under test: the default 0.1 s can be overrun by a
            # descheduled test process on a busy machine (a fallback would change the counts).
            limiter = AsyncRateLimiter(client, timeout=10.0, metrics=LimiterMetrics(reg_a))
            await client.flushall()
            return [(await limiter.hit_tier(TIER, "5.6.7.8")).allowed for _ in range(4)]
        finally:
            await client.aclose()

    LimiterMetrics(reg_b)  # a second registry sees nothing of the first's decisions
    assert run_on_private_loop(main()) == [True, True, True, False]
    assert sample(reg_a, LIMITER_DECISIONS_METRIC, tier="auth", outcome="allowed") == 3
    assert sample(reg_a, LIMITER_DECISIONS_METRIC, tier="auth", outcome="denied") == 1  # the first: from Redis
    assert reg_b.get_sample_value(LIMITER_DECISIONS_METRIC, {"tier": "auth", "outcome": "allowed"}) is None


@pytest.mark.slow
def test_fallback_decisions_are_counted_when_redis_is_gone() -> None:
    reg = CollectorRegistry()
    port = free_port()  # nothing listens there
    limiter = RateLimiter(decision_client(port=port, timeout=0.5), metrics=LimiterMetrics(reg))
    d = limiter.hit_tier(TIER, "9.9.9.9")
    assert (d.allowed, d.fallback) == (False, True)
    open_tier = Tier("general", 10, 60, fail_open=True)
    assert limiter.hit_tier(open_tier, "9.9.9.9").allowed
    assert sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="fallback") == 1
    assert sample(reg, LIMITER_DECISIONS_METRIC, tier="general", outcome="fallback") == 1
    # A refused connection is an outage, not a configuration error: no error counted.
    assert sample(reg, LIMITER_ERRORS_METRIC, kind="noperm") == 0
    assert sample(reg, LIMITER_ERRORS_METRIC, kind="library_missing") == 0


def limiter_as(rl_server: RedisProcess, flavour: str, user: str, password: str, reg: CollectorRegistry,
               decide: Callable[[Any], Any]) -> Any:
    """decide(limiter) as `user`, with the sync, the auto-pipelined async or the plain async
    limiter (for the async ones `decide` returns an awaitable)."""
    if flavour == "sync":
        client = decision_client(port=rl_server.port, timeout=1.0, username=user, password=password)
        try:
            return decide(RateLimiter(client, metrics=LimiterMetrics(reg)))
        finally:
            client.close()

    async def main() -> Any:
        aclient = async_decision_client(port=rl_server.port, timeout=1.0, username=user, password=password)
        alimiter = AsyncRateLimiter(aclient, timeout=10.0, metrics=LimiterMetrics(reg),  # deadline not under test
                                    auto_pipeline=flavour == "async")
        try:
            return await decide(alimiter)
        finally:
            await aclient.aclose()
    return run_on_private_loop(main())


def decide_as(rl_server: RedisProcess, flavour: str, user: str, password: str, reg: CollectorRegistry,
              tiers: list[Tier]) -> list[Decision]:
    """hit_tier for each tier in turn as `user` (limiter_as)."""
    async def each(limiter: AsyncRateLimiter) -> list[Decision]:
        return [await limiter.hit_tier(t, "1.1.1.1") for t in tiers]

    def each_sync(limiter: RateLimiter) -> list[Decision]:
        return [limiter.hit_tier(t, "1.1.1.1") for t in tiers]

    return limiter_as(rl_server, flavour, user, password, reg,  # type: ignore[no-any-return]
                      each_sync if flavour == "sync" else each)


FLAVOURS = ["sync", "async", "async-unpipelined"]
OPEN_TIER = Tier("general", 10, 60, fail_open=True)


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_noperm_from_a_real_acl_is_counted_and_decided_by_the_policy(rl_server: RedisProcess, flavour: str) -> None:
    admin = redis.Redis(port=rl_server.port)
    admin.acl_setuser("noscript", enabled=True, passwords=["+pw-noscript-0123"], keys=["*"],
                      commands=["+@all", "-@scripting"])
    try:
        reg = CollectorRegistry()
        got = decide_as(rl_server, flavour, "noscript", "pw-noscript-0123", reg, [TIER, OPEN_TIER])
        assert [(d.allowed, d.fallback) for d in got] == [(False, True), (True, True)]
        assert sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="fallback") == 1
        assert sample(reg, LIMITER_ERRORS_METRIC, kind="noperm") == 2
        assert sample(reg, LIMITER_ERRORS_METRIC, kind="library_missing") == 0
    finally:
        admin.acl_deluser("noscript")
        admin.close()


APP_RULES = ["+@all", "-function|load", "-function|delete", "-function|flush", "-function|restore"]


@pytest.mark.slow
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_library_missing_and_unloadable_falls_back_to_the_tier_policy(rl_server: RedisProcess,
                                                                     flavour: str) -> None:
    """A real app user that may FCALL but not FUNCTION LOAD, on a server without the library:
    each tier's failure policy decides (never an exception) and library_missing is counted."""
    admin = redis.Redis(port=rl_server.port)
    admin.function_flush()
    admin.acl_setuser("appuser", enabled=True, passwords=["+pw-app-0123"], keys=["*"], commands=APP_RULES)
    reg = CollectorRegistry()
    try:
        got = decide_as(rl_server, flavour, "appuser", "pw-app-0123", reg, [TIER, OPEN_TIER, TIER])
        assert [(d.allowed, d.fallback) for d in got] == [(False, True), (True, True), (False, True)]
        assert sample(reg, LIMITER_DECISIONS_METRIC, tier="auth", outcome="fallback") == 2
        assert sample(reg, LIMITER_DECISIONS_METRIC, tier="general", outcome="fallback") == 1
        assert sample(reg, LIMITER_ERRORS_METRIC, kind="library_missing") == 3
        assert sample(reg, LIMITER_ERRORS_METRIC, kind="noperm") == 0
    finally:
        admin.acl_deluser("appuser")
        load_library(admin)
        admin.close()


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_hit_tiers_without_a_loadable_library_falls_back_like_hit_tier(rl_server: RedisProcess,
                                                                       flavour: str) -> None:
    """The multi-limit path answers a missing, unloadable library as the single-limit one does:
    each tier's policy, never an exception (it raised LibraryUnavailable before 2026-12-03)."""
    admin = redis.Redis(port=rl_server.port)
    admin.function_flush()
    admin.acl_setuser("appuser", enabled=True, passwords=["+pw-app-0123"], keys=["*"], commands=APP_RULES)
    reg = CollectorRegistry()
    requests = [(TIER, "2.2.2.2"), (OPEN_TIER, "2.2.2.2")]
    try:
        got = limiter_as(rl_server, flavour, "appuser", "pw-app-0123", reg, lambda limiter: limiter.hit_tiers(requests))
        assert [(d.allowed, d.fallback) for d in got] == [(False, True), (True, True)]
        assert got.allowed is False
        assert sample(reg, LIMITER_ERRORS_METRIC, kind="library_missing") == 2
    finally:
        admin.acl_deluser("appuser")
        load_library(admin)
        admin.close()
