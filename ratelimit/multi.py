"""Multi-limit decisions in one round trip, all or nothing: `hit_many` and `hit_tiers`.

One script (ratelimit/lua/multi.lua after the three algorithm bodies) peeks every limit and
consumes them all only if all admit. The reply says which limit denied: one Decision per limit,
in order, in a `MultiDecision`.

Redis Cluster: a script's keys must share a slot. A key with its own hash tag keeps it
(`make_key`), so a request's limits on one client identity share a slot when the identity is in
braces (`auth:{alice}`, `general:{alice}`): one atomic call. Limits in different slots are
split by slot (see `split_by_slot` and docs/rate-limiter.md for the exact guarantee).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ratelimit.decision import Decision
from ratelimit.denycache import DenyCache, shape_of
from ratelimit.scripts import LuaScript, script
from ratelimit.tiers import ALGORITHMS

if TYPE_CHECKING:
    from ratelimit.limiter import _Call

# The library function (ratelimit/functions.py registers it) taking multi.lua's keys and arguments.
MULTI_FUNCTION = "ratelimit_multi"
# Appended to the mode ("0s"/"1s"): answer one flat string. Library 1.1.0 refuses it before anything
# runs (its error names the mode), and a 1.1.0 client sends "0"/"1", which still get the list.
MULTI_STRING = "s"
_MODE_REFUSAL = "hit_many wants a mode"


def refuses_string_mode(exc: BaseException) -> bool:
    """multi.lua of library 1.1.0 refusing the "0s"/"1s" mode of a newer client."""
    return _MODE_REFUSAL in str(exc)


@cache
def multi_driver() -> str:
    """ratelimit/lua/multi.lua: expects the locals gcra, sliding_log and fixed_window."""
    return resources.files("ratelimit").joinpath("lua", "multi.lua").read_text(encoding="utf-8")


@cache
def multi_script() -> LuaScript:
    """The EVALSHA opt-in: the three algorithm bodies as local functions, then the driver (the
    library binds the same names to its registered callbacks instead)."""
    parts = [f"local function {a}(KEYS, ARGV)\n{script(a).source.rstrip()}\nend\n" for a in ALGORITHMS]
    return LuaScript("multi", "".join(parts) + multi_driver())


class MultiDecision(tuple["Decision", ...]):
    """One Decision per limit, in the order asked, plus the verdict for the request as a whole.

    Per limit, `allowed` is that limit's own verdict. When the request is denied nothing was
    consumed anywhere: the limits that admitted report what a peek would (`remaining` untouched),
    and the ones that denied carry their `retry_after`. A limit the deny cache did not need to ask
    (another limit was already known to deny) comes back `allowed=False, retry_after=0,
    cached=True`: not consumed, state not looked up.
    """

    allowed: bool

    def __new__(cls, decisions: Iterable[Decision], allowed: bool) -> MultiDecision:
        self = super().__new__(cls, decisions)
        self.allowed = allowed
        return self

    @property
    def denied_by(self) -> int | None:
        """Index of the denying limit with the largest retry_after (None when allowed)."""
        if self.allowed:
            return None
        denying = [i for i, d in enumerate(self) if not d.allowed and d.retry_after > 0]
        if not denying:
            denying = [i for i, d in enumerate(self) if not d.allowed]
        return max(denying, key=lambda i: self[i].retry_after)

    @property
    def retry_after(self) -> float:
        i = self.denied_by
        return 0.0 if i is None else self[i].retry_after

    @property
    def fallback(self) -> bool:
        return any(d.fallback for d in self)

    @property
    def cached(self) -> bool:
        """True when the deny cache answered without asking Redis."""
        return not self.allowed and all(d.cached for d in self)

    def __repr__(self) -> str:
        return f"MultiDecision(allowed={self.allowed}, denied_by={self.denied_by}, decisions={list(self)!r})"


def script_args(calls: Sequence[_Call], mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """KEYS and ARGV of multi.lua for these validated single-limit calls (each carries its spec)."""
    return tuple([c.key for c in calls]), (mode, *[c.spec for c in calls])


def spec_of(call: _Call) -> str:
    return call.spec


def parse_items(items: object) -> list[tuple[Any, ...]]:
    """The (key, limit, window_s[, cost]) tuples of hit_many, or a ValueError naming the bad one."""
    if isinstance(items, str | bytes) or not isinstance(items, list | tuple | Sequence) or not items:
        raise ValueError(f"hit_many: expected a non-empty list of (key, limit, window_s[, cost]), got {items!r}")
    out = []
    for i, item in enumerate(items):
        n = len(item) if isinstance(item, tuple | list) else 0
        if n == 4:
            out.append(item if type(item) is tuple else tuple(item))
        elif n == 3:
            out.append((item[0], item[1], item[2], 1))
        else:
            raise ValueError(f"hit_many: item {i} is {item!r}; expected (key, limit, window_s[, cost])")
    return out


def check_distinct(calls: Sequence[_Call]) -> None:
    keys = [c.key for c in calls]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"hit_many: key {dup!r} appears twice; each limit needs its own key")


def cached_many(cache: DenyCache, calls: Sequence[_Call]) -> MultiDecision | None:
    """A local denial of the whole request when the deny cache knows one limit denies."""
    local = [cache.check(c.key, shape_of(c), c.cost) for c in calls]
    if all(d is None for d in local):
        return None
    return MultiDecision([d if d is not None else Decision(False, 0, 0.0, 0.0, c.limit, cached=True)
                          for d, c in zip(local, calls, strict=True)], False)


def record_many(cache: DenyCache, calls: Sequence[_Call], result: MultiDecision, sent: float) -> None:
    for c, d in zip(calls, result, strict=True):
        cache.record(c.key, shape_of(c), c.cost, d, sent)


def fallback_many(decisions: list[Decision]) -> MultiDecision:
    """Redis could not answer: each limit's own policy decided; the request passes if all admit."""
    return MultiDecision(decisions, all(d.allowed for d in decisions))


