"""Drop-in ASGI middleware (Starlette, FastAPI, any ASGI app): the guide's tiers on routes.

    from ratelimit.middleware import RateLimitMiddleware

    app.add_middleware(
        RateLimitMiddleware,
        limiter=AsyncRateLimiter(async_decision_client(...), metrics=LimiterMetrics()),
        routes={"/auth/*": "auth", "/admin/*": "admin", "/health": None},  # default: general
        trusted_proxies=["10.0.0.0/8"],                                     # your load balancers
    )

* **Routes -> tiers** (`RouteTable`), matched on the path without the ASGI ``root_path`` (the
  mount prefix, e.g. uvicorn ``--root-path``), as Starlette's router does (`route_path`):
  ``/x/*`` matches ``/x`` and everything under it, other patterns match exactly; the most specific pattern wins (exact before prefix, longer prefix
  before shorter), so the table reads the same in any order. A route mapped to ``None`` is not
  limited (health checks, /metrics). Unmatched paths get `default_tier` (``general``).
* **Client identity** (`ClientIdentity`): the peer address. ``X-Forwarded-For`` is read only
  when the peer is one of `trusted_proxies`, and then from the right: the first hop that is not
  a trusted proxy is the client. Everything left of it was written by the client and is ignored,
  so a spoofed header buys no extra allowance. IPv4-mapped IPv6 (``::ffff:10.1.2.3``) is IPv4;
  IPv6 clients share one allowance per ``ipv6_prefix`` network (default /64, RFC 6177). This is
  the only place the header is judged: run the server with its own proxy-header rewriting off
  (uvicorn ``proxy_headers=False``). A unix-socket peer (no address) is ``unknown`` unless
  ``trust_unix_socket_peer=True`` says only the proxy can reach the socket.
* **Answers**: a denied request gets ``429`` with ``Retry-After`` and the IETF ``RateLimit`` /
  ``RateLimit-Policy`` fields (ratelimit.headers); an admitted one carries the same RateLimit
  fields on the application's response.
* **Limiter errors**: any error `hit_tier` raises (an unexpected Redis reply included) becomes the
  tier's failure-policy decision (`fail_open`), logged and counted as a fallback; never a 500.
* **Metrics**: the limiter's own (ratelimit.metrics); every tier's series are created at 0.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from ratelimit.headers import headers
from ratelimit.limiter import AsyncRateLimiter
from ratelimit.tiers import DEFAULT_TIERS, Tier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_TIER = "general"
# The identity of a request without a peer address (some test clients, unix sockets): all such
# requests share one allowance rather than escaping the limit.
UNKNOWN_CLIENT = "unknown"
_XFF = b"x-forwarded-for"
# IPv6 clients are keyed by their /64: RFC 6177 and RFC 7421 make /64 the smallest network a site
# is given, so one host may pick any of 2^64 addresses; per address it would get 2^64 allowances.
DEFAULT_IPV6_PREFIX = 64


@dataclass(frozen=True)
class _Route:
    pattern: str
    prefix: bool  # "/x/*"
    base: str  # "/x" for "/x/*", the pattern itself otherwise
    tier: Tier | None


class RouteTable:
    """Path -> Tier (or None: not limited), from a declarative table of patterns."""

    def __init__(self, routes: Mapping[str, str | None] | Iterable[tuple[str, str | None]],
                 tiers: Iterable[Tier] = DEFAULT_TIERS, default_tier: str | None = DEFAULT_TIER) -> None:
        by_name = {t.name: t for t in tiers}
        allowed = ", ".join(sorted(by_name))
        items = list(routes.items()) if isinstance(routes, Mapping) else list(routes)
        parsed: list[_Route] = []
        seen: set[str] = set()
        for pattern, tier_name in items:
            key = f"routes[{pattern!r}]"
            if not isinstance(pattern, str) or not pattern.startswith("/"):
                raise ValueError(f"{key}: pattern must be a path starting with '/', e.g. '/auth/*'")
            prefix = pattern.endswith("/*")
            base = pattern[:-2] if prefix else pattern
            if "*" in base:
                raise ValueError(f"{key}: '*' is allowed only as a trailing '/*' (prefix match), got {pattern!r}")
            if pattern in seen:
                raise ValueError(f"{key}: listed twice")
            seen.add(pattern)
            if tier_name is not None and tier_name not in by_name:
                raise ValueError(f"{key}: unknown tier {tier_name!r}; allowed: {allowed} (or None: not limited)")
            parsed.append(_Route(pattern, prefix, base, by_name[tier_name] if tier_name is not None else None))
        if default_tier is not None and default_tier not in by_name:
            raise ValueError(f"default_tier: unknown tier {default_tier!r}; allowed: {allowed} (or None)")
        self.default = by_name[default_tier] if default_tier is not None else None
        self._exact = {r.base: r.tier for r in parsed if not r.prefix}
        # Longest prefix first: the most specific one wins whatever the table's order.
        self._prefixes = sorted((r for r in parsed if r.prefix), key=lambda r: len(r.base), reverse=True)
        self.tiers: tuple[Tier, ...] = tuple(by_name.values())

    def tier_for(self, path: str) -> Tier | None:
        if path in self._exact:
            return self._exact[path]
        for r in self._prefixes:
            if path == r.base or path.startswith(r.base + "/") or (r.base == "" and path.startswith("/")):
                return r.tier
        return self.default


def _parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it in X-Forwarded-For: `1.2.3.4`, `1.2.3.4:567`, `2001:db8::1`,
    `[2001:db8::1]:567`; None when it is none of those (e.g. `unknown`, a hostname)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # A dual-stack listener reports IPv4 peers as IPv4-mapped IPv6 (::ffff:10.1.2.3, RFC 4291
    # 2.5.5.2): the same host as 10.1.2.3, both for trusted_proxies and for the allowance.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ClientIdentity:
    """The client address of a request, honouring X-Forwarded-For only through trusted proxies."""

    def __init__(self, trusted_proxies: Sequence[str] = (), *, ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
                 trust_unix_socket_peer: bool = False) -> None:
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int) or not 1 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix: {ipv6_prefix!r} is not a prefix length; allowed: an integer 1..128 "
                             f"(default {DEFAULT_IPV6_PREFIX}: one allowance per /64 site; 128: per address)")
        if not isinstance(trust_unix_socket_peer, bool):
            raise ValueError(f"trust_unix_socket_peer: expected True or False, got {trust_unix_socket_peer!r}")
        self.ipv6_prefix = ipv6_prefix
        self.trust_unix_socket_peer = trust_unix_socket_peer
        nets: list[IPNetwork] = []
        for i, cidr in enumerate(trusted_proxies):
            try:
                nets.append(ipaddress.ip_network(cidr, strict=True))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"trusted_proxies[{i}]: {cidr!r} is not an address or CIDR network of a proxy "
                                 f"(e.g. '10.0.0.0/8', '2001:db8::1'): {exc}") from None
            if nets[-1].prefixlen == 0:
                # 0.0.0.0/0 would let every client write its own identity.
                raise ValueError(f"trusted_proxies[{i}]: {cidr!r} trusts every address; list your proxies only")
        self.trusted = tuple(nets)

    def is_trusted(self, ip: IPAddress) -> bool:
        return any(ip in n for n in self.trusted)

    def key(self, ip: IPAddress) -> str:
        """The allowance an address spends: IPv4 per address, IPv6 per `ipv6_prefix` network."""
        if isinstance(ip, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((ip, self.ipv6_prefix), strict=False))
        return str(ip)

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        if not client:
            # A unix socket (or a test client) has no peer address. Only a deployment that says
            # its socket is reachable by its proxy alone lets the proxy's header speak.
            if not (self.trusted and self.trust_unix_socket_peer):
                return UNKNOWN_CLIENT
            found = self._forwarded(scope, None)
            return UNKNOWN_CLIENT if found is None else self.key(found)
        peer = _parse_ip(client[0])
        if peer is None:
            return str(client[0])
        if not self.trusted or not self.is_trusted(peer):
            return self.key(peer)
        found = self._forwarded(scope, peer)
        return self.key(peer if found is None else found)

    def _forwarded(self, scope: Scope, peer: IPAddress | None) -> IPAddress | None:
        """Walk X-Forwarded-For from the right, behind a trusted peer: the first untrusted hop."""
        # Several X-Forwarded-For fields are one list, in order (RFC 9110 5.3).
        hops = [h for name, value in scope.get("headers", ()) if name.lower() == _XFF
                for h in value.decode("latin-1").split(",") if h.strip()]
        identity = peer
        for hop in reversed(hops):
            ip = _parse_ip(hop)
            if ip is None:
                # A hop that is no address ends what can be believed: the last trusted proxy that
                # handed it on is the identity (never a string the client may have chosen).
                break
            identity = ip
            if not self.is_trusted(ip):
                break
        return identity


def route_path(scope: Scope) -> str:
    """The path routes are matched on: `scope["path"]` without the application's `root_path`.

    ASGI servers put the mount prefix in both (uvicorn --root-path: h11_impl.py builds
    ``"path": full_path`` with ``full_path = self.root_path + raw_path``; a mounted Starlette
    sub-app gets the same), and Starlette's router strips it again (starlette/_utils.py
    get_route_path). Matching here does the same, so `/auth/*` is the auth tier behind any prefix
    and a prefix never makes a limited route fall to the default tier."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root):]
    if not rest:
        return "/"
    # Only a whole segment is the prefix: root "/api" does not strip "/apix".
    return rest if rest.startswith("/") else path


