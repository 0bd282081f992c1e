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
