"""Rate-limit tiers: the one table of the guide's RATE_LIMIT_* defaults.

Stack settings, the env contract handed to the application, the smoke test and the
benchmark all read tiers from here (overridden per stack in `rateLimits`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Algorithm = Literal["gcra", "sliding_log", "fixed_window"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)

_SPEC = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*$")
SPEC_HELP = 'expected "<limit>,<window_seconds>" with positive integers, e.g. "120,60"'
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# The bounds the Lua scripts enforce (ratelimit/lua/*.lua); checked in Python too so a bad
# tier is refused when it is configured, not on every request once Redis is reachable.
MAX_LIMIT = 1_000_000_000
MAX_SLIDING_LOG_LIMIT = 10_000  # one sorted-set member per unit: O(limit) per call beyond this
MAX_WINDOW_MS = 31_622_400_000  # 366 days
MAX_GCRA_TOLERANCE_US = 2**50  # burst * emission interval stays exact in Lua doubles


def bounds_problem(algorithm: str, limit: int, window_ms: int, cost: int = 1, burst: int | None = None) -> str | None:
    """Why the scripts would refuse these numbers, or None."""
    cap = MAX_SLIDING_LOG_LIMIT if algorithm == "sliding_log" else MAX_LIMIT
    if limit > cap:
        return f"limit {limit} exceeds {cap} for {algorithm}" + (
            " (use gcra for large limits)" if algorithm == "sliding_log" else "")
    if window_ms > MAX_WINDOW_MS:
        return f"window of {window_ms} ms exceeds {MAX_WINDOW_MS} ms (366 days)"
    if burst is not None and algorithm != "gcra":
        return f"burst applies to gcra only, not {algorithm}"
    allowance = burst if (algorithm == "gcra" and burst is not None) else limit
    if cost > allowance:
        return f"cost {cost} exceeds {'burst' if algorithm == 'gcra' else 'limit'} {allowance} and could never be allowed"
    if algorithm == "gcra" and allowance * -(-window_ms * 1000 // limit) > MAX_GCRA_TOLERANCE_US:
        return "burst * window / limit too large"
    return None


@dataclass(frozen=True)
class Tier:
    """One named limit: at most `limit` requests per `window_s` seconds per client."""

    name: str
    limit: int
    window_s: int
    algorithm: Algorithm = "gcra"
    # When Redis cannot answer in time: True admits the request, False denies it.
    fail_open: bool = False
    # GCRA only: how many requests may arrive back to back; None means `limit`.
    burst: int | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"tier name {self.name!r}: expected lowercase letters, digits, '_' (max 32)")
        if not (isinstance(self.limit, int) and self.limit > 0):
            raise ValueError(f"tier {self.name}: limit {self.limit!r} must be a positive integer")
        if not (isinstance(self.window_s, int) and self.window_s > 0):
            raise ValueError(f"tier {self.name}: window {self.window_s!r} must be a positive integer of seconds")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"tier {self.name}: algorithm {self.algorithm!r} not one of {', '.join(ALGORITHMS)}")
        if self.burst is not None and not (isinstance(self.burst, int) and self.burst > 0):
            raise ValueError(f"tier {self.name}: burst {self.burst!r} must be a positive integer")
        problem = bounds_problem(self.algorithm, self.limit, self.window_s * 1000, 1, self.burst)
        if problem:
            raise ValueError(f"tier {self.name}: {problem}")

    @property
    def env_name(self) -> str:
        return f"RATE_LIMIT_{self.name.upper()}"

    @property
    def spec(self) -> str:
        """The guide's `limit,window` form, as in RATE_LIMIT_GENERAL=120,60."""
        return f"{self.limit},{self.window_s}"


def parse_limit_spec(text: str) -> tuple[int, int]:
    """Parse the guide's "limit,window_seconds" form. Raises ValueError(SPEC_HELP)."""
    m = _SPEC.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(SPEC_HELP)
    limit, window = int(m.group(1)), int(m.group(2))
    if limit <= 0 or window <= 0:
        raise ValueError(SPEC_HELP)
    return limit, window


# The guide's defaults. Security-sensitive tiers fail closed and the small ones use the exact
# sliding log; the rest use GCRA (constant memory, exact retry-after) and fail open.
DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("general", 120, 60, "gcra", fail_open=True),
    Tier("auth", 30, 60, "gcra", fail_open=False),
    Tier("sensitive", 10, 60, "sliding_log", fail_open=False),
    Tier("admin", 300, 60, "gcra", fail_open=True),
    Tier("mfa", 5, 60, "sliding_log", fail_open=False),
    Tier("financial", 20, 60, "gcra", fail_open=False),
)
