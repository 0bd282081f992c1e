# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""retry_after / reset_after against the server's own clock, and waiting them out.

Nothing here depends on how fast the machine is: answers are held to the server's TIME read
just before and after each request (a bracket), and a wait is only ever judged against the
server time at which the next request was actually decided.
"""

from __future__ import annotations

import time

import pytest
import redis

from ratelimit import ALGORITHMS, RateLimiter, make_key
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server, timed_eval  # noqa: F401

pytestmark = [pytest.mark.slow, requires_redis]

# Limit 2 per minute, cost 1, consume: the three requests of a test are certainly in one window
# (and within one GCRA emission interval), however long the test process is descheduled.
WINDOW_MS = 60_000
HIT = ["2", str(WINDOW_MS), "1", "0"]
US = 1  # one tick of the microsecond clock
MS = 1000  # one tick of Redis' millisecond expiry clock, in microseconds


def test_gcra_retry_and_reset_match_the_stored_tat(rl_redis: redis.Redis) -> None:
    interval = WINDOW_MS * 1000 // 2
    a0, first, a1 = timed_eval(rl_redis, "gcra", "t", HIT)
    b0, second, b1 = timed_eval(rl_redis, "gcra", "t", HIT)
    c0, denied, c1 = timed_eval(rl_redis, "gcra", "t", HIT)
    assert first[0] == 1 and second[0] == 1 and denied[0] == 0
    tat = int(rl_redis.get(make_key("rl", "t", "gcra")) or 0)
    # TAT = max(previous TAT, arrival) + emission interval, twice from an empty key.
    assert max(a0 + interval, b0) + interval - US <= tat <= max(a1 + interval, b1) + interval + US
    assert tat - b1 - US <= second[3] <= tat - b0 + US
    allow_at = tat + interval - 2 * interval  # new TAT minus tolerance (burst 2)
    assert allow_at - c1 - US <= denied[2] <= allow_at - c0 + US
    assert tat - c1 - US <= denied[3] <= tat - c0 + US
    # The key expires when the TAT has drained, rounded up to the ms expiry clock.
    assert rl_redis.pexpiretime(make_key("rl", "t", "gcra")) == -(-tat // 1000)


def test_sliding_log_retry_is_when_the_oldest_entry_leaves(rl_redis: redis.Redis) -> None:
    timed_eval(rl_redis, "sliding_log", "t", HIT)
    timed_eval(rl_redis, "sliding_log", "t", HIT)
    c0, denied, c1 = timed_eval(rl_redis, "sliding_log", "t", HIT)
    assert denied[0] == 0 and denied[1] == 0
    entries = rl_redis.zrange(make_key("rl", "t", "sliding_log"), 0, -1, withscores=True)
    assert len(entries) == 2, "a denied request must not be logged"
    oldest, newest = int(entries[0][1]), int(entries[1][1])
    w = WINDOW_MS * 1000
    assert oldest + w - c1 - US <= denied[2] <= oldest + w - c0 + US
    assert newest + w - c1 - US <= denied[3] <= newest + w - c0 + US
    expire_ms = rl_redis.pexpiretime(make_key("rl", "t", "sliding_log"))
    assert expire_ms == -(-(newest + w) // 1000)


def test_fixed_window_retry_is_the_window_expiry(rl_redis: redis.Redis) -> None:
    timed_eval(rl_redis, "fixed_window", "t", HIT)
    timed_eval(rl_redis, "fixed_window", "t", HIT)
    c0, denied, c1 = timed_eval(rl_redis, "fixed_window", "t", HIT)
    assert denied[0] == 0
    expire_us = rl_redis.pexpiretime(make_key("rl", "t", "fixed_window")) * 1000
    # PTTL has millisecond resolution: one tick of that clock.
    assert expire_us - c1 - MS <= denied[2] <= expire_us - c0 + MS
    assert denied[3] == denied[2]


def server_us(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1_000_000 + int(micros)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_waiting_retry_after_is_enough_and_necessary(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    sent = time.monotonic()
    assert limiter.hit("w", 2, 1).allowed and limiter.hit("w", 2, 1).allowed
    d0 = server_us(rl_redis)
    denied = limiter.hit("w", 2, 1)
    d1 = server_us(rl_redis)
    answered = time.monotonic()
    assert not denied.allowed and not denied.fallback
    # One emission interval (GCRA) or the whole window, counted from the first admission, which
    # the server made at most `answered - sent` before the denial (+1 ms: the server's clock is
    # the wall clock, this one is monotonic).
    expected = 0.5 if algorithm == "gcra" else 1.0
    assert expected - (answered - sent) - 0.001 <= denied.retry_after <= expected
    retry_us = round(denied.retry_after * 1e6)

    time.sleep(denied.retry_after / 2)
    p0 = server_us(rl_redis)
    early = limiter.peek("w", 2, 1)
    p1 = server_us(rl_redis)
    if p1 < d0 + retry_us:  # decided before retry_after had passed (always, unless starved)
        assert not early.allowed, "allowed before retry_after"
    elif p0 > d1 + retry_us:
        assert early.allowed

    time.sleep(denied.retry_after / 2 + 0.002)  # retry_after in all since the denial arrived
    d = limiter.hit("w", 2, 1)
    assert d.allowed and d.retry_after == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_after_reset_after_the_key_is_gone_and_the_allowance_full(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    limiter.hit("r", 3, 1)
    h0 = server_us(rl_redis)
    d = limiter.hit("r", 3, 1)
    assert d.allowed and d.remaining == 1 and 0 < d.reset_after <= 1.0
    p = limiter.peek("r", 3, 1)
    p1 = server_us(rl_redis)
    if p1 < h0 + round(d.reset_after * 1e6):  # the key still existed (always, unless starved)
        assert p.remaining == 1 and p.reset_after <= d.reset_after
    time.sleep(d.reset_after + 0.003)
    assert rl_redis.exists(make_key("rl", "r", algorithm)) == 0
    fresh = limiter.peek("r", 3, 1)
    assert fresh.allowed and fresh.remaining == 3 and fresh.reset_after == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_peek_never_consumes(rl_redis: redis.Redis, algorithm: str) -> None:
    limiter = RateLimiter(rl_redis, algorithm)
    for _ in range(20):
        p = limiter.peek("p", 5, 60)
        assert p.allowed and p.remaining == 5
    assert rl_redis.exists(make_key("rl", "p", algorithm)) == 0
    assert [limiter.hit("p", 5, 60).allowed for _ in range(6)] == [True] * 5 + [False]
    assert limiter.peek("p", 5, 60).remaining == 0
