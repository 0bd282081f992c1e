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
