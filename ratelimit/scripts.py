"""The Lua scripts: the contract shared with any application that calls them directly.

Each script decides one request atomically in a single EVALSHA:

    EVALSHA <sha> 1 <key> <limit> <window_ms> <cost> <mode "0"|"1"> [<burst> (gcra only)]
    -> [allowed 0|1, remaining, retry_after_us, reset_after_us]

See docs/rate-limiter.md for the semantics and how to call them from another language.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from ratelimit.tiers import ALGORITHMS

# One letter per algorithm ends the key so that switching a tier's algorithm never makes a
# script meet a key of the wrong Redis type (WRONGTYPE), and so that `reset` can clear all.
KEY_SUFFIX: dict[str, str] = {"gcra": "g", "sliding_log": "s", "fixed_window": "f"}


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    # EVALSHA needs the SHA1 of the exact source; computing it locally (once) saves a SCRIPT
    # LOAD round trip on the happy path.
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest())


@cache
def script(algorithm: str) -> LuaScript:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    source = resources.files("ratelimit").joinpath("lua", f"{algorithm}.lua").read_text(encoding="utf-8")
    return LuaScript(algorithm, source)


def all_scripts() -> dict[str, LuaScript]:
    return {a: script(a) for a in ALGORITHMS}
