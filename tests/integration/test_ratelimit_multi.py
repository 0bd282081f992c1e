# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""hit_many on a real redis-server: several limits in one call, all or nothing."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from ratelimit import (
    ALGORITHMS,
    DEFAULT_TIERS,
    AsyncRateLimiter,
    RateLimiter,
    RateLimitError,
    async_decision_client,
    decision_client,
    decision_client_kwargs,
    make_key,
)
from ratelimit.functions import load_library
from tests.integration.test_ratelimit_topologies import cluster_node  # noqa: F401
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server  # noqa: F401
from tests.support.redisproc import RedisProcess, free_port
from tests.unit.test_ratelimit_functions import RELEASED

pytestmark = [pytest.mark.slow, requires_redis]

TIERS = {t.name: t for t in DEFAULT_TIERS}
# One client identity in braces: both keys share a cluster slot, so one atomic call decides them.
PAIR = [("auth:{alice}", 3, 60), ("general:{alice}", 10, 60)]


def consumed(limiter: RateLimiter, key: str, limit: int) -> int:
    return limit - limiter.peek(key, limit, 60).remaining


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_hundred_concurrent_requests_admit_three_and_consume_three(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    barrier = threading.Barrier(100)
    results = []
    lock = threading.Lock()

    def request() -> None:
        barrier.wait()
        r = limiter.hit_many(PAIR)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=request) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not any(r.fallback for r in results)
    assert sum(r.allowed for r in results) == 3
    assert consumed(limiter, "general:{alice}", 10) == 3  # the 97 denials consumed nothing
    assert consumed(limiter, "auth:{alice}", 3) == 3
    denied = [r for r in results if not r.allowed]
    # Denied by the 3/60 limit, which says so; the 10/60 limit's own verdict was "admit".
    assert all(r.denied_by == 0 and not r[0].allowed and r.retry_after > 0 for r in denied)
    assert all(r[1].allowed or r[1].cached for r in denied)


def test_async_hundred_concurrent_requests(rl_server: RedisProcess, rl_redis: redis.Redis) -> None:
    async def run() -> list:
        client = async_decision_client(port=rl_server.port, timeout=10.0)
        limiter = AsyncRateLimiter(client, "sliding_log", timeout=10.0)
        results = await asyncio.gather(*(limiter.hit_many(PAIR) for _ in range(100)))
        await client.aclose()
        return results

    results = asyncio.run(run())
    assert not any(r.fallback for r in results) and sum(r.allowed for r in results) == 3
    assert consumed(RateLimiter(rl_redis, "sliding_log"), "general:{alice}", 10) == 3


def test_reply_names_the_denier_with_the_largest_retry_after(rl_redis: redis.Redis) -> None:
    limiter = RateLimiter(rl_redis, "fixed_window", deny_cache=False)
    assert limiter.hit("b", 2, 60, cost=2).allowed  # b spent for 60 s
    assert limiter.hit("c", 2, 5, cost=2).allowed  # c spent for 5 s
    r = limiter.hit_many([("a", 5, 60), ("c", 2, 5), ("b", 2, 60)])
    assert not r.allowed and r.denied_by == 2 and 59 < r.retry_after <= 60
    assert [d.allowed for d in r] == [True, False, False]
    assert r[0].remaining == 5 and consumed(limiter, "a", 5) == 0  # a admitted, yet nothing consumed
    ok = limiter.hit_many([("a", 5, 60), ("d", 3, 60, 2)])
    assert ok.allowed and ok.denied_by is None and ok.retry_after == 0
    assert [(d.allowed, d.remaining) for d in ok] == [(True, 4), (True, 1)]


WRITES = ("set", "zadd", "zremrangebyscore", "pexpireat", "incrby", "pexpire")


