"""Rate-limiter benchmark: our three algorithms side by side with the `limits` library.

`run_benchmark()` starts its own redis-server on loopback, measures, and writes
`<out_dir>/ratelimit.json` and `<out_dir>/ratelimit.png`. Everything in one run on one
server, so the ratios (the targets) compare like with like.

Measured per contender:
* decisions/s and client-side latency p50/p99 of one sequential Python client;
* server cost: `INFO commandstats` usec_per_call of the script commands (ours FCALL of the
  `ratelimit` library, `limits` EVALSHA), and ours through FCALL and through the EVALSHA opt-in
  side by side on the same workload (`ratios.fcall_vs_evalsha_server_cost`);
* bytes of Redis memory per tracked client: used_memory delta over many clients.
Plus the raw SET ceiling (`redis-benchmark -t set -q`) and each function's (and script's) server-side
ceiling under redis-benchmark's 50 connections, and how long a decision takes when Redis
cannot answer (the failure policy's bound): server stalled (SIGSTOP) on an open connection,
stalled on a new connection, stalled under the async limiter's own deadline over a client
without timeouts, and refused (nothing listening).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from ratelimit.functions import decision_calls, function_name, load_library
from ratelimit.limiter import AsyncRateLimiter, RateLimiter, decision_client, decision_client_kwargs, make_key
from ratelimit.scripts import script
from ratelimit.server import LocalRedis, memory_in_use
from ratelimit.tiers import ALGORITHMS

# The guide's general tier: the shape the memory targets are stated for.
LIMIT, WINDOW_S = 120, 60
TARGETS = {
    "gcra_server_cost_vs_fixed_window_max": 1.5,
    "gcra_bytes_per_client_max": 150,
    "limits_moving_window_memory_vs_gcra_min": 15,
    "python_throughput_vs_limits_min": 1.0,
    # docs/rate-limiter.md "Failure policy": the default 0.1 s timeout plus scheduling margin.
    "fallback_decision_max_s": 0.5,
    # Issue 12: moving the limiter from EVALSHA to FCALL must not make a decision dearer on the server.
    "fcall_vs_evalsha_server_cost_max": 1.1,
    # Issue 15: the flood shield, one round trip for two limits, auto-pipelining.
    "flood_redis_calls_limits_vs_ours_min": 100,
    "two_limits_throughput_vs_limits_min": 1.8,
    "async_200_tasks_throughput_vs_limits_min": 3.0,
}
# The commands a decision is one of: ours FCALL (FCALL_RO for a peek), `limits` and the opt-in EVALSHA.
SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha")
# The flood: the guide's auth tier, hammered on one key.
FLOOD_LIMIT, FLOOD_WINDOW_S = 30, 60
# Two limits per request: the general tier and the auth tier on the same client.
TWO_LIMITS = ((LIMIT, WINDOW_S), (FLOOD_LIMIT, FLOOD_WINDOW_S))
FALLBACK_TIMEOUT_S = 0.1


@dataclass
class Contender:
    name: str
    # Makes one decision for `client_id`, returns whether it was allowed.
    decide: Callable[[str], bool]


def _percentile(sorted_ns: list[int], p: float) -> float:
    idx = min(len(sorted_ns) - 1, max(0, round(p / 100 * len(sorted_ns)) - 1))
    return sorted_ns[idx] / 1000.0


def _script_usec_per_call(r: redis.Redis, commands: tuple[str, ...] = SCRIPT_COMMANDS) -> tuple[float, int]:
    """usec_per_call and calls of `commands` together since the last CONFIG RESETSTAT."""
    stats = r.info("commandstats")
    usec = sum(float(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in commands)
    calls = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in commands)
    return (round(usec / calls, 3) if calls else 0.0), calls


def _throughput(r: redis.Redis, c: Contender, decisions: int, per_client: int) -> dict[str, Any]:
    """One sequential client cycling over decisions/per_client ids: each id ends up with
    per_client requests against 120/60, so the run mixes admissions and denials."""
    r.flushall()
    ids = [f"c{i:06d}" for i in range(max(1, decisions // per_client))]
    for cid in ids[:50]:  # warm: scripts loaded, connections open
        c.decide(cid + "w")
    r.flushall()
    r.config_resetstat()
    lat: list[int] = []
    allowed = 0
    n = len(ids)
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(decisions):
        t = time.perf_counter_ns()
        ok = c.decide(ids[i % n])
        lat.append(time.perf_counter_ns() - t)
        allowed += ok
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    usec, calls = _script_usec_per_call(r)
    lat.sort()
    return {
        "decisions": decisions,
        "allowed": allowed,
        "decisions_per_s": round(decisions / elapsed, 1),
        "latency_p50_us": round(_percentile(lat, 50), 1),
        "latency_p99_us": round(_percentile(lat, 99), 1),
        # This process's CPU per decision: the Python-side cost, less exposed than wall-clock
        # rates to the other tenants of a shared machine.
        "client_cpu_us_per_decision": round(cpu / decisions * 1e6, 1),
        "server_usec_per_call": usec,
        "server_script_calls": calls,
    }


def _server_cost(r: redis.Redis, decisions: int, per_client: int, rounds: int) -> dict[str, Any]:
    """usec_per_call of each algorithm on the throughput workload, through FCALL (the library) and
    through EVALSHA (the opt-in), pipelined so that thousands of calls per round are cheap:
    interleaved rounds (FCALL first in even rounds, EVALSHA first in odd ones), the least disturbed
    (minimum) of each kept."""
    ids = [f"c{i:06d}" for i in range(max(1, decisions // per_client))]
    samples: dict[str, dict[str, list[float]]] = {a: {"fcall": [], "evalsha": []} for a in ALGORITHMS}
    load_library(r)
    for rnd in range(rounds):
        for a in ALGORITHMS:
            s = script(a)
            r.script_load(s.source)
            for how in (("fcall", "evalsha") if rnd % 2 == 0 else ("evalsha", "fcall")):
                r.flushdb()
                r.config_resetstat()
                for start in range(0, decisions, 1000):
                    with r.pipeline(transaction=False) as p:
                        for i in range(start, min(decisions, start + 1000)):
                            args = (1, make_key("rl", "general:" + ids[i % len(ids)], a),
                                    str(LIMIT), str(WINDOW_S * 1000), "1", "0")
                            if how == "fcall":
                                p.fcall(function_name(a), *args)
                            else:
                                p.evalsha(s.sha, *args)
                        p.execute()
                samples[a][how].append(_script_usec_per_call(r, (how,))[0])
    return {a: {"usec_per_call": min(v["fcall"]), "evalsha_usec_per_call": min(v["evalsha"]),
                "fcall_vs_evalsha": round(min(v["fcall"]) / min(v["evalsha"]), 3),
                "all_rounds": v["fcall"], "evalsha_all_rounds": v["evalsha"]} for a, v in samples.items()}


# The server functions that run one FCALL / one EVALSHA (redis 7.x functions.c / eval.c); the
# Debian binary is stripped but exports them (dynamic symbols, for modules).
_CALLGRIND_FUNCTIONS = {"fcall": "fcallCommand", "evalsha": "evalShaCommand"}
_ANNOTATED = re.compile(r"^\s*([\d,]+)\s.*?\b(fcallCommand|evalShaCommand)\b", re.M)


def _callgrind_cost(calls: int) -> dict[str, Any] | None:
    """Instructions the server executes per FCALL and per EVALSHA of each algorithm, counted by
    valgrind's callgrind with collection on only inside fcallCommand / evalShaCommand (everything
    they call included): the same calls, keys and state for both, and a count that the other
    tenants of a loaded machine cannot disturb (usec_per_call can). None without valgrind."""
    valgrind, annotate = shutil.which("valgrind"), shutil.which("callgrind_annotate")
    if not (valgrind and annotate):
        return None
    ids = [f"c{i:05d}" for i in range(max(1, calls // 20))]  # 20 requests per id vs 120/60: all admitted
    result: dict[str, Any] = {}
    for a in ALGORITHMS:
        with tempfile.TemporaryDirectory(prefix="ratelimit-callgrind-") as tmp:
            out = Path(tmp) / "callgrind.out"
            wrapper = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
                       *(f"--toggle-collect={f}" for f in _CALLGRIND_FUNCTIONS.values())]
            with LocalRedis(wrapper=wrapper) as srv:
                r = redis.Redis(port=srv.port, socket_timeout=120)
                load_library(r)
                sha = r.script_load(script(a).source)
                for how in ("fcall", "evalsha"):
                    r.flushdb()
                    for start in range(0, calls, 500):
                        with r.pipeline(transaction=False) as p:
                            for i in range(start, min(calls, start + 500)):
                                args = (1, make_key("rl", "general:" + ids[i % len(ids)], a),
                                        str(LIMIT), str(WINDOW_S * 1000), "1", "0")
                                p.fcall(function_name(a), *args) if how == "fcall" else p.evalsha(sha, *args)
                            p.execute()
                r.close()
            text = subprocess.run([annotate, "--inclusive=yes", str(out)], capture_output=True, text=True,
                                  check=True).stdout
        found = {name: int(n.replace(",", "")) for n, name in _ANNOTATED.findall(text)}
        per_call = {how: round(found[fn] / calls, 1) for how, fn in _CALLGRIND_FUNCTIONS.items()}
        result[a] = {"instructions_per_fcall": per_call["fcall"], "instructions_per_evalsha": per_call["evalsha"],
                     "fcall_vs_evalsha": round(per_call["fcall"] / per_call["evalsha"], 3)}
    return {"calls": calls, "tool": "valgrind --tool=callgrind", **result}


def _entry_calls(r: redis.Redis) -> int:
    """Limiter calls the server received (every library here decides through a script)."""
    return decision_calls(r.info("commandstats"))


def _flood(r: redis.Redis, decide: Callable[[str], bool], hits: int) -> dict[str, Any]:
    """`hits` sequential requests on one key (FLOOD_LIMIT/FLOOD_WINDOW_S); Redis counts the calls."""
    r.flushall()
    decide("warm")
    r.config_resetstat()
    start = time.perf_counter()
    admitted = sum(decide("flood") for _ in range(hits))
    elapsed = time.perf_counter() - start
    return {"hits": hits, "admitted": admitted, "redis_calls": _entry_calls(r),
            "decisions_per_s": round(hits / elapsed, 1)}


def _two_limits(r: redis.Redis, decide: Callable[[str], bool], decisions: int, per_client: int) -> dict[str, Any]:
    """Each request checks TWO_LIMITS for one client id; ids cycle as in `_throughput`."""
    r.flushall()
    ids = [f"c{i:06d}" for i in range(max(1, decisions // per_client))]
    for cid in ids[:20]:
        decide(cid + "w")
    r.flushall()
    r.config_resetstat()
    cpu = time.process_time()
    start = time.perf_counter()
    admitted = sum(decide(ids[i % len(ids)]) for i in range(decisions))
    elapsed = time.perf_counter() - start
    return {"requests": decisions, "admitted": admitted, "requests_per_s": round(decisions / elapsed, 1),
            "client_cpu_us_per_request": round((time.process_time() - cpu) / decisions * 1e6, 1),
            "redis_calls": _entry_calls(r)}


AsyncDecide = Callable[[str], Any]


async def _async_tasks(r: redis.Redis, decide: AsyncDecide, decisions: int, tasks: int) -> dict[str, Any]:
    """`tasks` concurrent asyncio tasks, each deciding for its own ids in turn."""
    r.flushall()
    await asyncio.gather(*(decide(f"w{i}") for i in range(tasks)))  # connections open, scripts loaded
    r.flushall()
    r.config_resetstat()
    per_task = max(1, decisions // tasks)

    async def worker(t: int) -> int:
        return sum([bool(await decide(f"t{t}:{i % 50}")) for i in range(per_task)])

    start = time.perf_counter()
    admitted = sum(await asyncio.gather(*(worker(t) for t in range(tasks))))
    elapsed = time.perf_counter() - start
    return {"tasks": tasks, "decisions": per_task * tasks, "admitted": admitted,
            "decisions_per_s": round(per_task * tasks / elapsed, 1), "redis_calls": _entry_calls(r)}


def _issue15(port: int, r: redis.Redis, *, flood_hits: int, two_limit_requests: int, per_client: int,
             async_decisions: int, async_tasks: int, rounds: int) -> dict[str, Any]:
    """The flood, two limits per request and 200 asyncio tasks: ours beside `limits`, same server.
    Ours runs without the deny cache except in the flood, so the other cases compare round trips."""
    from limits import RateLimitItemPerSecond
    from limits.aio.storage import RedisStorage as AsyncRedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter as AsyncMoving
    from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncCounter
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

    client = redis.Redis(port=port, **decision_client_kwargs(1.0))
    storage = RedisStorage(f"redis://127.0.0.1:{port}")
    sync_limits = {"limits_moving_window": MovingWindowRateLimiter(storage),
                   "limits_sliding_window_counter": SlidingWindowCounterRateLimiter(storage)}
    flood_item = RateLimitItemPerSecond(FLOOD_LIMIT, FLOOD_WINDOW_S)
    items = [RateLimitItemPerSecond(lim, win) for lim, win in TWO_LIMITS]
    shielded = RateLimiter(client)
    plain = RateLimiter(client, deny_cache=False)

    flood: dict[str, Any] = {
        "ours_gcra_deny_cache": _flood(r, lambda k: shielded.hit(k, FLOOD_LIMIT, FLOOD_WINDOW_S).allowed, flood_hits),
        "ours_gcra_no_cache": _flood(r, lambda k: plain.hit(k, FLOOD_LIMIT, FLOOD_WINDOW_S).allowed, flood_hits),
    }
    def limits_flood(strat: Any) -> Callable[[str], bool]:
        return lambda k: bool(strat.hit(flood_item, k))

    for name, strat in sync_limits.items():
        flood[name] = _flood(r, limits_flood(strat), flood_hits)

    def ours_two(cid: str) -> bool:
        return plain.hit_many([(f"general:{{{cid}}}", LIMIT, WINDOW_S), (f"auth:{{{cid}}}", FLOOD_LIMIT,
                                                                          FLOOD_WINDOW_S)]).allowed

    def limits_two(strat: Any) -> Callable[[str], bool]:
        # Both limits asked, as an application using `limits` does: one call per limit.
        return lambda cid: all([strat.hit(item, cid) for item in items])

    two_contenders: dict[str, Callable[[str], bool]] = {"ours_hit_many": ours_two}
    two_contenders.update({n: limits_two(s) for n, s in sync_limits.items()})
    two_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in two_contenders}
    for rnd in range(rounds):
        order = list(two_contenders)
        for name in order[rnd % len(order):] + order[:rnd % len(order)]:
            two_runs[name].append(_two_limits(r, two_contenders[name], two_limit_requests, per_client))
    two = {n: {**max(rs, key=lambda x: x["requests_per_s"]), "requests_per_s_all_rounds":
               [x["requests_per_s"] for x in rs]} for n, rs in two_runs.items()}

    async def run_async() -> dict[str, Any]:
        # Room for one connection per task: without pipelining each decision in flight holds one.
        pool = async_tasks + 16
        aclient = redis.asyncio.Redis(port=port, **{**decision_client_kwargs(1.0), "retry": _async_no_retry(),
                                                    "max_connections": pool})
        ours = AsyncRateLimiter(aclient, timeout=1.0, deny_cache=False)
        unpiped = AsyncRateLimiter(aclient, timeout=1.0, deny_cache=False, auto_pipeline=False)
        astorage = AsyncRedisStorage(f"async+redis://127.0.0.1:{port}", implementation="redispy",
                                     max_connections=pool)
        moving, counter = AsyncMoving(astorage), AsyncCounter(astorage)
        contenders: dict[str, AsyncDecide] = {
            "ours_gcra_auto_pipeline": lambda k: ours.hit(k, LIMIT, WINDOW_S),
            "ours_gcra_no_pipeline": lambda k: unpiped.hit(k, LIMIT, WINDOW_S),
            "limits_async_moving_window": lambda k: moving.hit(item0, k),
            "limits_async_sliding_window_counter": lambda k: counter.hit(item0, k),
        }
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in contenders}
        for rnd in range(rounds):
            order = list(contenders)
            for name in order[rnd % len(order):] + order[:rnd % len(order)]:
                runs[name].append(await _async_tasks(r, contenders[name], async_decisions, async_tasks))
        await aclient.aclose()
        return {n: {**max(rs, key=lambda x: x["decisions_per_s"]), "decisions_per_s_all_rounds":
                    [x["decisions_per_s"] for x in rs]} for n, rs in runs.items()}

    item0 = RateLimitItemPerSecond(LIMIT, WINDOW_S)
    concurrent = asyncio.run(run_async())
    client.close()
    return {"flood": flood, "two_limits": two, "async_tasks": concurrent}


def _async_no_retry() -> Any:
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff

    return AsyncRetry(NoBackoff(), 0)


def _memory_ours(r: redis.Redis, algorithm: str, clients: int, cost: int) -> dict[str, Any]:
    """Bytes per tracked client: each client's key as it looks after `cost` requests."""
    r.flushall()
    load_library(r)
    before = memory_in_use(r)
    batch = 1000
    for start in range(0, clients, batch):
        with r.pipeline(transaction=False) as p:
            for i in range(start, min(clients, start + batch)):
                p.fcall(function_name(algorithm), 1, make_key("rl", f"general:c{i:07d}", algorithm),
                          str(LIMIT), str(WINDOW_S * 1000), str(cost), "0")
            p.execute()
    after = memory_in_use(r)
    keys = int(r.dbsize())
    if keys != clients:
        raise RuntimeError(f"{algorithm}: {keys} of {clients} keys alive: memory per client would be wrong")
    return {"clients": clients, "requests_per_client": cost, "keys": keys,
            "bytes_per_client": round((after - before) / clients, 1)}


