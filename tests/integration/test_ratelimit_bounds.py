# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""Worst-case admissions over any window of length W, per algorithm (docs/rate-limiter.md).

    sliding_log   <= limit
    gcra          <= burst + limit - 1
    fixed_window  <= 2 * limit - 1

Each step runs the three scripts between two TIME calls inside one MULTI/EXEC, so every
admission has a server timestamp known to within a few microseconds (delta). A set of
admissions whose measured span is < W - 2*delta truly spans < W, so counting over that
slightly shorter window never blames an algorithm for measurement error.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import ALGORITHMS, make_key, script
from tests.support.ratelimit_fixtures import requires_redis, rl_redis, rl_server, timed_eval  # noqa: F401

pytestmark = [pytest.mark.slow, requires_redis]

W_MS = 200


@dataclass(frozen=True)
class Admission:
    t: int  # microseconds, lower end of the measured bracket
    cost: int


def max_in_window(events: list[Admission], window_us: int) -> int:
    best = 0
    for e in events:
        best = max(best, sum(x.cost for x in events if e.t <= x.t < e.t + window_us))
    return best


def bound(algorithm: str, limit: int, burst: int) -> int:
    return {"sliding_log": limit, "gcra": burst + limit - 1, "fixed_window": 2 * limit - 1}[algorithm]


def run_schedule(r: redis.Redis, steps: list[tuple[int, int]], limit: int, burst: int
                 ) -> tuple[dict[str, list[Admission]], int]:
    tag = uuid.uuid4().hex
    shas = {a: script(a) for a in ALGORITHMS}
    for s in shas.values():
        r.script_load(s.source)
    admitted: dict[str, list[Admission]] = {a: [] for a in ALGORITHMS}
    delta = 0
    for gap_ms, cost in steps:
        if gap_ms:
            time.sleep(gap_ms / 1000)
        with r.pipeline(transaction=True) as p:
            p.time()
            for a in ALGORITHMS:
                args = [str(limit), str(W_MS), str(cost), "0"] + ([str(burst)] if a == "gcra" else [])
                p.evalsha(shas[a].sha, 1, make_key("rl", tag, a), *args)
            p.time()
            t0, *replies, t1 = p.execute()
        lo = t0[0] * 1_000_000 + t0[1]
        hi = t1[0] * 1_000_000 + t1[1]
        delta = max(delta, hi - lo)
        for a, reply in zip(ALGORITHMS, replies, strict=True):
            if int(reply[0]) == 1:
                admitted[a].append(Admission(lo, cost))
    return admitted, delta


@settings(max_examples=25, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    limit=st.integers(1, 4),
    extra_burst=st.integers(-3, 3),
    steps=st.lists(st.tuples(st.sampled_from([0, 0, 1, 5, 20, 45, 70, 110]), st.integers(1, 2)),
                   min_size=4, max_size=22),
)
def test_no_window_ever_exceeds_the_documented_bound(rl_redis: redis.Redis, limit: int, extra_burst: int,
                                                     steps: list[tuple[int, int]]) -> None:
    burst = max(2, limit + extra_burst)  # cost 2 must fit the burst
    limit = max(2, limit)
    admitted, delta = run_schedule(rl_redis, steps, limit, burst)
    window = W_MS * 1000 - 2 * delta - 2
    assert delta < 5000, f"TIME bracket {delta} us: measurement too coarse to judge"
    for a in ALGORITHMS:
        worst = max_in_window(admitted[a], window)
        assert worst <= bound(a, limit, burst), (a, worst, admitted[a])
    # The first step is always admitted by every algorithm (fresh keys, cost <= limit).
    assert all(admitted[a] and admitted[a][0].t == admitted["gcra"][0].t for a in ALGORITHMS)


def _timed_hit(r: redis.Redis, algorithm: str, key: str, limit: int, window_ms: int,
               burst: int | None = None) -> tuple[int, list[int]]:
    args = [str(limit), str(window_ms), "1", "0"] + ([str(burst)] if burst else [])
    t0, reply, _ = timed_eval(r, algorithm, key, args)
    return t0, reply


def test_gcra_bound_is_attained(rl_redis: redis.Redis) -> None:
    limit, burst, window_ms = 4, 4, 1000
    times: list[int] = []
    first = None
    while True:
        t, reply = _timed_hit(rl_redis, "gcra", "att", limit, window_ms, burst)
        first = first or t
        if reply[0] == 1:
            times.append(t)
        elif t - first > window_ms * 1000:
            break
        else:
            time.sleep(reply[2] / 1e6)
    in_first_window = [x for x in times if first <= x < first + window_ms * 1000]
    assert len(in_first_window) == burst + limit - 1
    assert max_in_window([Admission(x, 1) for x in times], window_ms * 1000) == burst + limit - 1


def test_fixed_window_bound_is_attained_across_the_boundary(rl_redis: redis.Redis) -> None:
    limit, window_ms = 3, 400
    times = []
    t, reply = _timed_hit(rl_redis, "fixed_window", "att", limit, window_ms)
    assert reply[0] == 1
    time.sleep(0.33)
    for _ in range(limit - 1):
        t, reply = _timed_hit(rl_redis, "fixed_window", "att", limit, window_ms)
        assert reply[0] == 1
        times.append(t)
    t, reply = _timed_hit(rl_redis, "fixed_window", "att", limit, window_ms)
    assert reply[0] == 0
    time.sleep(reply[2] / 1e6 + 0.002)
    for _ in range(limit):
        t, reply = _timed_hit(rl_redis, "fixed_window", "att", limit, window_ms)
        assert reply[0] == 1
        times.append(t)
    assert times[-1] - times[0] < window_ms * 1000
    assert len(times) == 2 * limit - 1


def test_sliding_log_bound_is_attained_and_exact(rl_redis: redis.Redis) -> None:
    limit, window_ms = 3, 300
    ok = [_timed_hit(rl_redis, "sliding_log", "att", limit, window_ms)[1][0] for _ in range(limit + 2)]
    assert ok == [1] * limit + [0, 0]
