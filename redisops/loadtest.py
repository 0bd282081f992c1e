"""`redisops loadtest`: the guide's security load test, over real HTTP on loopback.

It starts a throwaway redis-server and the example application (examples/app, uvicorn) on an
OS-assigned loopback port, or targets a running one (`url`), and runs these scenarios, each
bounded in requests and all of them in time:

* ``credential_stuffing`` - one client bursts failed logins at POST /auth/login (auth tier);
* ``single_client_flood`` - one client floods GET /api/items (general tier);
* ``many_clients_normal`` - many clients at a normal rate on GET /api/items: nobody is refused;
* ``spoofed_forwarded_for`` - one untrusted client sends a new X-Forwarded-For on every
  request: it must get one client's allowance, not one per forged address;
* ``trusted_proxy`` - clients behind a trusted proxy (X-Forwarded-For from 127.0.0.254) each
  get their own allowance: the protection above does not break real proxies.

Distinct clients are distinct source addresses: on Linux all of 127.0.0.0/8 is loopback, so every
client connects from its own 127.x address and the application sees it as the peer address.

The report gives, per scenario: the tier, its limit and window (read back from the responses'
RateLimit-Policy), how many client identities the application should see, requests sent,
admitted against the allowance (exact when no allowance can refill during the run), p50/p99
latency, Redis calls per request (INFO commandstats) and fallback / locally denied decisions
(the application's /metrics). By default every tier's window is stretched (`window_s`), so
nothing refills mid-run and "admitted == limit x clients" is an exact check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ratelimit.functions import decision_calls
from ratelimit.tiers import DEFAULT_TIERS

T = TypeVar("T")
PROXY_SOURCE = "127.0.0.254"
WARM_UP_SOURCE = "127.0.0.250"
TRUSTED_PROXIES = f"{PROXY_SOURCE}/32"
_POLICY = re.compile(r'^"(?P<tier>[a-z0-9_]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
DEFAULT_WINDOW_S = 3600


class LoadTestError(RuntimeError):
    """The load test cannot run (bad input, no example app, no loopback aliases)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    method: str
    path: str
    sources: tuple[str, ...]  # one client (peer address) per source
    requests_per_source: int
    concurrency: int  # per source
    rate_per_source: float | None = None  # requests/s; None: as fast as the server answers
    # X-Forwarded-For for (source index, request index); None sends none.
    forwarded_for: Callable[[int, int], str] | None = None
    identities: int = 1  # client identities the application must see

    @property
    def requests(self) -> int:
        return self.requests_per_source * len(self.sources)


def scenarios(scale: float = 1.0) -> list[Scenario]:
    """The five scenarios; `scale` multiplies every request count (at least 2 per client)."""
    if not (isinstance(scale, int | float) and 0 < scale <= 100):
        raise LoadTestError(f"scale {scale!r}: expected a number in (0, 100]")

    limit = {t.name: t.limit for t in DEFAULT_TIERS}

    def n(count: int, tier: str | None = None) -> int:
        # Scaled down, a limited client still sends past its tier's limit, or nothing is proven.
        return max(2 if tier is None else limit[tier] + 5, round(count * scale))

    many = tuple(f"127.0.1.{i}" for i in range(1, 1 + max(2, round(40 * min(scale, 1.0)))))
    behind = max(2, round(10 * min(scale, 1.0)))
    return [
        Scenario("credential_stuffing", "one client bursts failed logins", "POST", "/auth/login",
                 ("127.0.0.2",), n(300, "auth"), 16),
        Scenario("single_client_flood", "one client floods the API", "GET", "/api/items",
                 ("127.0.0.3",), n(1000, "general"), 16),
        Scenario("many_clients_normal", f"{len(many)} clients at 5 requests/s each", "GET", "/api/items",
                 many, n(10), 1, rate_per_source=5.0, identities=len(many)),
        Scenario("spoofed_forwarded_for", "an untrusted client forges X-Forwarded-For on every request",
                 "POST", "/auth/login", ("127.0.0.4",), n(200, "auth"), 16,
                 forwarded_for=lambda s, i: f"198.18.{i // 250}.{i % 250 + 1}, 10.0.0.{i % 250 + 1}"),
        Scenario("trusted_proxy", f"{behind} clients behind a trusted proxy ({PROXY_SOURCE})", "POST", "/auth/login",
                 (PROXY_SOURCE,), n(40, "auth") * behind, 16,
                 forwarded_for=lambda s, i: f"203.0.113.{i % behind + 1}", identities=behind),
    ]