def _memory_limits(r: redis.Redis, strategy: Any, item: Any, clients: int, cost: int) -> dict[str, Any]:
    r.flushall()
    strategy.hit(item, "warmup", cost=1)
    r.flushall()
    before = memory_in_use(r)
    for i in range(clients):
        strategy.hit(item, f"c{i:07d}", cost=cost)
    after = memory_in_use(r)
    return {"clients": clients, "requests_per_client": cost, "keys": int(r.dbsize()),
            "bytes_per_client": round((after - before) / clients, 1)}


def _redis_benchmark(port: int, requests: int, command: list[str] | None = None) -> float | None:
    """requests/s from redis-benchmark (50 connections by default), or None if not installed."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    args = [exe, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-q"]
    args += ["-r", "1000000", *command] if command else ["-t", "set"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    rates = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(rates[-1]) if rates else None


def _spread_ms(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {"p50_ms": round(ordered[len(ordered) // 2] * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


def _fallback_latency(srv: LocalRedis, calls: int) -> dict[str, Any]:
    """Seconds per decision while Redis cannot answer; every one must be a fallback."""

    def timed(decide: Callable[[], Any]) -> list[float]:
        out = []
        for _ in range(calls):
            t = time.perf_counter()
            d = decide()
            out.append(time.perf_counter() - t)
            if not d.fallback:
                raise RuntimeError("a decision was answered by a Redis that was meant to be unavailable")
        return out

    kept = decision_client(port=srv.port, timeout=FALLBACK_TIMEOUT_S)
    limiter = RateLimiter(kept, timeout=FALLBACK_TIMEOUT_S)
    limiter.hit("fallback", LIMIT, WINDOW_S)  # connected, script loaded

    async def async_stalled() -> list[float]:
        plain = redis.asyncio.Redis(port=srv.port)  # no timeouts: only the limiter's deadline
        bounded = AsyncRateLimiter(plain, timeout=FALLBACK_TIMEOUT_S)
        await bounded.hit("fallback", LIMIT, WINDOW_S)
        out = []
        srv.pause()
        try:
            for _ in range(calls):
                t = time.perf_counter()
                d = await bounded.hit("fallback", LIMIT, WINDOW_S)
                out.append(time.perf_counter() - t)
                if not d.fallback:
                    raise RuntimeError("a decision was answered by a stalled Redis")
        finally:
            srv.resume()
            await plain.aclose()
        return out

    srv.pause()
    try:
        stalled = timed(lambda: limiter.hit("fallback", LIMIT, WINDOW_S))
        stalled_new = timed(lambda: RateLimiter(decision_client(port=srv.port, timeout=FALLBACK_TIMEOUT_S),
                                                timeout=FALLBACK_TIMEOUT_S).hit("fallback", LIMIT, WINDOW_S))
    finally:
        srv.resume()
        kept.close()
    stalled_async = asyncio.run(async_stalled())
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        down = RateLimiter(decision_client(port=held.getsockname()[1], timeout=FALLBACK_TIMEOUT_S))
        refused = timed(lambda: down.hit("fallback", LIMIT, WINDOW_S))
    figures = {"stalled": stalled, "stalled_new_connection": stalled_new, "stalled_async_no_client_timeout":
               stalled_async, "refused": refused}
    spreads = {name: _spread_ms(samples) for name, samples in figures.items()}
    # max_s is the largest rounded max_ms, so it can never read lower than a case's own max.
    return {"timeout_s": FALLBACK_TIMEOUT_S, "calls": calls, **spreads,
            "max_s": max(spread["max_ms"] for spread in spreads.values()) / 1000}


def _limits_contenders(url: str) -> tuple[dict[str, Contender], dict[str, Any], Any]:
    from limits import RateLimitItemPerSecond
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

    storage = RedisStorage(url)
    item = RateLimitItemPerSecond(LIMIT, WINDOW_S)
    strategies = {
        "limits_moving_window": MovingWindowRateLimiter(storage),
        "limits_sliding_window_counter": SlidingWindowCounterRateLimiter(storage),
    }
    def decide_with(strategy: Any) -> Callable[[str], bool]:
        return lambda cid: bool(strategy.hit(item, cid))

    contenders = {name: Contender(name, decide_with(s)) for name, s in strategies.items()}
    # Equal information: an API answering with RateLimit/Retry-After headers needs remaining and
    # reset, which `limits` returns only from a second call; our one EVALSHA returns both.
    moving = strategies["limits_moving_window"]

    def hit_with_stats(cid: str) -> bool:
        allowed = bool(moving.hit(item, cid))
        moving.get_window_stats(item, cid)
        return allowed

    contenders["limits_moving_window_with_stats"] = Contender("limits_moving_window_with_stats", hit_with_stats)
    return contenders, strategies, item


def _chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["throughput"])
    short = [n.replace("limits_", "limits\n").replace("_", " ") for n in names]
    colors = ["#1f77b4" if not n.startswith("limits") else "#ff7f0e" for n in names]
    fig, axes = plt.subplots(3, 2, figsize=(11, 11))
    ax = axes[0][0]
    ax.bar(short, [result["throughput"][n]["decisions_per_s"] for n in names], color=colors)
    ax.set_title("decisions/s, one Python client")
    ax = axes[0][1]
    ax.bar(short, [result["throughput"][n]["server_usec_per_call"] for n in names], color=colors)
    ax.set_title("server cost, usec per call (ours FCALL, limits EVALSHA)")
    ax = axes[1][0]
    mem = result["memory"]
    mnames = list(mem)
    ax.bar([n.replace("limits_", "limits\n").replace("_", " ") for n in mnames],
           [mem[n]["bytes_per_client"] for n in mnames],
           color=["#1f77b4" if not n.startswith("limits") else "#ff7f0e" for n in mnames])
    ax.set_yscale("log")
    ax.set_title(f"bytes per tracked client ({LIMIT}/{WINDOW_S}s, log scale)")
    ax = axes[1][1]
    p50 = [result["throughput"][n]["latency_p50_us"] for n in names]
    p99 = [result["throughput"][n]["latency_p99_us"] for n in names]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    ax.set_xticks(list(xs), short)
    ax.set_title("client-side latency per decision (us)")
    ax.legend()
    ax = axes[2][0]
    ratio_rows = [("flood: Redis calls,\nlimits / ours", "flood_redis_calls_limits_vs_ours",
                   "flood_redis_calls_limits_vs_ours_min"),
                  ("two limits:\nreq/s vs limits", "two_limits_throughput_vs_limits", "two_limits_throughput_vs_limits_min"),
                  ("200 async tasks:\ndecisions/s vs limits", "async_200_tasks_throughput_vs_limits",
                   "async_200_tasks_throughput_vs_limits_min"),
                  ("one sync decision:\ndecisions/s vs limits", "python_throughput_gcra_vs_best_limits",
                   "python_throughput_vs_limits_min")]
    values = [result["ratios"][key] for _, key, _ in ratio_rows]
    goals = [result["targets"][goal] for _, _, goal in ratio_rows]
    xs = range(len(ratio_rows))
    ax.bar(list(xs), values, color=["#2ca02c" if v >= g else "#d62728" for v, g in zip(values, goals, strict=True)])
    ax.scatter(list(xs), goals, marker="_", s=900, color="black", zorder=3, label="target")
    for x, v in zip(xs, values, strict=True):
        ax.annotate(f"{v:g}x", (x, v), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [label for label, _, _ in ratio_rows])
    ax.set_yscale("log")
    ax.set_title("issue 15 ratios, ours / limits (log scale; black mark = target)")
    ax.legend()
    ax = axes[2][1]
    flood = result["flood"]
    fnames = list(flood)
    ax.bar([n.replace("limits_", "limits\n").replace("ours_", "ours\n").replace("_", " ") for n in fnames],
           [max(1, flood[n]["redis_calls"]) for n in fnames],
           color=["#1f77b4" if n.startswith("ours") else "#ff7f0e" for n in fnames])
    ax.set_yscale("log")
    ax.set_title(f"Redis calls for {result['parameters']['flood_hits']} hits on one key "
                 f"({FLOOD_LIMIT}/{FLOOD_WINDOW_S}s, log scale)")
    for row in axes:
        for a in row:
            a.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"redisstack rate limiter vs limits {result['environment']['limits_version']} "
                 f"on redis {result['environment']['redis_version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_benchmark(out_dir: str | Path = "bench/results", *, decisions: int = 20_000, per_client: int = 200,
                  memory_clients: int = 100_000, log_clients: int = 10_000, ceiling_requests: int = 100_000,
                  rounds: int = 5, chart: bool = True, fallback_calls: int = 20,
                  callgrind_calls: int = 3000, flood_hits: int = 10_000,
                  two_limit_requests: int = 6_000, async_decisions: int = 10_000,
                  async_tasks: int = 200) -> dict[str, Any]:
    """Run everything against a fresh loopback redis-server; write JSON (+ PNG); return the dict.

    `log_clients` is used for the per-client logs (ours and `limits` moving window, 120 entries
    each, and limits' sliding-window counter, which is driven one call at a time).
    """
    from limits import __version__ as limits_version

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    # The machine's load beside its figures: wall-clock ratios move with it (two round trips suffer
    # more than one on a busy machine), so a committed run says what it ran under.
    load_start = os.getloadavg()
    with LocalRedis() as srv:
        url = f"redis://127.0.0.1:{srv.port}"
        admin = redis.Redis(port=srv.port)
        client = redis.Redis(port=srv.port, **decision_client_kwargs(1.0))
        # Without the deny cache: these rounds mix admissions and denials, and every denial of
        # ours must be a round trip like limits' (the flood below measures the cache).
        limiters = {a: RateLimiter(client, a, deny_cache=False) for a in ALGORITHMS}
        def decide_with(lim: RateLimiter) -> Callable[[str], bool]:
            return lambda cid: lim.hit("general:" + cid, LIMIT, WINDOW_S).allowed

        contenders = {a: Contender(a, decide_with(lim)) for a, lim in limiters.items()}
        lim_contenders, strategies, item = _limits_contenders(url)
        contenders.update(lim_contenders)

        # Interleaved rounds, best kept: other tenants of a shared 2-core machine only ever
        # slow a round down, so the best round is the least disturbed one.
        rounds = max(1, rounds)
        per_round = max(per_client, decisions // rounds)
        runs: dict[str, list[dict[str, Any]]] = {n: [] for n in contenders}
        for rnd in range(rounds):
            order = list(contenders)
            order = order[rnd % len(order):] + order[:rnd % len(order)]
            for name in order:
                runs[name].append(_throughput(admin, contenders[name], per_round, per_client))
        throughput = {n: dict(max(rs, key=lambda r: r["decisions_per_s"])) for n, rs in runs.items()}
        for n, rs in runs.items():
            best = throughput[n]
            best["decisions_per_s_all_rounds"] = [r["decisions_per_s"] for r in rs]
            for field in ("server_usec_per_call", "client_cpu_us_per_decision", "latency_p50_us", "latency_p99_us"):
                best[field] = min(r[field] for r in rs)

        server_cost = _server_cost(admin, decisions, per_client, max(3, rounds * 2))
        callgrind = _callgrind_cost(callgrind_calls) if callgrind_calls > 0 else None

        memory: dict[str, Any] = {
            # A client that has spent its allowance: the GCRA key then lives the whole window
            # (after one request it would drain, and vanish, within window/limit).
            "gcra": _memory_ours(admin, "gcra", memory_clients, LIMIT),
            "fixed_window": _memory_ours(admin, "fixed_window", memory_clients, LIMIT),
            "sliding_log": _memory_ours(admin, "sliding_log", log_clients, LIMIT),
            "limits_moving_window": _memory_limits(admin, strategies["limits_moving_window"], item,
                                                   log_clients, LIMIT),
            "limits_sliding_window_counter": _memory_limits(
                admin, strategies["limits_sliding_window_counter"], item, log_clients, 1),
        }

        admin.flushall()
        ceilings: dict[str, Any] = {"set_requests_per_s": _redis_benchmark(srv.port, ceiling_requests)}
        load_library(admin)
        for a in ALGORITHMS:
            s = script(a)
            admin.script_load(s.source)
            args = ["1", make_key("rl", "general:__rand_int__", a), str(LIMIT), str(WINDOW_S * 1000), "1", "0"]
            ceilings[f"{a}_fcall_per_s"] = _redis_benchmark(srv.port, ceiling_requests, ["fcall", function_name(a), *args])
            admin.flushdb()
            ceilings[f"{a}_evalsha_per_s"] = _redis_benchmark(srv.port, ceiling_requests, ["evalsha", s.sha, *args])
            admin.flushdb()
        # After the memory figures: the 200 async connections it opens and closes would move
        # used_memory under them.
        shield = _issue15(srv.port, admin, flood_hits=flood_hits, two_limit_requests=two_limit_requests,
                          per_client=per_client, async_decisions=async_decisions, async_tasks=async_tasks,
                          rounds=rounds)
        redis_version = str(admin.info("server")["redis_version"])
        limiter_log = logging.getLogger("ratelimit.limiter")
        level = limiter_log.level
        limiter_log.setLevel(logging.ERROR)  # one "Redis unavailable" warning per measured call
        try:
            fallback = _fallback_latency(srv, fallback_calls)
        finally:
            limiter_log.setLevel(level)
        client.close()
        admin.close()

    gcra = throughput["gcra"]
    gcra_mem = memory["gcra"]["bytes_per_client"]
    best_limits = max(throughput["limits_moving_window"]["decisions_per_s"],
                      throughput["limits_sliding_window_counter"]["decisions_per_s"])
    flood, two, concurrent = shield["flood"], shield["two_limits"], shield["async_tasks"]
    ratios = {
        # Issue 15 (the fewest calls / the best throughput of `limits`' strategies each time).
        "flood_redis_calls_limits_vs_ours": round(
            min(flood[n]["redis_calls"] for n in flood if n.startswith("limits"))
            / max(1, flood["ours_gcra_deny_cache"]["redis_calls"]), 1),
        "two_limits_throughput_vs_limits": round(two["ours_hit_many"]["requests_per_s"] / max(
            two[n]["requests_per_s"] for n in two if n.startswith("limits")), 3),
        "async_200_tasks_throughput_vs_limits": round(concurrent["ours_gcra_auto_pipeline"]["decisions_per_s"] / max(
            concurrent[n]["decisions_per_s"] for n in concurrent if n.startswith("limits")), 3),
        "async_auto_pipeline_vs_no_pipeline": round(concurrent["ours_gcra_auto_pipeline"]["decisions_per_s"]
                                                    / concurrent["ours_gcra_no_pipeline"]["decisions_per_s"], 3),
        "gcra_server_cost_vs_fixed_window": round(server_cost["gcra"]["usec_per_call"]
                                                  / server_cost["fixed_window"]["usec_per_call"], 3),
        "gcra_bytes_per_client": gcra_mem,
        "limits_moving_window_memory_vs_gcra": round(memory["limits_moving_window"]["bytes_per_client"] / gcra_mem, 1),
        "python_throughput_gcra_vs_best_limits": round(gcra["decisions_per_s"] / best_limits, 3),
        "python_throughput_gcra_vs_limits_with_stats": round(
            gcra["decisions_per_s"] / throughput["limits_moving_window_with_stats"]["decisions_per_s"], 3),
        "client_cpu_gcra_vs_best_limits": round(
            gcra["client_cpu_us_per_decision"] / min(throughput["limits_moving_window"]["client_cpu_us_per_decision"],
                                                     throughput["limits_sliding_window_counter"][
                                                         "client_cpu_us_per_decision"]), 3),
        "gcra_vs_set_ceiling_server_side": (round(ceilings["gcra_fcall_per_s"] / ceilings["set_requests_per_s"], 3)
                                            if ceilings.get("set_requests_per_s") and ceilings.get("gcra_fcall_per_s")
                                            else None),
        # FCALL over EVALSHA, same calls on the same server, the worst algorithm: in instructions
        # (callgrind, deterministic) when valgrind is there, else in usec_per_call (noisy under load).
        "fcall_vs_evalsha_usec": max(c["fcall_vs_evalsha"] for c in server_cost.values()),
        **{f"fcall_vs_evalsha_usec_{a}": c["fcall_vs_evalsha"] for a, c in server_cost.items()},
    }
    if callgrind is not None:
        ratios["fcall_vs_evalsha_instructions"] = max(callgrind[a]["fcall_vs_evalsha"] for a in ALGORITHMS)
        ratios.update({f"fcall_vs_evalsha_instructions_{a}": callgrind[a]["fcall_vs_evalsha"] for a in ALGORITHMS})
    ratios["fcall_vs_evalsha_server_cost"] = ratios.get("fcall_vs_evalsha_instructions",
                                                        ratios["fcall_vs_evalsha_usec"])
    targets_met = {
        "gcra_server_cost_vs_fixed_window": ratios["gcra_server_cost_vs_fixed_window"]
        <= TARGETS["gcra_server_cost_vs_fixed_window_max"],
        "gcra_bytes_per_client": gcra_mem <= TARGETS["gcra_bytes_per_client_max"],
        "limits_moving_window_memory_vs_gcra": ratios["limits_moving_window_memory_vs_gcra"]
        >= TARGETS["limits_moving_window_memory_vs_gcra_min"],
        "python_throughput_vs_limits": ratios["python_throughput_gcra_vs_best_limits"]
        >= TARGETS["python_throughput_vs_limits_min"],
        "fallback_decision": fallback["max_s"] <= TARGETS["fallback_decision_max_s"],
        "fcall_vs_evalsha_server_cost": ratios["fcall_vs_evalsha_server_cost"]
        <= TARGETS["fcall_vs_evalsha_server_cost_max"],
        "flood_redis_calls_vs_limits": ratios["flood_redis_calls_limits_vs_ours"]
        >= TARGETS["flood_redis_calls_limits_vs_ours_min"],
        "two_limits_throughput_vs_limits": ratios["two_limits_throughput_vs_limits"]
        >= TARGETS["two_limits_throughput_vs_limits_min"],
        "async_200_tasks_throughput_vs_limits": ratios["async_200_tasks_throughput_vs_limits"]
        >= TARGETS["async_200_tasks_throughput_vs_limits_min"],
    }
    result: dict[str, Any] = {
        "schema": 1,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "redis_version": redis_version,
            "python": platform.python_version(),
            "redis_py": redis.__version__,
            "limits_version": limits_version,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            # 1/5/15-minute load averages when the run started and when it ended.
            "load_average": {"start": [round(x, 2) for x in load_start],
                             "end": [round(x, 2) for x in os.getloadavg()]},
        },
        "parameters": {"limit": LIMIT, "window_s": WINDOW_S, "decisions": decisions, "per_client": per_client,
                       "memory_clients": memory_clients, "log_clients": log_clients,
                       "ceiling_requests": ceiling_requests, "rounds": rounds, "fallback_calls": fallback_calls,
                       "callgrind_calls": callgrind_calls,
                       "flood_hits": flood_hits, "flood_limit": FLOOD_LIMIT, "flood_window_s": FLOOD_WINDOW_S,
                       "two_limit_requests": two_limit_requests, "two_limits": [list(t) for t in TWO_LIMITS],
                       "async_decisions": async_decisions, "async_tasks": async_tasks},
        "throughput": throughput,
        "server_cost_pipelined": server_cost,
        "server_cost_callgrind": callgrind,
        "memory": memory,
        "ceilings": ceilings,
        "fallback": fallback,
        "flood": flood,
        "two_limits": two,
        "async_tasks": concurrent,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": targets_met,
    }
    result["duration_s"] = round(time.monotonic() - t_start, 1)
    (out / "ratelimit.json").write_text(json.dumps(result, indent=2) + "\n")
    if chart:
        _chart(result, out / "ratelimit.png")
    return result