def _encode(hdrs: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in hdrs.items()]


class RateLimitMiddleware:
    """ASGI middleware deciding every HTTP request against its route's tier."""

    def __init__(self, app: ASGIApp, *, limiter: AsyncRateLimiter,
                 routes: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = (),
                 tiers: Iterable[Tier] = DEFAULT_TIERS, default_tier: str | None = DEFAULT_TIER,
                 trusted_proxies: Sequence[str] = (), ipv6_prefix: int = DEFAULT_IPV6_PREFIX,
                 trust_unix_socket_peer: bool = False) -> None:
        if not isinstance(limiter, AsyncRateLimiter):
            raise TypeError(f"limiter: expected a ratelimit.AsyncRateLimiter (ASGI is asyncio), got {type(limiter).__name__}")
        self.app = app
        self.limiter = limiter
        self.routes = RouteTable(routes, tiers, default_tier)
        self.identity = ClientIdentity(trusted_proxies, ipv6_prefix=ipv6_prefix,
                                       trust_unix_socket_peer=trust_unix_socket_peer)
        if limiter.metrics is not None:
            limiter.metrics.declare_tiers(self.routes.tiers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tier = self.routes.tier_for(route_path(scope))
        if tier is None:
            await self.app(scope, receive, send)
            return
        client = self.identity(scope)
        try:
            decision = await self.limiter.hit_tier(tier, client)
        except Exception as exc:  # a limiter error is the tier's policy, never a 500
            decision = self.limiter.tier_policy_decision(tier, client, exc)
        extra = _encode(headers(decision, tier))
        if not decision.allowed:
            body = json.dumps({"error": "rate limited", "tier": tier.name,
                               "retry_after": int(dict(extra)[b"retry-after"])}).encode()
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
