"""Lua-free checks of the client: validation, keys, headers, failure policy, script contract."""

from __future__ import annotations

import hashlib
import re
import warnings

import pytest
import redis

from ratelimit import (
    ALGORITHMS,
    DEFAULT_TIERS,
    Decision,
    RateLimiter,
    RateLimitError,
    Tier,
    decision_client,
    headers,
    make_key,
    script,
)
from ratelimit.autopipeline import call_packed, checkout
from ratelimit.limiter import decision_client_kwargs
from tests.support.redisproc import free_port

TIERS = {t.name: t for t in DEFAULT_TIERS}


@pytest.fixture
def dead_limiter() -> RateLimiter:
    # A port held for the session that nothing listens on: connection refused, "Redis is down".
    # (How long that takes is a figure of the benchmark, not an assertion here.)
    return RateLimiter(decision_client(port=free_port(), timeout=0.1))


def test_keys_are_hash_tagged_per_client_and_algorithm() -> None:
    assert make_key("rl", "auth:203.0.113.9", "gcra") == "rl:{auth:203.0.113.9}:g"
    assert {make_key("rl", "k", a)[-1] for a in ALGORITHMS} == {"g", "s", "f"}
    with pytest.raises(RateLimitError):
        RateLimiter(redis.Redis(), prefix="r{l}")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": 0}, "limit must be a positive integer"),
    ({"limit": True}, "limit must be a positive integer"),
    ({"cost": 0}, "cost must be a positive integer"),
    ({"cost": 11}, "cost 11 exceeds burst 10"),
    ({"cost": 4, "burst": 3}, "cost 4 exceeds burst 3"),
    ({"window_s": 0}, "window_s must be at least"),
    ({"window_s": float("nan")}, "window_s must be a positive number"),
    ({"algorithm": "token_bucket"}, "unknown algorithm"),
    ({"algorithm": "sliding_log", "burst": 3}, "burst applies to gcra only"),
    ({"algorithm": "fixed_window", "cost": 11}, "cost 11 exceeds limit 10"),
])
def test_invalid_requests_raise_even_with_redis_down(dead_limiter: RateLimiter, kwargs: dict, message: str) -> None:
    args = {"limit": 10, "window_s": 60, "cost": 1, **kwargs}
    with pytest.raises(RateLimitError, match=message):
        dead_limiter.hit("k", args.pop("limit"), args.pop("window_s"), **args)
    assert dead_limiter.fallbacks == 0


def test_down_redis_applies_each_tiers_policy(dead_limiter: RateLimiter) -> None:
    for tier in DEFAULT_TIERS:
        d = dead_limiter.hit_tier(tier, "client")
        assert d.fallback and d.allowed is tier.fail_open and d.limit == tier.limit
        if tier.fail_open:
            assert d.retry_after == 0 and d.remaining == tier.limit - 1
        else:
            assert d.retry_after == dead_limiter.fallback_retry_after and d.remaining == 0
    assert dead_limiter.fallbacks == len(DEFAULT_TIERS)
    # What the smoke report names: the error behind the fallback, not only that one happened.
    assert (dead_limiter.last_fallback_error or "").startswith("ConnectionError: ")
    with pytest.raises(redis.ConnectionError):
        dead_limiter.reset("client")  # an admin operation must not pretend to succeed


def test_security_tiers_fail_closed_and_the_rest_open() -> None:
    closed = {t.name for t in DEFAULT_TIERS if not t.fail_open}
    assert closed == {"auth", "mfa", "sensitive", "financial"}


def test_slow_default_client_is_warned_about() -> None:
    with pytest.warns(RuntimeWarning) as caught:
        RateLimiter(redis.Redis(port=free_port()))  # redis-py defaults: 5 s timeout, retries
    messages = " ".join(str(w.message) for w in caught)
    assert "socket_timeout=" in messages and "count twice" in messages
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RateLimiter(decision_client(port=free_port()))


