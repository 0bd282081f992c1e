"""`redisops dev up --mode processes` with `local.topology: cluster`: a 3x1 TLS cluster rendered by
redis_conf.cluster with the ACL model and bus TLS, an exporter per node, Prometheus scraping all
six; `dev status` shows the slot coverage per shard; smoke passes; `dev down` leaves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from infra.monitoring.prometheus import SCRAPE_JOB_NAME
from redisops import devstack
from tests.integration.test_devstack_lifecycle import alive, needs_programs, project
from tests.support.procs import http_json, prometheus_targets_up, wait_until
from tests.support.redisproc import free_port, free_port_block

pytestmark = [pytest.mark.slow, needs_programs]


def test_cluster_topology_up_status_down(tmp_path: Path) -> None:
    proj = project(tmp_path)
    base = free_port_block(6, cluster_bus=True)
    ports = {"redis": base, "exporter": free_port_block(6), "prometheus": free_port(), "grafana": free_port()}
    overrides = {"local": {"topology": "cluster", "ports": ports, "cluster": {"primaries": 3, "replicas": 1}}}
    said: list[str] = []
    run_dir = proj / ".run" / "dev"
    pids: dict[str, tuple[int, int | None]] = {}
    try:
        st = devstack.up(proj, mode="processes", overrides=overrides, out=said.append)
        state = devstack._read_state(run_dir)
        assert state is not None
        pids = {n: (i["pid"], i["started"]) for n, i in state["services"].items() if "pid" in i}
        assert st.healthy, st.lines()
        assert st.smoke == "passed"
        assert {f"redis-{i}" for i in range(6)} | {f"exporter-{i}" for i in range(6)} | {"prometheus"} == set(pids)
        assert st.cluster is not None and st.cluster[0].startswith(
            "slot coverage (seen from redis-0): cluster_state ok, 16384/16384 slots ok")
        assert sum(1 for line in st.cluster if line.strip().startswith("primary ")) == 3
        assert sum(1 for line in st.cluster if line.strip().startswith("replica ")) == 3
        printed = "\n".join(said)
        assert "slot coverage" in printed

        env = dict(line.split("=", 1) for line in (run_dir / ".env").read_text().splitlines())
        assert env["REDIS_CLUSTER"] == "true" and env["REDIS_URL"] == f"rediss://127.0.0.1:{base}/0"
        for secret in (env["REDIS_PASSWORD"], env["REDIS_ADMIN_PASSWORD"]):
            assert secret not in printed
        # TLS only, on clients and on the bus; the app may route but not reshape the cluster.
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=base, password=env["REDIS_PASSWORD"], socket_timeout=2).ping()
        app = redis.Redis(port=base + 1, password=env["REDIS_PASSWORD"], ssl=True, ssl_ca_certs=env["REDIS_CA_CERT"])
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.execute_command("CLUSTER", "FAILOVER")
        app.close()
        conf = (run_dir / "cluster" / "node-0" / "redis.conf")
        assert oct(conf.stat().st_mode & 0o777) == "0o600"
        assert "tls-cluster yes" in conf.read_text() and "cluster-enabled yes" in conf.read_text()

        prom = f"http://127.0.0.1:{ports['prometheus']}"
        # The exporter job: the stack's Prometheus also has the application's job (ratelimit-app),
        # whose target is down while no application runs beside the cluster.
        wait_until(lambda: prometheus_targets_up(prom, 6, job=SCRAPE_JOB_NAME), 90, "Prometheus scrapes the 6 nodes")
        rules = http_json(f"{prom}/api/v1/rules")["data"]["groups"][0]["rules"]
        assert {"RedisClusterStateNotOk", "RedisClusterSlotsNotOk", "RedisClusterNodeFailed"} <= {
            r["name"] for r in rules}

        # A node down: status is unhealthy and names it.
        devstack._stop_pid(*pids["redis-5"])
        st2 = devstack.status(proj)
        assert not st2.healthy
        assert {s.name for s in st2.services if not s.running} == {"grafana", "redis-5"}
    finally:
        devstack.down(proj, out=said.append)
    assert not run_dir.exists()
    assert not any(alive(*p) for p in pids.values())
