"""The Decision of one limit: its own module so that multi.py and denycache.py build and read it
without importing the limiter (an import inside a function runs on every call of the hot path)."""

from __future__ import annotations

from typing import NamedTuple


class Decision(NamedTuple):
    """One rate-limit decision (immutable). A NamedTuple rather than a frozen dataclass: it is
    built once per request on the hot path and costs a quarter of the time to create."""

    allowed: bool
    # Units that may still be spent right now (after this request, for a hit).
    remaining: int
    # Seconds until a request of the same cost would be allowed; 0 when allowed.
    retry_after: float
    # Seconds until the key is empty (the client is back to a full allowance).
    reset_after: float
    limit: int
    # True when Redis could not answer and the failure policy decided.
    fallback: bool = False
    # True when the local deny cache answered without asking Redis: always a denial
    # (allowed=False), repeating an earlier Redis denial whose retry_after has not passed yet.
    cached: bool = False
