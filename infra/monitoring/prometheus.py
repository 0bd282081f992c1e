"""Prometheus configuration and alert rules, rendered as strings from the thresholds table.

The renderers return YAML text that the local stack mounts into the Prometheus container
and that the tests hand to the real `prometheus` / `promtool` binaries.

The stack ships Prometheus 3.13 LTS (infra/versions.py); the proofs run Debian's 2.42. The
output is valid for both: it uses nothing the 3.0 migration guide (docs/migration.md at v3.13.2)
removes or changes, and nothing 2.42 does not know (tests/unit/test_prometheus3.py checks both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from infra.thresholds import CLUSTER_TARGET_LABEL, DEFAULT_THRESHOLDS, Severity, Threshold, fmt_number

RULES_FILE_NAME = "redis-alerts.yml"
RULE_GROUP_NAME = "redisstack-redis"
SCRAPE_JOB_NAME = "redis"
# The application's own /metrics (ratelimit.metrics: the limiter's decisions, latency, errors).
APP_SCRAPE_JOB_NAME = "ratelimit-app"
DEFAULT_RUNBOOK_BASE = "docs/runbooks/troubleshooting.md"

# Placeholders Prometheus fills in when an alert fires. Kept as constants so the promtool
# unit tests can substitute the exact strings they expect.
VALUE_TEMPLATE = "{{ $value | humanize }}"
INSTANCE_TEMPLATE = "{{ $labels.instance }}"


def render_prometheus_config(
    exporter_targets: str | Sequence[str],
    *,
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
    rule_files: Sequence[str] = (RULES_FILE_NAME,),
    external_labels: dict[str, str] | None = None,
    app_targets: Sequence[str] = (),
    cluster: bool = False,
) -> str:
    """prometheus.yml: one scrape job for redis_exporter at `host:port` (or several targets), and
    with `app_targets` one for the applications' /metrics (the limiter's own series).

    `rule_files` are paths as Prometheus sees them; relative paths resolve against the
    directory of prometheus.yml, so the default works when both files sit side by side.
    `cluster`: the exporter targets are Redis Cluster nodes; they get the static label
    `redis_cluster="true"` that RedisClusterNodeFailed keys on while a node is dead.
    """
    targets = [exporter_targets] if isinstance(exporter_targets, str) else list(exporter_targets)
    if not targets:
        raise ValueError("render_prometheus_config: at least one exporter target is required")
    for t in [*targets, *app_targets]:
        host, sep, port = t.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"render_prometheus_config: target {t!r} is not host:port")
    global_: dict[str, Any] = {
        "scrape_interval": scrape_interval,
        "evaluation_interval": evaluation_interval,
    }
    if external_labels:
        # Prometheus 3 expands ${VAR}/$VAR in external label values (the expand-external-labels
        # flag became default behaviour; 2.x keeps them literal): refuse `$` so both agree.
        for name, value in external_labels.items():
            if "$" in str(value):
                raise ValueError(f"render_prometheus_config: external label {name}={value!r} contains '$', which "
                                 "Prometheus 3 expands as an environment variable")
        global_["external_labels"] = dict(external_labels)
    config: dict[str, Any] = {
        "global": global_,
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": SCRAPE_JOB_NAME,
                # The exporter answers only once it has queried Redis; a scrape slower than
                # the interval would overlap itself.
                "scrape_timeout": scrape_interval,
                "static_configs": [cluster_static_config(targets) if cluster else {"targets": targets}],
            }
        ],
    }
    if app_targets:
        config["scrape_configs"].append({
            "job_name": APP_SCRAPE_JOB_NAME,
            "scrape_timeout": scrape_interval,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": list(app_targets)}],
        })
    return yaml.safe_dump(config, sort_keys=False)


def cluster_static_config(targets: Sequence[str]) -> dict[str, Any]:
    """A static_configs entry for Redis Cluster nodes: their series carry the cluster label."""
    return {"targets": list(targets), "labels": {CLUSTER_TARGET_LABEL: "true"}}


def alert_annotations(
    threshold: Threshold, severity: Severity, line: float, runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> dict[str, str]:
    """summary/description/runbook_url of one alert; the value appears via VALUE_TEMPLATE."""
    op = "above" if threshold.direction == "above" else "below"
    line_text = f"{fmt_number(line)} {threshold.unit}"
    return {
        "summary": f"{threshold.alert} ({severity}) on {INSTANCE_TEMPLATE}",
        "description": (
            f"{threshold.description}: {VALUE_TEMPLATE} {threshold.unit}, "
            f"{op} the {severity} threshold of {line_text} (for {threshold.for_})."
        ),
        "runbook_url": f"{runbook_base}#{threshold.runbook_anchor}",
    }


def alert_rules(
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS, runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> list[dict[str, Any]]:
    """One rule per (threshold, severity line); both lines of a row share the alertname so
    Alertmanager can inhibit the warning while the critical fires."""
    rules: list[dict[str, Any]] = []
    for t in thresholds:
        for severity, line in t.lines():
            rules.append(
                {
                    "alert": t.alert,
                    "expr": t.promql(line),
                    "for": t.for_,
                    "labels": {"severity": severity, "threshold": t.name, "service": t.service},
                    "annotations": alert_annotations(t, severity, line, runbook_base),
                }
            )
    return rules


def render_alert_rules(
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS, runbook_base: str = DEFAULT_RUNBOOK_BASE
) -> str:
    """The rules file (the `groups:` format of Prometheus 2.x and 3.x)."""
    doc = {"groups": [{"name": RULE_GROUP_NAME, "rules": alert_rules(thresholds, runbook_base)}]}
    # width: keep long PromQL on one line so diffs in reviews stay readable.
    return yaml.safe_dump(doc, sort_keys=False, width=1000)
