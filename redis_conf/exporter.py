"""What redis_exporter sends to Redis, read from its source at the pinned tag.

The `monitor` ACL user (redis_conf/acl.py MONITOR_RULES) must allow exactly what the exporter
sends with the flags this stack passes (infra/monitoring/grafana.py exporter_command and the
Sentinel hosts' exporter_args), and nothing the exporter can be made to send by other flags or by
a caller of its HTTP endpoints (`/scrape?target=...&check-keys=...` reuses the configured
credentials, exporter/http.go scrapeHandler; `/discover-cluster-nodes` sends CLUSTER NODES).

Derived from github.com/oliver006/redis_exporter at tag v{DERIVED_FROM} (file:line at that tag).
When Renovate bumps the exporter pin (infra/versions.py), tests/unit/test_exporter_acl.py fails
until this table is re-derived from the new tag's source and DERIVED_FROM follows.
"""

from __future__ import annotations

from dataclasses import dataclass

DERIVED_FROM = "1.88.0"


@dataclass(frozen=True)
class SentCommand:
    """One command the exporter sends on every scrape (with this stack's flags)."""

    argv: tuple[str, ...]
    acl: str | None  # the MONITOR_RULES token that allows it; None: not a command on every engine
    source: str  # file:line at the DERIVED_FROM tag
    when: str


@dataclass(frozen=True)
class DeniedCommand:
    """A command the exporter can send only with flags we do not pass (or via its HTTP endpoints);
    the monitor user must get NOPERM for it."""

    argv: tuple[str, ...]
    source: str
    via: str


# AUTH is sent by redigo's DialUsername/DialPassword (exporter/redis.go configureOptions) and is
# exempt from ACL command checks (a no-auth command), so it needs no rule.
SENT: tuple[SentCommand, ...] = (
    SentCommand(("CLIENT", "SETNAME", "redis_exporter"), "+client|setname", "exporter/exporter.go:815",
                "-set-client-name defaults to true (main.go:189)"),
    SentCommand(("INFO", "ALL"), "+info", "exporter/exporter.go:820", "every scrape"),
    SentCommand(("INFO",), "+info", "exporter/exporter.go:823", "when INFO ALL fails"),
    SentCommand(("CLUSTER", "INFO"), "+cluster|info", "exporter/exporter.go:855", "INFO says cluster_enabled:1"),
    SentCommand(("LATENCY", "LATEST"), "+latency|latest", "exporter/latency.go:26",
                "unless -exclude-latency-histogram-metrics (exporter.go:874)"),
    SentCommand(("LATENCY", "HISTOGRAM"), "+latency|histogram", "exporter/latency.go:56",
                "unless -exclude-latency-histogram-metrics (exporter.go:874); not sent by 1.45"),
    SentCommand(("SELECT", "0"), "+select", "exporter/keys.go:395", "-count-keys db0=rl:* (extractCountKeysMetrics)"),
    SentCommand(("SCAN", "0", "MATCH", "rl:*", "COUNT", "1000"), "+scan", "exporter/keys.go:505",
                "-count-keys db0=rl:* (scanKeys; -check-keys-batch-size defaults to 1000)"),
    SentCommand(("SLOWLOG", "LEN"), "+slowlog|len", "exporter/slowlog.go:9", "every scrape"),
    SentCommand(("SLOWLOG", "GET", "1"), "+slowlog|get", "exporter/slowlog.go:13", "every scrape"),
    # Valkey 8.1+ only; Redis answers "unknown command" before any ACL check, and an ACL rule
    # naming it would stop Redis from loading the ACL file. Denied on Valkey 8.1+ (the
    # commandlog_* metrics stay absent there; slowlog_* covers slow commands).
    SentCommand(("COMMANDLOG", "LEN", "slow"), None, "exporter/commandlog.go:34",
                "every scrape since 1.87 (#1132); not a Redis command"),
)

DENIED: tuple[DeniedCommand, ...] = (
    DeniedCommand(("GET", "rl:x"), "exporter/keys.go:21", "-check-keys / -check-single-keys or /scrape?check-keys"),
    DeniedCommand(("TYPE", "rl:x"), "exporter/keys.go:370", "-check-keys or /scrape?check-keys"),
    DeniedCommand(("MEMORY", "USAGE", "rl:x"), "exporter/keys.go:376", "-check-keys or /scrape?check-keys"),
    DeniedCommand(("STRLEN", "rl:x"), "exporter/keys.go:33", "-check-keys"),
    DeniedCommand(("XINFO", "STREAM", "rl:x"), "exporter/streams.go:44", "-check-streams or /scrape?check-streams"),
    DeniedCommand(("CLIENT", "LIST"), "exporter/clients.go:129", "-export-client-list"),
    DeniedCommand(("CLIENT", "KILL", "ID", "1"), "-", "granted by +@connection, which the old rules had"),
    DeniedCommand(("CLIENT", "PAUSE", "10"), "-", "granted by +@connection, which the old rules had"),
    DeniedCommand(("CLUSTER", "NODES"), "exporter/nodes.go:14", "HTTP /discover-cluster-nodes"),
    DeniedCommand(("EVAL", "return 1", "0"), "exporter/lua.go:18", "-script"),
    # Redis answers CONFIG GET with `masterauth` in clear (to any user allowed +config|get: shown on
    # a real server by tests/integration/test_exporter_acl_live.py), and every node of a
    # Sentinel topology carries it (redis_conf/sentinel.py): a monitor user with +config|get could
    # read the replica user's password and PSYNC the whole dataset. The stack passes
    # `-config-command -`, which skips both CONFIG GETs (exporter.go:836, commandlog.go:46); the
    # config metrics it costs (redis_config_*, redis_databases) feed no panel or alert.
    DeniedCommand(("CONFIG", "GET", "*"), "exporter/exporter.go:839", "-config-command other than '-' (main.go:175)"),
    DeniedCommand(("CONFIG", "GET", "masterauth"), "exporter/exporter.go:839",
                  "-config-command other than '-' (main.go:175)"),
    DeniedCommand(("CONFIG", "GET", "commandlog-*"), "exporter/commandlog.go:50",
                  "-config-command other than '-' on Valkey 8.1+"),
    DeniedCommand(("CONFIG", "SET", "maxmemory", "0"), "-", "never sent"),
)

# Flags whose effect on the command set is covered by SENT; any other exporter flag the stack
# passes must be added here with the commands it enables (main.go at the DERIVED_FROM tag).
KNOWN_FLAGS: dict[str, str] = {
    "-redis.addr": "target address (rediss:// turns TLS on)",
    "-redis.user": "ACL user for AUTH",
    "-redis.password-file": "JSON map of URI -> password (redis.go lookupPasswordInPasswordMap)",
    "-web.listen-address": "HTTP listener",
    "-tls-ca-cert-file": "CA for the Redis certificate",
    "-tls-client-cert-file": "client certificate (mutual TLS)",
    "-tls-client-key-file": "client key (mutual TLS)",
    "-count-keys": "SELECT + SCAN MATCH (keys.go extractCountKeysMetrics)",
    "-config-command": "'-' sends no CONFIG GET at all (exporter.go:836, commandlog.go:46)",
}
