"""`python -m examples.app [--host 127.0.0.1] [--port 8000] [--fd N] [--env-file .run/dev/.env] [--metrics-port N]`

Serves the example API with uvicorn. `--fd` serves on an inherited, already listening socket
(how `redisops loadtest` starts it on an OS-assigned port without a race); `--env-file` reads the
dev stack's credentials file (KEY=value lines) on top of the environment. `--metrics-port` serves
/metrics on a port of its own (same host) instead of beside the API, so the scrape endpoint need not
be reachable where the API is. One uvicorn worker per process; for several behind one port see
PROMETHEUS_MULTIPROC_DIR in examples/app/app.py.

uvicorn's own proxy-header handling is off (`proxy_headers=False`): with it on, uvicorn rewrites
`scope["client"]` from X-Forwarded-For (for peers in FORWARDED_ALLOW_IPS, 127.0.0.1 by default)
before the rate-limit middleware runs, so the middleware would judge a hop the client wrote as
the peer. The middleware (TRUSTED_PROXIES) is the single place the header is judged.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
from pathlib import Path
from typing import Any


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"{path}:{n}: expected KEY=value, got {line[:40]!r}")
        parts = shlex.split(value)
        env[key.strip()] = parts[0] if parts else ""
    return env


def server_config(app: Any, host: str, port: int) -> Any:
    """The uvicorn Config the example serves with (proxy headers off: see the module docstring)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                          proxy_headers=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m examples.app", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--fd", type=int, help="serve on this inherited listening socket instead")
    p.add_argument("--env-file", type=Path, help="KEY=value file read on top of the environment")
    p.add_argument("--metrics-port", type=int, help="serve /metrics on this port instead of the API's")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.env_file:
        env.update(read_env_file(args.env_file))

    import uvicorn

    from examples.app.app import AppConfig, create_app

    app = create_app(AppConfig.from_env(env), metrics_route=args.metrics_port is None)
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.host, registry=app.state.exposition)
    server = uvicorn.Server(server_config(app, args.host, args.port))
    server.run(sockets=[socket.socket(fileno=args.fd)] if args.fd is not None else None)


if __name__ == "__main__":
    main()
