"""Prometheus metrics of the limiter client (prometheus_client).

    metrics = LimiterMetrics()                      # or LimiterMetrics(registry=CollectorRegistry())
    limiter = AsyncRateLimiter(client, metrics=metrics)

What is exported (names are the contract the dashboard and the alert rules in
infra/monitoring read; `METRIC_*` below are the one spelling of each):

* ``ratelimit_decisions_total{tier, outcome}``: every decision, ``outcome`` one of
  ``allowed``, ``denied`` (Redis said no), ``denied_locally`` (a cached denial answered
  without Redis) and ``fallback`` (Redis could not answer; the tier's failure policy decided).
* ``ratelimit_decision_seconds{tier}``: the decision's latency as seen by the application,
  Redis round trip included (a histogram; buckets from 50 us to 250 ms, around the 100 ms
  default decision timeout).
* ``ratelimit_errors_total{kind}``: errors that no request should ever see in a healthy
  deployment: ``library_missing`` (the ratelimit library/scripts are not loaded on this
  server and this credential may not load them) and ``noperm`` (the ACL refuses the call).

Decisions made outside a tier (`hit(key, ...)`) are counted under ``tier="custom"``.
The registry is injected (default: prometheus_client's global REGISTRY), so tests and
applications that run several limiters keep their series apart.
"""

from __future__ import annotations

from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from ratelimit.limiter import CUSTOM_TIER

__all__ = ["CUSTOM_TIER", "ERROR_KINDS", "OUTCOMES", "LimiterMetrics", "error_kind", "outcome_of"]

METRIC_DECISIONS = "ratelimit_decisions"  # prometheus_client appends _total to counters
METRIC_DECISION_SECONDS = "ratelimit_decision_seconds"
METRIC_ERRORS = "ratelimit_errors"
OUTCOMES: tuple[str, ...] = ("allowed", "denied", "denied_locally", "fallback")
ERROR_KINDS: tuple[str, ...] = ("library_missing", "noperm")
# Around the decision path's budget: a loopback round trip is ~0.1-0.5 ms, the default
# timeout 100 ms; past 250 ms the request has long been decided by the failure policy.
LATENCY_BUCKETS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05, 0.1, 0.25)

Outcome = Literal["allowed", "denied", "denied_locally", "fallback"]
ErrorKind = Literal["library_missing", "noperm"]

# How the server words them. NOPERM: ACL refusal (redis/redis src/server.c, "-NOPERM User %s has no
# permissions to run the '%s' command"). A missing library: FCALL answers "ERR Function not found"
# (src/function.c fcallCommandGeneric); EVALSHA answers NOSCRIPT, which the client only sees
# when it may not SCRIPT LOAD (otherwise it loads and retries).
_NOPERM_PREFIX = "NOPERM"
_LIBRARY_MISSING_MARKERS = ("Function not found", "NOSCRIPT", "Library not found", "library is not loaded",
                            "redisops functions load")


def outcome_of(decision: Any) -> Outcome:
    """The outcome label of a Decision."""
    if decision.fallback:
        return "fallback"
    if decision.allowed:
        return "allowed"
    # `Decision.cached`: set by the deny cache (issue 15 section 1, branch i15-limiter) on a denial
    # answered without asking Redis; read defensively so this works with a Decision without the field.
    if getattr(decision, "cached", False):
        return "denied_locally"
    return "denied"


def error_kind(exc: BaseException) -> ErrorKind | None:
    """Which counted error `exc` is, or None for anything else."""
    text = str(exc)
    # The Functions client (issue 12) raises LibraryUnavailable, by name so this module does not
    # depend on it: the library is missing or outdated and this credential may not load it.
    if type(exc).__name__ == "LibraryUnavailable":
        return "library_missing"
    if text.startswith(_NOPERM_PREFIX) or type(exc).__name__ == "NoPermissionError":
        return "noperm"
    if any(m in text for m in _LIBRARY_MISSING_MARKERS):
        return "library_missing"
    return None


class LimiterMetrics:
    """The limiter's series in one registry; hand it to `RateLimiter(..., metrics=...)`."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY, *, namespace: str = "") -> None:
        # `namespace` prefixes every name, for an app that runs two limiters on one registry.
        kw: dict[str, Any] = {"registry": registry, "namespace": namespace}
        self.decisions = Counter(METRIC_DECISIONS, "Rate-limit decisions by tier and outcome",
                                 ("tier", "outcome"), **kw)
        self.latency = Histogram(METRIC_DECISION_SECONDS, "Rate-limit decision latency (Redis round trip included)",
                                 ("tier",), buckets=LATENCY_BUCKETS, **kw)
        self.errors = Counter(METRIC_ERRORS, "Limiter errors: library missing, ACL refusal (NOPERM)",
                              ("kind",), **kw)
        # Zero-valued series from the start: `increase()` and the alerts see the first event as an
        # increase from 0, not as a new series with no history.
        for kind in ERROR_KINDS:
            self.errors.labels(kind)

    def observe(self, tier: str, decision: Any, seconds: float) -> None:
        self.decisions.labels(tier, outcome_of(decision)).inc()
        self.latency.labels(tier).observe(seconds)

    def error(self, exc: BaseException) -> None:
        kind = error_kind(exc)
        if kind is not None:
            self.errors.labels(kind).inc()

    def declare_tiers(self, tiers: Any) -> None:
        """Create every (tier, outcome) series at 0 so a first fallback is an increase (alerts)."""
        for tier in tiers:
            for outcome in OUTCOMES:
                self.decisions.labels(tier.name, outcome)