def test_decision_is_frozen() -> None:
    d = Decision(True, 1, 0.0, 1.0, 2)
    with pytest.raises(AttributeError):
        d.allowed = False  # type: ignore[misc]
    assert d == Decision(allowed=True, remaining=1, retry_after=0.0, reset_after=1.0, limit=2, fallback=False, cached=False)


def test_headers_allowed() -> None:
    tier = TIERS["general"]
    h = headers(Decision(True, 119, 0.0, 0.5, 120), tier)
    assert h == {"RateLimit-Policy": '"general";q=120;w=60', "RateLimit": '"general";r=119;t=1'}


def test_headers_denied_round_up_to_whole_seconds() -> None:
    tier = TIERS["mfa"]
    h = headers(Decision(False, 0, 12.000001, 59.2, 5), tier)
    assert h["Retry-After"] == "13" and h["RateLimit"] == '"mfa";r=0;t=60'
    # Exact microsecond results must not be pushed up a second by float noise...
    assert headers(Decision(False, 0, 2_000_000 / 1e6, 2.0, 5), tier)["Retry-After"] == "2"
    # ...and a tiny wait still advertises at least one second (Retry-After: 0 invites a retry storm).
    assert headers(Decision(False, 0, 0.0004, 0.0004, 5), tier)["Retry-After"] == "1"


def test_headers_for_a_fallback_denial() -> None:
    h = headers(Decision(False, 0, 1.0, 1.0, 30, fallback=True), TIERS["auth"])
    assert h["Retry-After"] == "1"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_script_contract(algorithm: str) -> None:
    s = script(algorithm)
    assert s.sha == hashlib.sha1(s.source.encode()).hexdigest()
    # Single key (cluster-safe by construction), validated inputs with a recognisable error.
    assert re.findall(r"KEYS\[(\d+)\]", s.source) and set(re.findall(r"KEYS\[(\d+)\]", s.source)) == {"1"}
    assert "redis.error_reply(" in s.source and "ERR ratelimit:" in s.source
    # No app clock: time is the server's (TIME, or the key's own expiry for fixed windows).
    assert ("redis.call('TIME')" in s.source) is (algorithm != "fixed_window")
    # Numbers that are written go through %d, never tostring() (which prints 1.7e+15).
    assert "tostring(" not in s.source.replace("tostring(ARGV[i])", "")
    assert "('%d'" in s.source or algorithm == "fixed_window"


