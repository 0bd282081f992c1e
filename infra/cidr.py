"""The one rule for CIDR ranges allowed to reach Redis or Sentinel."""

from __future__ import annotations

import ipaddress


def cidr_problem(cidr: str) -> str | None:
    """Why `cidr` may not reach Redis, or None when it may.

    Only private ranges of /8 (IPv6: /48) or narrower: two /1s are the whole internet as surely
    as one /0, and a public range is someone else's network.
    """
    try:
        net = ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        return f'"{cidr}" is not a CIDR; expected e.g. "10.0.0.0/16"'
    widest = 8 if net.version == 4 else 48
    if net.prefixlen == 0 or not net.is_private or net.prefixlen < widest:
        return (f'"{cidr}" opens Redis to the whole internet or a public range; expected a private range '
                f"of /{widest} or narrower (prefer appSecurityGroupIds)")
    return None
