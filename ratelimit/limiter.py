"""Python clients for the rate limiter: `RateLimiter` (sync) and `AsyncRateLimiter`.

The decision path is one FCALL of the `ratelimit` Redis Functions library (FCALL_RO for a peek),
loaded by an admin credential (ratelimit/functions.py). `mode="scripts"` is the explicit opt-in
for servers that allow the application to run scripts: one EVALSHA, as before the library.
What it must never do is hang or double count:

* it is bounded by the redis client's socket timeouts (build the client with
  `decision_client_kwargs()`); the async client additionally wraps the call in
  `asyncio.timeout(timeout)`;
* it never retries a call that may have reached Redis (a timeout can hide a function that
  ran); only "Function not found" (or NOSCRIPT), which proves nothing ran, is retried once after
  FUNCTION LOAD (SCRIPT LOAD) - when the credential may load; when it may not (NOPERM: the
  application user in every deployed stack), the tier's failure policy decides and the log
  names the fix, `redisops functions load`;
* when Redis cannot answer, the request gets the tier's failure policy (fail open or
  closed) and a Decision with `fallback=True`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from collections.abc import Awaitable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.backoff import NoBackoff
from redis.exceptions import NoPermissionError, NoScriptError, ResponseError
from redis.retry import Retry

from ratelimit import functions
from ratelimit.autopipeline import AutoPipeline, call_packed
from ratelimit.decision import Decision
from ratelimit.denycache import DEFAULT_SIZE as DEFAULT_DENY_CACHE_SIZE
from ratelimit.denycache import DenyCache, shape_of
from ratelimit.multi import (
    MULTI_FUNCTION,
    MULTI_STRING,
    MultiDecision,
    Split,
    cached_many,
    check_distinct,
    fallback_many,
    multi_script,
    parse_items,
    parse_one,
    parse_reply,
    record_many,
    refuses_string_mode,
    script_args,
    spec_of,
    split_by_slot,
)
from ratelimit.scripts import KEY_SUFFIX, LuaScript, script
from ratelimit.tiers import ALGORITHMS, Tier, bounds_problem

if TYPE_CHECKING:
    from ratelimit.metrics import LimiterMetrics

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 0.1
# Retry-After handed out when fail-closed: short, because Redis outages are usually brief and
# a whole window would punish clients for our incident.
DEFAULT_FALLBACK_RETRY_AFTER = 1.0
# The metrics' tier label of decisions made with `hit(key, ...)` rather than for a Tier.
CUSTOM_TIER = "custom"

# Server replies that mean "Redis cannot decide right now", not "the caller is wrong".
_UNAVAILABLE_PREFIXES = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY",
                         "NOREPLICAS")
# A primary that lost its replicas (min-replicas-to-write) is often one Sentinel has already
# replaced: its pooled connections must go so a Sentinel-managed client looks the master up again.
_STALE_PRIMARY_PREFIX = "NOREPLICAS"
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,
)


Mode = Literal["functions", "scripts"]
MODES: tuple[Mode, ...] = ("functions", "scripts")


class RateLimitError(ValueError):
    """The request to the limiter itself is invalid (bad limit, window, cost or burst)."""


class LibraryUnavailable(RuntimeError):
    """The `ratelimit` library is missing (or outdated) and this credential may not load it."""


# What makes a decision fall back to the tier's failure policy (besides unavailable replies).
_FALLBACK: tuple[type[BaseException], ...] = (*_UNAVAILABLE, LibraryUnavailable)
# Everything a multi-limit call turns into a failure-policy decision or re-raises (_fallback_many):
# the single-limit path's classes, so hit_many answers whatever hit answers.
_DECIDE_ERRORS: tuple[type[BaseException], ...] = (ResponseError, *_FALLBACK)


def _stale_primary_pool(client: Any, exc: BaseException) -> Any:
    """The client's pool when `exc` says its primary was replaced (NOREPLICAS), else None."""
    if isinstance(exc, ResponseError) and str(exc).startswith(_STALE_PRIMARY_PREFIX):
        return getattr(client, "connection_pool", None)
    return None


