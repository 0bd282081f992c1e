"""`redisops functions load|status` against a real redis-server with the rendered ACL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratelimit import LIBRARY_RELEASE, function_library
from ratelimit.functions import read_version
from tests.integration._redisops_servers import rendered_server, requires_redis
from tests.integration.test_redisops_smoke import run_cli

pytestmark = [pytest.mark.slow, requires_redis]


def test_status_load_status(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", load_functions=False) as srv:
        before = run_cli(["functions", "status"], srv.env())
        assert before.returncode == 1 and "redisops functions load" in before.stdout, before.stdout + before.stderr
        # The application credential may not load it: an operation error naming the fix, nothing loaded.
        refused = run_cli(["functions", "load", "--credential", "app"], srv.env())
        assert refused.returncode == 1 and "needs the admin credential" in refused.stderr, refused.stderr
        admin = srv.admin()
        assert read_version(admin) is None
        loaded = run_cli(["functions", "load", "--json", str(tmp_path / "load.json")], srv.env())
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        result = json.loads((tmp_path / "load.json").read_text())
        assert result["state"] == "current" and result["version"] == LIBRARY_RELEASE == read_version(admin)
        assert run_cli(["functions", "status"], srv.env()).returncode == 0
        # An older library is reported by its version and replaced by the next load.
        admin.function_load(function_library().replace(f"return '{LIBRARY_RELEASE}'", "return '0.2.0'"), replace=True)
        older = run_cli(["functions", "status"], srv.env())
        assert older.returncode == 1 and "0.2.0" in older.stdout and LIBRARY_RELEASE in older.stdout
        assert run_cli(["functions", "load"], srv.env()).returncode == 0
        assert read_version(admin) == LIBRARY_RELEASE
        admin.close()
        for text in (before.stdout, refused.stderr, loaded.stdout):
            for pw in srv.passwords.values():
                assert pw not in text


def test_load_without_admin_password_is_a_usage_error(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", load_functions=False) as srv:
        env = {k: v for k, v in srv.env().items() if k != "REDIS_ADMIN_PASSWORD"}
        proc = run_cli(["functions", "load"], env)
        assert proc.returncode == 2 and "REDIS_ADMIN_PASSWORD" in proc.stderr


def test_cluster_status_names_the_primary_without_the_library_and_load_fixes_it(tmp_path: Path) -> None:
    # Functions are per node on a cluster (redis.io "Functions in cluster": "not handled
    # automatically by Redis Cluster"). A shard added by ElastiCache online resharding (the AWS
    # resharding pages say nothing of functions) or by CLUSTER MEET starts without the library;
    # `redis-cli --cluster add-node` copies them (redis-cli.c: "Getting functions from cluster",
    # FUNCTION DUMP/RESTORE), but only into an empty new primary. Here one of three primaries (the
    # harness' smallest cluster) lacks it, as a new shard would: status must fail naming that node
    # and no other, and load must fix every primary.
    from tests.support.redis_cluster import redis_cluster

    with redis_cluster(tmp_path / "cluster", 3, 0) as c:
        env = c.env()
        assert run_cli(["functions", "status"], env).returncode == 0
        lacking, *holding = c.primaries()
        admin = c.node_client(lacking)
        admin.function_delete("ratelimit")
        out = tmp_path / "status.json"
        status = run_cli(["functions", "status", "--json", str(out)], env)
        assert status.returncode == 1, status.stdout + status.stderr
        result = json.loads(out.read_text())
        states = {n["node"]: n["state"] for n in result["nodes"]}
        assert states == {f"127.0.0.1:{lacking.port}": "missing",
                          **{f"127.0.0.1:{n.port}": "current" for n in holding}}
        assert result["state"] == "missing" and f"127.0.0.1:{lacking.port}" in status.stdout
        assert "1 of 3 cluster nodes" in result["message"]
        assert not any(f"127.0.0.1:{n.port}" in result["message"] for n in holding)
        loaded = run_cli(["functions", "load"], env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        assert read_version(admin) == LIBRARY_RELEASE
        assert run_cli(["functions", "status"], env).returncode == 0
