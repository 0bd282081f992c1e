"""`redisops functions load|status`: the `ratelimit` Redis Functions library on a deployed server.

Only an admin credential may FUNCTION LOAD (the application user is `-@scripting +fcall
+fcall_ro`). On ElastiCache in token mode the one credential, the AUTH token, logs in as the
built-in `default` user with every command: it is the admin credential there (`--credential app`).
Loading is FUNCTION LOAD REPLACE: idempotent, and atomic for callers (the old library serves
until the new one is in place). Functions replicate and persist (RDB/AOF), so one load on the
primary serves replicas, failovers, restarts and restores.
"""

from __future__ import annotations

from typing import Any

import redis

from ratelimit import functions as fn
from redisops import connection as rc
from redisops.errors import OperationError


def _result(version: str | None, **extra: Any) -> dict[str, Any]:
    state = fn.library_state(version)
    ok = state in ("current", "newer")
    return {"exitCode": 0 if ok else 1, "passed": ok, "state": state, "version": version,
            "expected": fn.LIBRARY_RELEASE, "message": fn.describe_state(state, version), **extra}


def load(spec: rc.ConnectionSpec, role: rc.Role = "admin") -> dict[str, Any]:
    """FUNCTION LOAD REPLACE the library with `role`'s credential, then read its version back."""
    client = rc.client(spec, role)
    try:
        name = fn.load_library(client)
        version = fn.read_version(client)
    except redis.exceptions.NoPermissionError as exc:
        user = spec.admin_username if role == "admin" else (spec.username or "default")
        raise OperationError(f"FUNCTION LOAD refused for ACL user {user} ({exc}): loading needs the admin "
                             "credential (REDIS_ADMIN_PASSWORD, --credential admin)") from None
    finally:
        client.close()
    return _result(version, library=name)


def status(spec: rc.ConnectionSpec, role: rc.Role = "app") -> dict[str, Any]:
    """The server's `ratelimit_version` as `role` (the app credential may FCALL_RO it) vs this package."""
    client = rc.client(spec, role)
    try:
        version = fn.read_version(client)
    finally:
        client.close()
    return _result(version, library=fn.LIBRARY_NAME)