class Split:
    """Bookkeeping of a request whose limits span several cluster slots (see docs)."""

    def __init__(self, calls: Sequence[_Call], groups: list[list[int]]) -> None:
        self.calls = calls
        self.groups = groups
        self.decisions: list[Decision | None] = [None] * len(calls)

    def group_calls(self, group: list[int]) -> list[_Call]:
        return [self.calls[i] for i in group]

    def take(self, group: list[int], reply: Sequence[int]) -> bool:
        allowed, ds = parse_reply(reply, self.group_calls(group))
        for i, d in zip(group, ds, strict=True):
            self.decisions[i] = d
        return allowed

    def result(self, allowed: bool) -> MultiDecision:
        return MultiDecision([d if d is not None else Decision(False, 0, 0.0, 0.0, c.limit)
                              for d, c in zip(self.decisions, self.calls, strict=True)], allowed)


def parse_reply(reply: bytes | str | Sequence[int], calls: Sequence[_Call]) -> tuple[bool, list[Decision]]:
    """multi.lua's reply: the flat string "all a1 r1 ra1 rs1 a2 ..." (library 1.2.0 on), or the list
    of 1 + 4n integers an older library (1.1.0) answers during a rolling upgrade."""
    values = list(map(int, reply.split())) if isinstance(reply, bytes | str) else list(reply)
    if len(values) != 1 + 4 * len(calls):
        raise ValueError(f"hit_many: reply of {len(values)} values for {len(calls)} limits")
    new, it = tuple.__new__, iter(values)
    every = next(it) == 1
    # Positional tuple construction: the NamedTuple's keyword __new__ costs twice as much. The
    # same iterator four times: each limit takes its next four values.
    return every, [new(Decision, (a == 1, r if r > 0 else 0, 0.0 if a == 1 else ra / 1e6, rs / 1e6 if rs > 0 else 0.0,
                                  c.limit, False, False)) for c, a, r, ra, rs in zip(calls, it, it, it, it, strict=True)]


def parse_one(reply: bytes | str | Sequence[int]) -> list[int]:
    """The [allowed, remaining, retry_after_us, reset_after_us] of a one-limit multi.lua reply."""
    values = list(map(int, reply.split())) if isinstance(reply, bytes | str) else list(reply)
    if len(values) != 5:
        raise ValueError(f"hit: reply of {len(values)} values for one limit")
    return values[1:]


def split_by_slot(keyslot: Callable[[str], int] | None, calls: Sequence[_Call]) -> list[list[int]]:
    """Indexes of `calls` grouped by cluster slot (`keyslot`: a cluster client's), in first-seen
    order; one group off a cluster (no `keyslot`)."""
    if keyslot is None:
        return [list(range(len(calls)))]
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(calls):
        groups.setdefault(int(keyslot(c.key)), []).append(i)
    return list(groups.values())

