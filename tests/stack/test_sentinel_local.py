"""Stack tests (mocks) for the dev `topology: sentinel` containers (LocalSentinel)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pulumi
import pytest

from infra.components.local_sentinel import (
    NODE_HOSTNAMES,
    PRIMARY_ALIAS,
    SENTINEL_HOSTNAMES,
    TLS_DNS_NAMES,
    LocalSentinel,
    LocalSentinelArgs,
    local_sentinel_files,
)
from redis_conf.acl import CREDENTIALS
from redis_conf.schema import load_base
from redis_conf.sentinel import MASTER_NAME, SentinelTuning
from tests.support.pulumi_harness import (
    PROJECT,
    RealisticMocks,
    Resource,
    _RecordingMonitor,
    is_secret,
    unwrap_secret,
)

PASSWORDS = {c: f"{c}-Secret-0123456789abcdef" for c in CREDENTIALS}
CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----\n"
T_CONTAINER = "docker:index/container:Container"


@cache
def build(tls: bool) -> tuple[list[Resource], dict[str, Any]]:
    mocks = RealisticMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False, monitor=_RecordingMonitor(mocks))
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> Any:
        args = LocalSentinelArgs(
            engine="redis", tls=tls, redis_conf=load_base(), tuning=SentinelTuning(),
            network_name="redis-net-mock", image="sha256:redisimage",
            passwords={c: pulumi.Output.secret(p) for c, p in PASSWORDS.items()},
            tls_cert_pem=CERT if tls else None, tls_key_pem=KEY if tls else None, tls_ca_pem=CERT if tls else None,
            labels={"stack": "dev"})
        comp = LocalSentinel("redis-sentinel", args)
        holder["outputs"] = comp.stack_outputs
        return pulumi.Output.from_input(comp.nodes[0].id)

    run()
    return mocks.resources, holder["outputs"]


def containers(tls: bool) -> dict[str, Resource]:
    return {r.inputs["hostname"]: r for r in build(tls)[0] if r.type == T_CONTAINER}


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_six_containers_on_the_private_network_nothing_published(tls: bool) -> None:
    cs = containers(tls)
    assert set(cs) == {*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES}
    for host, c in cs.items():
        assert c.parent_type == "redisstack:local:LocalSentinel" and c.name == f"redis-sentinel-{host}"
        assert "ports" not in c.inputs or not c.inputs["ports"]
        assert "networkMode" not in c.inputs and c.inputs["networksAdvanced"][0]["name"] == "redis-net-mock"
        aliases = c.inputs["networksAdvanced"][0]["aliases"]
        assert aliases == ([host, PRIMARY_ALIAS] if host == NODE_HOSTNAMES[0] else [host])
        assert c.inputs["user"] == "999"
        assert c.inputs["capabilities"]["drops"] == ["ALL"]
        assert c.inputs["securityOpts"] == ["no-new-privileges:true"]
        assert c.inputs["image"] == "sha256:redisimage"


def _plain(value: Any) -> Any:
    """`value` with every secret wrapper replaced by a marker: what `docker inspect`, state
    diffs and logs may show."""
    if is_secret(value):
        return "<secret>"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_secrets_only_in_secret_uploads(tls: bool) -> None:
    for c in containers(tls).values():
        visible = json.dumps(_plain(c.inputs))
        for pw in PASSWORDS.values():
            assert pw not in visible
        assert KEY not in visible
        uploads = unwrap_secret(c.inputs["uploads"])
        everything = json.dumps(uploads)
        # The secrets are there (the test would be empty otherwise), and only in 0400/0600 files.
        expected = "replica" if c.inputs["hostname"] in NODE_HOSTNAMES else "sentinel"
        assert PASSWORDS[expected] in everything
        # Plaintext of the app and admin passwords never reaches a container (ACL digests only).
        assert PASSWORDS["app"] not in everything and PASSWORDS["admin"] not in everything
        for up in uploads:
            if any(pw in up["content"] for pw in PASSWORDS.values()) or KEY in up["content"]:
                assert up["permissions"] == "0440" and up["group"] == "0", up["file"]


def test_rendered_files_are_the_sentinel_topology_by_hostname() -> None:
    cs = containers(True)
    for i, host in enumerate(NODE_HOSTNAMES):
        conf = next(u["content"] for u in unwrap_secret(cs[host].inputs["uploads"]) if u["file"].endswith("redis.conf"))
        assert ("replicaof redis-0 6379" in conf) is (i > 0)
        assert f"replica-announce-ip {host}" in conf and "tls-replication yes" in conf
        assert cs[host].inputs["entrypoints"] == ["sh", "-c"]
        assert "exec redis-server /data/redis.conf" in cs[host].inputs["command"][0]
    for host in SENTINEL_HOSTNAMES:
        conf = next(u["content"] for u in unwrap_secret(cs[host].inputs["uploads"])
                    if u["file"].endswith("sentinel.conf"))
        assert f"sentinel monitor {MASTER_NAME} redis-0 6379 2" in conf
        assert "sentinel resolve-hostnames yes" in conf and "sentinel announce-hostnames yes" in conf
        assert f"sentinel announce-ip {host}" in conf
        # Sentinels depend on the nodes being healthy first.
        assert {d.rsplit("::", 1)[1] for d in cs[host].depends_on if "container:Container" in d} == {
            f"redis-sentinel-{h}" for h in NODE_HOSTNAMES}


def test_outputs_and_tls_names() -> None:
    _, outputs = build(False)
    assert outputs["masterName"] == MASTER_NAME
    assert outputs["sentinelEndpoints"] == [f"{h}:26379" for h in SENTINEL_HOSTNAMES]
    assert set(NODE_HOSTNAMES) | set(SENTINEL_HOSTNAMES) | {PRIMARY_ALIAS} <= set(TLS_DNS_NAMES)


def test_args_demand_every_credential_and_tls_material() -> None:
    with pytest.raises(ValueError, match="passwords for admin"):
        LocalSentinelArgs(engine="redis", tls=False, redis_conf=load_base(), tuning=SentinelTuning(),
                          network_name="n", image="i",
                          passwords={c: pulumi.Output.from_input("x") for c in CREDENTIALS if c != "admin"})
    with pytest.raises(ValueError, match="tls needs"):
        LocalSentinelArgs(engine="redis", tls=True, redis_conf=load_base(), tuning=SentinelTuning(),
                          network_name="n", image="i",
                          passwords={c: pulumi.Output.from_input("x") for c in CREDENTIALS})


def test_pure_render_matches_the_container_paths() -> None:
    files = local_sentinel_files(load_base(), SentinelTuning(), PASSWORDS, tls=True)
    assert "aclfile /usr/local/etc/redis/users.acl" in files[0].redis_conf
    assert "tls-cert-file /usr/local/etc/redis/tls/server.crt" in files[2].sentinel_conf
    assert "dir /data" in files[1].sentinel_conf
