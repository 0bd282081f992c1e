"""Cluster mode (REDIS_CLUSTER=true): a one-node cluster holding every slot, started from the
cluster node renderer (redis_conf.cluster); smoke goes through RedisCluster (hash-tagged limiter keys), health judges the node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_conf import load_base
from redis_conf.cluster import node_conf
from redisops import connection as rc
from redisops.health import HealthOptions, run_health
from redisops.smoke import run_smoke
from tests.integration._redisops_servers import REPO, SETTINGS, new_passwords, render, requires_redis
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess, free_port

pytestmark = [pytest.mark.slow, requires_redis]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    passwords, port = new_passwords(), free_port(cluster_bus=True)
    render(tmp_path, port, passwords)  # the ACL file
    text = node_conf(load_base(), passwords=passwords, bind="127.0.0.1", port=port, data_dir=str(tmp_path),
                     aclfile=str(tmp_path / "users.acl"))
    rp = RedisProcess(workdir=tmp_path, config_text=text, port=port).start()
    try:
        admin = redis.Redis(port=port, username="admin", password=passwords["admin"])
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")
        wait_until(lambda: admin.cluster("info")["cluster_state"] == "ok", 30, "cluster state ok")
        admin.close()
        yield port, passwords
    finally:
        rp.stop()


def test_smoke_and_health_in_cluster_mode(cluster: tuple[int, dict[str, str]]) -> None:
    port, passwords = cluster
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}", "REDIS_PASSWORD": passwords["app"], "REDIS_CLUSTER": "true",
           "REDIS_ADMIN_PASSWORD": passwords["admin"], "REDIS_TIMEOUT": "10000",  # generous: see _redisops_servers
           **{t.env_name: t.spec for t in SETTINGS.tiers}}
    spec = rc.resolve(environ=env, settings_file=REPO / "Pulumi.dev.yaml")
    assert spec.mode == "cluster" and spec.display_url.endswith("(cluster)")
    # As the deploy does before smoke: the admin loads the library (redis-py sends FUNCTION LOAD to
    # every primary).
    from redisops import functions

    assert functions.load(spec)["state"] == "current"
    report = run_smoke(spec)
    assert report.passed, [(c.name, c.actual) for c in report.failed]
    # INFO commandstats is per node in a cluster: the FCALL proof is the limiter's own count there.
    assert report.get("fcall-only").status == "skip" and "decisions made in FCALL mode" in report.get("fcall-only").actual
    assert report.get("cleanup").actual.startswith(f"{len(SETTINGS.tiers)} key(s) deleted")
    health = run_health(spec, options=HealthOptions(sample_seconds=0.2))
    assert health.level() == "OK", [(c.name, c.actual) for c in health.checks if c.status != "OK"]
