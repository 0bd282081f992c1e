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

from ratelimit.functions import function_name, load_library
from ratelimit.limiter import AsyncRateLimiter, RateLimiter, decision_client, decision_client_kwargs, make_key
from ratelimit.scripts import script
from ratelimit.server import LocalRedis
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
}
# The commands a decision is one of: ours FCALL (FCALL_RO for a peek), `limits` and the opt-in EVALSHA.
SCRIPT_COMMANDS = ("fcall", "fcall_ro", "evalsha")
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


def _used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def _memory_ours(r: redis.Redis, algorithm: str, clients: int, cost: int) -> dict[str, Any]:
    """Bytes per tracked client: each client's key as it looks after `cost` requests."""
    r.flushall()
    load_library(r)
    before = _used_memory(r)
    batch = 1000
    for start in range(0, clients, batch):
        with r.pipeline(transaction=False) as p:
            for i in range(start, min(clients, start + batch)):
                p.fcall(function_name(algorithm), 1, make_key("rl", f"general:c{i:07d}", algorithm),
                          str(LIMIT), str(WINDOW_S * 1000), str(cost), "0")
            p.execute()
    after = _used_memory(r)
    keys = int(r.dbsize())
    if keys != clients:
        raise RuntimeError(f"{algorithm}: {keys} of {clients} keys alive: memory per client would be wrong")
    return {"clients": clients, "requests_per_client": cost, "keys": keys,
            "bytes_per_client": round((after - before) / clients, 1)}


def _memory_limits(r: redis.Redis, strategy: Any, item: Any, clients: int, cost: int) -> dict[str, Any]:
    r.flushall()
    strategy.hit(item, "warmup", cost=1)
    r.flushall()
    before = _used_memory(r)
    for i in range(clients):
        strategy.hit(item, f"c{i:07d}", cost=cost)
    after = _used_memory(r)
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
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
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
                  callgrind_calls: int = 3000) -> dict[str, Any]:
    """Run everything against a fresh loopback redis-server; write JSON (+ PNG); return the dict.

    `log_clients` is used for the per-client logs (ours and `limits` moving window, 120 entries
    each, and limits' sliding-window counter, which is driven one call at a time).
    """
    from limits import __version__ as limits_version

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    with LocalRedis() as srv:
        url = f"redis://127.0.0.1:{srv.port}"
        admin = redis.Redis(port=srv.port)
        client = redis.Redis(port=srv.port, **decision_client_kwargs(1.0))
        limiters = {a: RateLimiter(client, a) for a in ALGORITHMS}
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
    ratios = {
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
        },
        "parameters": {"limit": LIMIT, "window_s": WINDOW_S, "decisions": decisions, "per_client": per_client,
                       "memory_clients": memory_clients, "log_clients": log_clients,
                       "ceiling_requests": ceiling_requests, "rounds": rounds, "fallback_calls": fallback_calls,
                       "callgrind_calls": callgrind_calls},
        "throughput": throughput,
        "server_cost_pipelined": server_cost,
        "server_cost_callgrind": callgrind,
        "memory": memory,
        "ceilings": ceilings,
        "fallback": fallback,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": targets_met,
    }
    result["duration_s"] = round(time.monotonic() - t_start, 1)
    (out / "ratelimit.json").write_text(json.dumps(result, indent=2) + "\n")
    if chart:
        _chart(result, out / "ratelimit.png")
    return result