@dataclass
class ScenarioResult:
    name: str
    description: str
    tier: str | None
    limit: int | None
    window_s: int | None
    identities: int
    requests: int
    sent: int
    admitted: int
    denied: int
    errors: int
    allowance: int | None  # what the policy lets through for this run: limit x identities (+ refill)
    exact: bool  # admitted == allowance, nothing could refill
    ok: bool
    elapsed_s: float
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    limiter_calls_per_request: float | None
    redis_commands_per_request: float | None
    # The limiter's own decision latency inside the app (ratelimit_decision_seconds): the upper bound of
    # the histogram bucket holding p50 / p99, so the HTTP figures can be told apart from the limiter's.
    decision_p50_le_ms: float | None
    decision_p99_le_ms: float | None
    fallbacks: float | None
    denied_locally: float | None
    truncated: bool = False
    notes: list[str] = field(default_factory=list)


# --- pieces ----------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def parse_policy(value: str | None) -> tuple[str, int, int] | None:
    """`"auth";q=30;w=60` -> ("auth", 30, 60)."""
    m = _POLICY.match(value or "")
    return (m["tier"], int(m["q"]), int(m["w"])) if m else None


def allowance(limit: int, window_s: int, identities: int, requests_per_identity: int, elapsed_s: float,
              algorithm: str = "gcra") -> tuple[int, bool]:
    """(most the policy may admit in this run, whether that number is exact rather than a bound).

    GCRA frees one unit every window/limit seconds; the sliding log frees nothing until the
    window has passed since the first request; a fixed window may reset once mid-run.
    """
    if algorithm == "gcra":
        refill = math.floor(elapsed_s * limit / window_s)
    else:
        refill = limit * math.ceil(elapsed_s / window_s) if elapsed_s >= window_s or algorithm == "fixed_window" else 0
        if algorithm == "fixed_window" and elapsed_s < window_s:
            refill = limit  # the run may straddle one window boundary
    per_identity = min(requests_per_identity, limit + refill)
    return per_identity * identities, refill == 0 or requests_per_identity <= limit


