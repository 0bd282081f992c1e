"""Redis rate limiter: atomic Lua scripts (the contract shared with any app) and a Python client."""

from ratelimit.headers import headers
from ratelimit.limiter import (
    DEFAULT_TIMEOUT,
    AsyncRateLimiter,
    Decision,
    RateLimiter,
    RateLimitError,
    async_decision_client,
    decision_client,
    decision_client_kwargs,
    make_key,
    tier_key,
)
from ratelimit.scripts import LuaScript, all_scripts, script
from ratelimit.tiers import ALGORITHMS, DEFAULT_TIERS, Algorithm, Tier, parse_limit_spec

__all__ = [
    "ALGORITHMS",
    "DEFAULT_TIERS",
    "DEFAULT_TIMEOUT",
    "Algorithm",
    "AsyncRateLimiter",
    "Decision",
    "LuaScript",
    "RateLimitError",
    "RateLimiter",
    "Tier",
    "all_scripts",
    "async_decision_client",
    "decision_client",
    "decision_client_kwargs",
    "headers",
    "make_key",
    "parse_limit_spec",
    "script",
    "tier_key",
]
