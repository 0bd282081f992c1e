"""The Redis Functions library `ratelimit`: the contract shared with any application (FCALL).

One library, loaded once by an admin credential (FUNCTION LOAD), called by the application with
FCALL only: the application credential never sends Lua (`-@scripting +fcall +fcall_ro`).

    FCALL ratelimit_gcra 1 <key> <limit> <window_ms> <cost> <mode "0"|"1"> [<burst>]
    FCALL ratelimit_sliding_log 1 <key> <limit> <window_ms> <cost> <mode>
    FCALL ratelimit_fixed_window 1 <key> <limit> <window_ms> <cost> <mode>
    -> [allowed 0|1, remaining, retry_after_us, reset_after_us]
    FCALL_RO ratelimit_<algorithm>_ro ... "1"   the same peek, flagged no-writes (FCALL_RO, replicas)
    FCALL_RO ratelimit_version 0                -> LIBRARY_RELEASE

The algorithm bodies are the ones in ratelimit/lua/*.lua, used as they are by the EVALSHA opt-in
(ratelimit/scripts.py): each becomes the body of a local function whose parameters are named
KEYS and ARGV, so the same text reads its keys and arguments in both modes (the library drops the
comment-only lines, `code`). REGISTRATIONS is the table of what the library registers; a new
function is one more row (`ratelimit_multi`, hit_many, calls the algorithm callbacks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from ratelimit.multi import MULTI_FUNCTION, multi_driver
from ratelimit.scripts import script
from ratelimit.tiers import ALGORITHMS

LIBRARY_NAME = "ratelimit"
# The library's release. Bump it with every change of the library text (a unit test pins the text's
# digest to it): `ratelimit_version` returns it, and a client or `redisops smoke` that finds an
# older one on a server reports it by this number.
LIBRARY_RELEASE = "1.2.7"
FIX_COMMAND = "redisops functions load"
# The commands a decision is sent as: FCALL (FCALL_RO for a peek), the EVALSHA opt-in, and EVAL/
# EVAL_RO as other limiters send them. INFO commandstats also counts the commands a script runs
# inside, which are not round trips: count these to count limiter calls.
DECISION_COMMANDS = ("fcall", "fcall_ro", "evalsha", "evalsha_ro", "eval", "eval_ro")


def decision_calls(commandstats: Mapping[str, Any]) -> int:
    """Limiter calls in INFO commandstats (redis-py's parsed dict, keys `cmdstat_<command>`)."""
    return sum(int(v.get("calls", 0)) for k, v in commandstats.items()
               if k.removeprefix("cmdstat_") in DECISION_COMMANDS)

# Flags every shipped engine accepts on a registered function: redis src/script.c scripts_flags_def
# (7.0 through 8.x) and valkey's Lua engine (VMSE_SCRIPT_FLAG_*) list exactly these five strings.
_FLAGS = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"})
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # redis: "Function names can only contain letters, numbers, or underscores"


@dataclass(frozen=True)
class Registration:
    """One `redis.register_function` of the library.

    `body` is Lua run as `function(KEYS, ARGV) <body> end`; registrations with the same body share
    one local function in the library text. `calls` names earlier registrations the body calls as
    Lua functions: (alias, function name) makes `alias` a local bound to that function's callback,
    so a body reuses another's code instead of a second copy."""

    name: str
    body: str
    flags: tuple[str, ...] = ()
    description: str = ""
    calls: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"function name {self.name!r}: letters, digits and '_' only")
        unknown = set(self.flags) - _FLAGS
        if unknown:
            raise ValueError(f"function {self.name}: unknown flags {sorted(unknown)}; allowed {sorted(_FLAGS)}")


