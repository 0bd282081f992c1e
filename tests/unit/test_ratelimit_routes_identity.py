"""The middleware's pure parts: the route table and the client identity behind proxies."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit import DEFAULT_TIERS
from ratelimit.middleware import UNKNOWN_CLIENT, ClientIdentity, RouteTable, route_path

TABLE = {"/auth/*": "auth", "/auth/mfa": "mfa", "/admin/*": "admin", "/health": None, "/metrics": None}


@pytest.mark.parametrize(("path", "tier"), [
    ("/auth/login", "auth"), ("/auth", "auth"), ("/auth/mfa", "mfa"), ("/auth/mfa/x", "auth"),
    ("/authx", "general"), ("/admin/stats", "admin"), ("/api/items", "general"), ("/", "general"),
    ("/health", None), ("/health/deep", "general"), ("/metrics", None),
])
def test_route_table_most_specific_wins(path: str, tier: str | None) -> None:
    for routes in (TABLE, dict(reversed(list(TABLE.items())))):  # the order of the table does not matter
        got = RouteTable(routes).tier_for(path)
        assert (got.name if got else None) == tier, (path, routes)


def test_route_table_longer_prefix_wins_and_default_none() -> None:
    table = RouteTable([("/api/*", "general"), ("/api/pay/*", "financial")], default_tier=None)
    assert table.tier_for("/api/pay/now").name == "financial"  # type: ignore[union-attr]
    assert table.tier_for("/api/list").name == "general"  # type: ignore[union-attr]
    assert table.tier_for("/other") is None
    everything = RouteTable({"/*": "admin"})
    assert everything.tier_for("/x/y").name == "admin"  # type: ignore[union-attr]


@pytest.mark.parametrize(("path", "root", "routed", "tier"), [
    # uvicorn --root-path /api (or a Mount("/api")) puts the prefix in scope["path"] too.
    ("/api/auth/login", "/api", "/auth/login", "auth"), ("/api/health", "/api", "/health", None),
    ("/api", "/api", "/", "general"), ("/api/admin/x", "/api/", "/api/admin/x", "general"),
    # Only a whole segment is the prefix; a server that leaves it out of "path" is left alone.
    ("/apix/auth/login", "/api", "/apix/auth/login", "general"), ("/auth/login", "/api", "/auth/login", "auth"),
    ("/auth/login", "", "/auth/login", "auth"),
])
def test_routes_match_without_root_path(path: str, root: str, routed: str, tier: str | None) -> None:
    assert route_path({"path": path, "root_path": root}) == routed
    got = RouteTable(TABLE).tier_for(routed)
    assert (got.name if got else None) == tier


@pytest.mark.parametrize(("routes", "default", "message"), [
    ({"/auth/*": "login"}, "general", "routes['/auth/*']: unknown tier 'login'; allowed: admin, auth, financial, "
                                      "general, mfa, sensitive (or None: not limited)"),
    ({"auth/*": "auth"}, "general", "routes['auth/*']: pattern must be a path starting with '/'"),
    ({"/a*/b": "auth"}, "general", "'*' is allowed only as a trailing '/*'"),
    ({"/auth*": "auth"}, "general", "'*' is allowed only as a trailing '/*'"),
    ({}, "standard", "default_tier: unknown tier 'standard'"),
    ([("/x", "auth"), ("/x", "admin")], "general", "routes['/x']: listed twice"),
])
def test_route_table_rejects_bad_input(routes: Any, default: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        RouteTable(routes, DEFAULT_TIERS, default)
    assert message in str(err.value)


def scope(peer: str | None, *xff: str) -> dict[str, Any]:
    return {"client": (peer, 5555) if peer else None,
            "headers": [(b"x-forwarded-for", v.encode()) for v in xff] + [(b"host", b"x")]}


PROXIES = ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(("peer", "xff", "client"), [
    # No trusted proxy configured: the header is never read.
    ("198.51.100.7", ("1.2.3.4",), "198.51.100.7"),
    # An untrusted peer's header is ignored: spoofing buys nothing.
    ("198.51.100.7", ("10.0.0.1, 1.2.3.4",), "198.51.100.7"),
    # Through one proxy: the rightmost hop is the client.
    ("10.0.0.5", ("203.0.113.9",), "203.0.113.9"),
    # The client prepends lies; the proxy appends the truth: rightmost untrusted wins.
    ("10.0.0.5", ("1.1.1.1, 8.8.8.8, 203.0.113.9",), "203.0.113.9"),
    # A chain of trusted proxies is walked through.
    ("10.0.0.5", ("203.0.113.9, 10.1.1.1, 10.2.2.2",), "203.0.113.9"),
    # Several header fields are one list, in order.
    ("10.0.0.5", ("1.1.1.1", "203.0.113.9, 10.1.1.1"), "203.0.113.9"),
    # Only proxies in the chain: the leftmost (the farthest proxy) is all that is known.
    ("10.0.0.5", ("10.9.9.9, 10.1.1.1",), "10.9.9.9"),
    # No header from a trusted proxy: the proxy itself.
    ("10.0.0.5", (), "10.0.0.5"),
    # Garbage ends the chain at the last proxy that handed it on, never the garbage.
    ("10.0.0.5", ("203.0.113.9, not-an-ip",), "10.0.0.5"),
    ("10.0.0.5", ("not-an-ip, 10.1.1.1",), "10.1.1.1"),
    # Ports and IPv6 forms proxies write; addresses are canonical.
    ("10.0.0.5", ("203.0.113.9:4711",), "203.0.113.9"),
    ("2001:db8::1", ("[2001:DB8:0:0::abcd]:443",), "2001:db8::/64"),
    ("10.0.0.5", ("2001:0db9::0001",), "2001:db9::/64"),
    # IPv4-mapped IPv6 is IPv4: a dual-stack listener's peer is a trusted proxy, each hop too.
    ("::ffff:10.0.0.5", ("203.0.113.9",), "203.0.113.9"),
    ("::ffff:10.0.0.5", ("1.1.1.1, ::ffff:203.0.113.9, ::ffff:10.1.1.1",), "203.0.113.9"),
    ("::ffff:198.51.100.7", ("1.2.3.4",), "198.51.100.7"),
    # Forged prefixes through a trusted proxy (uvicorn's own rewriting off): the rightmost
    # untrusted hop wins, whatever the client wrote to its left (a trusted-looking one too).
    ("10.0.0.5", ("10.1.1.1, 203.0.113.66, 203.0.113.9, 10.2.2.2",), "203.0.113.9"),
    ("10.0.0.5", ("2001:db8::1, 203.0.113.9",), "203.0.113.9"),
])
def test_client_identity(peer: str, xff: tuple[str, ...], client: str) -> None:
    trusted = [] if client == "198.51.100.7" and xff == ("1.2.3.4",) else PROXIES
    assert ClientIdentity(trusted)(scope(peer, *xff)) == client


def test_ipv6_keyed_by_prefix_and_mapped_ipv4_is_one_client() -> None:
    ident = ClientIdentity()
    # Two addresses of one /64 are one allowance; the next /64 is another.
    assert ident(scope("2001:db8:1:2::1")) == ident(scope("2001:db8:1:2:ffff::9")) == "2001:db8:1:2::/64"
    assert ident(scope("2001:db8:1:3::1")) == "2001:db8:1:3::/64"
    assert ident(scope("::ffff:203.0.113.9")) == ident(scope("203.0.113.9")) == "203.0.113.9"
    assert ClientIdentity(ipv6_prefix=128)(scope("2001:db8:1:2::1")) == "2001:db8:1:2::1"
    assert ClientIdentity(ipv6_prefix=48)(scope("2001:db8:1:2::1")) == "2001:db8:1::/48"
    for bad in (0, 129, "64", True):
        with pytest.raises(ValueError) as err:
            ClientIdentity(ipv6_prefix=bad)  # type: ignore[arg-type]
        assert f"ipv6_prefix: {bad!r} is not a prefix length; allowed: an integer 1..128" in str(err.value)


def test_unix_socket_peer_is_trusted_only_when_said() -> None:
    # No peer address (a unix socket): "unknown" unless trust_unix_socket_peer says the proxy is the only writer.
    assert ClientIdentity(PROXIES)(scope(None, "1.2.3.4")) == UNKNOWN_CLIENT
    assert ClientIdentity()(scope(None, "1.2.3.4")) == UNKNOWN_CLIENT
    assert ClientIdentity(trust_unix_socket_peer=True)(scope(None, "1.2.3.4")) == UNKNOWN_CLIENT  # no proxies
    trusting = ClientIdentity(PROXIES, trust_unix_socket_peer=True)
    assert trusting(scope(None, "6.6.6.6, 1.2.3.4, 10.1.1.1")) == "1.2.3.4"
    assert trusting(scope(None)) == UNKNOWN_CLIENT
    assert trusting(scope(None, "not-an-ip")) == UNKNOWN_CLIENT
    with pytest.raises(ValueError, match="trust_unix_socket_peer: expected True or False, got 'yes'"):
        ClientIdentity(PROXIES, trust_unix_socket_peer="yes")  # type: ignore[arg-type]


def test_client_identity_bad_config() -> None:
    for bad, why in (("10.0.0.1/8", "has host bits set"), ("proxy.internal", "does not appear to be"),
                     ("0.0.0.0/0", "trusts every address"), ("::/0", "trusts every address")):
        with pytest.raises(ValueError) as err:
            ClientIdentity(["10.0.0.0/8", bad])
        assert f"trusted_proxies[1]: {bad!r}" in str(err.value) and why in str(err.value)
