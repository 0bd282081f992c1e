"""HTTP headers for a decision, per the IETF httpapi draft "RateLimit header fields for HTTP"
(draft-ietf-httpapi-ratelimit-headers-08 and later: the RateLimit-Policy and RateLimit
structured fields), plus Retry-After on denial.
"""

from __future__ import annotations

import math

from ratelimit.limiter import Decision
from ratelimit.tiers import Tier


def _ceil_s(seconds: float) -> int:
    # Rounded up: a client that waits the advertised time must not be refused again.
    # The epsilon absorbs float noise from the microsecond conversion (2.0000000001 -> 2).
    return max(0, math.ceil(seconds - 1e-9))


def headers(decision: Decision, tier: Tier) -> dict[str, str]:
    """`RateLimit-Policy`, `RateLimit` and, when denied, `Retry-After` (integer seconds)."""
    name = tier.name
    out = {
        "RateLimit-Policy": f'"{name}";q={tier.limit};w={tier.window_s}',
        "RateLimit": f'"{name}";r={max(0, decision.remaining)};t={_ceil_s(decision.reset_after)}',
    }
    if not decision.allowed:
        out["Retry-After"] = str(max(1, _ceil_s(decision.retry_after)))
    return out
