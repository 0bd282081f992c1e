"""The example API: the guide's tiers on its routes, client metrics on /metrics.

Configuration is the environment contract every stack hands to the application (REDIS_URL,
REDIS_PASSWORD, REDIS_USERNAME, REDIS_TLS, REDIS_CA_CERT, REDIS_TIMEOUT, RATE_LIMIT_<TIER>; see
docs/outputs.md) plus one variable of the application's own:

    TRUSTED_PROXIES   comma-separated addresses/CIDRs of the load balancers whose
                      X-Forwarded-For is believed (default: none; the peer address is the client)
    PROMETHEUS_MULTIPROC_DIR
                      prometheus_client's multiprocess mode, for several worker processes
                      behind one port: each process writes its counters there and /metrics
                      sums them (MultiProcessCollector). Unset: one worker per process, its
                      own counters (what `python -m examples.app` runs). Empty it before start.

Routes (-> tier): POST /auth/login (auth), POST /auth/mfa (mfa), GET /admin/stats (admin),
GET /api/items and everything else (general); /health and /metrics are not limited.
"""

from __future__ import annotations

import contextlib
import hmac
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ratelimit import DEFAULT_TIERS, AsyncRateLimiter, Tier, async_decision_client
from ratelimit.metrics import LimiterMetrics
from ratelimit.middleware import RateLimitMiddleware, RouteTable
from redisops.connection import ConnectionSpec, credentials, spec_from_env, tls_kwargs

# The declarative route table: the one place this application says which tier guards what.
ROUTES: dict[str, str | None] = {
    "/auth/*": "auth",
    "/auth/mfa": "mfa",
    "/admin/*": "admin",
    "/health": None,
    "/metrics": None,
}
# The demo's only valid login; everything else is a failed attempt (what credential stuffing makes).
DEMO_USER, DEMO_PASSWORD = "demo", "correct horse battery staple"


@dataclass(frozen=True)
class AppConfig:
    spec: ConnectionSpec
    trusted_proxies: tuple[str, ...] = ()
    multiproc_dir: str | None = None

    @staticmethod
    def from_env(env: Mapping[str, str]) -> AppConfig:
        proxies = tuple(p.strip() for p in env.get("TRUSTED_PROXIES", "").split(",") if p.strip())
        return AppConfig(spec_from_env(env), proxies, env.get("PROMETHEUS_MULTIPROC_DIR") or None)

    @property
    def tiers(self) -> tuple[Tier, ...]:
        """The guide's tiers, with the environment's RATE_LIMIT_<TIER> values over them."""
        given = {t.name: t for t in self.spec.tiers}
        return tuple(given.pop(t.name, t) for t in DEFAULT_TIERS) + tuple(given.values())


def redis_client(spec: ConnectionSpec) -> redis.asyncio.Redis:
    if spec.mode != "single":
        # Sentinel and cluster need redis.asyncio's Sentinel/RedisCluster; the example keeps to one server.
        raise ValueError(f"REDIS_URL {spec.display_url}: the example app connects to a single server "
                         f"(redis:// or rediss://), not {spec.mode}")
    username, password = credentials(spec, "app")
    host, port = spec.hosts[0]
    return async_decision_client(host, port, timeout=spec.timeout_s, db=spec.db, username=username,
                                 password=password, **tls_kwargs(spec))


async def login(request: Request) -> Response:
    form: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        form = await request.json()
    ok = (hmac.compare_digest(str(form.get("username", "")), DEMO_USER)
          and hmac.compare_digest(str(form.get("password", "")), DEMO_PASSWORD))
    return JSONResponse({"ok": True} if ok else {"error": "invalid credentials"}, status_code=200 if ok else 401)


async def mfa(request: Request) -> Response:
    return JSONResponse({"error": "invalid code"}, status_code=401)


async def admin_stats(request: Request) -> Response:
    return JSONResponse({"tiers": [t.name for t in request.app.state.config.tiers]})


async def items(request: Request) -> Response:
    return JSONResponse({"items": [1, 2, 3]})


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.exposition), media_type=CONTENT_TYPE_LATEST)


def exposition_registry(registry: CollectorRegistry, multiproc_dir: str | None) -> CollectorRegistry:
    """What /metrics (or the separate metrics port) serves: the process's own registry, or in
    multiprocess mode every process's files summed (prometheus_client docs, "Multiprocess Mode":
    a fresh registry with a MultiProcessCollector, not the one the metrics are created on)."""
    if multiproc_dir is None:
        return registry
    if not os.path.isdir(multiproc_dir):
        raise ValueError(f"PROMETHEUS_MULTIPROC_DIR: {multiproc_dir!r} is not a directory; create it (empty) "
                         "before the workers start, or unset it for one worker per process")
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # prometheus_client picks file-backed values from the environment when it is imported.
        raise ValueError("PROMETHEUS_MULTIPROC_DIR is set in the env file only: set it in the process "
                         "environment, before Python starts, so prometheus_client writes its files there")
    from prometheus_client import multiprocess

    out = CollectorRegistry()
    multiprocess.MultiProcessCollector(out, path=multiproc_dir)
    return out


def create_app(config: AppConfig | None = None, *, registry: CollectorRegistry | None = None,
               client: redis.asyncio.Redis | None = None, metrics_route: bool = True) -> Starlette:
    """The ASGI app. `client` (tests) replaces the one built from the config; it is not closed here.
    `metrics_route=False`: no /metrics here (served on a port of its own, `--metrics-port`)."""
    config = config or AppConfig.from_env(os.environ)
    RouteTable(ROUTES, config.tiers)  # a bad table fails here, at start, not on the first request
    registry = registry or CollectorRegistry()
    exposition = exposition_registry(registry, config.multiproc_dir)
    own_client = client is None
    redis_conn = client if client is not None else redis_client(config.spec)
    limiter = AsyncRateLimiter(redis_conn, timeout=config.spec.timeout_s, metrics=LimiterMetrics(registry))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own_client:
                await redis_conn.aclose()

    app = Starlette(routes=[
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/mfa", mfa, methods=["POST"]),
        Route("/admin/stats", admin_stats),
        Route("/api/items", items),
        Route("/health", health),
        *([Route("/metrics", metrics)] if metrics_route else []),
    ], lifespan=lifespan)
    app.state.config = config
    app.state.registry = registry
    app.state.exposition = exposition
    app.state.limiter = limiter
    app.add_middleware(RateLimitMiddleware, limiter=limiter, routes=ROUTES, tiers=config.tiers,
                       trusted_proxies=config.trusted_proxies)
    return app