def decision_client_kwargs(timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Connection options for a redis client on the decision path.

    Pass them to `redis.Redis(...)`, `Sentinel.master_for(...)` or `RedisCluster(...)`.
    redis-py's defaults (5 s timeouts, several retries) would hold a request for seconds
    and re-run a script that may already have run.
    """
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


def decision_client(host: str = "127.0.0.1", port: int = 6379, *, timeout: float = DEFAULT_TIMEOUT,
                    **kwargs: Any) -> redis.Redis:
    """A sync redis client with `decision_client_kwargs(timeout)` (extra kwargs win)."""
    return redis.Redis(host=host, port=port, **{**decision_client_kwargs(timeout), **kwargs})


def has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster would hash `key` by a tag of its own: a non-empty `{...}`."""
    start = key.find("{")
    return start >= 0 and key.find("}", start + 1) > start + 1


def make_key(prefix: str, key: str, algorithm: str) -> str:
    # The braces make the whole logical key the cluster hash tag: every key a script touches
    # (and the per-algorithm siblings `reset` deletes together) lives in one slot. A key with its
    # own tag keeps it, so one client's limits share a slot (`auth:{alice}`, `general:{alice}`)
    # and `hit_many` decides them in one atomic call on a cluster too.
    if has_hash_tag(key):
        return f"{prefix}:{key}:{KEY_SUFFIX[algorithm]}"
    return f"{prefix}:{{{key}}}:{KEY_SUFFIX[algorithm]}"


def tier_key(tier: Tier, client_id: str) -> str:
    return f"{tier.name}:{client_id}"


def _window_ms(window_s: float) -> int:
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or not math.isfinite(window_s):
        raise RateLimitError(f"window_s must be a positive number of seconds, got {window_s!r}")
    ms = round(window_s * 1000)
    if ms < 1:
        raise RateLimitError(f"window_s must be at least 0.001 s, got {window_s!r}")
    return ms


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RateLimitError(f"{name} must be a positive integer, got {value!r}")
    return value


class _Call(NamedTuple):
    """One validated decision request: what goes into FCALL (or EVALSHA) and how to fall back."""

    script: LuaScript
    # The library function FCALL calls; a peek calls the no-writes one with FCALL_RO.
    function: str
    read_only: bool
    key: str
    args: tuple[str, ...]
    limit: int
    cost: int
    fail_open: bool
    # This limit as ratelimit_multi takes it: "<letter> <limit> <window_ms> <cost>[ <burst>]".
    spec: str


@lru_cache(maxsize=1024, typed=True)
def _static_args(algorithm: str, limit: int, window_s: float, cost: int, burst: int | None,
                 peek: bool) -> tuple[LuaScript, str, tuple[str, ...], str]:
    """Validate once per distinct (algorithm, limit, window, cost, burst): a tier's requests
    repeat the same few shapes, and this is the hot path."""
    if algorithm not in ALGORITHMS:
        raise RateLimitError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    limit = _positive_int("limit", limit)
    cost = _positive_int("cost", cost)
    window_ms = _window_ms(window_s)
    # Checked here as well as in Lua so a Python caller gets the error even with Redis down.
    if burst is not None:
        _positive_int("burst", burst)
    problem = bounds_problem(algorithm, limit, window_ms, cost, burst)
    if problem:
        raise RateLimitError(problem)
    args = [str(limit), str(window_ms), str(cost), "1" if peek else "0"]
    if algorithm == "gcra" and burst is not None:
        args.append(str(burst))
    spec = " ".join((KEY_SUFFIX[algorithm], *args[:3], *args[4:]))
    return script(algorithm), functions.function_name(algorithm, peek=peek), tuple(args), spec


def _prepare(prefix: str, algorithm: str, key: str, limit: int, window_s: float, cost: int,
             burst: int | None, peek: bool, fail_open: bool) -> _Call:
    if not isinstance(key, str) or not key:
        raise RateLimitError("key must be a non-empty string")
    try:
        lua, function, args, spec = _static_args(algorithm, limit, window_s, cost, burst, peek)
    except TypeError:  # unhashable argument: certainly not an int or a number of seconds
        raise RateLimitError(f"invalid limit/window/cost/burst: {limit!r}, {window_s!r}, {cost!r}, {burst!r}") from None
    # Positional tuple construction: the NamedTuple's generated __new__ is one more Python call.
    return tuple.__new__(_Call, (lua, function, peek, make_key(prefix, key, algorithm), args, limit, cost, fail_open,
                                 spec))


def _decision(reply: Sequence[int], limit: int) -> Decision:
    allowed, remaining, retry_us, reset_us = reply  # integer replies: already ints
    return Decision(
        allowed=allowed == 1,
        remaining=max(0, remaining),
        retry_after=retry_us / 1e6 if allowed != 1 else 0.0,
        reset_after=max(0, reset_us) / 1e6,
        limit=limit,
    )


def _fallback(call: _Call, fallback_retry_after: float) -> Decision:
    if call.fail_open:
        # Nothing is known about the client; report what a fresh key would say.
        return Decision(True, max(0, call.limit - call.cost), 0.0, 0.0, call.limit, fallback=True)
    return Decision(False, 0, fallback_retry_after, fallback_retry_after, call.limit, fallback=True)


def _is_unavailable(exc: BaseException) -> bool:
    # NOPERM (this credential may not FCALL/EVALSHA: an ACL mistake) is no answer either: the
    # tier's failure policy decides, like a missing library, and ratelimit_errors_total{kind=
    # "noperm"} (alert RateLimiterErrors) says why, rather than every request failing with a 500.
    if isinstance(exc, (*_UNAVAILABLE, NoPermissionError)):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_UNAVAILABLE_PREFIXES)


def _raise_for_response(exc: ResponseError) -> None:
    msg = str(exc)
    if msg.startswith("ratelimit:") or msg.startswith("ERR ratelimit:"):
        raise RateLimitError(msg.split("ratelimit:", 1)[1].strip()) from exc


