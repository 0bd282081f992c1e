"""The cross-language examples of docs/rate-limiter.md (examples/) against a real redis-server with
the rendered ACL: as the application user, through FCALL only, the same decisions as Python's."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratelimit import LIBRARY_RELEASE, RateLimiter, decision_client_kwargs
from tests.integration._redisops_servers import REPO, Server, rendered_server, requires_redis

pytestmark = [pytest.mark.slow, requires_redis]
EXAMPLES = REPO / "examples"
LIMIT, WINDOW_MS, HITS = 3, 60_000, 5


def _ruby_problem() -> str | None:
    if not shutil.which("ruby"):
        return "ruby not installed (apt-get install ruby ruby-redis)"
    probe = subprocess.run(["ruby", "-e", 'require "redis"'], capture_output=True, text=True, check=False)
    return None if probe.returncode == 0 else "redis-rb not installed (apt-get install ruby-redis)"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with rendered_server(tmp_path_factory.mktemp("examples")) as s:
        yield s


@pytest.fixture(scope="module")
def node_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node/npm not installed: the ioredis example needs them")
    work = tmp_path_factory.mktemp("node-example")
    for name in ("package.json", "package-lock.json", "ratelimit.js"):
        shutil.copy(EXAMPLES / "node" / name, work / name)
    # The lock file pins ioredis and its dependencies exactly.
    proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=work,
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.skip(f"npm ci could not install ioredis (registry unreachable?): {proc.stderr[-300:]}")
    return work


def app_url(srv: Server) -> str:
    return f"redis://:{srv.passwords['app']}@127.0.0.1:{srv.port}/0"


def check_run(srv: Server, argv: list[str], key: str, cwd: Path) -> None:
    proc = subprocess.run([*argv, app_url(srv), key, str(LIMIT), str(WINDOW_MS), str(HITS)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    hits, peek, version = lines[:HITS], lines[HITS], lines[HITS + 1]
    assert [h["allowed"] for h in hits] == [True] * LIMIT + [False] * (HITS - LIMIT)
    assert [h["remaining"] for h in hits] == [2, 1, 0, 0, 0]
    # Each language's own spelling: retry_after (Ruby), retryAfter (Node).
    assert all(0 < h.get("retry_after", h.get("retryAfter", 0)) <= WINDOW_MS / 1000 for h in hits[LIMIT:])
    assert peek["allowed"] is False and peek["remaining"] == 0
    assert version == {"version": LIBRARY_RELEASE}
    # The Python client reads the same state from the same key (one contract, one key layout).
    app = srv.app(**decision_client_kwargs(5.0))
    try:
        d = RateLimiter(app, "gcra", timeout=5.0, load_library=False).peek(key, LIMIT, WINDOW_MS / 1000)
        assert not d.allowed and d.remaining == 0
        stats = app.info("commandstats")
        assert "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats
    finally:
        app.close()


def test_node_ioredis_example(srv: Server, node_example: Path) -> None:
    check_run(srv, ["node", "ratelimit.js"], "node:client-1", node_example)


def test_ruby_redis_rb_example(srv: Server) -> None:
    problem = _ruby_problem()
    if problem:
        pytest.skip(problem)
    check_run(srv, ["ruby", str(EXAMPLES / "ruby" / "ratelimit.rb")], "ruby:client-1", EXAMPLES / "ruby")
