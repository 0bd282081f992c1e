"""Redis rate limiter: atomic Lua scripts (the contract shared with any app) and a Python client."""

from ratelimit.tiers import ALGORITHMS, DEFAULT_TIERS, Algorithm, Tier, parse_limit_spec

__all__ = ["ALGORITHMS", "DEFAULT_TIERS", "Algorithm", "Tier", "parse_limit_spec"]