def _check_sync_client(client: Any, timeout: float) -> None:
    # A Redis/Sentinel-managed client exposes its connection kwargs; a cluster client has
    # per-node pools and is documented instead of inspected.
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return
    sock = kwargs.get("socket_timeout")
    if sock is None or sock > max(timeout, 0.001) * 10:
        warnings.warn(
            f"rate limiter client has socket_timeout={sock!r}: a stalled Redis holds each request that "
            "long; build it with ratelimit.decision_client_kwargs()", RuntimeWarning, stacklevel=3)
    retry = kwargs.get("retry")
    if retry is not None and retry.get_retries() > 0:
        warnings.warn(
            "rate limiter client retries failed commands: a retried script that timed out may count "
            "twice; build it with ratelimit.decision_client_kwargs()", RuntimeWarning, stacklevel=3)


class _Base:
    def __init__(self, client: Any, algorithm: str = "gcra", prefix: str = "rl", *,
                 timeout: float = DEFAULT_TIMEOUT, fail_open: bool = False,
                 fallback_retry_after: float = DEFAULT_FALLBACK_RETRY_AFTER, mode: Mode = "functions",
                 load_library: bool = True, metrics: LimiterMetrics | None = None, deny_cache: bool = True,
                 deny_cache_size: int = DEFAULT_DENY_CACHE_SIZE) -> None:
        if mode not in MODES:
            raise RateLimitError(f"mode {mode!r}: expected one of {', '.join(MODES)} (scripts is the EVALSHA opt-in)")
        if algorithm not in ALGORITHMS:
            raise RateLimitError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
        if not prefix or any(c in prefix for c in "{}"):
            raise RateLimitError("prefix must be non-empty and contain no '{' or '}' (hash tag)")
        if not timeout > 0:
            raise RateLimitError("timeout must be positive")
        if not isinstance(deny_cache, bool):
            raise RateLimitError(f"deny_cache must be True or False, got {deny_cache!r}")
        try:
            # The flood shield (ratelimit/denycache.py): None when turned off.
            self.deny_cache: DenyCache | None = DenyCache(deny_cache_size) if deny_cache else None
        except ValueError as exc:
            raise RateLimitError(str(exc)) from None
        self.client = client
        # A cluster client's slot function (split_by_slot); looked up once, not per hit_many.
        self.keyslot = getattr(client, "keyslot", None)
        self.algorithm = algorithm
        self.prefix = prefix
        self.timeout = timeout
        self.fail_open = fail_open
        self.fallback_retry_after = fallback_retry_after
        self.mode: Mode = mode
        # False once this credential was refused FUNCTION LOAD (or when the caller says so): a
        # missing library then goes straight to the failure policy instead of asking again.
        self.may_load = load_library
        # Plain counters an app can export as metrics.
        self.fallbacks = 0
        self.script_loads = 0
        # ratelimit_multi's reply mode: "0s"/"1s" (one flat string, library >= 1.2.5) until a server
        # refuses it as library 1.1.0 does (before anything runs); then "0"/"1" and the 1.1.0 list.
        self.multi_suffix = MULTI_STRING
        # Optional prometheus_client metrics (ratelimit.metrics); None costs nothing per call.
        self.metrics = metrics
        self.library_loads = 0
        # Why the last "Function not found" could not be healed (names `redisops functions load`).
        self.library_problem: str | None = None
        # The error behind the last fallback ("ResponseError: NOREPLICAS ..."), for diagnostics:
        # a fallback is not always silence, Redis may have answered with a refusal.
        self.last_fallback_error: str | None = None

    def _call_for(self, key: str, limit: int, window_s: float, cost: int, burst: int | None,
                  algorithm: str | None, fail_open: bool | None, peek: bool) -> _Call:
        return _prepare(self.prefix, algorithm or self.algorithm, key, limit, window_s, cost, burst, peek,
                        self.fail_open if fail_open is None else fail_open)

    def _tier_call(self, tier: Tier, client_id: str, cost: int, peek: bool) -> _Call:
        return _prepare(self.prefix, tier.algorithm, tier_key(tier, client_id), tier.limit, tier.window_s,
                        cost, tier.burst, peek, tier.fail_open)

    def _many_calls(self, items: object, fail_open: bool | None) -> list[_Call]:
        try:
            parsed = parse_items(items)
        except ValueError as exc:
            raise RateLimitError(str(exc)) from None
        prefix, algorithm = self.prefix, self.algorithm
        policy = self.fail_open if fail_open is None else fail_open
        calls = [_prepare(prefix, algorithm, key, limit, window_s, cost, None, False, policy)
                 for key, limit, window_s, cost in parsed]
        return self._distinct(calls)

    def _tier_calls(self, requests: Sequence[tuple[Any, ...]]) -> list[_Call]:
        calls = []
        for i, req in enumerate(requests):
            if not isinstance(req, tuple) or len(req) not in (2, 3) or not isinstance(req[0], Tier):
                raise RateLimitError(f"hit_tiers: item {i} is {req!r}; expected (tier, client_id[, cost])")
            calls.append(self._tier_call(req[0], req[1], req[2] if len(req) == 3 else 1, False))
        if not calls:
            raise RateLimitError("hit_tiers: expected at least one (tier, client_id[, cost])")
        return self._distinct(calls)

    @staticmethod
    def _distinct(calls: list[_Call]) -> list[_Call]:
        try:
            check_distinct(calls)
        except ValueError as exc:
            raise RateLimitError(str(exc)) from None
        return calls

    # The deny cache around the one server call: a local denial (and the send time), then the reply.
    def _local(self, call: _Call) -> tuple[Decision | None, float]:
        cache = self.deny_cache
        if cache is None:
            return None, 0.0
        return cache.check(call.key, shape_of(call), call.cost), cache.now()

    def _recorded(self, call: _Call, sent: float, decision: Decision) -> Decision:
        if self.deny_cache is not None:
            self.deny_cache.record(call.key, shape_of(call), call.cost, decision, sent)
        return decision

    def _local_many(self, calls: list[_Call]) -> tuple[MultiDecision | None, float]:
        cache = self.deny_cache
        if cache is None:
            return None, 0.0
        return cached_many(cache, calls), cache.now()

    def _recorded_many(self, calls: list[_Call], sent: float, result: MultiDecision) -> MultiDecision:
        if self.deny_cache is not None:
            record_many(self.deny_cache, calls, result, sent)
        return result

    def _fallback_many(self, calls: list[_Call], exc: BaseException) -> MultiDecision:
        """Each limit's failure policy when Redis cannot answer; any other error propagates."""
        if isinstance(exc, ResponseError):
            _raise_for_response(exc)
            if not _is_unavailable(exc):
                raise exc
        return fallback_many([self._on_unavailable(c, exc) for c in calls])

    def _reset_keys(self, key: str) -> list[str]:
        keys = [make_key(self.prefix, key, a) for a in ALGORITHMS]
        if self.deny_cache is not None:
            self.deny_cache.forget(keys)
        return keys

    @property
    def cached_denials(self) -> int:
        """Decisions the deny cache answered without asking Redis (a counter for metrics)."""
        return 0 if self.deny_cache is None else self.deny_cache.denials

    def _library_refused(self, exc: BaseException, version: str | None) -> LibraryUnavailable:
        """The error for a missing function this credential may not load, named by the server's version."""
        self.may_load = False
        if version is None and self.library_problem is not None:
            return LibraryUnavailable(self.library_problem)  # keep the first, version-named diagnosis
        state = functions.library_state(version)
        detail = functions.describe_state("older" if state == "current" else state, version)
        self.library_problem = f"{detail} ({type(exc).__name__}: {exc})"
        return LibraryUnavailable(self.library_problem)

    def _on_unavailable(self, call: _Call, exc: BaseException) -> Decision:
        self.fallbacks += 1
        self.last_fallback_error = f"{type(exc).__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.error(exc)  # counted when it is a missing library or NOPERM
        log.warning("rate limiter: Redis unavailable (%s: %s); %s %s", type(exc).__name__, exc,
                    "failing open for" if call.fail_open else "failing closed for", call.key)
        return _fallback(call, self.fallback_retry_after)

    def tier_policy_decision(self, tier: Tier, client_id: str, exc: BaseException, cost: int = 1) -> Decision:
        """The tier's failure-policy decision after `hit_tier` raised `exc` (for a caller that must
        answer every request, such as the ASGI middleware: never an HTTP 500 for a limiter error).
        Counted as a fallback (the error itself was counted by `hit_tier`) and logged with its trace."""
        call = self._tier_call(tier, client_id, cost, False)
        self.fallbacks += 1
        decision = _fallback(call, self.fallback_retry_after)
        if self.metrics is not None:
            self.metrics.decisions.labels(tier.name, "fallback").inc()
        log.error("rate limiter: unexpected error deciding %s (%s: %s); %s", call.key, type(exc).__name__, exc,
                  "failing open" if call.fail_open else "failing closed", exc_info=exc)
        return decision


