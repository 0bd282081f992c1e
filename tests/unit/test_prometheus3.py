"""The Prometheus config, flags, rules and dashboard queries mean the same on Prometheus 3.13
(what ships, infra/versions.py) as on Debian's 2.42 (what promtool and the live tests run).

Each check is an item of the Prometheus 3.0 migration guide (prometheus/prometheus
docs/migration.md at v3.13.2) or of the 3.13 configuration reference
(docs/configuration/configuration.md, cmd/prometheus/main.go at v3.13.2). promtool 3.x is not
installable from the registries reachable here, so these static checks stand in for it
(docs/fidelity.md).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from infra.components.local_stack import prometheus_command
from infra.monitoring.grafana import LIMITER_PANELS, dashboard_queries
from infra.monitoring.prometheus import alert_rules, render_prometheus_config
from infra.thresholds import DEFAULT_THRESHOLDS

SCRAPE_INTERVAL_S = 15  # render_prometheus_config's default, what the stack ships

# Keys both 2.42 and 3.13 accept where we use them (configuration.md at v2.42.0 and v3.13.2).
GLOBAL_KEYS = {"scrape_interval", "scrape_timeout", "evaluation_interval", "external_labels", "query_log_file"}
SCRAPE_KEYS = {"job_name", "scrape_interval", "scrape_timeout", "metrics_path", "scheme", "honor_labels",
               "static_configs", "relabel_configs", "metric_relabel_configs", "tls_config", "basic_auth"}
TOP_KEYS = {"global", "rule_files", "scrape_configs"}
# Renamed or added in 3.x (2.42 rejects them) or removed: none may appear.
NOT_PORTABLE = {"scrape_classic_histograms", "always_scrape_classic_histograms", "fallback_scrape_protocol",
                "metric_name_validation_scheme", "scrape_native_histograms", "convert_classic_histograms_to_nhcb",
                "api_version", "enable_http2"}
# Flags of cmd/prometheus/main.go at v3.13.2 that 2.42 also has (retention.time: deprecated in 3.13
# in favour of a config-file field 2.42 does not know, still accepted).
PORTABLE_FLAGS = {"--config.file", "--storage.tsdb.path", "--web.listen-address", "--storage.tsdb.retention.time"}

DURATION = re.compile(r"(\d+)([smhdwy])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str) -> int:
    return sum(int(n) * UNIT_S[u] for n, u in DURATION.findall(text))


def all_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | set().union(*(all_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(all_keys(v) for v in node)) if node else set()
    return set()


def expressions() -> list[str]:
    return [r["expr"] for r in alert_rules(DEFAULT_THRESHOLDS)] + dashboard_queries() + dashboard_queries(LIMITER_PANELS)


def test_config_uses_only_keys_both_versions_know() -> None:
    config = yaml.safe_load(render_prometheus_config(["redis-exporter:9121", "10.0.0.1:9121"],
                                                     external_labels={"stack": "dev"}))
    assert set(config) <= TOP_KEYS  # no `alerting`: no Alertmanager v1 API to migrate
    assert set(config["global"]) <= GLOBAL_KEYS
    for job in config["scrape_configs"]:
        assert set(job) <= SCRAPE_KEYS
        # 3.x adds no default port to a target (no-default-scrape-port became default).
        for static in job["static_configs"]:
            assert all(re.fullmatch(r"[^:]+:\d+", t) for t in static["targets"])
    assert not all_keys(config) & NOT_PORTABLE


def test_external_labels_with_dollar_are_refused() -> None:
    # 3.x expands ${VAR}/$VAR in external label values (expand-external-labels is default), 2.x does not.
    with pytest.raises(ValueError, match=r"contains '\$'"):
        render_prometheus_config("redis-exporter:9121", external_labels={"stack": "dev-$HOME"})


def test_flags_exist_in_both_versions_and_enable_no_feature() -> None:
    flags = {arg.split("=", 1)[0] for arg in prometheus_command()}
    assert flags <= PORTABLE_FLAGS
    assert "--enable-feature" not in flags


@pytest.mark.parametrize("expr", expressions())
def test_promql_means_the_same_on_3x(expr: str) -> None:
    # `.` in regular expressions matches newlines on 3.x: no regex matcher at all.
    assert "=~" not in expr and "!~" not in expr
    # holt_winters is double_exponential_smoothing behind a feature flag on 3.x.
    assert "holt_winters" not in expr and "double_exponential_smoothing" not in expr
    # Subqueries are where left-open windows lose a point (migration guide example foo[1m:1m]).
    assert not re.search(r"\[[^\]]*:[^\]]*\]", expr)
    # le/quantile values are normalised to floats on 3.x ("1" -> "1.0").
    assert not re.search(r'\b(le|quantile)\s*=\s*"\d+"', expr)
    # Range selectors are left-open on 3.x: a window of 4 scrape intervals keeps >= 3 samples.
    for rng in re.findall(r"\[(\d+[smhdwy](?:\d+[smhdwy])*)\]", expr):
        assert seconds(rng) >= 4 * SCRAPE_INTERVAL_S, (expr, rng)


def test_promtool_scenarios_are_window_semantics_neutral() -> None:
    """Left-closed (2.x) and left-open (3.x) windows give the same extrapolated rate when the series
    is linear across the window. So in every promtool scenario no change point may fall inside the
    longest `for:` plus the longest range before an expectation: the 2.42 results then hold on 3.x."""
    from tests.unit.test_prometheus_rules import STEP, scenarios

    longest_range = max(seconds(r) for e in expressions() for r in re.findall(r"\[(\d+[smhdwy])\]", e))
    longest_for = max(seconds(t.for_) for t in DEFAULT_THRESHOLDS)
    reach = longest_range + longest_for
    for sc in scenarios():
        kinks: set[int] = set()  # time of the sample after which the slope changes
        for values in sc.series.values():
            for i in range(2, len(values)):
                # promtool reads the values rounded to 6 decimals (series_text); allow for float sums.
                if abs(values[i] - 2 * values[i - 1] + values[i - 2]) > 1e-5:
                    kinks.add((i - 1) * STEP)
        for at, firing in sc.expect.items():
            if not firing:
                continue  # "nothing fires" does not depend on exact values
            # Non-linear inside (at - reach, at] when the kink and the sample after it are both in it.
            inside = sorted(k for k in kinks if at - reach < k and k + STEP <= at)
            assert not inside, f"{sc.threshold}: {sc.title}: change at {inside} within {reach}s before {at}s"
