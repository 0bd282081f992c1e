"""`redisops smoke`: prove a deployed Redis is reachable, locked down and limiting correctly.

Safe against production by construction:

* the only keys written are the limiter's own under `smoke:<run-id>:` and they are deleted at
  the end (in `finally`, so also on failure and Ctrl-C); every one of them carries a TTL no
  longer than its tier's window (a GCRA tier with a burst: burst emission intervals), so even a
  cleanup that cannot reach Redis leaves nothing behind for long;
* destructive commands are probed inside MULTI and dropped with DISCARD: a probe is only sent
  after MULTI answered OK, so it is queued, never executed;
* the application user's lockdown is proved the same way: EVAL, EVALSHA, SCRIPT LOAD and
  FUNCTION LOAD/DELETE/FLUSH/RESTORE are queued inside MULTI and must be refused (NOPERM);
* every decision goes through FCALL of the admin-loaded `ratelimit` library, whose
  `ratelimit_version` must match this package: the smoke limiter never loads it (the app
  credential may not), so a missing or outdated library fails with the fix,
  `redisops functions load`.
"""

from __future__ import annotations

import math
import secrets
import socket
import ssl
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import redis

from ratelimit import Decision, RateLimiter, Tier, make_key, tier_key
from ratelimit import functions as fn
from redis_conf.acl import APP_FORBIDDEN_COMMANDS, APP_FORBIDDEN_PUBSUB, APP_FORBIDDEN_SCRIPTING
from redisops import connection as rc
from redisops.report import Check, Report

# Harmless argument lists: a probe is queued and discarded, but should anything ever go wrong
# the least damaging form of each command is the one on the wire. FLUSH* have no such form,
# which is why MULTI must answer OK before they are sent.
_PROBE_ARGS: dict[str, tuple[str, ...]] = {
    "CONFIG": ("GET", "maxmemory"),
    "DEBUG": ("SLEEP", "0"),
}
_REFUSED_MARKERS = ("NOPERM", "no permissions", "unknown command", "not allowed", "DEBUG command not allowed")
CLIENT_ID = "smoke-client"


@dataclass(frozen=True)
class SmokeOptions:
    concurrency: int = 16
    # Requests beyond the limit sent in the burst: enough to see denials, few enough to be quick.
    extra_fraction: float = 0.1
    min_extra: int = 3


class _Unavailable(Exception):
    """Redis stopped answering mid-run: the remaining checks cannot run."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def _allowance(tier: Tier) -> int:
    """Requests a fresh client gets back to back: GCRA's burst (default the limit), else the limit."""
    return (tier.burst or tier.limit) if tier.algorithm == "gcra" else tier.limit


def _ttl_bound_ms(tier: Tier) -> int:
    """The longest TTL the limiter may set: a GCRA key lives until its TAT, at most burst emission
    intervals (rounded up to whole microseconds, as gcra.lua does) ahead; others one window."""
    if tier.algorithm == "gcra":
        interval_us = math.ceil(tier.window_s * 1000 * 1000 / tier.limit)
        return math.ceil(_allowance(tier) * interval_us / 1000)
    return tier.window_s * 1000


def _pttl_bound_ms(tier: Tier) -> int:
    """The longest PTTL a fresh key of `tier` may show: its TTL bound, plus 1 ms where the script
    sets an absolute expiry. gcra.lua (the TAT) and sliding_log.lua (now + window) round a
    microsecond time up to the next whole millisecond and PTTL subtracts the current whole ms
    (src/expire.c ttlGenericCommand: `expire-mstime()` at 7.0.15, `expire-commandTimeSnapshot()`
    at 7.2.6), so a read within the millisecond of the write shows 1 ms more than the span (60001
    ms for a 60 s sliding log failed a smoke test in CI run D6). fixed_window.lua's relative
    PEXPIRE shows at most the window."""
    return _ttl_bound_ms(tier) + (0 if tier.algorithm == "fixed_window" else 1)


def _slack(tier: Tier, elapsed: float) -> int:
    """Admissions beyond the allowance a burst of `elapsed` server seconds may legitimately earn."""
    if tier.algorithm == "gcra":
        # GCRA refills one request every window/limit.
        return math.floor(elapsed / (tier.window_s / tier.limit))
    if tier.algorithm == "fixed_window":
        # The key's window starts at its first hit (not at an epoch multiple): it can only roll
        # over within the burst when the burst lasts a whole window.
        return tier.limit if elapsed >= tier.window_s else 0
    return 0