def metric_sums(text: str) -> dict[tuple[str, str], float]:
    """From a /metrics page: ratelimit_decisions_total by (tier, outcome), and the decision latency
    histogram's cumulative buckets as ("bucket:<tier>", "<le>")."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, str], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "ratelimit_decisions_total":
                out[(s.labels["tier"], s.labels["outcome"])] = s.value
            elif s.name == "ratelimit_decision_seconds_bucket":
                out[(f"bucket:{s.labels['tier']}", s.labels["le"])] = s.value
    return out


def bucket_quantile(before: Mapping[tuple[str, str], float], after: Mapping[tuple[str, str], float], tier: str,
                    q: float) -> float | None:
    """The upper bound (seconds) of the histogram bucket holding quantile q of the decisions made
    between two scrapes; None without decisions (or above the last finite bucket)."""
    key = f"bucket:{tier}"
    bounds = sorted((float(le), after[(k, le)] - before.get((k, le), 0.0)) for k, le in after if k == key)
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return None
    for le, count in bounds:
        if count >= q * total:
            return le if math.isfinite(le) else None
    return None


def limiter_calls(commandstats: Mapping[str, Any]) -> tuple[int, int]:
    """(limiter calls, all commands but INFO) from INFO commandstats (redis-py's parsed dict)."""
    limiter = decision_calls(commandstats)
    total = sum(int(v.get("calls", 0)) for k, v in commandstats.items() if k.removeprefix("cmdstat_") != "info")
    return limiter, total


def check_loopback_sources(sources: list[str]) -> None:
    """Every client address must be bindable (Linux routes all of 127/8 to lo; macOS needs aliases)."""
    for src in sorted(set(sources)):
        with socket.socket() as s:
            try:
                s.bind((src, 0))
            except OSError as exc:
                raise LoadTestError(
                    f"cannot use loopback address {src} as a client ({exc}); the load test needs all of "
                    "127.0.0.0/8 on the loopback interface (Linux has it; on macOS add aliases: "
                    f"sudo ifconfig lo0 alias {src})") from None


# --- the target ------------------------------------------------------------------------------

def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def example_app(redis_port: int, tiers_env: Mapping[str, str], *, startup_s: float = 60.0,
                extra_args: Sequence[str] = ()) -> Iterator[str]:
    """`python -m examples.app` on an OS-assigned loopback port (the socket is bound and listening
    before the child starts, so there is no race for the port); yields its base URL."""
    root = project_root()
    if not (root / "examples" / "app" / "__main__.py").is_file():
        raise LoadTestError(f"the example app is not under {root}/examples/app (an installed package has no "
                            "examples/): run from a checkout, or start your app and pass --url")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "REDIS_TIMEOUT": "1000",
           "TRUSTED_PROXIES": TRUSTED_PROXIES, **tiers_env}
    for key in ("REDIS_PASSWORD", "REDIS_USERNAME", "REDIS_TLS", "REDIS_CA_CERT"):
        env.pop(key, None)
    proc = subprocess.Popen([sys.executable, "-m", "examples.app", "--fd", str(sock.fileno()), *extra_args], cwd=root,
                            env=env, pass_fds=(sock.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sock.close()  # the child holds its own copy
    url = f"http://127.0.0.1:{port}"
    try:
        _await_health(url, proc, startup_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        if proc.stderr is not None:
            proc.stderr.close()


def _await_health(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    # The socket already listens: the first request waits in its backlog until the app accepts it.
    try:
        r = httpx.get(f"{url}/health", timeout=timeout)
        if r.status_code == 200:
            return
        problem = f"GET /health answered {r.status_code}"
    except httpx.HTTPError as exc:
        problem = f"GET /health failed: {exc}"
    err = b""
    if proc.poll() is not None and proc.stderr is not None:
        err = proc.stderr.read()[-2000:]
    raise LoadTestError(f"the example app did not start ({problem}): {err.decode(errors='replace')}")


# --- driving one scenario --------------------------------------------------------------------

@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    policy: tuple[str, int, int] | None = None
    errors: int = 0


async def _drive(base_url: str, sc: Scenario, deadline: float) -> tuple[_Tally, float, bool]:
    import httpx

    tally = _Tally()
    truncated = False
    body = json.dumps({"username": "victim@example.com", "password": "guess"})

    async def source_worker(si: int, src: str) -> None:
        nonlocal truncated
        transport = httpx.AsyncHTTPTransport(local_address=src, limits=httpx.Limits(
            max_connections=sc.concurrency, max_keepalive_connections=sc.concurrency))
        async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30.0) as client:
            next_index = 0
            start = time.monotonic()

            async def one_stream() -> None:
                nonlocal next_index, truncated
                while next_index < sc.requests_per_source:
                    i = next_index
                    next_index += 1
                    if time.monotonic() > deadline:
                        truncated = True
                        return
                    if sc.rate_per_source:
                        # Pacing of the generator (a normal client's request rate), not a wait for an event.
                        await asyncio.sleep(max(0.0, start + i / sc.rate_per_source - time.monotonic()))
                    headers = {"content-type": "application/json"}
                    if sc.forwarded_for is not None:
                        headers["x-forwarded-for"] = sc.forwarded_for(si, i)
                    t0 = time.perf_counter()
                    try:
                        r = await client.request(sc.method, sc.path, headers=headers,
                                                 content=body if sc.method == "POST" else None)
                    except httpx.HTTPError:
                        tally.errors += 1
                        continue
                    tally.latencies.append(time.perf_counter() - t0)
                    tally.statuses[r.status_code] = tally.statuses.get(r.status_code, 0) + 1
                    if tally.policy is None:
                        tally.policy = parse_policy(r.headers.get("ratelimit-policy"))

            await asyncio.gather(*(one_stream() for _ in range(sc.concurrency)))

    t0 = time.monotonic()
    await asyncio.gather(*(source_worker(si, src) for si, src in enumerate(sc.sources)))
    return tally, time.monotonic() - t0, truncated


def run_on_private_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a loop of its own, never installed as the thread's current loop: asyncio.run
    leaves the main thread with no current loop, which breaks later get_event_loop() callers in the
    same process (Pulumi's mocks, when the load test runs inside a test session)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _algorithm(tier: str | None) -> str:
    return next((t.algorithm for t in DEFAULT_TIERS if t.name == tier), "gcra")


def run_scenario(base_url: str, sc: Scenario, *, deadline: float, redis_client: Any | None) -> ScenarioResult:
    import httpx

    def snapshot() -> tuple[dict[tuple[str, str], float] | None, tuple[int, int] | None]:
        try:
            m = metric_sums(httpx.get(f"{base_url}/metrics", timeout=10).text)
        except (httpx.HTTPError, ValueError):
            m = None
        c = limiter_calls(redis_client.info("commandstats")) if redis_client is not None else None
        return m, c

    m0, c0 = snapshot()
    tally, elapsed, truncated = run_on_private_loop(_drive(base_url, sc, deadline))
    m1, c1 = snapshot()
    sent = sum(tally.statuses.values())
    denied = tally.statuses.get(429, 0)
    server_errors = sum(v for k, v in tally.statuses.items() if k >= 500) + tally.errors
    admitted = sent - denied - sum(v for k, v in tally.statuses.items() if k >= 500)
    tier, limit, window = tally.policy if tally.policy else (None, None, None)
    notes: list[str] = []
    allowed_n: int | None = None
    exact = False
    if limit is not None and window is not None:
        per_identity = math.ceil(sent / sc.identities) if sc.identities else sent
        allowed_n, exact = allowance(limit, window, sc.identities, per_identity, elapsed, _algorithm(tier))
    fallbacks = locally = None
    d50 = d99 = None
    if m0 is not None and m1 is not None and tier is not None:
        q50, q99 = bucket_quantile(m0, m1, tier, 0.5), bucket_quantile(m0, m1, tier, 0.99)
        d50 = round(q50 * 1000, 3) if q50 is not None else None
        d99 = round(q99 * 1000, 3) if q99 is not None else None
        fallbacks = m1.get((tier, "fallback"), 0.0) - m0.get((tier, "fallback"), 0.0)
        locally = m1.get((tier, "denied_locally"), 0.0) - m0.get((tier, "denied_locally"), 0.0)
    calls_per = cmds_per = None
    if c0 is not None and c1 is not None and sent:
        calls_per = round((c1[0] - c0[0]) / sent, 3)
        cmds_per = round((c1[1] - c0[1]) / sent, 3)
    if truncated:
        notes.append("stopped at the time limit")
    if server_errors:
        notes.append(f"{server_errors} errors or 5xx answers")
    if allowed_n is None:
        ok = False
        notes.append("no RateLimit-Policy header in the answers: is the target behind the middleware?")
    elif exact:
        ok = admitted == allowed_n
    else:
        floor_n = min(limit or 0, math.ceil(sent / max(1, sc.identities))) * sc.identities
        ok = floor_n <= admitted <= allowed_n
        notes.append("allowance refills during the run: a bound, not an exact count")
    ok = ok and not server_errors and not fallbacks
    return ScenarioResult(
        name=sc.name, description=sc.description, tier=tier, limit=limit, window_s=window,
        identities=sc.identities, requests=sc.requests, sent=sent, admitted=admitted, denied=denied,
        errors=server_errors, allowance=allowed_n, exact=exact, ok=ok, elapsed_s=round(elapsed, 3),
        requests_per_s=round(sent / elapsed, 1) if elapsed > 0 else 0.0,
        latency_p50_ms=round(percentile(tally.latencies, 50) * 1000, 2),
        latency_p99_ms=round(percentile(tally.latencies, 99) * 1000, 2),
        limiter_calls_per_request=calls_per, redis_commands_per_request=cmds_per,
        decision_p50_le_ms=d50, decision_p99_le_ms=d99,
        fallbacks=fallbacks, denied_locally=locally, truncated=truncated, notes=notes)


def warm_up(base_url: str, plan: list[Scenario]) -> None:
    """One request per route, one at a time, from an address no scenario uses: the limiter loads its
    scripts (or library) here, so the scenarios' calls per request count decisions, not the warm-up."""
    import httpx

    transport = httpx.HTTPTransport(local_address=WARM_UP_SOURCE)
    with httpx.Client(transport=transport, base_url=base_url, timeout=30.0) as client:
        for method, path in sorted({(sc.method, sc.path) for sc in plan}):
            r = client.request(method, path, content=b"{}" if method == "POST" else None)
            if r.status_code >= 500:
                raise LoadTestError(f"warm-up {method} {path} answered {r.status_code}: {r.text[:300]}")


# --- the whole run ---------------------------------------------------------------------------

def tiers_env(window_s: int) -> dict[str, str]:
    """RATE_LIMIT_<TIER> for the started app: the guide's limits, windows stretched to `window_s`
    (0 keeps the guide's)."""
    if isinstance(window_s, bool) or not isinstance(window_s, int) or window_s < 0:
        raise LoadTestError(f"window_s {window_s!r}: expected 0 (the guide's windows) or a positive number of seconds")
    return {t.env_name: f"{t.limit},{window_s or t.window_s}" for t in DEFAULT_TIERS}


def run_loadtest(*, url: str | None = None, redis_url: str | None = None, scale: float = 1.0,
                 window_s: int = DEFAULT_WINDOW_S, max_seconds: float = 120.0, max_requests: int = 20_000,
                 only: list[str] | None = None) -> dict[str, Any]:
    """Run the scenarios; return the report (see module docstring)."""
    import redis

    from ratelimit.server import LocalRedis

    plan = scenarios(scale)
    if only:
        unknown = sorted(set(only) - {s.name for s in plan})
        if unknown:
            raise LoadTestError(f"unknown scenario {unknown[0]!r}; allowed: {', '.join(s.name for s in plan)}")
        plan = [s for s in plan if s.name in only]
    total = sum(s.requests for s in plan)
    if total > max_requests:
        raise LoadTestError(f"the scenarios send {total} requests, above max_requests={max_requests}: "
                            "lower --scale or raise --max-requests")
    if not 0 < max_seconds <= 3600:
        raise LoadTestError(f"max_seconds {max_seconds!r}: expected 0 < seconds <= 3600")
    env = tiers_env(window_s)
    if url is not None:
        host = urlsplit(url).hostname or ""
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise LoadTestError(f"--url {url!r}: the load test runs on loopback only (clients are 127.x addresses)")
    check_loopback_sources([s for sc in plan for s in sc.sources])
    load_1m = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    started = time.monotonic()
    deadline = started + max_seconds
    with contextlib.ExitStack() as stack:
        if url is None:
            srv = stack.enter_context(LocalRedis())
            redis_url = f"redis://127.0.0.1:{srv.port}/0"
            base = stack.enter_context(example_app(srv.port, env))
        else:
            base = url.rstrip("/")
        rc = redis.Redis.from_url(redis_url, socket_timeout=10) if redis_url else None
        if rc is not None:
            stack.callback(rc.close)
            version = str(rc.info("server")["redis_version"])
        warm_up(base, plan)
        results = [run_scenario(base, sc, deadline=deadline, redis_client=rc) for sc in plan]
    report: dict[str, Any] = {
        "schema": 1,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine(),
                        "system": platform.system(), "load_average_1m": load_1m,
                        "redis_version": version if rc is not None else None,
                        "target": "example app (uvicorn, 1 worker) + throwaway redis-server" if url is None else url},
        "parameters": {"scale": scale, "window_s": window_s, "max_seconds": max_seconds,
                       "max_requests": max_requests, "trusted_proxies": TRUSTED_PROXIES},
        "scenarios": [asdict(r) for r in results],
        "passed": all(r.ok for r in results),
        "duration_s": round(time.monotonic() - started, 1),
    }
    return report


# --- output ----------------------------------------------------------------------------------

COLUMNS = ("scenario", "tier", "limit", "clients", "sent", "admitted", "allowance", "exact", "HTTP p50 / p99 ms",
           "decision p50 / p99 ms (<=)", "redis calls/req", "fallbacks", "denied locally", "ok")


def table_rows(report: Mapping[str, Any]) -> list[list[str]]:
    def fmt(v: Any) -> str:
        return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    rows = []
    for r in report["scenarios"]:
        limit = f"{r['limit']}/{r['window_s']}s" if r["limit"] is not None else "-"
        rows.append([r["name"], fmt(r["tier"]), limit, str(r["identities"]), str(r["sent"]), str(r["admitted"]),
                     fmt(r["allowance"]), "yes" if r["exact"] else "bound",
                     f"{fmt(r['latency_p50_ms'])} / {fmt(r['latency_p99_ms'])}",
                     f"{fmt(r['decision_p50_le_ms'])} / {fmt(r['decision_p99_le_ms'])}",
                     fmt(r["limiter_calls_per_request"]), fmt(r["fallbacks"]),
                     fmt(r["denied_locally"]), "ok" if r["ok"] else "FAIL"])
    return rows


def markdown_table(report: Mapping[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines) + "\n"


def write_chart(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["scenarios"]
    names = [r["name"].replace("_", "\n") for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = range(len(rows))
    ax1.bar([x - 0.27 for x in xs], [r["sent"] for r in rows], 0.27, label="sent")
    ax1.bar(list(xs), [r["allowance"] or 0 for r in rows], 0.27, label="allowance (limit x clients)")
    ax1.bar([x + 0.27 for x in xs], [r["admitted"] for r in rows], 0.27, label="admitted")
    ax1.set_yscale("log")
    ax1.set_xticks(list(xs), names, fontsize=7)
    ax1.set_title("requests admitted against the tier's allowance")
    ax1.legend(fontsize=7)
    ax2.bar([x - 0.2 for x in xs], [r["latency_p50_ms"] for r in rows], 0.4, label="p50")
    ax2.bar([x + 0.2 for x in xs], [r["latency_p99_ms"] for r in rows], 0.4, label="p99")
    ax2.set_xticks(list(xs), names, fontsize=7)
    ax2.set_title("HTTP latency (ms), client side")
    ax2.legend(fontsize=7)
    env = report["environment"]
    fig.suptitle(f"redisops loadtest: {env['cpus']} CPUs {env['machine']}, redis {env['redis_version']}, "
                 f"{report['duration_s']} s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
