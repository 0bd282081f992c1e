"""A restored cluster primary is checked (its marker key read) only once its own cluster_state is
ok: before that every keyed command answers CLUSTERDOWN (clusterUpdateState's writable and rejoin
delays), while DBSIZE already answers. Found by a clean-clone CI run: the marker's GET raised
ClusterDownError when the shard's replicas cleared the FAIL flag faster than the rejoin delay."""

from __future__ import annotations

import re
from typing import Any

import pytest

from redisops import backup as bk
from redisops import connection as rc
from redisops.errors import OperationError

NODES = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-16383\n"


class Node:
    """CLUSTER INFO / NODES of one node whose state turns ok after `fails` readings."""

    def __init__(self, fails: int) -> None:
        self.fails, self.readings, self.closed = fails, 0, False

    def execute_command(self, *args: str) -> str:
        if args[1] == "INFO":
            self.readings += 1
            state = "fail" if self.readings <= self.fails else "ok"
            return f"cluster_state:{state}\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n"
        return NODES

    def close(self) -> None:
        self.closed = True


def spec() -> Any:
    return rc.ConnectionSpec(mode="cluster", hosts=(("127.0.0.1", 7000),), tls=False, timeout_ms=1000, tiers=(),
                             source="test", username="app", password="a", admin_password="b")


def test_waits_until_the_node_reports_cluster_state_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    node, said = Node(fails=3), []
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: node)
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    bk._wait_cluster_ok(spec(), bk.time.monotonic() + 60, lambda msg, _f: said.append(msg))
    assert node.readings == 4 and node.closed
    assert said == ["waiting for 127.0.0.1:7000 to report cluster_state ok"] * 3


def test_a_node_still_down_at_the_deadline_is_named_with_its_state(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Node(fails=10**9)
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: node)
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    with pytest.raises(OperationError, match=re.escape("127.0.0.1:7000 still reports cluster_state fail at the --wait deadline")):
        bk._wait_cluster_ok(spec(), bk.time.monotonic() - 1, lambda _m, _f: None)
    assert node.closed


def test_verify_only_reads_a_cluster_nodes_marker_only_once_its_state_is_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    node, order = Node(fails=2), []
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: node)
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    monkeypatch.setattr(bk, "wait_and_count", lambda *_a: order.append("count") or 7)
    monkeypatch.setattr(bk, "check_restored",
                        lambda _s, _m, count: order.append(f"marker after {node.readings} CLUSTER INFO") or f"{count}")
    assert bk.verify_server(spec(), {"keys": 7}, 60) == "7"
    assert order == ["count", "marker after 3 CLUSTER INFO"]


def test_verify_only_without_a_server_reports_none_and_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(*_a: Any) -> int:
        raise OperationError("Redis did not answer")

    monkeypatch.setattr(bk, "wait_and_count", unreachable)
    monkeypatch.setattr(rc, "node_client", lambda *_a, **_k: pytest.fail("no node may be asked"))
    assert bk.verify_server(spec(), {"keys": 7}, 1) is None


class AppOnlyNode(Node):
    """A node reached with the credentials of one role: DBSIZE, GET of the marker, CLUSTER INFO/NODES."""

    def __init__(self, fails: int, marker: bytes) -> None:
        super().__init__(fails)
        self.marker = marker

    def dbsize(self) -> int:
        return 7

    def get(self, _key: str) -> bytes:
        return self.marker


def test_verify_only_on_a_cluster_needs_no_admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """`restore --verify-only` with app credentials only (no REDIS_ADMIN_PASSWORD) read DBSIZE and the
    marker as the app user before the cluster_state wait existed; the wait asks as that user too (the
    app ACL allows CLUSTER INFO/NODES: tests/integration/test_cluster_backup.py on the rendered ACL)."""
    app_only = rc.ConnectionSpec(mode="cluster", hosts=(("127.0.0.1", 7000),), tls=False, timeout_ms=1000, tiers=(),
                                 source="test", username="app", password="a", admin_password=None)
    node, roles = AppOnlyNode(fails=2, marker=b"b-1"), []

    def node_client(spec: rc.ConnectionSpec, _address: Any, role: rc.Role = "app", **_k: Any) -> AppOnlyNode:
        rc.credentials(spec, role)  # the real check: UsageError for the admin role without its password
        roles.append(role)
        return node

    monkeypatch.setattr(rc, "node_client", node_client)
    monkeypatch.setattr(bk.time, "sleep", lambda _s: None)
    manifest = {"keys": 7, "marker": {"key": "redisops:backup-marker:{0}", "value": "b-1"}}
    assert bk.verify_server(app_only, manifest, 60) == "7 keys, as in the backup"
    assert node.readings == 3 and set(roles) == {"app"}
    # With the admin password set, every read goes as admin, as before.
    roles.clear()
    assert bk.verify_server(spec(), manifest, 60) == "7 keys, as in the backup"
    assert set(roles) == {"admin"}


def test_the_restored_node_is_checked_as_primary_without_the_admin_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped node is restored without REDIS_ADMIN_PASSWORD (nothing to SHUTDOWN, no replica to
    hold): the after-restart primary check must not then fail on the missing password, after the
    files were swapped, but ask CLUSTER NODES as the app user."""
    app_only = rc.ConnectionSpec(mode="cluster", hosts=(("127.0.0.1", 7000),), tls=False, timeout_ms=1000, tiers=(),
                                 source="test", username="app", password="a", admin_password=None)
    node, roles = Node(fails=0), []

    def node_client(spec: rc.ConnectionSpec, _address: Any, role: rc.Role = "app", **_k: Any) -> Node:
        rc.credentials(spec, role)
        roles.append(role)
        return node

    monkeypatch.setattr(rc, "node_client", node_client)
    bk._check_still_primary(app_only, {"cluster": {"slots": [[0, 16383]]}})
    assert roles == ["app"] and node.closed
