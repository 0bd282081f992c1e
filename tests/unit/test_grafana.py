"""Grafana provisioning files and redis_exporter's command line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from infra.monitoring.grafana import (
    DASHBOARD_UID,
    DATASOURCE_UID,
    GUIDE_DASHBOARD_ITEMS,
    LIMITER_PANELS,
    LIMITER_ROW_TITLE,
    PANELS,
    dashboard_queries,
    exporter_command,
    exporter_password_file,
    render_dashboard,
    render_dashboard_provider,
    render_datasource,
)

# Grafana's provisioning schema (pkg/services/provisioning/{datasources,dashboards}/types.go,
# apiVersion 1): required keys and the types Grafana's YAML decoder accepts for them.
DATASOURCE_REQUIRED: dict[str, type] = {"name": str, "type": str, "access": str, "url": str, "uid": str}
DATASOURCE_KNOWN = {
    "name", "type", "access", "url", "uid", "orgId", "isDefault", "editable", "jsonData", "secureJsonData",
    "basicAuth", "basicAuthUser", "user", "database", "withCredentials", "version",
}
PROVIDER_REQUIRED: dict[str, type] = {"name": str, "type": str, "options": dict}
PROVIDER_KNOWN = {
    "name", "orgId", "folder", "folderUid", "type", "disableDeletion", "updateIntervalSeconds",
    "allowUiUpdates", "options",
}


def check_keys(item: dict[str, Any], required: dict[str, type], known: set[str]) -> None:
    for key, typ in required.items():
        assert isinstance(item.get(key), typ), f"{key} missing or not {typ.__name__}: {item}"
    assert set(item) <= known, f"keys Grafana does not know: {set(item) - known}"


def test_datasource_provisioning_schema() -> None:
    doc = yaml.safe_load(render_datasource("http://prometheus:9090"))
    assert doc["apiVersion"] == 1
    assert doc["deleteDatasources"] == [{"name": "Prometheus", "orgId": 1}]
    (ds,) = doc["datasources"]
    check_keys(ds, DATASOURCE_REQUIRED, DATASOURCE_KNOWN)
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    assert ds["uid"] == DATASOURCE_UID and ds["isDefault"] is True
    assert ds["url"] == "http://prometheus:9090"


def test_dashboard_provider_schema() -> None:
    doc = yaml.safe_load(render_dashboard_provider("/var/lib/grafana/dashboards"))
    assert doc["apiVersion"] == 1
    (p,) = doc["providers"]
    check_keys(p, PROVIDER_REQUIRED, PROVIDER_KNOWN)
    assert p["type"] == "file"
    assert p["options"]["path"] == "/var/lib/grafana/dashboards"
    assert isinstance(p["updateIntervalSeconds"], int)


def test_dashboard_json_and_datasource_refs() -> None:
    text = render_dashboard()
    dash = json.loads(text)
    assert dash["uid"] == DASHBOARD_UID and dash["title"]
    # Import-time inputs are not resolved for file-provisioned dashboards.
    assert "${DS_" not in text and "__inputs" not in dash
    ds_uid = yaml.safe_load(render_datasource())["datasources"][0]["uid"]
    panels = dash["panels"]
    rows = [p for p in panels if p["type"] == "row"]
    assert [r["title"] for r in rows] == [LIMITER_ROW_TITLE]
    assert len(panels) == len(PANELS) + 1 + len(LIMITER_PANELS)
    assert len({p["id"] for p in panels}) == len(panels)
    # The row sits below every Redis panel and above every limiter panel, full width.
    (row,) = rows
    assert row["gridPos"] == {"h": 1, "w": 24, "x": 0, "y": max(p["gridPos"]["y"] + p["gridPos"]["h"]
                                                               for p in panels[:len(PANELS)])}
    assert all(p["gridPos"]["y"] > row["gridPos"]["y"] for p in panels[len(PANELS) + 1:])
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": ds_uid}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == ds_uid
            assert t["expr"].strip()
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
        assert set(p["gridPos"]) == {"h", "w", "x", "y"} and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    # No two panels on the same grid cell.
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(cells) == len(set(cells))


# Grafana 12.4 migrates a dashboard from schemaVersion 13 up to 42, the last one of the v1
# dashboard API (grafana/grafana apps/dashboard/pkg/migration/schemaversion/README.md: "Minimum
# Version: 13, Latest Version: 42"); below 13 a file-provisioned dashboard is refused.
GRAFANA_12_SCHEMA_VERSIONS = range(13, 43)


def test_dashboard_schema_version_is_one_grafana_12_migrates() -> None:
    dash = json.loads(render_dashboard())
    assert dash["schemaVersion"] in GRAFANA_12_SCHEMA_VERSIONS
    # Panel types Grafana 12 ships without Angular (the graph/singlestat panels are gone since 11).
    assert {p["type"] for p in dash["panels"]} <= {"timeseries", "stat", "row"}


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bredis_[a-z_]+\b", expr))


# What each guide item must actually show, by the exporter metric behind it.
GUIDE_METRICS = {
    "Memory usage": {"redis_memory_used_bytes", "redis_memory_max_bytes"},
    "Command throughput": {"redis_commands_processed_total"},
    "Network traffic": {"redis_net_input_bytes_total", "redis_net_output_bytes_total"},
    "Client connections": {"redis_connected_clients"},
    "Cache hit/miss ratio": {"redis_keyspace_hits_total", "redis_keyspace_misses_total"},
    "Key count": {"redis_db_keys"},
}


def test_guide_panels_exist_with_the_right_metrics() -> None:
    dash = json.loads(render_dashboard())
    assert set(GUIDE_METRICS) == set(GUIDE_DASHBOARD_ITEMS)
    for item, needed in GUIDE_METRICS.items():
        panels = [p for p in dash["panels"] if p["title"].startswith(item)]
        assert panels, f"no panel for guide item {item!r}"
        used = set().union(*(metric_names(t["expr"]) for p in panels for t in p["targets"]))
        assert needed <= used, (item, needed - used)
    titles = {p["title"] for p in dash["panels"]}
    assert {"Evictions and expirations", "Rate-limiter keys"} <= titles
    assert 'redis_keys_count{key="rl:*"}' in dashboard_queries()


def test_exporter_command_keeps_password_out_of_argv() -> None:
    cmd = exporter_command("redis", 6379, user="monitor", password="s3cret-monitor-pw")
    assert cmd.env == {"REDIS_PASSWORD": "s3cret-monitor-pw"}
    assert "s3cret-monitor-pw" not in " ".join(cmd.argv())
    assert cmd.args[:6] == ("-redis.addr", "redis://redis:6379", "-redis.user", "monitor",
                            "-web.listen-address", "0.0.0.0:9121")
    assert cmd.args[-2:] == ("-count-keys", "db0=rl:*")
    assert "-tls-ca-cert-file" not in cmd.args


def test_exporter_command_password_file_and_tls() -> None:
    cmd = exporter_command("127.0.0.1", 6380, password_file="/run/secrets/exporter.json",
                           tls_ca_cert_file="/tls/ca.crt", count_rate_limit_keys=False,
                           listen_address="127.0.0.1:19121")
    assert cmd.env == {}
    args = list(cmd.args)
    assert args[args.index("-redis.addr") + 1] == "rediss://127.0.0.1:6380"
    assert args[args.index("-redis.password-file") + 1] == "/run/secrets/exporter.json"
    assert args[args.index("-tls-ca-cert-file") + 1] == "/tls/ca.crt"
    assert "-count-keys" not in args and "-tls-client-cert-file" not in args
    # Keyed for both lookups: 1.45 by -redis.addr, 1.69+ by the URI with -redis.user (test_exporter_acl.py).
    assert json.loads(exporter_password_file("rediss://127.0.0.1:6380", "pw")) == {
        "rediss://127.0.0.1:6380": "pw", "rediss://monitor@127.0.0.1:6380": "pw"}
    with pytest.raises(ValueError):
        exporter_password_file("127.0.0.1:6380", "pw")
    mtls = exporter_command("redis", 6379, password="pw", tls_ca_cert_file="/ca", tls_client_cert_file="/c",
                            tls_client_key_file="/k")
    assert mtls.args[mtls.args.index("-tls-client-cert-file") + 1] == "/c"
    assert mtls.args[mtls.args.index("-tls-client-key-file") + 1] == "/k"


@pytest.mark.parametrize("kwargs", [
    {},  # no credential
    {"password": "a", "password_file": "/f"},  # both
    {"password": "a", "tls_client_cert_file": "/c"},  # cert without key
    {"password": "a", "tls_client_cert_file": "/c", "tls_client_key_file": "/k"},  # client cert without TLS
    {"password": "a", "user": "mon itor"},
    {"password": "a", "rate_limit_key_pattern": "rl:*,x:*"},
])
def test_exporter_command_rejects_bad_input(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        exporter_command("redis", 6379, **kwargs)


def test_limiter_row_reads_the_client_metrics_and_the_alert_expression() -> None:
    from infra.thresholds import thresholds_by_name
    from ratelimit.metrics import METRIC_DECISION_SECONDS, METRIC_DECISIONS, METRIC_ERRORS

    queries = dashboard_queries(LIMITER_PANELS)
    names = set().union(*(re.findall(r"\bratelimit_[a-z_]+\b", q) for q in queries))
    assert names == {f"{METRIC_DECISIONS}_total", f"{METRIC_DECISION_SECONDS}_bucket", f"{METRIC_ERRORS}_total"}
    titles = [p.title for p in LIMITER_PANELS]
    assert "Limiter fallback decisions (5m)" in titles and "Limiter decision latency" in titles
    # The credential panel shows exactly what the alert judges.
    assert thresholds_by_name()["credential_denials"].expr in queries
    assert any("histogram_quantile(0.99," in q for q in queries)