@pytest.mark.parametrize("mode", ["functions", "scripts"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_clock_one_read_per_limit_and_writes_only_when_all_admit(rl_server: RedisProcess, rl_redis: redis.Redis,
                                                                     algorithm: str, mode: str) -> None:
    """Library 1.2.0: each limit is decided once on the request's one TIME; nothing is written
    unless every limit admits, and the values match what the limits decided one by one say."""
    limiter = RateLimiter(rl_redis, algorithm, deny_cache=False, mode=mode)
    admin = redis.Redis(port=rl_server.port)
    trio = [("a:{z}", 5, 60), ("b:{z}", 2, 60), ("c:{z}", 9, 60, 3)]
    limiter.hit("warm:{z}", 1, 60)  # loads the library / scripts outside the counted calls
    admin.config_resetstat()
    ok = limiter.hit_many(trio)
    stats = admin.info("commandstats")
    assert stats["cmdstat_get" if algorithm != "sliding_log" else "cmdstat_zcount"]["calls"] == 3
    assert ok.allowed and [(d.allowed, d.remaining) for d in ok] == [(True, 4), (True, 1), (True, 6)]
    assert stats["cmdstat_time"]["calls"] == 1
    assert limiter.hit_many(trio).allowed
    admin.config_resetstat()
    denied = limiter.hit_many(trio)  # b is spent: nothing may be written anywhere
    stats = admin.info("commandstats")
    assert not denied.allowed and denied.denied_by == 1
    assert [(d.allowed, d.remaining) for d in denied] == [(True, 3), (False, 0), (True, 3)]  # peek views
    assert not [c for c in WRITES if f"cmdstat_{c}" in stats], stats
    assert [consumed(limiter, k, lim) for k, lim, *_ in trio] == [2, 2, 6]
    admin.close()


@pytest.mark.parametrize("mode", ["functions", "scripts"])
def test_each_limit_writes_its_own_key_when_the_writes_are_many_commands(rl_redis: redis.Redis, mode: str) -> None:
    """Library 1.2.7: the limits append their writes to the request's one list; a sliding log of
    cost 1500 is a trim, two ZADDs (at most 1000 members each) and an expiry. Each key gets exactly
    its own members and expiry, none dropped, run twice or written to a neighbour."""
    limiter = RateLimiter(rl_redis, "sliding_log", deny_cache=False, mode=mode)
    r = limiter.hit_many([("a:{w}", 5000, 60, 1500), ("b:{w}", 5000, 60, 1200), ("c:{w}", 10, 60)])
    assert r.allowed and [d.remaining for d in r] == [3500, 3800, 9]
    keys = [make_key("rl", k, "sliding_log") for k in ("a:{w}", "b:{w}", "c:{w}")]
    assert [rl_redis.zcard(k) for k in keys] == [1500, 1200, 1]
    # 60_001: sliding_log.lua's PEXPIREAT rounds now + window up to a whole ms and PTTL subtracts
    # the current whole ms, so a read in the millisecond of the write shows 1 ms more
    # (src/expire.c ttlGenericCommand, 7.0.15/7.2.6; found as run G7's smoke failure).
    assert all(0 < rl_redis.pttl(k) <= 60_001 for k in keys)


def test_the_multi_function_refuses_a_key_twice_and_answers_one_flat_string(rl_redis: redis.Redis) -> None:
    RateLimiter(rl_redis).load_library()
    key = make_key("rl", "k:{d}", "gcra")
    with pytest.raises(redis.ResponseError, match="appears twice"):
        rl_redis.fcall("ratelimit_multi", 2, key, key, "0", "g 5 60000 1", "g 5 60000 1")
    assert rl_redis.get(key) is None  # refused before anything was decided or written
    reply = rl_redis.fcall("ratelimit_multi", 1, key, "0s", "g 5 60000 1")
    assert reply == b"1 1 4 0 12000000"  # all, then allowed remaining retry_after_us reset_after_us


# The library's refusals, word for word: what an application calling FCALL directly reads, the same
# as the released 1.1.0 text answers (library 1.2.7 tests gcra's arguments in one expression first;
# int_arg still names the first fault). redis-py strips the "ERR " prefix.
_REFUSALS = [
    ("ratelimit_gcra", ("abc", "60000", "1", "0"), "limit must be an integer in [1, 1000000000], got abc"),
    ("ratelimit_gcra", ("0", "x", "y", "0"), "limit must be an integer in [1, 1000000000], got 0"),
    ("ratelimit_gcra", ("10", "1.5", "1", "0"), "window_ms must be an integer in [1, 31622400000], got 1.5"),
    ("ratelimit_gcra", ("10", "31622400001", "1", "0"),
     "window_ms must be an integer in [1, 31622400000], got 31622400001"),
    ("ratelimit_gcra", ("10", "60000", "nan", "0"), "cost must be an integer in [1, 1000000000], got nan"),
    ("ratelimit_gcra", ("10", "60000", "1000000001", "0"),
     "cost must be an integer in [1, 1000000000], got 1000000001"),
    ("ratelimit_gcra", ("10", "60000", "1", "2"), 'mode must be "0" (hit) or "1" (peek)'),
    ("ratelimit_gcra", ("10", "60000", "1", "0", "0"), "burst must be an integer in [1, 1000000000], got 0"),
    ("ratelimit_gcra", ("10", "60000", "11", "0"), "cost 11 exceeds burst 10 and could never be allowed"),
    ("ratelimit_sliding_log", ("10001", "60000", "1", "0"), "limit must be an integer in [1, 10000], got 10001"),
    ("ratelimit_sliding_log", ("10", "60000", "11", "0"), "cost 11 exceeds limit 10 and could never be allowed"),
    ("ratelimit_fixed_window", ("10", "-5", "1", "0"), "window_ms must be an integer in [1, 31622400000], got -5"),
    ("ratelimit_fixed_window", ("10", "60000", "11", "0"), "cost 11 exceeds limit 10 and could never be allowed"),
    ("ratelimit_multi", ("2", "g 5 60000 1"), 'hit_many wants a mode "0"|"1" and one spec per key'),
    ("ratelimit_multi", ("0s", "x 5 60000 1"), "bad limit spec x 5 60000 1"),
    ("ratelimit_multi", ("0s", "g 0 60000 1"), "limit must be an integer in [1, 1000000000], got 0"),
]


def test_bad_arguments_are_refused_word_for_word_and_write_nothing(rl_redis: redis.Redis) -> None:
    RateLimiter(rl_redis).load_library()
    key = make_key("rl", "k:{bad}", "gcra")
    for function, args, message in _REFUSALS:
        with pytest.raises(redis.ResponseError) as refused:
            rl_redis.fcall(function, 1, key, *args)
        assert str(refused.value) == f"ratelimit: {message}", (function, args)
    assert rl_redis.exists(key) == 0


def test_a_denied_request_writes_only_the_ttl_of_a_counter_found_without_one(rl_redis: redis.Redis) -> None:
    """The one write a denied request makes (docs/rate-limiter.md): a fixed_window counter someone
    wrote without a TTL gets its window's TTL, its count untouched; the denying limit's key and the
    other counters are not written."""
    limiter = RateLimiter(rl_redis, "fixed_window", deny_cache=False)
    bare, plain, full = (make_key("rl", k, "fixed_window") for k in ("a:{t}", "b:{t}", "c:{t}"))
    rl_redis.set(bare, 5)
    rl_redis.set(full, 3, px=60_000)
    r = limiter.hit_many([("a:{t}", 10, 60), ("b:{t}", 10, 60), ("c:{t}", 3, 60)])
    assert not r.allowed and [d.allowed for d in r] == [True, True, False]
    assert [rl_redis.get(k) for k in (bare, plain, full)] == [b"5", None, b"3"]
    assert 0 < rl_redis.pttl(bare) <= 60_000


def test_the_largest_numbers_a_write_carries_reach_redis_as_plain_integers(rl_redis: redis.Redis) -> None:
    """hit_many's writes hand redis.call Lua numbers (INCRBY's cost, PEXPIRE's window_ms): Redis
    7.2+ prints an integral one with ll2string, 7.0 with %.17g (docs/fidelity.md); either way the
    bounds' largest values arrive as digits, never 1e+09 (which INCRBY would refuse)."""
    limiter = RateLimiter(rl_redis, "fixed_window", deny_cache=False)
    r = limiter.hit_many([("a:{n}", 1_000_000_000, 31_622_400, 1_000_000_000), ("b:{n}", 10, 60)])
    assert r.allowed and [d.remaining for d in r] == [0, 9]
    key = make_key("rl", "a:{n}", "fixed_window")
    assert rl_redis.get(key) == b"1000000000"
    assert 31_622_300_000 < rl_redis.pttl(key) <= 31_622_400_000


def test_hit_tiers_mixes_algorithms_and_uses_the_deny_cache(rl_server: RedisProcess, rl_redis: redis.Redis) -> None:
    limiter = RateLimiter(rl_redis)
    reqs = [(TIERS["mfa"], "{bob}"), (TIERS["auth"], "{bob}")]  # sliding_log 5/60 and gcra 30/60
    assert sum(limiter.hit_tiers(reqs).allowed for _ in range(5)) == 5
    denied = limiter.hit_tiers(reqs)
    assert not denied.allowed and denied.denied_by == 0 and not denied.cached
    admin = redis.Redis(port=rl_server.port)
    admin.config_resetstat()
    again = limiter.hit_tiers(reqs)
    assert again.cached and not again.allowed and again.denied_by == 0
    stats = admin.info("commandstats")
    assert "cmdstat_fcall" not in stats and "cmdstat_evalsha" not in stats  # answered locally
    assert limiter.peek_tier(TIERS["auth"], "{bob}").remaining == 25
    admin.close()


def test_bad_requests_are_refused_before_redis() -> None:
    limiter = RateLimiter(decision_client(port=free_port()))  # nothing listens there
    for bad, match in [([], "non-empty list"), ("abc", "non-empty list"), ([("a", 5)], "item 0"),
                       ([("a", 5, 60), ("a", 3, 60)], "appears twice"), ([("a", 0, 60)], "limit must be"),
                       ([("a", 5, 60, 6)], "cost 6 exceeds")]:
        with pytest.raises(RateLimitError, match=match):
            limiter.hit_many(bad)
    with pytest.raises(RateLimitError, match="expected \\(tier, client_id"):
        limiter.hit_tiers([("auth", "x")])


def test_redis_down_applies_each_limits_policy() -> None:
    limiter = RateLimiter(decision_client(port=free_port()))
    open_only = limiter.hit_tiers([(TIERS["general"], "x"), (TIERS["admin"], "x")])
    assert open_only.allowed and open_only.fallback
    mixed = limiter.hit_tiers([(TIERS["general"], "x"), (TIERS["auth"], "x")])
    assert not mixed.allowed and mixed.denied_by == 1 and mixed.retry_after == 1.0
    assert limiter.fallbacks == 4


def test_cluster_one_slot_is_atomic_and_several_slots_are_split(cluster_node: RedisProcess) -> None:
    rc = RedisCluster(host="127.0.0.1", port=cluster_node.port, **decision_client_kwargs(1.0))
    try:
        limiter = RateLimiter(rc, deny_cache=False)
        assert rc.keyslot(make_key("rl", "auth:{carol}", "gcra")) == rc.keyslot(make_key("rl", "general:{carol}", "gcra"))
        results = [limiter.hit_many([("auth:{carol}", 3, 60), ("general:{carol}", 10, 60)]) for _ in range(5)]
        assert [r.allowed for r in results] == [True] * 3 + [False] * 2
        # Different identities: different slots (CROSSSLOT for one script), so split by slot.
        split = [("ip:203.0.113.9", 2, 60), ("account:dave", 5, 60)]
        assert rc.keyslot(make_key("rl", split[0][0], "gcra")) != rc.keyslot(make_key("rl", split[1][0], "gcra"))
        assert [limiter.hit_many(split).allowed for _ in range(4)] == [True, True, False, False]
        assert consumed(limiter, "account:dave", 5) == 2  # the denied requests consumed nothing
        rc.function_flush()
        assert limiter.hit_many([("fresh:{x}", 1, 60), ("other:{x}", 1, 60)]).allowed  # library reloaded
        scripts = RateLimiter(rc, mode="scripts", deny_cache=False)  # the EVALSHA opt-in: same text
        assert [scripts.hit_many([("s:{y}", 2, 60), ("t:{y}", 5, 60)]).allowed for _ in range(3)] == [True, True, False]
    finally:
        rc.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_async_hit_through_the_multi_function_decides_as_the_single_function(
        rl_server: RedisProcess, rl_redis: redis.Redis, algorithm: str) -> None:
    """The async client's hit is FCALL ratelimit_multi with one limit: same answers, limit after limit."""
    sync = RateLimiter(rl_redis, algorithm, deny_cache=False)
    sync.load_library()  # so the counted calls are the decisions only

    async def run() -> list:
        client = async_decision_client(port=rl_server.port, timeout=10.0)
        limiter = AsyncRateLimiter(client, algorithm, timeout=10.0, deny_cache=False)
        got = [await limiter.hit("via-multi", 3, 60, cost=c) for c in (1, 2, 1, 3)]
        await client.aclose()
        return got

    admin = redis.Redis(port=rl_server.port)
    admin.config_resetstat()
    via_multi = asyncio.run(run())
    assert admin.info("commandstats")["cmdstat_fcall"]["calls"] == 4
    admin.close()
    direct = [sync.hit("direct", 3, 60, cost=c) for c in (1, 2, 1, 3)]
    assert [(d.allowed, d.remaining) for d in via_multi] == [(d.allowed, d.remaining) for d in direct]
    assert [d.allowed for d in via_multi] == [True, True, False, False]
    assert all(d.retry_after > 0 for d in via_multi[2:]) and not any(d.fallback for d in via_multi)


# The real library 1.1.0 text (what `redisops functions load` of that release installed; its sha256
# is the pin in tests/unit/test_ratelimit_functions.py), for rolling upgrades in both directions.
LIBRARY_1_1_0 = Path(__file__).parents[1] / "support" / "ratelimit_library_1.1.0.lua"


def test_the_new_library_answers_a_1_1_0_client_with_the_list_it_parses(rl_redis: redis.Redis) -> None:
    """A 1.1.0 client sends mode "0"/"1" and parses 1 + 4n integers (it raised on the flat string,
    after the limits were consumed): those modes keep that reply; "0s"/"1s" get the flat string."""
    RateLimiter(rl_redis).load_library()
    a, b = make_key("rl", "a:{u}", "gcra"), make_key("rl", "b:{u}", "fixed_window")
    assert rl_redis.fcall("ratelimit_multi", 2, a, b, "0", "g 5 60000 1", "f 2 60000 1") == [
        1, 1, 4, 0, 12_000_000, 1, 1, 0, 60_000_000]
    assert rl_redis.fcall("ratelimit_multi", 1, a, "1", "g 5 60000 1")[:4] == [1, 1, 4, 0]  # a peek
    c = make_key("rl", "c:{u}", "fixed_window")
    assert rl_redis.fcall("ratelimit_multi", 1, c, "0s", "f 2 60000 1") == b"1 1 1 0 60000000"
    assert rl_redis.fcall("ratelimit_multi", 2, a, b, "0s", "g 5 60000 1", "f 2 60000 1").startswith(b"1 1 3 0 ")


def test_new_clients_fall_back_to_the_1_1_0_library_without_counting_twice(rl_server: RedisProcess,
                                                                           rl_redis: redis.Redis) -> None:
    text = LIBRARY_1_1_0.read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode()).hexdigest() == RELEASED["1.1.0"]
    admin = redis.Redis(port=rl_server.port)
    admin.function_load(text, replace=True)
    try:
        sync = RateLimiter(rl_redis, deny_cache=False, load_library=False)
        pair = [("a:{v}", 5, 60), ("b:{v}", 2, 60)]
        got = [sync.hit_many(pair) for _ in range(3)]
        assert [m.allowed for m in got] == [True, True, False] and not any(m.fallback for m in got)
        assert [d.remaining for d in got[1]] == [3, 0] and sync.multi_suffix == ""
        assert [consumed(sync, k, lim) for k, lim, _ in pair] == [2, 2]  # each admitted request once

        async def run() -> list:
            client = async_decision_client(port=rl_server.port, timeout=10.0)
            limiter = AsyncRateLimiter(client, "gcra", timeout=10.0, deny_cache=False, load_library=False)
            out = [await limiter.hit("async:{v}", 3, 60, cost=c) for c in (1, 2, 1)]
            out.append(limiter.multi_suffix)
            out.append((await limiter.hit_many(pair)).allowed)
            await client.aclose()
            return out

        admin.config_resetstat()
        *hits, suffix, many = asyncio.run(run())
        assert [(d.allowed, d.remaining, d.fallback) for d in hits] == [(True, 2, False), (True, 0, False),
                                                                        (False, 0, False)]
        assert suffix == "" and many is False
        assert admin.info("commandstats")["cmdstat_fcall"]["calls"] == 5  # one refused "0s", then 4 decisions
    finally:
        load_library(admin)
        admin.close()


def test_two_thousand_limits_in_one_request_are_answered(rl_redis: redis.Redis) -> None:
    """Library 1.2.0-1.2.5 formatted the string with unpack() of 1 + 4n values: from n = 2000 Lua's
    C stack overflowed ("too many results to unpack") after the writes had run; the client then
    applied its failure policy to a request the server had consumed."""
    limiter = RateLimiter(rl_redis, deny_cache=False)
    many = [(f"k{i}:{{big}}", 2, 60) for i in range(2000)]
    first = limiter.hit_many(many)
    assert first.allowed and not any(d.fallback for d in first) and {d.remaining for d in first} == {1}
    assert limiter.multi_suffix == "s"
    key = make_key("rl", "k0:{big}", "gcra")
    assert rl_redis.fcall("ratelimit_multi", 1, key, "1s", "g 2 60000 1").startswith(b"1 1 1 0 ")
