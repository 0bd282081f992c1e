"""examples/app's serving: uvicorn's proxy-header rewriting off (X-Forwarded-For is judged only by
the rate-limit middleware, TRUSTED_PROXIES, never turned into scope["client"] before it), and
prometheus_client's multiprocess mode for several workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from examples.app.__main__ import server_config
from examples.app.app import exposition_registry

ROOT = Path(__file__).resolve().parents[2]


def client_seen(config: uvicorn.Config) -> Any:
    """scope["client"] as the application sees it behind uvicorn's loaded middleware stack."""
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    config.app = app
    config.load()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/auth/login", "raw_path": b"/auth/login", "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 40000),
             "headers": [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")]}

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    asyncio.run(config.loaded_app(scope, receive, send))
    return seen[0]


def test_uvicorn_does_not_rewrite_the_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    # uvicorn's default (proxy_headers=True) hands the app a hop the client wrote as its peer
    # (with "*" every hop is trusted, so the leftmost: pure client text)...
    assert client_seen(uvicorn.Config("unused:app", log_level="warning"))[0] == "6.6.6.6"
    # ...the example's config leaves the real peer for the middleware to judge.
    assert client_seen(server_config("unused:app", "127.0.0.1", 0)) == ("127.0.0.1", 40000)


WORKER = """
from prometheus_client import CollectorRegistry
from ratelimit import Decision
from ratelimit.metrics import LimiterMetrics
m = LimiterMetrics(CollectorRegistry())
for _ in range({n}):
    m.observe("auth", Decision(True, 1, 0.0, 1.0, 3), 0.001)
"""

READER = """
import os
from prometheus_client import CollectorRegistry
from examples.app.app import exposition_registry
reg = exposition_registry(CollectorRegistry(), os.environ["PROMETHEUS_MULTIPROC_DIR"])
print(reg.get_sample_value("ratelimit_decisions_total", {{"tier": "auth", "outcome": "allowed"}}))
"""


def test_multiprocess_mode_sums_every_worker(tmp_path: Path) -> None:
    """Two worker processes count into PROMETHEUS_MULTIPROC_DIR (prometheus_client's real files);
    the exposition registry of a third sums them, as /metrics does with several workers."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for n in (3, 2):
        subprocess.run([sys.executable, "-c", WORKER.format(n=n)], env=env, cwd=ROOT, check=True, timeout=60)
    out = subprocess.run([sys.executable, "-c", READER.format()], env=env, cwd=ROOT, check=True, timeout=60,
                         capture_output=True, text=True)
    assert out.stdout.strip() == "5.0"


def test_multiprocess_dir_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = CollectorRegistry()
    assert exposition_registry(own, None) is own  # one worker per process: its own registry
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR: '/nonexistent/x' is not a directory"):
        exposition_registry(own, "/nonexistent/x")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match="set in the env file only"):
        exposition_registry(own, str(tmp_path))