def _is_refusal(message: str) -> bool:
    return any(m.lower() in message.lower() for m in _REFUSED_MARKERS)


class SmokeRun:
    def __init__(self, spec: rc.ConnectionSpec, options: SmokeOptions | None = None, *,
                 on_check: Callable[[Check], None] | None = None,
                 on_start: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.options = options or SmokeOptions()
        self.run_id = secrets.token_hex(6)
        self.prefix = f"smoke:{self.run_id}"
        self.report = Report("smoke", spec.display_url, meta={
            "run_id": self.run_id,
            "namespace": f"{self.prefix}:*",
            "source": spec.source,
            "tiers": {t.name: {"limit": t.limit, "window_s": t.window_s, "algorithm": t.algorithm} for t in spec.tiers},
            "tiers_source": spec.tiers_source,
            "expectations_source": spec.expectations.source,
            "insecure_skip_verify": spec.insecure_skip_verify,
        })
        self._on_check = on_check
        self._on_start = on_start
        self._address: tuple[str, int] | None = None
        self._app: Any = None
        self._latencies: list[float] = []
        self._keys_written: set[str] = set()
        self._library_ok = False
        self._fcalls = 0
        self._decisions: Any = None

    # -- plumbing ----------------------------------------------------------------------------
    def _emit(self, check: Check) -> Check:
        check.actual = rc.redact(check.actual, self.spec)
        check.detail = rc.redact(check.detail, self.spec)
        self.report.add(check)
        if self._on_check is not None:
            self._on_check(check)
        return check

    @contextmanager
    def _timed(self, name: str) -> Iterator[Check]:
        if self._on_start is not None:
            self._on_start(name)
        check = Check(name, "pass")
        t0 = time.perf_counter()
        try:
            yield check
        except BaseException as exc:
            # An exception out of a check is its failure, never a pass (the message is redacted in _emit).
            if check.status != "fail" or not check.actual:
                check.status = "fail"
                check.actual = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            check.duration_ms = _ms(time.perf_counter() - t0)
            self._emit(check)

    def _skip_rest(self, names: list[str], reason: str) -> None:
        for name in names:
            self._emit(Check(name, "skip", detail=f"not run: {reason}"))

    def planned(self) -> list[str]:
        names = ["reachable", "tls", "auth-refuses-anonymous", "auth-refuses-wrong-password", "auth-app-login"]
        names += [f"forbidden:{c}" for c in (*APP_FORBIDDEN_COMMANDS, *APP_FORBIDDEN_SCRIPTING, *APP_FORBIDDEN_PUBSUB)]
        names += ["memory-policy", "maxmemory", "persistence-aof", "persistence-status", "function-library"]
        if self.spec.mode == "cluster":
            names.append("cluster-nodes")
        names += [f"ratelimit:{t.name}" for t in self.spec.tiers]
        names += ["fcall-only", "latency", "cleanup"]
        return names

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Report:
        started = time.perf_counter()
        planned = self.planned()
        try:
            self._run_checks(planned)
        except (_Unavailable, redis.ConnectionError, redis.TimeoutError) as exc:
            done = {c.name for c in self.report.checks}
            self._skip_rest([n for n in planned if n not in done and n != "cleanup"],
                            f"Redis became unavailable ({exc})")
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError, ValueError) as exc:
            # NOPERM, a ResponseError, a RateLimitError, a cluster client refusing a cluster with
            # slots unserved (RedisClusterException is no RedisError)...: the report so far, the
            # failure, the rest skipped.
            error = rc.redact(f"{type(exc).__name__}: {exc}", self.spec)
            if not any(c.status == "fail" for c in self.report.checks):
                self._emit(Check("smoke-error", "fail", "every check runs to its verdict", error))
            done = {c.name for c in self.report.checks}
            self._skip_rest([n for n in planned if n not in done and n != "cleanup"], f"an earlier check failed ({error})")
        finally:
            try:
                self._cleanup()
            finally:
                for client in (self._app, self._decisions):
                    if client is not None:
                        client.close()
                self.report.duration_s = time.perf_counter() - started
        return self.report

    def _run_checks(self, planned: list[str]) -> None:
        if not self._check_reachable():
            self._skip_rest(planned[1:-1], "server not reachable")
            return
        if not self._check_tls():
            self._skip_rest(planned[2:-1], "TLS check failed")
            return
        self._check_anonymous()
        self._check_wrong_password()
        if not self._check_app_login():
            self._skip_rest(planned[5:-1], "the application user cannot log in")
            return
        for command in APP_FORBIDDEN_COMMANDS:
            self._check_forbidden(command)
        for command, args in (*APP_FORBIDDEN_SCRIPTING.items(), *APP_FORBIDDEN_PUBSUB.items()):
            self._check_forbidden(command, args)
        info = self._info()
        self._check_expectations(info)
        if self.spec.mode == "cluster":
            self._check_cluster_nodes()
        if not self._check_library():
            self._skip_rest([f"ratelimit:{t.name}" for t in self.spec.tiers] + ["fcall-only"],
                            "the ratelimit library is missing or outdated (redisops functions load)")
        else:
            before = self._command_calls()
            for tier in self.spec.tiers:
                self._check_tier(tier)
            self._check_fcall_only(before)
        self._check_latency()

    # -- individual checks -------------------------------------------------------------------
    def _check_reachable(self) -> bool:
        timeout = self.spec.timeout_s
        with self._timed("reachable") as c:
            c.expected = f"TCP connect within REDIS_TIMEOUT ({self.spec.timeout_ms} ms)"
            try:
                if self.spec.mode == "sentinel":
                    self._address = rc.primary_address(self.spec)
                    c.detail = f"Sentinel names the master {self._address[0]}:{self._address[1]}"
                else:
                    self._address = self.spec.hosts[0]
                t0 = time.perf_counter()
                with socket.create_connection(self._address, timeout=timeout):
                    pass
                elapsed = time.perf_counter() - t0
                c.actual = f"connected to {self._address[0]}:{self._address[1]} in {_ms(elapsed)} ms"
                if elapsed > timeout:
                    c.status = "fail"
            except (OSError, redis.RedisError) as exc:
                c.status = "fail"
                c.actual = f"{type(exc).__name__}: {exc}"
        return c.status == "pass"

    def _check_tls(self) -> bool:
        assert self._address is not None
        host, port = self._address
        with self._timed("tls") as c:
            if not self.spec.tls:
                c.expected = "plain TCP (REDIS_TLS=false)"
                if rc.speaks_plain_redis(self._address, self.spec.timeout_s):
                    c.actual = "plaintext Redis answered"
                    c.detail = "TLS is off for this stack: traffic is readable on the network"
                else:
                    c.status = "fail"
                    c.actual = "no plaintext Redis reply (the server may require TLS: set REDIS_TLS=true)"
                return c.status == "pass"
            c.expected = "TLS handshake, certificate verified" + (
                f" against {self.spec.ca_cert}" if self.spec.ca_cert else " against the system CAs")
            ctx = ssl.create_default_context(cafile=self.spec.ca_cert)
            if self.spec.insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            try:
                with socket.create_connection(self._address, timeout=self.spec.timeout_s) as raw, \
                        ctx.wrap_socket(raw, server_hostname=host) as tls:
                    version = tls.version()
                    cert = tls.getpeercert() or {}
                subject = ", ".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
                c.actual = f"{version}" + (f", certificate {subject} verified" if subject else "")
                if self.spec.insecure_skip_verify:
                    c.status = "warn"
                    c.actual = f"{version}, certificate NOT verified"
                    c.detail = ("--insecure-skip-verify: the server's identity was not checked; "
                                "a man in the middle would pass this test")
            except ssl.SSLCertVerificationError as exc:
                c.status = "fail"
                c.actual = f"certificate verification failed: {exc.verify_message or exc}"
                c.detail = "set REDIS_CA_CERT to the CA bundle that signed the server certificate"
            except (OSError, ssl.SSLError) as exc:
                c.status = "fail"
                if rc.speaks_plain_redis(self._address, self.spec.timeout_s):
                    c.actual = f"no TLS handshake on {host}:{port}: the server speaks plain TCP"
                    c.detail = "TLS is expected (REDIS_TLS=true / rediss://) but the server is not configured for it"
                else:
                    c.actual = f"TLS handshake failed: {type(exc).__name__}: {exc}"
        return c.status in ("pass", "warn")

    def _raw(self, role: rc.Role) -> redis.connection.AbstractConnection:
        assert self._address is not None
        return rc.raw_connection(self.spec, self._address, role)

    def _check_anonymous(self) -> None:
        with self._timed("auth-refuses-anonymous") as c:
            c.expected = "NOAUTH for a client that did not authenticate"
            conn = None
            try:
                conn = self._raw("anonymous")
                conn.send_command("PING")
                reply = conn.read_response()
                c.status = "fail"
                c.actual = f"{reply!r}: unauthenticated clients are served"
            except redis.RedisError as exc:
                msg = str(exc)
                if "NOAUTH" in msg or "Authentication required" in msg:
                    c.actual = "NOAUTH Authentication required"
                else:
                    c.status = "fail"
                    c.actual = f"{type(exc).__name__}: {msg}"
            finally:
                if conn is not None:
                    conn.disconnect()

    def _check_wrong_password(self) -> None:
        with self._timed("auth-refuses-wrong-password") as c:
            c.expected = "WRONGPASS for a wrong password"
            wrong = "smoke-wrong-" + secrets.token_urlsafe(18)
            args = ("AUTH", self.spec.username, wrong) if self.spec.username else ("AUTH", wrong)
            conn = None
            try:
                conn = self._raw("anonymous")
                conn.send_command(*args)
                reply = conn.read_response()
                c.status = "fail"
                c.actual = f"{reply!r}: a wrong password was accepted"
            except redis.RedisError as exc:
                msg = str(exc)
                if "WRONGPASS" in msg or "invalid username-password" in msg or "invalid password" in msg:
                    c.actual = "WRONGPASS"
                else:
                    c.status = "fail"
                    c.actual = f"{type(exc).__name__}: {msg}"
                    if "without any password configured" in msg:
                        c.detail = "the server has no password for the default user"
            finally:
                if conn is not None:
                    conn.disconnect()
                c.actual = c.actual.replace(wrong, "****")

    def _check_app_login(self) -> bool:
        user = self.spec.username or "default"
        with self._timed("auth-app-login") as c:
            c.expected = f"PONG as ACL user {user} with REDIS_PASSWORD"
            if not self.spec.password:
                c.status = "fail"
                c.actual = "REDIS_PASSWORD is empty: the application would connect without a password"
                return False
            try:
                self._app = rc.client(self.spec, "app")
                reply = self._app.ping()
                c.actual = f"PONG as {user}" if reply else repr(reply)
            except redis.AuthenticationError as exc:
                c.status = "fail"
                c.actual = f"authentication failed: {exc}"
                c.detail = "REDIS_PASSWORD (or REDIS_USERNAME) does not match the server"
            except redis.RedisError as exc:
                c.status = "fail"
                c.actual = f"{type(exc).__name__}: {exc}"
        return c.status == "pass"

    def _check_forbidden(self, command: str, probe: tuple[str, ...] | None = None) -> None:
        with self._timed(f"forbidden:{command}") as c:
            c.expected = "refused at queue time (NOPERM or unknown command); probed inside MULTI/DISCARD"
            args = probe or (command, *_PROBE_ARGS.get(command, ()))
            if command == "KEYS":
                args = ("KEYS", f"{self.prefix}:*")
            conn = None
            try:
                conn = self._raw("app")
                conn.send_command("MULTI")
                ok = conn.read_response()
                if ok not in (b"OK", "OK"):
                    c.status = "fail"
                    c.actual = f"MULTI answered {ok!r}; probe not sent"
                    return
                try:
                    conn.send_command(*args)
                    reply = conn.read_response()
                    c.status = "fail"
                    c.actual = f"{reply!r}: the application user may run {command}"
                    if command in APP_FORBIDDEN_SCRIPTING:
                        c.detail = ("the application credential may send or manage Lua: every Lua-engine CVE "
                                    "(docs/security.md) is reachable with it; its ACL needs -@scripting +fcall "
                                    "+fcall_ro (redis_conf/acl.py; ElastiCache: RBAC, the default authMode)")
                    elif command in APP_FORBIDDEN_PUBSUB:
                        c.detail = ("the application credential may publish to Sentinel's hello channel and "
                                    "re-point the master with a forged hello; its ACL needs resetchannels "
                                    "-@pubsub (redis_conf/acl.py)")
                except redis.ResponseError as exc:
                    if _is_refusal(str(exc)):
                        # redis-py strips the NOPERM code from the message; put it back.
                        noperm = isinstance(exc, redis.exceptions.NoPermissionError)
                        c.actual = ("NOPERM " if noperm else "") + str(exc).split(".")[0]
                    else:
                        c.status = "fail"
                        c.actual = f"unexpected reply: {exc}"
                finally:
                    conn.send_command("DISCARD")
                    with suppress(redis.ResponseError):
                        conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                c.status = "fail"
                c.actual = f"{type(exc).__name__}: {exc}"
                raise _Unavailable(str(exc)) from exc
            finally:
                if conn is not None:
                    conn.disconnect()

    def _info(self) -> dict[str, Any]:
        try:
            info: dict[str, Any] = {}
            for section in ("memory", "persistence", "server"):
                info.update(self._app.info(section))
            return info
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _Unavailable(str(exc)) from exc
        except redis.ResponseError as exc:
            return {"_error": str(exc)}

    def _check_expectations(self, info: dict[str, Any]) -> None:
        exp = self.spec.expectations
        err = info.get("_error")
        how = f"(from {exp.source})"
        with self._timed("memory-policy") as c:
            if exp.maxmemory_policy is None:
                c.status, c.detail = "skip", "no expectation: pass --expect-policy or --settings Pulumi.<stack>.yaml"
            elif err:
                c.status, c.expected, c.actual = "fail", exp.maxmemory_policy, f"INFO refused: {err}"
            else:
                c.expected = f"maxmemory_policy {exp.maxmemory_policy} {how}"
                c.actual = str(info.get("maxmemory_policy"))
                c.status = "pass" if c.actual == exp.maxmemory_policy else "fail"
        with self._timed("maxmemory") as c:
            if exp.maxmemory is None:
                c.status, c.detail = "skip", "no expectation (set by node type on ElastiCache)"
            elif err:
                c.status, c.expected, c.actual = "fail", str(exp.maxmemory), f"INFO refused: {err}"
            else:
                c.expected = f"maxmemory {exp.maxmemory} bytes {how}"
                c.actual = f"{info.get('maxmemory')} bytes ({info.get('maxmemory_human')})"
                c.status = "pass" if int(info.get("maxmemory", -1)) == exp.maxmemory else "fail"
        with self._timed("persistence-aof") as c:
            if exp.aof is None:
                c.status, c.detail = "skip", "no expectation: pass --expect-aof yes|no or --settings"
            elif err:
                c.status, c.expected, c.actual = "fail", str(exp.aof), f"INFO refused: {err}"
            else:
                c.expected = f"aof_enabled:{int(exp.aof)} {how}"
                c.actual = f"aof_enabled:{info.get('aof_enabled')}"
                c.status = "pass" if int(info.get("aof_enabled", -1)) == int(exp.aof) else "fail"
        with self._timed("persistence-status") as c:
            c.expected = "rdb_last_bgsave_status:ok and (with AOF) aof_last_write_status:ok"
            if err:
                c.status, c.actual = "fail", f"INFO refused: {err}"
            else:
                rdb = info.get("rdb_last_bgsave_status", "?")
                aof = info.get("aof_last_write_status", "?") if int(info.get("aof_enabled", 0)) else "n/a"
                c.actual = f"rdb_last_bgsave_status:{rdb}, aof_last_write_status:{aof}"
                c.status = "pass" if rdb == "ok" and aof in ("ok", "n/a") else "fail"

    def _check_cluster_nodes(self) -> None:
        """Every slot served, and every node (as the application logs in to it) holds the
        stack's memory policy and persistence, replicas with their link up."""
        from redisops.cluster import SLOTS, coverage

        with self._timed("cluster-nodes") as c:
            exp = self.spec.expectations
            c.expected = (f"cluster_state ok, {SLOTS} slots served; on every node "
                          f"maxmemory_policy {exp.maxmemory_policy or 'any'}, aof_enabled "
                          f"{'any' if exp.aof is None else int(exp.aof)}, replicas' link up")
            seed = rc.node_client(self.spec, self.spec.hosts[0], "app")
            try:
                cov = coverage(seed)
            finally:
                seed.close()
            problems = [] if cov.state == "ok" and cov.slots_ok == SLOTS else [cov.summary()]
            for n in cov.nodes:
                where = f"{n.host}:{n.port}"
                if n.failed or n.suspected:
                    problems.append(f"{where} flagged {'fail' if n.failed else 'fail?'}")
                    continue
                client = rc.node_client(self.spec, n.address, "app")
                try:
                    info = client.info("memory", "persistence", "replication")  # one INFO (7.0+: several sections)
                except (redis.RedisError, OSError) as exc:
                    problems.append(f"{where}: {type(exc).__name__}")
                    continue
                finally:
                    client.close()
                if exp.maxmemory_policy is not None and info.get("maxmemory_policy") != exp.maxmemory_policy:
                    problems.append(f"{where}: maxmemory_policy {info.get('maxmemory_policy')}")
                if exp.aof is not None and int(info.get("aof_enabled", -1)) != int(exp.aof):
                    problems.append(f"{where}: aof_enabled {info.get('aof_enabled')}")
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    problems.append(f"{where}: replica link {info.get('master_link_status')}")
            c.actual = (f"{len(cov.nodes)} nodes ({len(cov.primaries)} primaries, {len(cov.replicas)} replicas), "
                        f"{cov.slots_ok}/{SLOTS} slots ok" + (": " + "; ".join(problems) if problems else ""))
            if problems:
                c.status = "fail"

    def _check_library(self) -> bool:
        with self._timed("function-library") as c:
            c.expected = (f"FCALL_RO ratelimit_version as the application user = {fn.LIBRARY_RELEASE} "
                          "(this package's library)")
            if self.spec.mode == "cluster":
                # Functions are per node in a cluster (redisops.functions): every node is read.
                c.expected += " on every cluster node"
            try:
                if self.spec.mode == "cluster":
                    return self._check_library_nodes(c)
                version = fn.read_version(self._app)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                c.status, c.actual = "fail", f"{type(exc).__name__}: {exc}"
                raise _Unavailable(str(exc)) from exc
            except redis.ResponseError as exc:
                c.status, c.actual = "fail", f"FCALL_RO refused: {exc}"
                c.detail = "the application user needs +fcall +fcall_ro (redis_conf/acl.py)"
                return False
            state = fn.library_state(version)
            c.actual = f"ratelimit_version {version}" if version else "no ratelimit library (Function not found)"
            if state in ("missing", "older"):
                c.status = "fail"
                c.detail = fn.describe_state(state, version)
            elif state == "newer":
                c.status = "warn"
                c.detail = fn.describe_state(state, version)
            self._library_ok = c.status != "fail"
        return self._library_ok

    def _check_library_nodes(self, c: Check) -> bool:
        from redisops.functions import node_versions

        nodes = node_versions(self.spec, "app")
        bad = [n for n in nodes if n["state"] in ("missing", "older")]
        newer = [n for n in nodes if n["state"] == "newer"]
        versions = sorted({str(n["version"]) for n in nodes})
        c.actual = f"ratelimit_version {', '.join(versions)} on {len(nodes)} nodes"
        if bad:
            c.status = "fail"
            c.actual += ": " + ", ".join(f"{n['node']} {n['version'] or 'missing'}" for n in bad)
            c.detail = fn.describe_state(bad[0]["state"], bad[0]["version"])
        elif newer:
            c.status = "warn"
            c.detail = fn.describe_state("newer", newer[0]["version"])
        self._library_ok = c.status != "fail"
        return self._library_ok

    def _command_calls(self) -> dict[str, int] | None:
        """Calls per scripting command (INFO commandstats, server-wide); None where it cannot be read."""
        if self.spec.mode == "cluster":
            return None  # per node; the limiter's own mode is the evidence there
        try:
            stats = self._app.info("commandstats")
        except redis.RedisError:
            return None  # refused, or Redis stopped answering: the tier checks that follow report that
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                for name in ("fcall", "fcall_ro", "evalsha", "eval")}

    def _check_fcall_only(self, before: dict[str, int] | None) -> None:
        with self._timed("fcall-only") as c:
            c.expected = "every tier decided through FCALL / FCALL_RO; no EVAL or EVALSHA reached the server"
            after = self._command_calls()
            if before is None or after is None:
                c.status = "skip" if self._fcalls else "fail"
                c.actual = f"{self._fcalls} decisions made in FCALL mode (INFO commandstats not readable here)"
                return
            delta = {k: after[k] - before[k] for k in after}
            fcalls = delta["fcall"] + delta["fcall_ro"]
            c.actual = f"{delta['fcall']} FCALL + {delta['fcall_ro']} FCALL_RO, {delta['evalsha'] + delta['eval']} EVAL*"
            c.data = delta
            # Other clients may call FCALL too (server-wide counters); none may use scripts here.
            if fcalls < self._fcalls or delta["evalsha"] or delta["eval"]:
                c.status = "fail"
                c.detail = f"the smoke limiter made {self._fcalls} decisions; the server counted {fcalls} FCALLs"

    def _server_time(self) -> float:
        sec, usec = self._app.time()
        return float(sec) + usec / 1e6

    def _check_tier(self, tier: Tier) -> None:
        cap = _allowance(tier)
        ttl_max = _pttl_bound_ms(tier)
        extra = max(self.options.min_extra, math.ceil(cap * self.options.extra_fraction))
        n = cap + extra
        with self._timed(f"ratelimit:{tier.name}") as c:
            c.expected = (f"exactly {cap} of {n} concurrent requests allowed, the rest denied with "
                          f"retry-after in (0, {tier.window_s}] s; peek agrees; key TTL in (0, {ttl_max / 1000:g}] s")
            key = make_key(self.prefix, tier_key(tier, CLIENT_ID), tier.algorithm)
            self._keys_written.add(key)
            results: list[tuple[Decision, float]] = []
            lock = threading.Lock()
            stop = threading.Event()

            def one(_: int) -> None:
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                d = limiter.hit_tier(tier, CLIENT_ID)
                elapsed = time.perf_counter() - t0
                if d.fallback:
                    stop.set()  # Redis is gone: do not queue hundreds of timeouts behind it
                with lock:
                    results.append((d, elapsed))

            try:
                # The smoke limiter never loads the library: function-library proved it is there.
                # Without the deny cache: every decision must reach the server (exactness, latency
                # and fcall-only count the server's answers, not local ones).
                limiter = RateLimiter(self._decision_client(), tier.algorithm, prefix=self.prefix,
                                      timeout=self.spec.timeout_s, load_library=False, deny_cache=False)
                t_start = self._server_time()
                with ThreadPoolExecutor(max_workers=self.options.concurrency) as pool:
                    list(pool.map(one, range(n)))
                t_end = self._server_time()
                fallbacks = sum(1 for d, _ in results if d.fallback)
                if fallbacks and limiter.library_problem:
                    c.status = "fail"
                    c.actual = f"{fallbacks} of {len(results)} decisions fell back: {limiter.library_problem}"
                    return
                if fallbacks:
                    c.status = "fail"
                    # Redis may have refused (NOREPLICAS, READONLY, NOPERM) rather than stayed silent.
                    c.actual = (f"{fallbacks} of {len(results)} decisions fell back: "
                                f"{limiter.last_fallback_error or 'Redis did not answer'}")
                    raise _Unavailable(f"{fallbacks} limiter calls fell back")
                self._latencies.extend(e for _, e in results)
                decisions = [d for d, _ in results]
                allowed = sum(1 for d in decisions if d.allowed)
                denied = [d for d in decisions if not d.allowed]
                elapsed = max(0.0, t_end - t_start)
                # A burst slower than GCRA's refill, or a whole window long, earns admissions back.
                slack = _slack(tier, elapsed)
                problems = []
                if not cap <= allowed <= cap + slack:
                    want = f"{cap}" if not slack else f"{cap}..{cap + slack}"
                    problems.append(f"{allowed} allowed (expected {want})")
                bad_retry = [d.retry_after for d in denied if not 0 < d.retry_after <= tier.window_s]
                if bad_retry:
                    problems.append(f"{len(bad_retry)} denials with retry-after outside (0, {tier.window_s}]: "
                                    f"{bad_retry[:3]}")
                if not denied:
                    problems.append("nothing was denied")
                peek = limiter.peek_tier(tier, CLIENT_ID)
                self._fcalls += len(results) + 1
                # Each denial was made after t_start and told its caller to wait retry_after, so a
                # peek may be allowed only once the shortest of those waits has passed since
                # t_start (server clock). Measured from the burst's end instead, a slow burst (a
                # busy machine) that earned a refill while it ran would be blamed for it.
                since = self._server_time() - t_start
                min_retry = min((d.retry_after for d in denied), default=0.0)
                peek_ok = (not peek.allowed and 0 < peek.retry_after <= tier.window_s) or (
                    peek.allowed and since >= min_retry)
                if not peek_ok:
                    problems.append(f"peek disagrees: allowed={peek.allowed} retry_after={peek.retry_after:.3f}")
                pttl = self._app.pttl(key)
                if not 0 < pttl <= ttl_max:
                    problems.append(f"key TTL {pttl} ms not in (0, {ttl_max}] ms"
                                    + (" (no TTL: the key would live forever)" if pttl == -1 else ""))
                retry_text = (f"{min(d.retry_after for d in denied):.2f}-{max(d.retry_after for d in denied):.2f} s"
                              if denied else "-")
                c.actual = (f"{allowed} allowed, {len(denied)} denied (retry-after {retry_text}); "
                            f"peek {'allows' if peek.allowed else 'denies'}; TTL {pttl / 1000:.1f} s")
                c.detail = f"{tier.algorithm}; burst took {elapsed * 1000:.0f} ms" + (
                    f" (GCRA refill allows up to {slack} more)" if slack and tier.algorithm == "gcra" else "")
                c.data = {"allowed": allowed, "denied": len(denied), "sent": n, "pttl_ms": pttl,
                          "burst_ms": round(elapsed * 1000, 1)}
                if problems:
                    c.status = "fail"
                    c.detail = "; ".join(problems) + "; " + c.detail
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                c.status = "fail"
                c.actual = f"{type(exc).__name__}: {exc}"
                raise _Unavailable(str(exc)) from exc

    def _decision_client(self) -> Any:
        """One pooled client for every tier, its connections opened before any burst.

        The application keeps its connections open; a latency figure that included a TCP
        (or TLS) handshake per request would measure the smoke test, not the limiter.
        """
        if self._decisions is not None:
            return self._decisions
        n = self.options.concurrency
        if self.spec.mode == "cluster":
            self._decisions = rc.client(self.spec, "app")
            return self._decisions
        self._decisions = rc.client(self.spec, "app", extra={"max_connections": n + 4})
        pool = self._decisions.connection_pool
        conns = []
        try:
            for _ in range(n):
                conns.append(pool.get_connection())
        finally:
            for conn in conns:
                pool.release(conn)
        return self._decisions

    def _check_latency(self) -> None:
        with self._timed("latency") as c:
            c.expected = f"p99 decision latency <= REDIS_TIMEOUT ({self.spec.timeout_ms} ms)"
            if not self._latencies:
                c.status, c.actual = "skip", "no decisions were made"
                return
            p50 = _percentile(self._latencies, 0.50) * 1000
            p99 = _percentile(self._latencies, 0.99) * 1000
            mean = statistics.fmean(self._latencies) * 1000
            c.actual = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms over {len(self._latencies)} decisions"
            c.detail = f"mean {mean:.2f} ms, {self.options.concurrency} concurrent clients"
            c.data = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "mean_ms": round(mean, 3),
                      "decisions": len(self._latencies)}
            self.report.meta["latency_ms"] = c.data
            if p99 > self.spec.timeout_ms:
                c.status = "fail"

    def _cleanup(self) -> None:
        with self._timed("cleanup") as c:
            window = max((math.ceil(_ttl_bound_ms(t) / 1000) for t in self.spec.tiers), default=0)
            c.expected = f"no key left under {self.prefix}:*"
            if self._app is None:
                c.status, c.actual = "pass", "nothing was written"
                return
            try:
                found = set(self._keys_written)
                found.update(k.decode() if isinstance(k, bytes) else k
                             for k in self._app.scan_iter(match=f"{self.prefix}:*", count=1000))
                deleted = sum(int(self._app.delete(k)) for k in sorted(found))
                left = [k for k in self._app.scan_iter(match=f"{self.prefix}:*", count=1000)]
                c.actual = f"{deleted} key(s) deleted, {len(left)} left"
                if left:
                    c.status = "fail"
            except (redis.RedisError, OSError) as exc:
                c.status = "fail"
                c.actual = f"cleanup failed: {type(exc).__name__}: {exc}"
                c.detail = (f"every smoke key has a TTL: anything left under {self.prefix}:* expires within "
                            f"{window} s")


def run_smoke(spec: rc.ConnectionSpec, options: SmokeOptions | None = None, *,
              on_check: Callable[[Check], None] | None = None,
              on_start: Callable[[str], None] | None = None) -> Report:
    return SmokeRun(spec, options, on_check=on_check, on_start=on_start).run()