def test_tier_burst_is_forwarded() -> None:
    tier = Tier("bursty", 10, 60, "gcra", burst=3)
    limiter = RateLimiter(decision_client(port=free_port()))
    with pytest.raises(RateLimitError, match="cost 4 exceeds burst 3"):
        limiter.hit_tier(tier, "c", cost=4)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "mfa", "limit": 20000, "window_s": 60, "algorithm": "sliding_log"}, "exceeds 10000 for sliding_log"),
    ({"name": "big", "limit": 2_000_000_000, "window_s": 60}, "exceeds 1000000000"),
    ({"name": "long", "limit": 10, "window_s": 40_000_000}, "366 days"),
    ({"name": "auth", "limit": 10, "window_s": 60, "algorithm": "fixed_window", "burst": 20}, "gcra only"),
])
def test_tiers_the_scripts_would_refuse_are_refused_when_configured(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tier(**kwargs)


def test_multi_reply_flat_string_and_the_older_library_list_parse_alike() -> None:
    from ratelimit.multi import parse_reply

    limiter = RateLimiter(decision_client(port=free_port()), deny_cache=False)
    calls = limiter._many_calls([("a", 5, 60), ("b", 2, 60)], None)
    legacy = [0, 1, 4, 0, 12_000_000, 0, -1, 30_000_000, 60_000_000]  # library 1.1.0: 1 + 4n integers
    for reply in (b"0 1 4 0 12000000 0 -1 30000000 60000000", "0 1 4 0 12000000 0 -1 30000000 60000000", legacy):
        allowed, (a, b) = parse_reply(reply, calls)
        assert not allowed
        assert (a.allowed, a.remaining, a.retry_after, a.reset_after, a.limit) == (True, 4, 0.0, 12.0, 5)
        assert (b.allowed, b.remaining, b.retry_after, b.reset_after, b.limit) == (False, 0, 30.0, 60.0, 2)
        assert not a.fallback and not a.cached
    with pytest.raises(ValueError, match="reply of 5 values for 2 limits"):
        parse_reply(b"1 1 4 0 1", calls)


def test_a_checkout_skips_only_redis_pys_deprecation_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    """call_packed checks a connection out with the pool's own get_connection, minus the
    `deprecated_args` wrapper (redis/utils.py); a pool whose method has another wrapper keeps it."""
    import functools

    import redis.utils
    from redis.sentinel import Sentinel, SentinelConnectionPool

    class Traced(redis.ConnectionPool):
        @functools.wraps(redis.ConnectionPool.get_connection)
        def get_connection(self, *args: object, **kwargs: object) -> redis.Connection:
            self.checkouts = getattr(self, "checkouts", 0) + 1
            return super().get_connection()

    traced = Traced(port=free_port(), **decision_client_kwargs(0.5))
    with pytest.raises(redis.ConnectionError):  # its own wrapper ran, then the pool's checkout
        checkout(traced)
    assert traced.checkouts == 1

    # The shim's only work: naming each call's arguments (redis/utils.py _get_filterable_args). It
    # still runs inside redis-py (Sentinel's discovery checks out its own connections), never for
    # the pool checked out here.
    named: list[object] = []
    filterable = redis.utils._get_filterable_args

    def spy(func: object, args: tuple[object, ...], *rest: object) -> dict[str, object]:
        named.append(args[0] if args else None)
        return filterable(func, args, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.utils, "_get_filterable_args", spy)
    sentinel = Sentinel([("127.0.0.1", free_port())], sentinel_kwargs=decision_client_kwargs(0.5))
    fast = decision_client_kwargs(0.5)
    pools = [redis.ConnectionPool(port=free_port(), **fast), redis.BlockingConnectionPool(port=free_port(), **fast),
             SentinelConnectionPool("mymaster", sentinel, **fast)]
    for pool in pools:
        with pytest.raises(redis.ConnectionError):  # the pool's own checkout ran and tried to connect
            checkout(pool)
        assert not any(n is pool for n in named), type(pool)
    with pytest.raises(redis.ConnectionError):
        pools[0].get_connection()  # the spy sees the shim when it does run
    assert named[-1] is pools[0]


class _Boom(Exception):
    pass


def _boom(*args: object, **kwargs: object) -> redis.Connection:
    raise _Boom("the replaced get_connection ran")


def test_a_checkout_runs_the_get_connection_the_pool_has_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkout is looked up on the pool at every call: patched on the class after the first
    decision (instrumentation, a test simulating an outage) or replaced on one instance, the new
    get_connection runs (1.2.7's per-class cache kept calling the old one)."""
    client = decision_client(port=free_port(), timeout=0.5)
    with pytest.raises(redis.ConnectionError):  # the first checkout: nothing listens
        call_packed(client, ("PING",), (), ())
    monkeypatch.setattr(redis.ConnectionPool, "get_connection", _boom)
    with pytest.raises(_Boom):
        call_packed(client, ("PING",), (), ())
    monkeypatch.undo()
    with pytest.raises(redis.ConnectionError):
        call_packed(client, ("PING",), (), ())
    client.connection_pool.get_connection = _boom  # type: ignore[method-assign]
    with pytest.raises(_Boom):
        call_packed(client, ("PING",), (), ())


def test_a_proxied_pool_is_checked_out_through_the_proxy() -> None:
    """A pool behind a delegating proxy (get_connection found on the instance only) checks out as
    before 1.2.7: a connection error the failure policy handles, not an AttributeError."""

    class Proxy:
        def __init__(self, inner: redis.ConnectionPool) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self._inner, name)

    client = decision_client(port=free_port(), timeout=0.5)
    client.connection_pool = Proxy(client.connection_pool)  # type: ignore[assignment]
    with pytest.raises(redis.ConnectionError):
        call_packed(client, ("PING",), (), ())
