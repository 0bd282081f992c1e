"""Grafana provisioning (datasource, dashboard provider, dashboard) and redis_exporter's
command line, rendered as strings / plain data.

File-provisioned dashboards do not resolve `${DS_...}` import inputs, so every panel names
the provisioned datasource by its fixed uid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from infra.thresholds import LIMITER_DECISIONS_METRIC, LIMITER_ERRORS_METRIC, thresholds_by_name

DATASOURCE_UID = "redisstack-prometheus"
DATASOURCE_NAME = "Prometheus"
DASHBOARD_UID = "redisstack-redis"
DASHBOARD_TITLE = "Redis (rate limiter)"
DASHBOARD_FOLDER = "redisstack"
# Where the container image reads provisioning from, and where the provider finds the JSON.
PROVISIONING_DIR = "/etc/grafana/provisioning"
DASHBOARDS_DIR = "/var/lib/grafana/dashboards"

# The limiter's key prefix (ratelimit/ scripts write `rl:<tier>:<client>`).
RATE_LIMIT_KEY_PATTERN = "rl:*"
EXPORTER_PORT = 9121
# `-config-command -` skips the exporter's CONFIG GET (oliver006/redis_exporter main.go: 'set to "-" to
# skip config metrics extraction'; Debian's 1.45 has the flag too).
CONFIG_COMMAND_OFF = "-"

_DS_REF: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}


def render_datasource(prometheus_url: str = "http://prometheus:9090") -> str:
    """datasources/*.yaml: the Prometheus datasource with a fixed uid, default for Explore."""
    doc = {
        "apiVersion": 1,
        # Re-provisioning must converge on this definition even if someone edited it in the UI.
        "deleteDatasources": [{"name": DATASOURCE_NAME, "orgId": 1}],
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "orgId": 1,
                "url": prometheus_url,
                "isDefault": True,
                "editable": False,
                "jsonData": {"httpMethod": "POST", "timeInterval": "15s"},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def render_dashboard_provider(dashboards_path: str = DASHBOARDS_DIR) -> str:
    """dashboards/*.yaml: a file provider that loads every JSON under `dashboards_path`."""
    doc = {
        "apiVersion": 1,
        "providers": [
            {
                "name": "redisstack",
                "orgId": 1,
                "folder": DASHBOARD_FOLDER,
                "type": "file",
                "disableDeletion": True,
                # The file is the source of truth; UI edits would be silently overwritten.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 30,
                "options": {"path": dashboards_path, "foldersFromFilesStructure": False},
            }
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(frozen=True)
class Panel:
    """One dashboard panel; `guide_item` ties it to the guide's dashboard list (or None)."""

    title: str
    queries: tuple[tuple[str, str], ...]  # (legend, PromQL)
    unit: str
    guide_item: str | None
    description: str = ""
    kind: str = "timeseries"


# The guide's "Grafana Dashboard" list, in its order, plus what the limiter needs.
GUIDE_DASHBOARD_ITEMS: tuple[str, ...] = (
    "Memory usage",
    "Command throughput",
    "Network traffic",
    "Client connections",
    "Cache hit/miss ratio",
    "Key count",
)

_LOOKUPS = "(rate(redis_keyspace_hits_total[1m]) + rate(redis_keyspace_misses_total[1m]))"

PANELS: tuple[Panel, ...] = (
    Panel("Redis up", (("{{instance}}", "redis_up"),), "none", None,
          "1 when the exporter can reach and authenticate to Redis", kind="stat"),
    Panel("Memory usage",
          (("used {{instance}}", "redis_memory_used_bytes"),
           ("maxmemory {{instance}}", "redis_memory_max_bytes")),
          "bytes", "Memory usage", "Used memory against maxmemory (alert at 80 % / 90 %)"),
    Panel("Memory usage % of maxmemory",
          (("{{instance}}", "100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)"),),
          "percent", "Memory usage", "Empty when maxmemory is 0 (unbounded)"),
    Panel("Command throughput",
          (("{{instance}}", "rate(redis_commands_processed_total[1m])"),),
          "ops", "Command throughput", "Commands per second (alert at 1000 / 5000)"),
    Panel("Network traffic",
          (("in {{instance}}", "rate(redis_net_input_bytes_total[1m])"),
           ("out {{instance}}", "rate(redis_net_output_bytes_total[1m])")),
          "Bps", "Network traffic"),
    Panel("Client connections",
          (("connected {{instance}}", "redis_connected_clients"),
           ("blocked {{instance}}", "redis_blocked_clients"),
           ("rejected/s {{instance}}", "rate(redis_rejected_connections_total[1m])")),
          "short", "Client connections", "Connected (alert 1000 / 5000), blocked (10 / 50), rejected (any)"),
    Panel("Cache hit/miss ratio",
          (("hit % {{instance}}", f"100 * rate(redis_keyspace_hits_total[1m]) / {_LOOKUPS}"),
           ("miss % {{instance}}", f"100 * rate(redis_keyspace_misses_total[1m]) / {_LOOKUPS}")),
          "percent", "Cache hit/miss ratio", "Empty while there are no lookups (alert on miss 30 % / 50 %)"),
    Panel("Key count",
          (("{{db}} {{instance}}", "redis_db_keys"),
           ("expiring {{db}} {{instance}}", "redis_db_keys_expiring")),
          "short", "Key count"),
    Panel("Evictions and expirations",
          (("evicted/s {{instance}}", "rate(redis_evicted_keys_total[1m])"),
           ("expired/s {{instance}}", "rate(redis_expired_keys_total[1m])")),
          "short", None, "Any eviction resets a client's counter: over-admission"),
    Panel("Rate-limiter keys",
          (("{{key}} {{instance}}", f'redis_keys_count{{key="{RATE_LIMIT_KEY_PATTERN}"}}'),),
          "short", None, f"Keys matching {RATE_LIMIT_KEY_PATTERN} (exporter -count-keys): tracked clients"),
)


# The limiter row: what the application's limiter decided (ratelimit/metrics.py, scraped from the
# application's /metrics by the `ratelimit-app` job), under the Redis panels. Its series exist only
# while an application exports them.
LIMITER_ROW_TITLE = "Rate limiter (application)"
_D = LIMITER_DECISIONS_METRIC
_LATENCY = "ratelimit_decision_seconds_bucket"
LIMITER_PANELS: tuple[Panel, ...] = (
    Panel("Limiter decisions by tier and outcome",
          (("{{tier}} {{outcome}}", f"sum by (tier, outcome) (rate({_D}[1m]))"),),
          "reqps", None, "allowed, denied (by Redis), denied_locally (deny cache), fallback (no Redis)"),
    Panel("Limiter decision latency",
          (("p50 {{tier}}", f"histogram_quantile(0.5, sum by (le, tier) (rate({_LATENCY}[5m])))"),
           ("p99 {{tier}}", f"histogram_quantile(0.99, sum by (le, tier) (rate({_LATENCY}[5m])))")),
          "s", None, "Round trip to Redis included; the default decision timeout is 100 ms"),
    Panel("Limiter fallback decisions (5m)",
          (("{{tier}}", f'sum by (tier) (increase({_D}{{outcome="fallback"}}[5m]))'),),
          "short", None, "Any is an alert: the limiter is deciding without Redis", kind="stat"),
    Panel("Credential-tier denials",
          (("{{tier}} {{instance}}", thresholds_by_name()["credential_denials"].expr),),
          "reqps", None, "Denials on auth and mfa (alert at 1/s, 10/s): credential stuffing"),
    Panel("Limiter errors (5m)",
          (("{{kind}}", f"sum by (kind) (increase({LIMITER_ERRORS_METRIC}[5m]))"),),
          "short", None, "library_missing: load the ratelimit library; noperm: the app's ACL refuses the call"),
)


def _panel(panel_id: int, p: Panel, grid: dict[str, int]) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": dict(_DS_REF),
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + j), "datasource": dict(_DS_REF), "expr": expr, "legendFormat": legend}
            for j, (legend, expr) in enumerate(p.queries)
        ],
    }


def _grid(panels: tuple[Panel, ...], first_id: int, y0: int) -> tuple[list[dict[str, Any]], int]:
    """Two panels per line from y0; returns them and the next free y."""
    width = 12
    out = [_panel(first_id + i, p, {"h": 8, "w": width, "x": (i % 2) * width, "y": y0 + (i // 2) * 8})
           for i, p in enumerate(panels)]
    return out, y0 + -(-len(panels) // 2) * 8


def dashboard(panels: tuple[Panel, ...] = PANELS, limiter_panels: tuple[Panel, ...] = LIMITER_PANELS
              ) -> dict[str, Any]:
    """The dashboard model (what render_dashboard serialises): the Redis panels, then the limiter row."""
    out, y = _grid(panels, 1, 0)
    if limiter_panels:
        out.append({"id": len(out) + 1, "type": "row", "title": LIMITER_ROW_TITLE, "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        more, _ = _grid(limiter_panels, len(out) + 1, y + 1)
        out += more
    return {
        "uid": DASHBOARD_UID,
        "title": DASHBOARD_TITLE,
        "tags": ["redis", "redisstack", "rate-limiting"],
        "timezone": "browser",
        "editable": False,
        "schemaVersion": 37,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": out,
    }


def render_dashboard(panels: tuple[Panel, ...] = PANELS) -> str:
    return json.dumps(dashboard(panels), indent=2, sort_keys=False) + "\n"


def dashboard_queries(panels: tuple[Panel, ...] = PANELS) -> list[str]:
    """The Redis panels' queries (redis_exporter metrics); `dashboard_queries(LIMITER_PANELS)` for the
    limiter row's, which read the application's metrics."""
    return [expr for p in panels for _, expr in p.queries]


@dataclass(frozen=True)
class ExporterCommand:
    """redis_exporter's argv (without the binary) and extra environment.

    The password travels in `env` (REDIS_PASSWORD) or in a file named by a flag; never in
    argv, which any local user can read from /proc/<pid>/cmdline.
    """

    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, binary: str = "redis_exporter") -> list[str]:
        return [binary, *self.args]


def exporter_password_file(redis_addr: str, password: str, user: str = "monitor") -> str:
    """Content for `-redis.password-file`: a JSON map of target URI -> password.

    The key the exporter looks the password up by depends on its version: 1.45 (Debian, the
    real-process proofs and the Sentinel hosts) uses the -redis.addr URI as given; since 1.69
    (#983) the URI carries the -redis.user, ``rediss://monitor@redis:6379``
    (exporter/redis.go lookupPasswordInPasswordMap at v1.88.0). Both keys are written so either
    version authenticates; another target (`/scrape?target=...`) finds no password here.
    """
    scheme, sep, rest = redis_addr.partition("://")
    if not sep or "@" in rest or not user:
        raise ValueError(f"exporter_password_file: expected scheme://host:port and a user, got {redis_addr!r}")
    return json.dumps({redis_addr: password, f"{scheme}://{user}@{rest}": password}) + "\n"


def exporter_redis_addr(host: str, port: int, *, tls: bool) -> str:
    return f"{'rediss' if tls else 'redis'}://{host}:{port}"


def exporter_command(
    redis_host: str,
    redis_port: int,
    *,
    user: str = "monitor",
    password: str | None = None,
    password_file: str | None = None,
    tls_ca_cert_file: str | None = None,
    tls_client_cert_file: str | None = None,
    tls_client_key_file: str | None = None,
    listen_address: str = f"0.0.0.0:{EXPORTER_PORT}",
    count_rate_limit_keys: bool = True,
    rate_limit_key_pattern: str = RATE_LIMIT_KEY_PATTERN,
    db: int = 0,
) -> ExporterCommand:
    """Arguments for scraping one Redis as the least-privilege ACL `user`.

    Give exactly one of `password` (passed as env REDIS_PASSWORD) or `password_file`
    (a path, content from `exporter_password_file`). TLS is on when `tls_ca_cert_file` is
    given: the address becomes rediss:// and the CA verifies Redis' certificate (1.45 has
    no server-name flag, so the certificate must name the host in `redis_host`).

    `count_rate_limit_keys` adds `-count-keys db<N>=<pattern>`: a SCAN over the keyspace
    on every scrape (read-only, no values read). It costs O(keys) per scrape; turn it off
    for very large keyspaces and use redis_db_keys instead.
    """
    if (password is None) == (password_file is None):
        raise ValueError("exporter_command: give exactly one of password or password_file")
    if (tls_client_cert_file is None) != (tls_client_key_file is None):
        raise ValueError("exporter_command: a TLS client certificate needs its key and vice versa")
    if tls_client_cert_file is not None and tls_ca_cert_file is None:
        raise ValueError("exporter_command: TLS client certificates need tls_ca_cert_file (TLS on)")
    for name, value in (("redis_host", redis_host), ("user", user), ("rate_limit_key_pattern", rate_limit_key_pattern)):
        # A comma splits -count-keys patterns; whitespace/newlines would corrupt argv or env.
        if not value or any(c.isspace() for c in value) or "," in value:
            raise ValueError(f"exporter_command: {name} {value!r} must be non-empty without spaces or commas")
    tls = tls_ca_cert_file is not None
    addr = exporter_redis_addr(redis_host, redis_port, tls=tls)
    args: list[str] = [
        "-redis.addr", addr,
        "-redis.user", user,
        "-web.listen-address", listen_address,
        # No CONFIG GET: it answers `masterauth`, the replica user's password, which every node of
        # a Sentinel topology carries (redis_conf/exporter.py).
        "-config-command", CONFIG_COMMAND_OFF,
    ]
    env: dict[str, str] = {}
    if password is not None:
        env["REDIS_PASSWORD"] = password
    else:
        assert password_file is not None
        args += ["-redis.password-file", password_file]
    if tls_ca_cert_file is not None:
        args += ["-tls-ca-cert-file", tls_ca_cert_file]
    if tls_client_cert_file is not None and tls_client_key_file is not None:
        args += ["-tls-client-cert-file", tls_client_cert_file, "-tls-client-key-file", tls_client_key_file]
    if count_rate_limit_keys:
        args += ["-count-keys", f"db{db}={rate_limit_key_pattern}"]
    return ExporterCommand(tuple(args), env)
