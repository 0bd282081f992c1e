"""examples/app serves with uvicorn's proxy-header rewriting off: X-Forwarded-For is judged only
by the rate-limit middleware (TRUSTED_PROXIES), never turned into scope["client"] before it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn

from examples.app.__main__ import server_config


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
