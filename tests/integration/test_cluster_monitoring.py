"""The exporter and Prometheus on every node of a real 3x1 cluster: each node is a target, the
cluster rows of the thresholds table evaluate per node on real exporter output (Debian 1.45
with the stack's monitor ACL user), and each goes off for the node that breaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.monitoring.grafana import exporter_command
from infra.monitoring.prometheus import RULES_FILE_NAME, render_alert_rules, render_prometheus_config
from infra.thresholds import CLUSTER_ONLY_METRICS, thresholds_by_name
from tests.support.procs import (
    ProcessGroup,
    exporter_metric_names,
    have_exporter,
    have_prometheus,
    http_text,
    prometheus_query,
    prometheus_targets_up,
    start_exporter,
    start_prometheus,
    wait_until,
)
from tests.support.redis_cluster import redis_cluster
from tests.support.redisproc import free_port, have_redis

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (have_redis() and have_exporter() and have_prometheus()),
                                 reason="redis-server, prometheus-redis-exporter and prometheus required")]

T = thresholds_by_name()


def _breaching(prom_url: str, name: str) -> dict[str, float]:
    """instance -> value of the threshold's expression where it crosses its critical line."""
    t = T[name]
    assert t.crit is not None
    return _values(prom_url, t.promql(t.crit))


def _values(prom_url: str, expr: str) -> dict[str, float]:
    answer = prometheus_query(prom_url, expr)
    assert answer["status"] == "success", answer
    return {r["metric"]["instance"]: float(r["value"][1]) for r in answer["data"]["result"]}


def test_every_node_scraped_and_cluster_rules_fire_per_node(tmp_path: Path) -> None:
    with redis_cluster(tmp_path / "cluster", 3, 1) as c, ProcessGroup() as group:
        targets = {}
        for n in c.nodes:
            port = free_port()
            group.add(start_exporter(tmp_path / f"exporter-{n.index}", exporter_command(
                "127.0.0.1", n.port, password=c.passwords["monitor"], listen_address=f"127.0.0.1:{port}",
                count_rate_limit_keys=False)))
            targets[n.index] = f"127.0.0.1:{port}"
        prom = group.add(start_prometheus(
            tmp_path / "prometheus", render_prometheus_config(list(targets.values()), scrape_interval="1s",
                                                             evaluation_interval="1s", cluster=True),
            {RULES_FILE_NAME: render_alert_rules()}, free_port()))
        wait_until(lambda: prometheus_targets_up(prom.url, 6), 60, "6 targets up")
        wait_until(lambda: len(_values(prom.url, "redis_cluster_state")) == 6, 60, "cluster metrics from 6 nodes")
        assert set(_values(prom.url, "redis_cluster_state").values()) == {1.0}
        # What test_monitoring_live leaves to this test: a cluster node exports what the rules read.
        exported = exporter_metric_names(http_text(f"http://{targets[0]}/metrics"))
        assert CLUSTER_ONLY_METRICS | {"redis_cluster_enabled", "redis_up"} <= exported
        for name in ("cluster_state", "cluster_slots_not_ok", "cluster_node_failed"):
            assert _breaching(prom.url, name) == {}, name

        # A primary drops 100 of its slots: that node no longer serves them, its state stays ok
        # (cluster-require-full-coverage no): only the slots rule goes off, for that node.
        primary = c.primary_of_slot(0)
        c.node_client(primary).execute_command("CLUSTER", "DELSLOTSRANGE", 0, 99)
        wait_until(lambda: _breaching(prom.url, "cluster_slots_not_ok").get(targets[primary.index]) == 100.0, 60,
                   "slots rule breached on the primary that dropped them")
        assert _breaching(prom.url, "cluster_state") == {}

        # A replica dies: the node rule goes off for its exporter, and only there.
        replica = next(n for n in c.alive() if c.info(n, "replication")["role"] == "slave")
        c.kill9(replica)
        wait_until(lambda: _breaching(prom.url, "cluster_node_failed") == {targets[replica.index]: 0.0}, 60,
                   "node rule breached for the dead replica only")
