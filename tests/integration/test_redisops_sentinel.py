"""redisops against the rendered Sentinel topology (1 primary + 2 replicas + 3 Sentinels, TLS):
the connection comes from a rediss+sentinel:// URL, and after a failover the same command
finds and checks the new primary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from redis_conf.sentinel import MASTER_NAME
from redisops import connection as rc
from redisops.health import HealthOptions, run_health
from redisops.smoke import run_smoke
from tests.integration._redisops_servers import REPO, SETTINGS, requires_redis
from tests.integration._sentinel_topology import (
    FAST,
    STEADY,
    Topology,
    sentinel_topology,
)

pytestmark = [pytest.mark.slow, requires_redis]


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    # STEADY but for the test's own failover (Topology.tune).
    with sentinel_topology(tmp_path_factory.mktemp("ops-sentinel"), tls=True, tuning=STEADY) as t:
        yield t


def env_for(topo: Topology) -> dict[str, str]:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in topo.sentinels)
    env = {"REDIS_URL": f"rediss+sentinel://{hosts}/{MASTER_NAME}", "REDIS_PASSWORD": topo.passwords["app"],
           "REDIS_SENTINEL_PASSWORD": topo.passwords["app"], "REDIS_CA_CERT": str(topo.tls.ca_cert),
           "REDIS_TIMEOUT": "10000", "REDIS_ADMIN_PASSWORD": topo.passwords["admin"]}
    env.update({t.env_name: t.spec for t in SETTINGS.tiers})
    return env


def test_smoke_and_health_through_sentinel_then_after_failover(topo: Topology) -> None:
    spec = rc.resolve(environ=env_for(topo), settings_file=REPO / "Pulumi.dev.yaml")
    assert spec.mode == "sentinel" and spec.tls
    report = run_smoke(spec)
    assert report.passed, [(c.name, c.actual) for c in report.failed]
    assert f":{topo.nodes[0].port}" in report.get("reachable").detail
    health = run_health(spec, options=HealthOptions(sample_seconds=0.3))
    assert health.level() == "OK", [(c.name, c.status, c.actual) for c in health.checks if c.status != "OK"]
    assert "2 replica(s)" in health.get("replication_lag").actual

    old = topo.nodes[0]
    topo.tune(FAST)
    old.kill9()
    new_port = topo.settle_failover(old.port)
    # The other replica is re-pointed by the Sentinels (at the latest after failover-timeout,
    # which STEADY makes 3 minutes, and settle_failover leaves at FAST's 5 s): wait for it
    # before going back to STEADY.
    topo.wait_replicated(topo.node_by_port(new_port), 1)
    topo.tune(STEADY)
    after = run_smoke(spec)
    assert after.passed, [(c.name, c.actual) for c in after.failed]
    assert f":{new_port}" in after.get("reachable").detail
