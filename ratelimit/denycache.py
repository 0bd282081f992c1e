"""The flood shield: a bounded local cache of Redis denials (sync and async clients share it).

A denial from Redis says: a request of this cost against this key, limit and window cannot be
admitted for `retry_after` seconds. That stays true until the moment passes, because nothing but
a `reset` ever gives units back (docs/rate-limiter.md "Deny cache" has the per-algorithm proof).
So until then a request of the same key and shape with the same or a larger cost is denied here,
without a round trip; a smaller cost, another limit, window or burst goes to Redis.

The cache only ever denies, so it never admits what Redis would deny. It denies nothing Redis
would admit either, with one staleness: a `reset` made by another process is seen here only when
the cached `retry_after` has passed (a `reset` in this process clears the entry at once).

Deadlines are taken on the monotonic clock from the moment the request was *sent* (the script
ran after that, so its own deadline is later) and shortened by `DRIFT_MARGIN`, so a local clock
ticking up to 0.1 % slower than the Redis server's still never outlasts Redis' own denial.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the limiter imports this module; the types only flow one way at runtime
    from ratelimit.limiter import Decision, _Call

DEFAULT_SIZE = 10_000
# Fraction of each retry_after given back to Redis: covers a relative clock-rate error between
# this host and the Redis server of up to 1000 ppm (NTP keeps it within 500 ppm).
DRIFT_MARGIN = 1e-3

# (limit, window_ms, burst-or-empty): the shape of a request; the key already names the algorithm.
Shape = tuple[str, ...]


class _Entry:
    __slots__ = ("cost", "deadline", "decision", "sent")

    def __init__(self, cost: int, deadline: float, decision: Decision, sent: float) -> None:
        self.cost = cost
        self.deadline = deadline
        self.decision = decision
        self.sent = sent


def shape_of(call: _Call) -> Shape:
    """limit, window_ms and (gcra) burst of a call: args are (limit, window_ms, cost, mode[, burst])."""
    return call.args[:2] + call.args[4:]


class DenyCache:
    """LRU of denials: at most `size` keys, each with one entry per shape. Thread-safe."""

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"deny_cache_size must be a positive integer, got {size!r}")
        self.size = size
        self.now = clock
        self._keys: OrderedDict[str, dict[Shape, _Entry]] = OrderedDict()
        self._lock = threading.Lock()
        # When this process last reset a key: a denial sent before it may predate the reset.
        self._forgot_at = float("-inf")
        # Plain counter an app can export: decisions answered here instead of by Redis.
        self.denials = 0

    def __len__(self) -> int:
        return len(self._keys)

    def check(self, key: str, shape: Shape, cost: int) -> Decision | None:
        """A local denial for this request, or None: ask Redis."""
        shapes = self._keys.get(key)
        if shapes is None:
            return None
        with self._lock:
            entry = shapes.get(shape)
            if entry is None or cost < entry.cost:
                return None
            now = self.now()
            if now >= entry.deadline:
                shapes.pop(shape, None)
                if not shapes:
                    self._keys.pop(key, None)
                return None
            if key in self._keys:
                self._keys.move_to_end(key)
            self.denials += 1
        d = entry.decision
        return d._replace(retry_after=entry.deadline - now,
                          reset_after=max(entry.deadline - now, d.reset_after - (now - entry.sent)), cached=True)

    def record(self, key: str, shape: Shape, cost: int, decision: Decision, sent: float) -> None:
        """Remember what Redis answered to a request sent at `sent` (this cache's clock)."""
        if decision.fallback:
            return  # the failure policy decided, not Redis: nothing is known about the key
        if decision.allowed:
            shapes = self._keys.get(key)
            if shapes is not None:
                with self._lock:
                    entry = shapes.get(shape)
                    # An admission of this cost proves any entry of this cost or less stale (a reset
                    # made elsewhere): forget it rather than wait out its deadline.
                    if entry is not None and entry.cost <= cost:
                        shapes.pop(shape, None)
            return
        if decision.retry_after <= 0 or sent <= self._forgot_at:
            return
        entry = _Entry(cost, sent + decision.retry_after * (1 - DRIFT_MARGIN), decision, sent)
        with self._lock:
            shapes = self._keys.get(key)
            if shapes is None:
                shapes = self._keys[key] = {}
                if len(self._keys) > self.size:
                    self._keys.popitem(last=False)
            else:
                self._keys.move_to_end(key)
            shapes[shape] = entry

    def forget(self, keys: list[str]) -> None:
        """Drop every entry of these keys (a `reset` in this process)."""
        with self._lock:
            self._forgot_at = self.now()
            for key in keys:
                self._keys.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
