"""`redisops functions load|status`: the `ratelimit` Redis Functions library on a deployed server.

Only an admin credential may FUNCTION LOAD (the application user is `-@scripting +fcall
+fcall_ro`). On ElastiCache in token mode the one credential, the AUTH token, logs in as the
built-in `default` user with every command: it is the admin credential there (`--credential app`).
Loading is FUNCTION LOAD REPLACE: idempotent, and atomic for callers (the old library serves
until the new one is in place). Functions replicate and persist (RDB/AOF), so one load on the
primary serves replicas, failovers, restarts and restores.

On a cluster target functions are per node: "it is also necessary to load functions to all
cluster nodes. This is not handled automatically by Redis Cluster" (redis.io, Introduction to
Redis Functions, "Functions in cluster"). `load` loads on every primary (each one's replicas get
it by replication; a replica promoted later already holds it; moving a slot needs nothing, the
library is not keyed), `status` reads every node, and the verdict is the worst node's, with the
nodes that are missing it or hold an older release named.
"""

from __future__ import annotations

from typing import Any

import redis

from ratelimit import functions as fn
from redisops import connection as rc
from redisops.cluster import NodeView, coverage
from redisops.errors import OperationError


def _result(version: str | None, **extra: Any) -> dict[str, Any]:
    state = fn.library_state(version)
    ok = state in ("current", "newer")
    return {"exitCode": 0 if ok else 1, "passed": ok, "state": state, "version": version,
            "expected": fn.LIBRARY_RELEASE, "message": fn.describe_state(state, version), **extra}


# Worst first: the verdict over a cluster's nodes is the first state any node is in.
_SEVERITY: tuple[fn.LibraryState, ...] = ("missing", "older", "newer", "current")


def _refused(spec: rc.ConnectionSpec, role: rc.Role, exc: Exception) -> OperationError:
    user = spec.admin_username if role == "admin" else (spec.username or "default")
    return OperationError(f"FUNCTION LOAD refused for ACL user {user} ({exc}): loading needs the admin "
                          "credential (REDIS_ADMIN_PASSWORD, --credential admin)")


def _live_nodes(spec: rc.ConnectionSpec, role: rc.Role) -> list[NodeView]:
    """Every cluster node not flagged failing, as the seed node sees it (primaries first)."""
    seed = rc.node_client(spec, spec.hosts[0], role)
    try:
        nodes = coverage(seed).nodes
    finally:
        seed.close()
    live = [n for n in nodes if not (n.failed or n.suspected)]
    return sorted(live, key=lambda n: (n.role != "primary", n.address))


def node_versions(spec: rc.ConnectionSpec, role: rc.Role = "app") -> list[dict[str, Any]]:
    """Each live cluster node's `ratelimit_version` (FCALL_RO, which a replica answers too)."""
    out = []
    for n in _live_nodes(spec, role):
        c = rc.node_client(spec, n.address, role)
        try:
            version = fn.read_version(c)
        finally:
            c.close()
        out.append({"node": f"{n.host}:{n.port}", "role": n.role, "version": version,
                    "state": fn.library_state(version)})
    return out


def _cluster_result(nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    worst = next(s for s in _SEVERITY if any(n["state"] == s for n in [*nodes, {"state": "current"}]))
    version = next((n["version"] for n in nodes if n["state"] == worst), fn.LIBRARY_RELEASE)
    result = _result(version, nodes=nodes, **extra)
    bad = [n for n in nodes if n["state"] in ("missing", "older")]
    if bad:
        named = ", ".join(f"{n['node']} ({n['role']}, {n['version'] or 'missing'})" for n in bad)
        result["message"] = f"{result['message']}: {len(bad)} of {len(nodes)} cluster nodes: {named}"
    else:
        result["message"] = f"{result['message']}, on all {len(nodes)} cluster nodes"
    return result


def _load_cluster(spec: rc.ConnectionSpec, role: rc.Role) -> dict[str, Any]:
    """FUNCTION LOAD on every live primary (slots or not: a primary without slots may be given some),
    WAIT for its replicas, then every node's version."""
    for n in [n for n in _live_nodes(spec, role) if n.role == "primary"]:
        c = rc.node_client(spec, n.address, role)
        try:
            fn.load_library(c)
            replicas = int(c.info("replication").get("connected_slaves", 0))
            if replicas:
                c.execute_command("WAIT", replicas, int(spec.timeout_ms))
        except redis.exceptions.NoPermissionError as exc:
            raise _refused(spec, role, exc) from None
        finally:
            c.close()
    return _cluster_result(node_versions(spec, role), library=fn.LIBRARY_NAME)


def load(spec: rc.ConnectionSpec, role: rc.Role = "admin") -> dict[str, Any]:
    """FUNCTION LOAD REPLACE the library with `role`'s credential, then read its version back (on a
    cluster: on every primary, then every node's version)."""
    if spec.mode == "cluster":
        return _load_cluster(spec, role)
    client = rc.client(spec, role)
    try:
        name = fn.load_library(client)
        version = fn.read_version(client)
    except redis.exceptions.NoPermissionError as exc:
        raise _refused(spec, role, exc) from None
    finally:
        client.close()
    return _result(version, library=name)


def status(spec: rc.ConnectionSpec, role: rc.Role = "app") -> dict[str, Any]:
    """The server's `ratelimit_version` as `role` (the app credential may FCALL_RO it) vs this package;
    on a cluster every node's, the verdict the worst node's."""
    if spec.mode == "cluster":
        return _cluster_result(node_versions(spec, role), library=fn.LIBRARY_NAME)
    client = rc.client(spec, role)
    try:
        version = fn.read_version(client)
    finally:
        client.close()
    return _result(version, library=fn.LIBRARY_NAME)