def function_name(algorithm: str, *, peek: bool = False) -> str:
    """The function FCALL (or, for a peek, FCALL_RO) calls for `algorithm`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    return f"ratelimit_{algorithm}_ro" if peek else f"ratelimit_{algorithm}"


def _algorithm_registrations() -> list[Registration]:
    rows = []
    for algorithm in ALGORITHMS:
        body = script(algorithm).source
        rows.append(Registration(function_name(algorithm), body,
                                 description=f"{algorithm}: decide (mode 0) or peek (mode 1)"))
        # Peek never writes (the Lua bodies only write in mode "0"), so the peek entry point is flagged
        # no-writes: FCALL_RO may call it, it runs on replicas, under OOM and without min-replicas,
        # and Redis itself refuses any write it would attempt (a mode "0" call errors out).
        rows.append(Registration(function_name(algorithm, peek=True), body, ("no-writes",),
                                 description=f"{algorithm}: peek only (mode 1), read-only"))
    return rows


REGISTRATIONS: list[Registration] = [
    *_algorithm_registrations(),
    # hit_many: several limits all or nothing (ratelimit/lua/multi.lua, calling the three algorithm
    # callbacks above). Writes, so not no-writes; its keys share one slot.
    Registration(MULTI_FUNCTION, multi_driver(),
                 description="hit_many: mode then one 'letter limit window_ms cost [burst]' per key",
                 calls=tuple((a, function_name(a)) for a in ALGORITHMS)),
    Registration("ratelimit_version", f"return '{LIBRARY_RELEASE}'", ("no-writes",),
                 description="the library release (LIBRARY_RELEASE)"),
]


def register(row: Registration) -> None:
    """Add a function to the library (e.g. a batch entry point); names are unique."""
    if any(r.name == row.name for r in REGISTRATIONS):
        raise ValueError(f"function {row.name} is already registered")
    REGISTRATIONS.append(row)
    function_library.cache_clear()


def code(body: str) -> str:
    """A body as the library carries it: without its comment-only lines. The documented text is
    ratelimit/lua/*.lua; the library travels in the Sentinel hosts' user data (EC2: 16 KB), where
    the comments would cost half its size."""
    return "\n".join(line for line in body.rstrip("\n").split("\n") if not line.lstrip().startswith("--"))


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@cache
def function_library() -> str:
    """The library source: what FUNCTION LOAD receives (`#!lua name=ratelimit` first)."""
    lines = [f"#!lua name={LIBRARY_NAME}",
             f"-- ratelimit {LIBRARY_RELEASE}: generated by ratelimit/functions.py from ratelimit/lua/*.lua",
             ""]
    local_for: dict[str, str] = {}
    callback: dict[str, str] = {}
    for row in REGISTRATIONS:
        if row.body not in local_for:
            local = f"f{len(local_for)}_{row.name}"
            local_for[row.body] = local
            aliases = [f"local {alias} = {callback[name]}" for alias, name in row.calls]
            lines += [f"local function {local}(KEYS, ARGV)", *aliases, code(row.body), "end", ""]
        callback[row.name] = local_for[row.body]
    for row in REGISTRATIONS:
        flags = ", ".join(_lua_string(f) for f in row.flags)
        lines.append(f"redis.register_function{{function_name={_lua_string(row.name)}, "
                     f"callback={local_for[row.body]}, flags={{{flags}}}}}")
    return "\n".join(lines) + "\n"


def library_version() -> str:
    return LIBRARY_RELEASE


def _release(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return ()


LibraryState = Literal["current", "missing", "older", "newer"]


def library_state(version: str | None) -> LibraryState:
    """How the server's library (its `ratelimit_version`, None when absent) compares to this package."""
    if version is None:
        return "missing"
    if version == LIBRARY_RELEASE:
        return "current"
    server, ours = _release(version), _release(LIBRARY_RELEASE)
    return "newer" if server and server > ours else "older"


def describe_state(state: LibraryState, version: str | None) -> str:
    if state == "current":
        return f"library {LIBRARY_NAME} {version} loaded (matches this package)"
    if state == "missing":
        return (f"the Redis Functions library {LIBRARY_NAME} is not loaded on this server; "
                f"run `{FIX_COMMAND}` with the admin credential")
    if state == "older":
        return (f"library {LIBRARY_NAME} {version} on the server is older than this package's "
                f"{LIBRARY_RELEASE}; run `{FIX_COMMAND}` with the admin credential")
    return (f"library {LIBRARY_NAME} {version} on the server is newer than this package's {LIBRARY_RELEASE}: "
            "a newer deploy loaded it; upgrade this client (the functions it calls are still registered)")


def is_missing_function(exc: BaseException) -> bool:
    """FCALL of a function the server does not have (Redis: "ERR Function not found")."""
    return "function not found" in str(exc).lower()


def load_library(client: Any) -> str:
    """FUNCTION LOAD REPLACE the library with `client` (an admin credential); returns its name.

    On a cluster client redis-py sends FUNCTION LOAD to every primary."""
    name = client.function_load(function_library(), replace=True)
    if isinstance(name, dict):  # a cluster client: one reply per primary
        name = next(iter(name.values()), LIBRARY_NAME)
    return name.decode() if isinstance(name, bytes) else str(name)


def read_version(client: Any) -> str | None:
    """The server's `ratelimit_version` (FCALL_RO, which the app credential may run), None when absent."""
    import redis

    try:
        reply = client.fcall_ro("ratelimit_version", 0)
    except redis.ResponseError as exc:
        if is_missing_function(exc):
            return None
        raise
    return reply.decode() if isinstance(reply, bytes) else str(reply)
