"""The environment contract handed to the application: the guide's variables, for every target.

REDIS_ENABLED, REDIS_URL, REDIS_PASSWORD, REDIS_TLS, REDIS_TIMEOUT, RATE_LIMIT_MODE and one
RATE_LIMIT_<TIER>=limit,window per tier. REDIS_USERNAME, REDIS_CA_CERT, REDIS_SENTINEL_* and
REDIS_CLUSTER=true (a Redis Cluster: the client must follow MOVED/ASK, e.g. redis-py RedisCluster)
are added only where the target needs them. The password never goes into REDIS_URL, so the
URL can be logged and exported in plain text.

REDIS_PASSWORD is the value at deploy time (`pulumi up`). On the AWS targets Secrets Manager
rotates it every `rotation.days` and the stack output keeps the deploy-time value, so those targets
also hand over REDIS_PASSWORD_SECRET_ARN: the application re-reads AWSCURRENT of that secret (at
start and whenever AUTH is refused). With `rotation.overlap: interval` (default) the previous
password keeps working until the next rotation (docs/runbooks/rotation.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ratelimit.tiers import Tier

SECRET_VARIABLES = frozenset({"REDIS_PASSWORD"})
_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]*$")


def redis_url(host: str, port: int, *, tls: bool, username: str | None = None, db: int = 0) -> str:
    scheme = "rediss" if tls else "redis"
    user = f"{username}@" if username else ""
    return f"{scheme}://{user}{host}:{port}/{db}"


def sentinel_url(hosts: list[tuple[str, int]], master_name: str, *, tls: bool) -> str:
    """`redis+sentinel://h1:26379,h2:26379/mymaster` (rediss+sentinel with TLS), as redisops reads it."""
    scheme = "rediss+sentinel" if tls else "redis+sentinel"
    return f"{scheme}://{','.join(f'{h}:{p}' for h, p in hosts)}/{master_name}"


def env_contract(
    *,
    url: str,
    password: str,
    tls: bool,
    timeout_ms: int,
    tiers: tuple[Tier, ...],
    enabled: bool = True,
    rate_limit_mode: str = "redis",
    username: str | None = None,
    ca_cert_path: str | None = None,
    cluster: bool = False,
    password_secret_arn: str | None = None,
) -> dict[str, str]:
    env = {
        "REDIS_ENABLED": "true" if enabled else "false",
        "REDIS_URL": url,
        "REDIS_PASSWORD": password,
        "REDIS_TLS": "true" if tls else "false",
        "REDIS_TIMEOUT": str(timeout_ms),
        "RATE_LIMIT_MODE": rate_limit_mode,
    }
    if password_secret_arn:
        # Where the current REDIS_PASSWORD lives once rotation has replaced the deploy-time value.
        env["REDIS_PASSWORD_SECRET_ARN"] = password_secret_arn
    if username:
        env["REDIS_USERNAME"] = username
    if ca_cert_path:
        env["REDIS_CA_CERT"] = ca_cert_path
    if cluster:
        # redisops (connection.spec_from_env) and the app read it to build a cluster client; REDIS_URL
        # then names the configuration endpoint, any node of the cluster.
        env["REDIS_CLUSTER"] = "true"
    for tier in tiers:
        env[tier.env_name] = tier.spec
    return env


def render_dotenv(env: Mapping[str, Any]) -> str:
    """A `.env` body; values that need it are double-quoted with escapes (dotenv/compose rules)."""
    lines = []
    for key, value in env.items():
        text = str(value)
        if not _SAFE.match(text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"
