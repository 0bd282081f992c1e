"""The dev topology's mechanics, for real: DNS names with announce-hostnames, and the
container entrypoint that seeds Sentinel-rewritable files from the render."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.components.local_sentinel import seed_and_exec
from redis_conf.sentinel import MASTER_NAME
from tests.integration._sentinel_topology import FAST, SETTLE_S, STEADY, sentinel_topology, wait_until
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow]


@pytest.mark.skipif(not have_redis(), reason="redis-server not installed")
def test_topology_by_hostname_announces_names_and_fails_over(tmp_path: Path) -> None:
    # The containers name each other redis-N / sentinel-N; here the one resolvable name is localhost.
    with sentinel_topology(tmp_path, tls=True, host="localhost", tuning=STEADY) as topo:
        conf = topo.sentinels[0].config_path.read_text()
        assert "sentinel resolve-hostnames yes" in conf and "sentinel announce-hostnames yes" in conf
        admin = topo.sentinel_client(0, "admin")
        master = admin.sentinel_master(MASTER_NAME)
        assert master["ip"] == "localhost"
        assert {r["ip"] for r in admin.sentinel_slaves(MASTER_NAME)} == {"localhost"}
        s = topo.sentinel()
        assert s.discover_master(MASTER_NAME) == ("localhost", topo.nodes[0].port)
        s.master_for(MASTER_NAME).set("proof:hostname", "1")
        # On both replicas before the kill: whichever is promoted must have it.
        for i in (1, 2):
            wait_until(lambda i=i: topo.node_client(i).get("proof:hostname") == b"1", SETTLE_S, f"the write on node{i}")
        # A failover keeps handing out names, not addresses (over TLS, names the certificate carries).
        topo.tune(FAST)  # STEADY until now: the only failover is the one below
        topo.nodes[0].kill9()
        new = wait_until(lambda: (m := s.discover_master(MASTER_NAME))[1] != topo.nodes[0].port and m, SETTLE_S,
                         "a new master by name")
        assert new[0] == "localhost"
        assert s.master_for(MASTER_NAME).get("proof:hostname") == b"1"


def _run(script: list[str]) -> str:
    return subprocess.run(script, capture_output=True, text=True, check=True, timeout=10).stdout


def test_entrypoint_seeds_once_per_render_and_keeps_sentinel_rewrites(tmp_path: Path) -> None:
    rendered, live = tmp_path / "rendered.conf", tmp_path / "live.conf"
    rendered.write_text("render 1\n")
    cmd = seed_and_exec(str(rendered), str(live), "cat")
    assert _run(cmd) == "render 1\n"
    assert oct(live.stat().st_mode & 0o777) == "0o600"
    # Sentinel rewrote the live file (e.g. after a failover); a container restart keeps it.
    live.write_text("render 1\nsentinel known-replica ...\n")
    assert _run(cmd) == "render 1\nsentinel known-replica ...\n"
    # A new render from `pulumi up` re-seeds.
    rendered.write_text("render 2\n")
    assert _run(cmd) == "render 2\n"
