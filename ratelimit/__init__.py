"""Redis rate limiter: the `ratelimit` Redis Functions library (the FCALL contract shared with any app)
and a Python client."""

from ratelimit.functions import LIBRARY_NAME, LIBRARY_RELEASE, REGISTRATIONS, Registration, function_library
from ratelimit.headers import headers
from ratelimit.limiter import (
    DEFAULT_TIMEOUT,
    MODES,
    AsyncRateLimiter,
    Decision,
    LibraryUnavailable,
    RateLimiter,
    RateLimitError,
    async_decision_client,
    decision_client,
    decision_client_kwargs,
    make_key,
    tier_key,
)
from ratelimit.multi import MultiDecision
from ratelimit.scripts import LuaScript, all_scripts, script
from ratelimit.tiers import ALGORITHMS, DEFAULT_TIERS, Algorithm, Tier, parse_limit_spec

__all__ = [
    "ALGORITHMS",
    "DEFAULT_TIERS",
    "DEFAULT_TIMEOUT",
    "LIBRARY_NAME",
    "LIBRARY_RELEASE",
    "MODES",
    "REGISTRATIONS",
    "Algorithm",
    "AsyncRateLimiter",
    "Decision",
    "LibraryUnavailable",
    "LuaScript",
    "MultiDecision",
    "RateLimitError",
    "RateLimiter",
    "Registration",
    "Tier",
    "all_scripts",
    "async_decision_client",
    "decision_client",
    "decision_client_kwargs",
    "function_library",
    "headers",
    "make_key",
    "parse_limit_spec",
    "script",
    "tier_key",
]