class RateLimiter(_Base):
    """Sync limiter over a `redis.Redis`, a Sentinel `master_for` client or a `RedisCluster`."""

    def __init__(self, client: Any, algorithm: str = "gcra", prefix: str = "rl", *,
                 timeout: float = DEFAULT_TIMEOUT, fail_open: bool = False,
                 fallback_retry_after: float = DEFAULT_FALLBACK_RETRY_AFTER, mode: Mode = "functions",
                 load_library: bool = True, metrics: LimiterMetrics | None = None, deny_cache: bool = True,
                 deny_cache_size: int = DEFAULT_DENY_CACHE_SIZE) -> None:
        super().__init__(client, algorithm, prefix, timeout=timeout, fail_open=fail_open,
                         fallback_retry_after=fallback_retry_after, mode=mode, load_library=load_library,
                         metrics=metrics, deny_cache=deny_cache, deny_cache_size=deny_cache_size)
        _check_sync_client(client, timeout)

    def hit(self, key: str, limit: int, window_s: float, cost: int = 1, *, burst: int | None = None,
            algorithm: str | None = None, fail_open: bool | None = None) -> Decision:
        """Consume `cost` units of `key`'s allowance of `limit` per `window_s` if they fit."""
        call = self._call_for(key, limit, window_s, cost, burst, algorithm, fail_open, False)
        return self._run(call) if self.metrics is None else self._measured(CUSTOM_TIER, call)

    def peek(self, key: str, limit: int, window_s: float, cost: int = 1, *, burst: int | None = None,
             algorithm: str | None = None, fail_open: bool | None = None) -> Decision:
        """What `hit` would decide, without consuming anything."""
        return self._run(self._call_for(key, limit, window_s, cost, burst, algorithm, fail_open, True))

    def hit_tier(self, tier: Tier, client_id: str, cost: int = 1) -> Decision:
        call = self._tier_call(tier, client_id, cost, False)
        return self._run(call) if self.metrics is None else self._measured(tier.name, call)

    def _measured(self, tier: str, call: _Call) -> Decision:
        assert self.metrics is not None
        start = time.perf_counter()
        try:
            decision = self._run(call)
        except Exception as exc:
            self.metrics.error(exc)
            raise
        self.metrics.observe(tier, decision, time.perf_counter() - start)
        return decision

    def peek_tier(self, tier: Tier, client_id: str, cost: int = 1) -> Decision:
        return self._run(self._tier_call(tier, client_id, cost, True))

    def hit_many(self, limits: Sequence[tuple[Any, ...]], *, fail_open: bool | None = None) -> MultiDecision:
        """Decide several limits for one request in one call, all or nothing.

        `limits`: (key, limit, window_s[, cost]) tuples (the limiter's algorithm). Either every
        limit admits and consumes, or none consumes; one Decision per limit, in order, with
        `.allowed`, `.denied_by` (index) and `.retry_after` (the largest) for the request."""
        return self._run_many(self._many_calls(limits, fail_open))

    def hit_tiers(self, requests: Sequence[tuple[Any, ...]]) -> MultiDecision:
        """`hit_many` over (tier, client_id[, cost]): each tier's algorithm, burst and policy."""
        return self._run_many(self._tier_calls(requests))

    def reset(self, key: str) -> bool:
        """Forget `key` under every algorithm. Raises if Redis is unavailable."""
        return bool(self.client.delete(*self._reset_keys(key)))

    def reset_tier(self, tier: Tier, client_id: str) -> bool:
        return self.reset(tier_key(tier, client_id))

    def load_scripts(self) -> None:
        """Preload every script (mode="scripts": at startup or after a failover); optional."""
        for a in ALGORITHMS:
            self.client.script_load(script(a).source)

    def load_library(self) -> str:
        """FUNCTION LOAD REPLACE the library (needs a credential allowed to load: admin, tests, dev)."""
        self.library_loads += 1
        return functions.load_library(self.client)

    def library_version(self) -> str | None:
        """The server's `ratelimit_version` (None when the library is not loaded)."""
        return functions.read_version(self.client)

    def check_library(self) -> str:
        """The server's library version; raises LibraryUnavailable when it is missing or older than this client."""
        version = self.library_version()
        state = functions.library_state(version)
        if state in ("missing", "older"):
            raise LibraryUnavailable(functions.describe_state(state, version))
        return str(version)

    def _run(self, call: _Call) -> Decision:
        local, sent = self._local(call)
        if local is not None:
            return local
        return self._recorded(call, sent, self._ask(call))

    def _ask(self, call: _Call) -> Decision:
        try:
            return _decision(self._invoke(call), call.limit)
        except ResponseError as exc:
            _raise_for_response(exc)
            if _is_unavailable(exc):
                self._drop_stale_connections(exc)
                return self._on_unavailable(call, exc)
            raise
        except _FALLBACK as exc:
            return self._on_unavailable(call, exc)

    def _invoke(self, call: _Call) -> Sequence[int]:
        """The one place a decision asks the server (a local cache or a pipeline wraps this)."""
        if self.mode == "scripts":
            return self._evalsha(call)
        return self._fcall(call)

    def _fcall(self, call: _Call) -> Sequence[int]:
        return self._fcall_command(("FCALL_RO" if call.read_only else "FCALL", call.function, "1"), (call.key,),
                                   call.args)

    def _fcall_command(self, head: tuple[str, ...], keys: tuple[str, ...], tail: tuple[str, ...]) -> Sequence[int]:
        try:
            return call_packed(self.client, head, keys, tail)  # type: ignore[no-any-return]
        except ResponseError as exc:
            if not functions.is_missing_function(exc):
                raise
            if not self.may_load:
                raise self._library_refused(exc, None) from exc
            # "Function not found" is answered before anything runs, so loading and retrying once
            # cannot count twice (a server nobody loaded the library on, or an older library).
            try:
                self.load_library()
            except NoPermissionError as denied:
                raise self._library_refused(denied, functions.read_version(self.client)) from exc
        return call_packed(self.client, head, keys, tail)  # type: ignore[no-any-return]

    def _evalsha(self, call: _Call) -> Sequence[int]:
        try:
            return call_packed(self.client, ("EVALSHA", call.script.sha, "1"), (call.key,), call.args)  # type: ignore[no-any-return]
        except NoScriptError:
            # NOSCRIPT is answered before anything runs, so loading and retrying once cannot
            # count twice (empty cache after a restart, failover or SCRIPT FLUSH).
            self.script_loads += 1
            self.client.script_load(call.script.source)
            return call_packed(self.client, ("EVALSHA", call.script.sha, "1"), (call.key,), call.args)  # type: ignore[no-any-return]

    def _run_many(self, calls: list[_Call]) -> MultiDecision:
        local, sent = self._local_many(calls)
        if local is not None:
            return local
        return self._recorded_many(calls, sent, self._ask_many(calls))

    def _ask_many(self, calls: list[_Call]) -> MultiDecision:
        try:
            groups = split_by_slot(self.keyslot, calls)
            if len(groups) == 1:
                allowed, decisions = parse_reply(self._eval_many(calls, "0"), calls)
                return MultiDecision(decisions, allowed)
            # Limits in several cluster slots: peek every slot, then consume slot by slot.
            split = Split(calls, groups)
            if not all([split.take(g, self._eval_many(split.group_calls(g), "1")) for g in groups]):
                return split.result(False)
            for g in groups:
                if not split.take(g, self._eval_many(split.group_calls(g), "0")):
                    return split.result(False)
            return split.result(True)
        except _DECIDE_ERRORS as exc:
            self._drop_stale_connections(exc)
            return self._fallback_many(calls, exc)

    def _drop_stale_connections(self, exc: BaseException) -> None:
        pool = _stale_primary_pool(self.client, exc)
        if pool is not None:
            # Idle connections only (this call's is back in the pool by now): closing one
            # another thread is using would break its call mid-flight.
            pool.disconnect(inuse_connections=False)

    def _eval_many(self, calls: list[_Call], mode: str) -> Sequence[int]:
        if self.mode == "functions":
            keys, argv = script_args(calls, mode + self.multi_suffix)
            try:
                return self._fcall_command(("FCALL", MULTI_FUNCTION, str(len(keys))), keys, argv)
            except ResponseError as exc:
                if not self.multi_suffix or not refuses_string_mode(exc):
                    raise
                self.multi_suffix = ""  # an older library: refused before anything ran, so resend
                return self._eval_many(calls, mode)
        keys, argv = script_args(calls, mode + MULTI_STRING)
        lua = multi_script()
        try:
            return call_packed(self.client, ("EVALSHA", lua.sha, str(len(keys))), keys, argv)  # type: ignore[no-any-return]
        except NoScriptError:
            self.script_loads += 1
            self.client.script_load(lua.source)
            return call_packed(self.client, ("EVALSHA", lua.sha, str(len(keys))), keys, argv)  # type: ignore[no-any-return]


