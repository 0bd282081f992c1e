"""`redisops health`: the guide's redis-health-check.sh, judged against the thresholds table.

Every level comes from `infra.thresholds` (the table that also renders the Prometheus rules
and CloudWatch alarms), so `health` pages on exactly what the alerts page on. Read-only: INFO,
SLOWLOG GET, SCAN (bounded) and PTTL on a sample of limiter keys.

Exit status is Nagios-style: 0 OK, 1 WARNING, 2 CRITICAL (an unreachable server is CRITICAL).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from cryptography import x509

from infra.monitoring.cloudwatch import TLS_DAYS_CRITICAL, TLS_DAYS_WARNING
from infra.thresholds import DEFAULT_THRESHOLDS, MISS_RATIO_MIN_LOOKUPS_PER_SECOND, Threshold, fmt_number
from redisops import connection as rc
from redisops.report import Check, Report

# A ratio from a handful of lookups is noise (the Prometheus rule has the same floor, per second).
MIN_LOOKUPS_FOR_RATIO = 100


@dataclass(frozen=True)
class HealthOptions:
    sample_seconds: float = 1.0
    prefix: str = "rl"
    scan_budget: int = 10_000  # keys looked at, at most
    ttl_sample: int = 200  # PTTL checked on this many limiter keys
    slowlog_top: int = 5
    use_admin: bool | None = None  # None: admin when REDIS_ADMIN_PASSWORD is set


def level_for(t: Threshold, value: float) -> str:
    """OK / WARNING / CRITICAL for `value` against a row of the thresholds table."""
    def breached(line: float) -> bool:
        return value > line if t.direction == "above" else value < line

    if t.crit is not None and breached(t.crit):
        return "CRITICAL"
    if t.warn is not None and breached(t.warn):
        return "WARNING"
    return "OK"


def _lines(t: Threshold) -> str:
    op = ">" if t.direction == "above" else "<"
    parts = []
    if t.warn is not None:
        parts.append(f"warn {op} {fmt_number(t.warn)}")
    if t.crit is not None:
        parts.append(f"crit {op} {fmt_number(t.crit)}")
    return f"{', '.join(parts)} {t.unit}".strip()


def _tier_of(key: str) -> str:
    """`rl:{general:client-1}:g` -> general (ratelimit.make_key + tier_key)."""
    if "{" in key and "}" in key:
        return key[key.index("{") + 1:key.index("}")].split(":", 1)[0]
    parts = key.split(":")
    return parts[1] if len(parts) > 1 else "?"


class HealthRun:
    def __init__(self, spec: rc.ConnectionSpec, thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
                 options: HealthOptions | None = None, *, on_start: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.t = {t.name: t for t in thresholds}
        self.options = options or HealthOptions()
        self.on_start = on_start
        self.report = Report("health", spec.display_url, meta={"source": spec.source})

    def _judge(self, name: str, value: float, actual: str, detail: str = "") -> Check:
        t = self.t[name]
        c = Check(name, level_for(t, value), expected=_lines(t), actual=actual, detail=detail,
                  data={"value": value, "alert": t.alert, "runbook": f"docs/runbooks/troubleshooting.md#{t.runbook_anchor}"})
        return self.report.add(c)

    def _step(self, name: str) -> None:
        if self.on_start is not None:
            self.on_start(name)

    def run(self) -> Report:
        started = time.perf_counter()
        use_admin = self.options.use_admin if self.options.use_admin is not None else bool(self.spec.admin_password)
        role: rc.Role = "admin" if use_admin else "app"
        self.report.meta["user"] = self.spec.admin_username if use_admin else (self.spec.username or "default")
        client = None
        try:
            self._step("connectivity")
            # In cluster mode INFO/SLOWLOG/SCAN are per node: judge the node named in REDIS_URL
            # (run health once per shard primary).
            client = (rc.node_client(self.spec, self.spec.hosts[0], role) if self.spec.mode == "cluster"
                      else rc.client(self.spec, role))
            if not self._connectivity(client):
                return self.report
            self._tls_certificate(client)
            self._step("sampling")
            info0 = client.info("all")
            t0 = time.monotonic()
            time.sleep(self.options.sample_seconds)
            info1 = client.info("all")
            interval = max(1e-3, time.monotonic() - t0)
            self._memory(info1)
            self._clients(info0, info1, interval)
            self._rates(info0, info1, interval)
            self._miss_ratio(info1)
            self._evictions(info0, info1, interval)
            self._persistence(info1)
            self._replication(info1)
            self._step("limiter keys")
            self._limiter_keys(client)
            self._step("slowlog")
            self._slowlog(client)
            if self.spec.mode == "cluster":
                self._step("cluster")
                self._cluster(client, role)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self.report.add(Check("connectivity-lost", "CRITICAL", expected="Redis answers throughout",
                                  actual=rc.redact(f"{type(exc).__name__}: {exc}", self.spec)))
        except (redis.RedisError, OSError, ValueError) as exc:
            # e.g. NOPERM on INFO: a report that says so, not a traceback.
            self.report.add(Check("health-error", "CRITICAL", expected="every health query answers",
                                  actual=rc.redact(f"{type(exc).__name__}: {exc}", self.spec),
                                  detail="the checks before this one ran; the rest did not"))
        finally:
            if client is not None:
                client.close()
            self.report.duration_s = time.perf_counter() - started
        return self.report

    def _connectivity(self, client: Any) -> bool:
        expected = f"PONG within REDIS_TIMEOUT ({self.spec.timeout_ms} ms)"
        try:
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                client.ping()
                samples.append((time.perf_counter() - t0) * 1000)
        except redis.AuthenticationError as exc:
            self.report.add(Check("connectivity", "CRITICAL", expected, f"authentication failed: {exc}",
                                  detail="check REDIS_PASSWORD / REDIS_USERNAME (or REDIS_ADMIN_*)"))
            return False
        except (redis.RedisError, OSError) as exc:
            self.report.add(Check("connectivity", "CRITICAL", expected,
                                  rc.redact(f"{type(exc).__name__}: {exc}", self.spec)))
            return False
        worst = max(samples)
        level = "OK" if worst <= self.spec.timeout_ms / 2 else ("WARNING" if worst <= self.spec.timeout_ms else "CRITICAL")
        self.report.add(Check("connectivity", level, expected,
                              f"PONG; latency min {min(samples):.2f} / max {worst:.2f} ms over {len(samples)} pings",
                              data={"latency_ms": [round(s, 3) for s in samples]}))
        return True

    def _tls_certificate(self, client: Any) -> None:
        """Days left on the certificate the server presents (the one this connection verified):
        a renewal that did not reach a running server shows here before clients fail."""
        if not self.spec.tls:
            return
        expected = f"more than {TLS_DAYS_WARNING} days left (warn < {TLS_DAYS_WARNING}, crit < {TLS_DAYS_CRITICAL})"
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.connect()
            sock = getattr(conn, "_sock", None)
            der = sock.getpeercert(binary_form=True) if sock is not None and hasattr(sock, "getpeercert") else None
        finally:
            pool.release(conn)
        if not der:
            self.report.add(Check("tls_certificate", "WARNING", expected, "the server certificate could not be read",
                                  detail="the connection is TLS but its socket gave no peer certificate"))
            return
        cert = x509.load_der_x509_certificate(der)
        days = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
        level = "CRITICAL" if days < TLS_DAYS_CRITICAL else "WARNING" if days < TLS_DAYS_WARNING else "OK"
        self.report.add(Check(
            "tls_certificate", level, expected,
            f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({days:.1f} days), serial {cert.serial_number:x}",
            detail="" if level == "OK" else "renew it: docs/sentinel.md, \"TLS renewal\" (self-hosted) or the "
                   "provider's certificate rotation (ElastiCache)",
            data={"days_left": round(days, 2), "not_after": cert.not_valid_after_utc.isoformat(),
                  "serial": f"{cert.serial_number:x}", "subject": cert.subject.rfc4514_string()}))

    def _memory(self, info: dict[str, Any]) -> None:
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        if limit <= 0:
            self.report.add(Check("memory_usage", "WARNING", _lines(self.t["memory_usage"]),
                                  f"{info.get('used_memory_human')} used, no maxmemory",
                                  detail="without maxmemory Redis grows until the host runs out of memory"))
            return
        pct = 100.0 * used / limit
        self._judge("memory_usage", pct, f"{pct:.1f} % ({info.get('used_memory_human')} of "
                    f"{info.get('maxmemory_human')}, policy {info.get('maxmemory_policy')})")

    def _counter_delta(self, name: str, a: dict[str, Any], b: dict[str, Any], interval: float, what: str,
                       detail: str = "") -> None:
        """Judge a cumulative counter by its growth between the two samples (like increase() in the
        alert); the total since start is information only, or one old event stays CRITICAL forever."""
        total = int(b.get(name, 0))
        delta = max(0, total - int(a.get(name, 0)))
        c = self._judge(name, delta, f"{delta} {what} during the {interval:.1f} s sample ({total} since start)",
                        detail=detail if delta else "")
        c.data["since_start"] = total

    def _clients(self, a: dict[str, Any], info: dict[str, Any], interval: float) -> None:
        self._judge("connected_clients", int(info.get("connected_clients", 0)),
                    f"{info.get('connected_clients')} connected (maxclients {info.get('maxclients', '?')})")
        self._judge("blocked_clients", int(info.get("blocked_clients", 0)), f"{info.get('blocked_clients')} blocked")
        self._counter_delta("rejected_connections", a, info, interval, "rejected (maxclients reached)")

    def _rates(self, a: dict[str, Any], b: dict[str, Any], interval: float) -> None:
        # Our own two INFO calls are in the delta; at 2 commands they do not move a 1000/s line.
        cmds = (int(b["total_commands_processed"]) - int(a["total_commands_processed"])) / interval
        self._judge("command_rate", cmds, f"{cmds:.0f} commands/s over {interval:.1f} s")
        conns = (int(b.get("total_connections_received", 0)) - int(a.get("total_connections_received", 0))) / interval
        self._judge("new_connections", conns, f"{conns:.1f} new connections/s over {interval:.1f} s")
        cpu_keys = ("used_cpu_sys_main_thread", "used_cpu_user_main_thread")
        if all(k in a and k in b for k in cpu_keys):
            cpu = 100.0 * sum(float(b[k]) - float(a[k]) for k in cpu_keys) / interval
            self._judge("engine_cpu", cpu, f"{cpu:.1f} % of one core (main thread)")

    def _miss_ratio(self, info: dict[str, Any]) -> None:
        hits, misses = int(info.get("keyspace_hits", 0)), int(info.get("keyspace_misses", 0))
        lookups = hits + misses
        t = self.t["keyspace_miss_ratio"]
        if lookups < MIN_LOOKUPS_FOR_RATIO:
            self.report.add(Check("keyspace_miss_ratio", "OK", _lines(t),
                                  f"{lookups} lookups since start: too few to judge (< {MIN_LOOKUPS_FOR_RATIO})",
                                  detail=f"the alert needs > {MISS_RATIO_MIN_LOOKUPS_PER_SECOND} lookup/s"))
            return
        ratio = 100.0 * misses / lookups
        self._judge("keyspace_miss_ratio", ratio, f"{ratio:.1f} % ({misses} misses of {lookups} lookups since start)",
                    detail="for a limiter a miss is a client's first request in a window")

    def _evictions(self, a: dict[str, Any], b: dict[str, Any], interval: float) -> None:
        self._counter_delta("evicted_keys", a, b, interval, "keys evicted",
                            detail="an evicted limiter key resets that client's window (over-admission)")

    def _persistence(self, info: dict[str, Any]) -> None:
        bgsave_ok = info.get("rdb_last_bgsave_status") == "ok"
        self._judge("rdb_last_bgsave_failed", 1 if bgsave_ok else 0,
                    f"rdb_last_bgsave_status:{info.get('rdb_last_bgsave_status')}")
        changes = int(info.get("rdb_changes_since_last_save", 0))
        age = time.time() - int(info.get("rdb_last_save_time", time.time()))
        if changes > 0:
            self._judge("rdb_last_save_age", age, f"last save {age:.0f} s ago, {changes} changes since")
        else:
            self.report.add(Check("rdb_last_save_age", "OK", _lines(self.t["rdb_last_save_age"]),
                                  f"last save {age:.0f} s ago, nothing changed since"))
        if int(info.get("aof_enabled", 0)):
            aof_ok = info.get("aof_last_write_status") == "ok"
            self._judge("aof_last_write_failed", 1 if aof_ok else 0,
                        f"aof_enabled:1, aof_last_write_status:{info.get('aof_last_write_status')}, "
                        f"aof_last_bgrewrite_status:{info.get('aof_last_bgrewrite_status')}")
        else:
            self.report.add(Check("aof_last_write_failed", "OK", "AOF write ok when AOF is on",
                                  "aof_enabled:0", detail="no AOF: up to one save interval of counters is lost on a crash"))

    def _replication(self, info: dict[str, Any]) -> None:
        role = info.get("role")
        if role == "slave":
            up = info.get("master_link_status") == "up"
            self._judge("replication_link_down", 1 if up else 0,
                        f"replica of {info.get('master_host')}:{info.get('master_port')}, link "
                        f"{info.get('master_link_status')}")
            return
        replicas = int(info.get("connected_slaves", 0))
        lags = []
        for i in range(replicas):
            entry = info.get(f"slave{i}")
            if isinstance(entry, dict) and "lag" in entry:
                lags.append(int(entry["lag"]))
        if lags:
            self._judge("replication_lag", max(lags), f"primary with {replicas} replica(s), max lag {max(lags)} s")
        else:
            self.report.add(Check("replication_lag", "OK", _lines(self.t["replication_lag"]),
                                  f"role {role}, {replicas} replica(s)"))

    def _cluster(self, client: Any, role: rc.Role) -> None:
        """The cluster as the seed node sees it (state, slots served, failing nodes), then every
        other reachable node judged on its own INFO: memory, clients, replication."""
        from redisops.cluster import SLOTS, coverage

        cov = coverage(client)
        self._judge("cluster_state", 1 if cov.state == "ok" else 0, cov.summary())
        unserved = SLOTS - cov.slots_ok
        self._judge("cluster_slots_not_ok", unserved, f"{unserved} of {SLOTS} slots not served "
                    f"({SLOTS - cov.slots_assigned} unassigned, {cov.slots_pfail} pfail, {cov.slots_fail} fail)")
        t_node = self.t["cluster_node_failed"]
        seed = self.spec.hosts[0]
        for n in cov.nodes:
            where = f"{n.host}:{n.port}"
            if n.failed or n.suspected:
                level = "CRITICAL" if n.failed else "WARNING"
                self.report.add(Check(f"cluster_node_failed[{where}]", level, _lines(t_node),
                                      f"{n.role} {where} flagged {'fail' if n.failed else 'fail? (suspected)'}",
                                      detail="docs/runbooks/troubleshooting.md#cluster-node-failed"))
                continue
            if (n.host, n.port) == seed or "myself" in n.flags:
                continue  # the seed node was judged above
            self._node(n.role, n.address, role)

    def _node(self, node_role: str, address: tuple[str, int], role: rc.Role) -> None:
        where = f"{address[0]}:{address[1]}"
        try:
            c = rc.node_client(self.spec, address, role)
            try:
                info = c.info("all")
            finally:
                c.close()
        except (redis.RedisError, OSError) as exc:
            self.report.add(Check(f"cluster_node_failed[{where}]", "CRITICAL", "every node answers INFO",
                                  rc.redact(f"{node_role} {where}: {type(exc).__name__}: {exc}", self.spec)))
            return
        used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        checks = [("connected_clients", float(info.get("connected_clients", 0)),
                   f"{info.get('connected_clients')} connected")]
        if limit > 0:
            checks.append(("memory_usage", 100.0 * used / limit, f"{100.0 * used / limit:.1f} % of "
                           f"{info.get('maxmemory_human')}"))
        if info.get("role") == "slave":
            checks.append(("replication_link_down", 1.0 if info.get("master_link_status") == "up" else 0.0,
                           f"replica of {info.get('master_host')}:{info.get('master_port')}, link "
                           f"{info.get('master_link_status')}"))
        for name, value, actual in checks:
            t = self.t[name]
            self.report.add(Check(f"{name}[{where}]", level_for(t, value), _lines(t), f"{node_role} {where}: {actual}",
                                  data={"value": value, "alert": t.alert}))

    def _limiter_keys(self, client: Any) -> None:
        o = self.options
        match = f"{o.prefix}:*"
        by_tier: Counter[str] = Counter()
        sample: list[str] = []
        seen = 0
        try:
            for key in client.scan_iter(match=match, count=1000):
                seen += 1
                name = key.decode() if isinstance(key, bytes) else str(key)
                by_tier[_tier_of(name)] += 1
                if len(sample) < o.ttl_sample:
                    sample.append(name)
                if seen >= o.scan_budget:
                    break
        except redis.ResponseError as exc:
            self.report.add(Check("limiter_keys", "WARNING", "SCAN of limiter keys", f"refused: {exc}"))
            return
        pipe = client.pipeline(transaction=False)
        for k in sample:
            pipe.pttl(k)
        ttls = pipe.execute() if sample else []
        no_ttl = [k for k, ttl in zip(sample, ttls, strict=True) if ttl == -1]
        live = [t for t in ttls if t > 0]
        counts = ", ".join(f"{tier}={n}" for tier, n in sorted(by_tier.items())) or "none"
        capped = " (scan budget reached: counts are a lower bound)" if seen >= o.scan_budget else ""
        ttl_text = (f"TTL {min(live) / 1000:.1f}-{max(live) / 1000:.1f} s on {len(sample)} sampled"
                    if live else f"{len(sample)} sampled")
        c = Check("limiter_keys", "CRITICAL" if no_ttl else "OK",
                  expected=f"every {match} key has a TTL", actual=f"{seen} keys by tier: {counts}; {ttl_text}{capped}",
                  data={"by_tier": dict(by_tier), "scanned": seen, "without_ttl": no_ttl[:10]})
        if no_ttl:
            c.detail = (f"{len(no_ttl)} of {len(sample)} sampled keys have no TTL (e.g. {no_ttl[0]}): they never "
                        "expire, and the client stays limited forever")
        self.report.add(c)

    def _slowlog(self, client: Any) -> None:
        try:
            entries = client.slowlog_get(self.options.slowlog_top * 4)
        except redis.ResponseError as exc:
            self.report.add(Check("slowlog", "OK", "top SLOWLOG entries", "not readable by this user",
                                  detail=f"{exc}; set REDIS_ADMIN_PASSWORD to include it"))
            return
        top = sorted(entries, key=lambda e: e.get("duration", 0), reverse=True)[: self.options.slowlog_top]
        rows = []
        for e in top:
            cmd = e.get("command", b"")
            text = cmd.decode(errors="replace") if isinstance(cmd, bytes) else str(cmd)
            # A SLOWLOG entry holds the command's arguments: an AUTH would carry a password.
            rows.append(f"{e.get('duration', 0)} us {rc.redact(text[:60], self.spec)}")
        self.report.add(Check("slowlog", "OK", "top SLOWLOG entries (information)",
                              f"{len(entries)} recent entries" + (": " + "; ".join(rows) if rows else ""),
                              data={"top": rows}))


def run_health(spec: rc.ConnectionSpec, thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
               options: HealthOptions | None = None, *, on_start: Callable[[str], None] | None = None) -> Report:
    return HealthRun(spec, thresholds, options, on_start=on_start).run()
