# ruff: noqa: F811  (pytest fixtures imported from tests.support.ratelimit_fixtures are parameters)
"""The ASGI middleware in the example app, over a real redis-server: exact 429s, header values,
spoofed X-Forwarded-For, trusted proxy chains, metrics. Requests go through httpx's ASGI
transport (in process; the peer address is set per client); `redisops loadtest` and its test
drive the same app over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry

from examples.app.app import AppConfig, create_app
from ratelimit import async_decision_client
from ratelimit.limiter import make_key
from redisops.connection import spec_from_env
from redisops.loadtest import example_app, run_on_private_loop
from tests.support.ratelimit_fixtures import requires_redis, rl_server  # noqa: F401
from tests.support.redisproc import RedisProcess, free_port

pytestmark = [pytest.mark.slow, requires_redis]

AUTH_LIMIT = 3
PROXY = "10.0.0.5"


def run(rl_server: RedisProcess, body: Callable[[Callable[..., httpx.AsyncClient], CollectorRegistry], Awaitable[Any]],
        *, trusted: str = "10.0.0.0/8") -> Any:
    """Run `body(client_for, registry)` against a fresh app on a flushed server."""
    redis.Redis(port=rl_server.port).flushall()
    env = {"REDIS_URL": f"redis://127.0.0.1:{rl_server.port}/0", "REDIS_TIMEOUT": "1000",
           "RATE_LIMIT_AUTH": f"{AUTH_LIMIT},60", "TRUSTED_PROXIES": trusted}
    registry = CollectorRegistry()

    async def main() -> Any:
        client = async_decision_client(port=rl_server.port, timeout=1.0, max_connections=64)
        app = create_app(AppConfig(spec_from_env(env), (trusted,)), registry=registry, client=client)
        clients: list[httpx.AsyncClient] = []

        def client_for(peer: str, root_path: str = "") -> httpx.AsyncClient:
            # httpx sends the request's path as scope["path"] (prefix included, as uvicorn does).
            transport = httpx.ASGITransport(app=app, client=(peer, 40000), root_path=root_path)
            c = httpx.AsyncClient(transport=transport, base_url="http://app")
            clients.append(c)
            return c

        try:
            return await body(client_for, registry)
        finally:
            for c in clients:
                await c.aclose()
            await client.aclose()

    return run_on_private_loop(main())


async def statuses(c: httpx.AsyncClient, n: int, path: str = "/auth/login", xff: Callable[[int], str] | None = None
                   ) -> list[int]:
    async def one(i: int) -> int:
        hdrs = {"X-Forwarded-For": xff(i)} if xff else {}
        return (await c.post(path, json={"username": "u", "password": str(i)}, headers=hdrs)).status_code
    return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_exact_429_after_the_limit_with_header_values(rl_server: RedisProcess) -> None:
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> None:
        c = client_for("198.51.100.7")
        seen = []
        for i in range(AUTH_LIMIT + 2):
            r = await c.post("/auth/login", json={"username": "u", "password": str(i)})
            seen.append(r)
        assert [r.status_code for r in seen] == [401] * AUTH_LIMIT + [429, 429]
        for i, r in enumerate(seen[:AUTH_LIMIT]):
            assert r.headers["RateLimit-Policy"] == f'"auth";q={AUTH_LIMIT};w=60'
            # GCRA 3/60: one unit per 20 s; after the i-th hit the key is full again in 20*(i+1) s.
            assert r.headers["RateLimit"] == f'"auth";r={AUTH_LIMIT - 1 - i};t={20 * (i + 1)}'
            assert "Retry-After" not in r.headers
        denied = seen[AUTH_LIMIT]
        # The next unit frees 20 s after the first hit; rounded up, less the time the test took.
        assert denied.headers["Retry-After"] in {"19", "20"}
        assert denied.headers["RateLimit"].startswith('"auth";r=0;t=')
        assert denied.json() == {"error": "rate limited", "tier": "auth", "retry_after": int(denied.headers["Retry-After"])}
        # Other tiers are separate allowances; unlimited routes carry no limiter headers.
        ok = await c.get("/api/items")
        assert ok.status_code == 200 and ok.headers["RateLimit-Policy"] == '"general";q=120;w=60'
        health = await c.get("/health")
        assert health.status_code == 200 and "RateLimit" not in health.headers
        metrics = (await c.get("/metrics")).text

        def value(outcome: str, tier: str = "auth") -> float:
            return reg.get_sample_value("ratelimit_decisions_total", {"tier": tier, "outcome": outcome}) or 0.0

        assert value("allowed") == 3 and value("allowed", "general") == 1
        # The first denial comes from Redis; a deny cache (Decision.cached) may answer the second.
        assert value("denied") >= 1 and value("denied") + value("denied_locally") == 2
        assert value("fallback") == 0
        assert 'ratelimit_decision_seconds_count{tier="auth"} 5.0' in metrics
        assert 'ratelimit_decisions_total{outcome="allowed",tier="auth"} 3.0' in metrics

    run(rl_server, body)


def test_concurrent_burst_admits_exactly_the_limit(rl_server: RedisProcess) -> None:
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> None:
        got = await statuses(client_for("198.51.100.8"), 60)
        assert got.count(401) == AUTH_LIMIT and got.count(429) == 60 - AUTH_LIMIT

    run(rl_server, body)


def test_auth_tier_applies_under_a_root_path(rl_server: RedisProcess) -> None:
    """uvicorn --root-path /api: scope["path"] is /api/auth/login; the auth tier still applies."""
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> None:
        c = client_for("198.51.100.8", root_path="/api")
        # Concurrent: which ones are denied is not ordered, how many is exact.
        assert sorted(await statuses(c, AUTH_LIMIT + 2, "/api/auth/login")) == [401] * AUTH_LIMIT + [429, 429]
        r = await c.post("/api/auth/login", json={"username": "u", "password": "x"})
        assert r.json()["tier"] == "auth" and r.headers["RateLimit-Policy"] == f'"auth";q={AUTH_LIMIT};w=60'
    run(rl_server, body)


def test_spoofed_forwarded_for_from_an_untrusted_peer_buys_nothing(rl_server: RedisProcess) -> None:
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> list[bytes]:
        got = await statuses(client_for("198.51.100.9"), 40, xff=lambda i: f"203.0.113.{i}, 10.0.0.{i}")
        assert got.count(401) == AUTH_LIMIT, got
        return sorted(redis.Redis(port=rl_server.port).keys("rl:*"))

    keys = run(rl_server, body)
    # One allowance was touched, the peer's; no key names any of the claimed addresses.
    assert len(keys) == 1 and b"auth:198.51.100.9" in keys[0], keys


def test_trusted_proxy_chain_identifies_each_client(rl_server: RedisProcess) -> None:
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> None:
        lb = client_for(PROXY)
        # Two clients behind two proxy hops; each gets its own allowance, exactly.
        a = await statuses(lb, 10, xff=lambda i: "203.0.113.1, 10.1.1.1")
        b = await statuses(lb, 10, xff=lambda i: "203.0.113.2, 10.1.1.1")
        assert a.count(401) == AUTH_LIMIT and b.count(401) == AUTH_LIMIT
        # Client A lying on the left of what the proxies appended is still client A: denied.
        lies = await statuses(lb, 10, xff=lambda i: f"198.18.0.{i}, 203.0.113.1, 10.1.1.1")
        assert lies == [429] * 10
        keys = sorted(redis.Redis(port=rl_server.port).keys("rl:*"))
        assert len(keys) == 2 and b"auth:203.0.113.1" in keys[0] and b"auth:203.0.113.2" in keys[1], keys

    run(rl_server, body)




def test_a_limiter_error_is_the_tier_policy_never_a_500(rl_server: RedisProcess) -> None:
    """A reply the limiter does not expect (WRONGTYPE: the client's key holds a list) is raised by
    hit_tier; the middleware answers with the tier's policy: auth fails closed, general open."""
    async def body(client_for: Callable[..., httpx.AsyncClient], reg: CollectorRegistry) -> None:
        admin = redis.Redis(port=rl_server.port)
        for tier in ("auth", "general"):
            admin.rpush(make_key("rl", f"{tier}:198.51.100.20", "gcra"), "not-a-limiter-key")
        c = client_for("198.51.100.20")
        closed = await c.post("/auth/login", json={"username": "u", "password": "x"})
        assert closed.status_code == 429 and int(closed.headers["Retry-After"]) >= 1, closed.text
        opened = await c.get("/api/items")
        assert opened.status_code == 200 and opened.headers["RateLimit-Policy"] == '"general";q=120;w=60'
        for tier in ("auth", "general"):
            assert reg.get_sample_value("ratelimit_decisions_total", {"tier": tier, "outcome": "fallback"}) == 1
        admin.close()

    run(rl_server, body)


def test_metrics_on_a_port_of_their_own(rl_server: RedisProcess) -> None:
    """`python -m examples.app --metrics-port N`: the API has no /metrics, port N serves them."""
    metrics_port = free_port()
    with example_app(rl_server.port, {}, extra_args=("--metrics-port", str(metrics_port))) as url:
        assert httpx.post(f"{url}/auth/login", json={}).status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 404
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    assert 'ratelimit_decisions_total{outcome="allowed",tier="auth"} 1.0' in text, text[:2000]
