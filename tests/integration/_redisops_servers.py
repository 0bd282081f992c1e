"""Real redis-server instances for the redisops tests, rendered the way the stacks render them.

`rendered_server()` writes redis_conf.render_redis_conf(load_base() + overrides) and
render_acl_file(passwords) into a temp dir and starts redis-server on a free loopback port;
`broken` knobs produce the misconfigured servers the smoke test must catch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.settings import parse_settings
from ratelimit.functions import load_library
from redis_conf import TlsFiles, load_base, render_acl_file, render_redis_conf
from tests.support.certs import make_tls_files
from tests.support.redis_cluster import new_passwords
from tests.support.redisproc import RedisProcess, free_port, have_redis

requires_redis = pytest.mark.skipif(not have_redis(), reason="redis-server (Debian redis-server) not installed")

# The dev stack's settings: the tiers and redis_conf expectations the smoke test is held to.
SETTINGS = parse_settings({"target": "local"})
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: RedisProcess
    passwords: dict[str, str]
    tls: Any | None  # tests.support.certs.TlsFiles

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def data_dir(self) -> Path:
        return self.proc.workdir

    def _client(self, username: str | None, password: str, **kw: Any) -> redis.Redis:
        extra: dict[str, Any] = {}
        if self.tls is not None:
            extra = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
        return redis.Redis(port=self.port, username=username, password=password, **extra, **kw)

    def admin(self, **kw: Any) -> redis.Redis:
        return self._client("admin", self.passwords["admin"], **kw)

    def app(self, **kw: Any) -> redis.Redis:
        """The application credential (password-only AUTH: the `default` user)."""
        return self._client(None, self.passwords["app"], **kw)

    def env(self, **overrides: str) -> dict[str, str]:
        scheme = "rediss" if self.tls is not None else "redis"
        env = {
            "REDIS_URL": f"{scheme}://127.0.0.1:{self.port}/0",
            "REDIS_PASSWORD": self.passwords["app"],
            "REDIS_TLS": "true" if self.tls is not None else "false",
            # Generous: smoke and health judge latency against it, and a busy CI machine must not
            # make a healthy server look slow (tests of the timeout itself set their own).
            "REDIS_TIMEOUT": "10000",
            "REDIS_ADMIN_PASSWORD": self.passwords["admin"],
        }
        if self.tls is not None:
            env["REDIS_CA_CERT"] = str(self.tls.ca_cert)
        for tier in SETTINGS.tiers:
            env[tier.env_name] = tier.spec
        env.update(overrides)
        return env


def render(workdir: Path, port: int, passwords: Mapping[str, str], *, overrides: Mapping[str, Any] | None = None,
           tls: bool = False, acl_text: str | None = None) -> tuple[str, Any]:
    conf = load_base().with_overrides(overrides or {})
    acl = workdir / "users.acl"
    workdir.mkdir(parents=True, exist_ok=True)
    acl.write_text(acl_text if acl_text is not None else render_acl_file(passwords))
    files = None
    tls_files = None
    if tls:
        files = make_tls_files(workdir / "tls")
        tls_files = TlsFiles(str(files.cert), str(files.key), str(files.ca_cert))
    text = render_redis_conf(conf, bind="127.0.0.1", port=port, data_dir=str(workdir), aclfile=str(acl),
                             tls=tls_files)
    return text, files


@contextmanager
def rendered_server(workdir: Path, *, overrides: Mapping[str, Any] | None = None, tls: bool = False,
                    acl_text: str | None = None, passwords: dict[str, str] | None = None,
                    load_functions: bool = True) -> Iterator[Server]:
    """A server from the rendered files; like every deployed target, the admin has loaded the
    `ratelimit` library on it unless `load_functions=False`."""
    passwords = passwords or new_passwords()
    port = free_port()
    text, files = render(workdir, port, passwords, overrides=overrides, tls=tls, acl_text=acl_text)
    rp = RedisProcess(workdir=workdir, config_text=text, port=port)
    rp.start()
    try:
        server = Server(rp, passwords, files)
        if load_functions:
            admin = server.admin()
            try:
                load_library(admin)
            finally:
                admin.close()
        yield server
    finally:
        rp.stop()


def acl_with(passwords: Mapping[str, str], *, app_line: str) -> str:
    """The rendered ACL file with the application user's line replaced."""
    lines = render_acl_file(passwords).splitlines()
    return "\n".join(app_line if line.startswith("user default ") else line for line in lines) + "\n"


def smoke_keys(server: Server) -> list[bytes]:
    admin = server.admin()
    try:
        return list(admin.scan_iter(match="smoke:*", count=1000))
    finally:
        admin.close()