_MULTI_ONE = ("FCALL", MULTI_FUNCTION, "1")


class AsyncRateLimiter(_Base):
    """asyncio limiter over `redis.asyncio` clients; each call is also bounded by `timeout`.

    With `auto_pipeline` (the default) the decisions asked in one event-loop turn are written as
    one pipeline (ratelimit/autopipeline.py); each caller still gets its own Decision."""

    def __init__(self, client: Any, algorithm: str = "gcra", prefix: str = "rl", *,
                 timeout: float = DEFAULT_TIMEOUT, fail_open: bool = False,
                 fallback_retry_after: float = DEFAULT_FALLBACK_RETRY_AFTER, mode: Mode = "functions",
                 load_library: bool = True, metrics: LimiterMetrics | None = None, deny_cache: bool = True,
                 deny_cache_size: int = DEFAULT_DENY_CACHE_SIZE, auto_pipeline: bool = True) -> None:
        super().__init__(client, algorithm, prefix, timeout=timeout, fail_open=fail_open,
                         fallback_retry_after=fallback_retry_after, mode=mode, load_library=load_library,
                         metrics=metrics, deny_cache=deny_cache, deny_cache_size=deny_cache_size)
        if not isinstance(auto_pipeline, bool):
            raise RateLimitError(f"auto_pipeline must be True or False, got {auto_pipeline!r}")
        self.pipeline: AutoPipeline | None = AutoPipeline(client) if auto_pipeline else None

    def _send(self, head: tuple[str, ...], keys: tuple[str, ...], tail: tuple[str, ...],
              deadline: float) -> Awaitable[Any]:
        """The one place a decision is written to the server: this turn's pipeline (ended by
        `deadline`, loop time), or alone."""
        if self.pipeline is not None:
            return self.pipeline.execute(head, keys, tail, deadline)
        return self.client.execute_command(*head, *keys, *tail)  # type: ignore[no-any-return]

    async def hit(self, key: str, limit: int, window_s: float, cost: int = 1, *, burst: int | None = None,
                  algorithm: str | None = None, fail_open: bool | None = None) -> Decision:
        call = self._call_for(key, limit, window_s, cost, burst, algorithm, fail_open, False)
        return await (self._run(call) if self.metrics is None else self._measured(CUSTOM_TIER, call))

    async def peek(self, key: str, limit: int, window_s: float, cost: int = 1, *, burst: int | None = None,
                   algorithm: str | None = None, fail_open: bool | None = None) -> Decision:
        return await self._run(self._call_for(key, limit, window_s, cost, burst, algorithm, fail_open, True))

    async def hit_tier(self, tier: Tier, client_id: str, cost: int = 1) -> Decision:
        call = self._tier_call(tier, client_id, cost, False)
        return await (self._run(call) if self.metrics is None else self._measured(tier.name, call))

    async def _measured(self, tier: str, call: _Call) -> Decision:
        assert self.metrics is not None
        start = time.perf_counter()
        try:
            decision = await self._run(call)
        except Exception as exc:
            self.metrics.error(exc)
            raise
        self.metrics.observe(tier, decision, time.perf_counter() - start)
        return decision

    async def peek_tier(self, tier: Tier, client_id: str, cost: int = 1) -> Decision:
        return await self._run(self._tier_call(tier, client_id, cost, True))

    async def hit_many(self, limits: Sequence[tuple[Any, ...]], *, fail_open: bool | None = None) -> MultiDecision:
        """See `RateLimiter.hit_many`; bounded by `timeout` as a whole."""
        return await self._run_many(self._many_calls(limits, fail_open))

    async def hit_tiers(self, requests: Sequence[tuple[Any, ...]]) -> MultiDecision:
        return await self._run_many(self._tier_calls(requests))

    async def reset(self, key: str) -> bool:
        return bool(await self.client.delete(*self._reset_keys(key)))

    async def reset_tier(self, tier: Tier, client_id: str) -> bool:
        return await self.reset(tier_key(tier, client_id))

    async def load_scripts(self) -> None:
        for a in ALGORITHMS:
            await self.client.script_load(script(a).source)

    async def load_library(self) -> str:
        self.library_loads += 1
        name = await self.client.function_load(functions.function_library(), replace=True)
        return name.decode() if isinstance(name, bytes) else str(name)

    async def library_version(self) -> str | None:
        try:
            reply = await self.client.fcall_ro("ratelimit_version", 0)
        except ResponseError as exc:
            if functions.is_missing_function(exc):
                return None
            raise
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    async def check_library(self) -> str:
        version = await self.library_version()
        state = functions.library_state(version)
        if state in ("missing", "older"):
            raise LibraryUnavailable(functions.describe_state(state, version))
        return str(version)

    async def _run(self, call: _Call) -> Decision:
        local, sent = self._local(call)
        if local is not None:
            return local
        return self._recorded(call, sent, await self._ask(call))

    async def _ask(self, call: _Call) -> Decision:
        try:
            # A hard deadline on top of the socket timeouts: cancellation makes redis-py drop
            # the connection, so a late reply can never be read by the next request. Pipelined,
            # the pipeline carrying the call ends by the earliest deadline of its callers, so the
            # call needs no timer of its own.
            deadline = asyncio.get_running_loop().time() + self.timeout
            if self.pipeline is not None:
                reply = await self._invoke(call, deadline)
            else:
                async with asyncio.timeout_at(deadline):
                    reply = await self._invoke(call, deadline)
            return _decision(reply, call.limit)
        except ResponseError as exc:
            _raise_for_response(exc)
            if _is_unavailable(exc):
                await self._drop_stale_connections(exc)
                return self._on_unavailable(call, exc)
            raise
        except _FALLBACK as exc:
            return self._on_unavailable(call, exc)
        except AttributeError as exc:
            # redis-py's asyncio RedisCluster (8.1): tasks sharing a client before its first
            # initialize() has finished can be handed a connection another task's initialize()
            # just closed, and its setup fails with a bare AttributeError ('NoneType' object has
            # no attribute 'writelines', redis/asyncio/connection.py) before anything is sent.
            # That means "no answer", not "bad request": the tier's policy decides
            # (tests/integration/test_cluster_exactness.py). Await client.initialize() at startup.
            if not isinstance(self.client, redis.asyncio.cluster.RedisCluster):
                raise
            return self._on_unavailable(call, exc)

    async def _invoke(self, call: _Call, deadline: float) -> Sequence[int]:
        """The one place a decision asks the server (the deny cache wraps it; `_send` pipelines it)."""
        if self.mode == "scripts":
            return await self._evalsha(call, deadline)
        return await self._fcall(call, deadline)

    async def _fcall(self, call: _Call, deadline: float) -> Sequence[int]:
        if call.read_only:
            return await self._fcall_command(("FCALL_RO", call.function, "1"), (call.key,), call.args, deadline)
        # A hit asks ratelimit_multi with its one limit: the same decision (the algorithm body, on
        # the same server clock), answered as one flat bulk string, which redis-py's asyncio
        # parser reads with two awaits instead of five (its per-reply cost in the 200-task case).
        try:
            reply = await self._fcall_command(_MULTI_ONE, (call.key,), ("0" + self.multi_suffix, spec_of(call)),
                                              deadline)
        except ResponseError as exc:
            if not self.multi_suffix or not refuses_string_mode(exc):
                raise
            self.multi_suffix = ""  # library 1.1.0: refused before anything ran; its list reply parses too
            reply = await self._fcall_command(_MULTI_ONE, (call.key,), ("0", spec_of(call)), deadline)
        return parse_one(reply)

    async def _fcall_command(self, head: tuple[str, ...], keys: tuple[str, ...], tail: tuple[str, ...],
                             deadline: float) -> Sequence[int]:
        try:
            return await self._send(head, keys, tail, deadline)  # type: ignore[no-any-return]
        except ResponseError as exc:
            if not functions.is_missing_function(exc):
                raise
            if not self.may_load:
                raise self._library_refused(exc, None) from exc
            try:  # as in the sync limiter: nothing ran, one load and one retry
                async with asyncio.timeout_at(deadline):
                    await self.load_library()
            except NoPermissionError as denied:
                raise self._library_refused(denied, await self.library_version()) from exc
        return await self._send(head, keys, tail, deadline)  # type: ignore[no-any-return]

    async def _run_many(self, calls: list[_Call]) -> MultiDecision:
        local, sent = self._local_many(calls)
        if local is not None:
            return local
        return self._recorded_many(calls, sent, await self._ask_many(calls))

    async def _ask_many(self, calls: list[_Call]) -> MultiDecision:
        try:
            async with asyncio.timeout(self.timeout):
                groups = split_by_slot(self.keyslot, calls)
                if len(groups) == 1:
                    allowed, decisions = parse_reply(await self._eval_many(calls, "0"), calls)
                    return MultiDecision(decisions, allowed)
                split = Split(calls, groups)
                peeks = [split.take(g, await self._eval_many(split.group_calls(g), "1")) for g in groups]
                if not all(peeks):
                    return split.result(False)
                for g in groups:
                    if not split.take(g, await self._eval_many(split.group_calls(g), "0")):
                        return split.result(False)
                return split.result(True)
        except _DECIDE_ERRORS as exc:
            await self._drop_stale_connections(exc)
            return self._fallback_many(calls, exc)

    async def _drop_stale_connections(self, exc: BaseException) -> None:
        pool = _stale_primary_pool(self.client, exc)
        if pool is not None:
            await pool.disconnect(inuse_connections=False)  # as in the sync limiter

    async def _eval_many(self, calls: list[_Call], mode: str) -> Sequence[int]:
        if self.mode == "functions":
            keys, argv = script_args(calls, mode + self.multi_suffix)
            try:
                return await self._fcall_command(("FCALL", MULTI_FUNCTION, str(len(keys))), keys, argv,
                                                 asyncio.get_running_loop().time() + self.timeout)
            except ResponseError as exc:
                if not self.multi_suffix or not refuses_string_mode(exc):
                    raise
                self.multi_suffix = ""  # as in the sync limiter: nothing ran, resend in the 1.1.0 mode
                return await self._eval_many(calls, mode)
        keys, argv = script_args(calls, mode + MULTI_STRING)
        lua = multi_script()
        try:
            return await self._send(("EVALSHA", lua.sha, str(len(keys))), keys, argv,
                                    asyncio.get_running_loop().time() + self.timeout)  # type: ignore[no-any-return]
        except NoScriptError:
            self.script_loads += 1
            await self.client.script_load(lua.source)
            return await self._send(("EVALSHA", lua.sha, str(len(keys))), keys, argv,
                                    asyncio.get_running_loop().time() + self.timeout)  # type: ignore[no-any-return]

    async def _evalsha(self, call: _Call, deadline: float) -> Sequence[int]:
        try:
            return await self._send(("EVALSHA", call.script.sha, "1"), (call.key,), call.args, deadline)  # type: ignore[no-any-return]
        except NoScriptError:
            self.script_loads += 1
            async with asyncio.timeout_at(deadline):
                await self.client.script_load(call.script.source)
            return await self._send(("EVALSHA", call.script.sha, "1"), (call.key,), call.args, deadline)  # type: ignore[no-any-return]


def async_decision_client(host: str = "127.0.0.1", port: int = 6379, *, timeout: float = DEFAULT_TIMEOUT,
                          **kwargs: Any) -> redis.asyncio.Redis:
    """An asyncio redis client with the decision-path options (see `decision_client_kwargs`)."""
    from redis.asyncio.retry import Retry as AsyncRetry

    opts = {**decision_client_kwargs(timeout), "retry": AsyncRetry(NoBackoff(), 0), **kwargs}
    return redis.asyncio.Redis(host=host, port=port, **opts)
