"""The dev stack with `local.topology: sentinel` under Pulumi mocks: LocalRedisStack wires
LocalSentinel (3 nodes + 3 Sentinels) in place of the single Redis, keeps the exporter,
Prometheus and Grafana on the initial primary, and hands applications a Sentinel URL."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from infra.components import local_stack as ls
from infra.components.local_sentinel import NODE_HOSTNAMES, PRIMARY_ALIAS, SENTINEL_HOSTNAMES, TLS_DNS_NAMES
from infra.errors import SettingError, SettingsErrors
from redis_conf.sentinel import MASTER_NAME, SentinelTuning
from tests.support.leaks import generated_secrets, plain_occurrences
from tests.support.pulumi_harness import StackRun, is_secret, load_stack_file, run_program, unwrap_secret

CONTAINER = "docker:index/container:Container"
PASSWORD = "random:index/randomPassword:RandomPassword"
MONITORING = ("redis-exporter", "prometheus", "grafana")


def config_with(local: dict[str, Any] | None = None, **extra: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    config, secret_keys = load_stack_file("Pulumi.dev.yaml")
    config.update(local={**config.get("local", {}), "topology": "sentinel", **(local or {})}, **extra)
    return config, secret_keys


@pytest.fixture(scope="module")
def run() -> StackRun:
    config, keys = config_with()
    return run_program(config, secret_keys=keys)


@pytest.fixture(scope="module")
def plain_run() -> StackRun:
    config, keys = config_with(tls=False)
    return run_program(config, secret_keys=keys)


def containers(run: StackRun) -> dict[str, dict[str, Any]]:
    return {r.inputs["hostname"]: unwrap_secret(r.inputs) for r in run.of_type(CONTAINER)}


def upload(run: StackRun, host: str, suffix: str) -> str:
    return str(next(u["content"] for u in containers(run)[host]["uploads"] if u["file"].endswith(suffix)))


def generated(run: StackRun, user: str) -> str:
    return str(run.one(PASSWORD, f"redis-{user}-password").outputs["result"])


def digest(password: str) -> str:
    return "#" + hashlib.sha256(password.encode()).hexdigest()


# --- what is declared ------------------------------------------------------------------------------

def test_three_nodes_three_sentinels_and_the_monitoring_trio(run: StackRun) -> None:
    cs = containers(run)
    assert set(cs) == {*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES, *MONITORING}
    top = run.one("redisstack:local:LocalRedisStack")
    sentinel = run.one("redisstack:local:LocalSentinel")
    assert (sentinel.name, sentinel.parent_type, sentinel.parent_name) == (
        "redis-sentinel", top.type, top.name)
    for r in run.of_type(CONTAINER):
        host = r.inputs["hostname"]
        owner = ("redisstack:local:LocalSentinel", "redis-sentinel") if host not in MONITORING else (top.type, top.name)
        assert (r.parent_type, r.parent_name) == owner, host
    # One Redis image pulled, used by all six members; no single-topology Redis or its volume.
    image = run.one("docker:index/remoteImage:RemoteImage", "redis-redis-image").outputs["imageId"]
    assert {cs[h]["image"] for h in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES)} == {image}
    names = {r.name for r in run.resources}
    assert "redis-redis" not in names and "redis-redis-data" not in names
    assert {r.name for r in run.of_type("docker:index/volume:Volume")} == {
        "redis-prometheus-data", "redis-grafana-data",
        *(f"redis-sentinel-{h}-data" for h in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES))}
    assert run.outputs["topology"] == "sentinel"


def test_only_the_primary_is_published_and_only_on_loopback(run: StackRun) -> None:
    published = {h: [(p["internal"], p["external"], p["ip"]) for p in c.get("ports") or []]
                 for h, c in containers(run).items()}
    assert published == {
        "redis-0": [(6379, 6379, "127.0.0.1")], "redis-1": [], "redis-2": [],
        "sentinel-0": [], "sentinel-1": [], "sentinel-2": [],
        "redis-exporter": [(9121, 9121, "127.0.0.1")], "prometheus": [(9090, 9090, "127.0.0.1")],
        "grafana": [(3000, 3001, "127.0.0.1")]}
    assert run.outputs["redisUrl"] == "rediss://127.0.0.1:6379/0"
    assert run.outputs["exposedBeyondLoopback"] is False


def test_configured_host_port_and_address_reach_the_primary() -> None:
    config, keys = config_with(local={"ports": {"redis": 6390, "exporter": 9121, "prometheus": 9090,
                                                "grafana": 3001}, "bindAddress": "127.0.0.2"})
    r = run_program(config, secret_keys=keys)
    assert [(p["internal"], p["external"], p["ip"]) for p in containers(r)["redis-0"]["ports"]] == [
        (6379, 6390, "127.0.0.2")]
    assert r.outputs["redisUrl"] == "rediss://127.0.0.2:6390/0"


def test_members_on_the_private_network_non_root_without_capabilities(run: StackRun) -> None:
    net = run.one("docker:index/network:Network").outputs["name"]
    cs = containers(run)
    for host in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES):
        c = cs[host]
        # networks_advanced only: with network_mode on the same network the engine drops the
        # aliases and `redis` (what the exporter dials) would not resolve (test_docker_rules.py).
        assert "networkMode" not in c
        assert c["networksAdvanced"] == [{"name": net, "aliases": [host, PRIMARY_ALIAS] if host == "redis-0"
                                          else [host]}]
        assert c["user"] == "999" and c["capabilities"] == {"drops": ["ALL"]}
        assert c["securityOpts"] == ["no-new-privileges:true"]
    assert cs["redis-0"]["memory"] == 1200  # maxmemory 800mb + 50 % fork headroom, as single


def test_exporter_watches_the_initial_primary_by_its_redis_alias(run: StackRun) -> None:
    exporter = run.one(CONTAINER, "redis-exporter")
    args = unwrap_secret(exporter.inputs)["command"]
    assert args[args.index("-redis.addr") + 1] == f"rediss://{PRIMARY_ALIAS}:6379"
    assert any(d.endswith("::redis-sentinel-redis-0") for d in exporter.depends_on), exporter.depends_on
    assert ls.HOSTNAMES["redis"] == PRIMARY_ALIAS


# --- credentials -------------------------------------------------------------------------------------

def test_stack_passwords_reach_nodes_and_sentinels(run: StackRun) -> None:
    app, replica, sentinel = generated(run, "app"), generated(run, "replica"), generated(run, "sentinel")
    for host in NODE_HOSTNAMES:
        acl = {line.split()[1]: line.split() for line in upload(run, host, "users.acl").splitlines()}
        assert digest(app) in acl["default"] and digest(run.outputs["monitorPassword"]) in acl["monitor"]
        assert digest(run.outputs["adminPassword"]) in acl["admin"]
        assert f'masterauth "{replica}"' in upload(run, host, "redis.conf")
    for host in SENTINEL_HOSTNAMES:
        conf = upload(run, host, "sentinel.conf").splitlines()
        default = next(line for line in conf if line.startswith("user default "))
        assert digest(app) in default.split()
        assert f"sentinel auth-pass {MASTER_NAME} {sentinel}" in conf


def test_configured_app_password_is_the_sentinel_discovery_password() -> None:
    config, keys = config_with(password="Configured-App-Password-123")
    r = run_program(config, secret_keys=(*keys, "password"))
    assert "redis-app-password" not in {p.name for p in r.of_type(PASSWORD)}
    assert r.outputs["sentinelPassword"] == r.outputs["env"]["REDIS_SENTINEL_PASSWORD"] == \
        "Configured-App-Password-123"
    default = next(line for line in upload(r, "sentinel-1", "sentinel.conf").splitlines()
                   if line.startswith("user default "))
    assert digest("Configured-App-Password-123") in default.split()


def test_no_secret_in_commands_env_healthchecks_or_plain_outputs(run: StackRun) -> None:
    needles = generated_secrets(run)
    assert len(needles) == 8  # app, monitor, replica, sentinel, admin, grafana + CA key + server key
    for host, c in containers(run).items():
        exposed = json.dumps([c.get("command"), c.get("entrypoints"), c.get("envs"), c.get("healthcheck"),
                              c.get("labels"), c.get("hostname")])
        for name, secret in needles.items():
            assert secret not in exposed, f"{name} in {host}'s command/env/healthcheck"
    plain = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
    for name, secret in needles.items():
        assert secret not in json.dumps(plain, default=str), f"{name} in a plain output"
    assert {"env", "sentinelPassword", "adminPassword", "monitorPassword"} <= run.secret_outputs


def test_every_input_holding_a_secret_is_marked_secret(run: StackRun) -> None:
    """What the program hands to providers: Pulumi keeps a value secret in state and diffs only
    when it arrives wrapped."""
    needles = generated_secrets(run)
    leaks = [f"{r.name} input{p}" for r in run.resources for p in plain_occurrences(r.inputs, needles)]
    assert leaks == []
    for r in run.of_type(CONTAINER):
        if r.inputs["hostname"] in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES):
            assert is_secret(r.inputs["uploads"]), r.name


# --- outputs -----------------------------------------------------------------------------------------

def test_outputs_point_applications_at_the_sentinels(run: StackRun) -> None:
    url = "rediss+sentinel://sentinel-0:26379,sentinel-1:26379,sentinel-2:26379/" + MASTER_NAME
    assert run.outputs["sentinelUrl"] == url
    assert run.outputs["masterName"] == MASTER_NAME
    assert run.outputs["sentinelEndpoints"] == [f"{h}:26379" for h in SENTINEL_HOSTNAMES]
    assert run.outputs["redisNodes"] == [f"{h}:6379" for h in NODE_HOSTNAMES]
    env = run.outputs["env"]
    app = generated(run, "app")
    assert env["REDIS_URL"] == url and env["REDIS_PASSWORD"] == app
    assert env["REDIS_SENTINEL_MASTER"] == MASTER_NAME and env["REDIS_SENTINEL_PASSWORD"] == app
    assert run.outputs["sentinelPassword"] == app
    assert env["REDIS_TLS"] == "true" and env["RATE_LIMIT_GENERAL"] == "120,60"
    defaults = SentinelTuning()
    assert run.outputs["sentinelTuning"] == {
        "quorum": defaults.quorum, "downAfterMs": defaults.down_after_ms,
        "failoverTimeoutMs": defaults.failover_timeout_ms, "parallelSyncs": defaults.parallel_syncs,
        "minReplicasToWrite": defaults.min_replicas_to_write, "minReplicasMaxLag": defaults.min_replicas_max_lag}


def test_plain_text_topology_has_a_redis_sentinel_url_and_no_certificates(plain_run: StackRun) -> None:
    assert plain_run.outputs["sentinelUrl"].startswith("redis+sentinel://sentinel-0:26379,")
    assert plain_run.outputs["env"]["REDIS_URL"] == plain_run.outputs["sentinelUrl"]
    assert plain_run.outputs["env"]["REDIS_TLS"] == "false"
    assert not [r for r in plain_run.resources if r.type.startswith("tls:")]
    assert "caCertPem" not in plain_run.outputs
    conf = upload(plain_run, "redis-2", "redis.conf").splitlines()
    assert "port 6379" in conf and "replicaof redis-0 6379" in conf
    assert not [line for line in conf if line.startswith("tls-")]


def test_sentinel_settings_reach_the_rendered_files() -> None:
    config, keys = config_with(sentinel={"downAfterMs": 2000, "failoverTimeoutMs": 9000, "quorum": 3,
                                         "minReplicasToWrite": 2})
    r = run_program(config, secret_keys=keys)
    conf = upload(r, "sentinel-0", "sentinel.conf").splitlines()
    assert f"sentinel monitor {MASTER_NAME} redis-0 6379 3" in conf
    assert f"sentinel down-after-milliseconds {MASTER_NAME} 2000" in conf
    assert f"sentinel failover-timeout {MASTER_NAME} 9000" in conf
    assert "min-replicas-to-write 2" in upload(r, "redis-1", "redis.conf").splitlines()
    assert r.outputs["sentinelTuning"]["quorum"] == 3


# --- TLS ---------------------------------------------------------------------------------------------

def test_certificate_names_every_member_and_chains_to_the_exported_ca(run: StackRun) -> None:
    cert_pem = run.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"]
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(TLS_DNS_NAMES)
    assert {*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES, PRIMARY_ALIAS, "localhost"} <= set(TLS_DNS_NAMES)
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(run.outputs["caCertPem"].encode()))
    pem = cert.public_bytes(Encoding.PEM).decode()
    key = run.one("tls:index/privateKey:PrivateKey", "redis-tls-server-key").outputs["privateKeyPem"]
    for host in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES):
        assert upload(run, host, "tls/server.crt") == pem
        assert upload(run, host, "tls/server.key") == key
        assert upload(run, host, "tls/ca.crt") == run.outputs["caCertPem"]
    assert "tls-replication yes" in upload(run, "sentinel-2", "sentinel.conf").splitlines()


def test_single_topology_keeps_its_one_name_certificate_and_one_redis() -> None:
    config, keys = config_with(local={"topology": "single"})
    r = run_program(config, secret_keys=keys)
    assert not r.of_type("redisstack:local:LocalSentinel")
    assert set(containers(r)) == {"redis", *MONITORING}
    cert = x509.load_pem_x509_certificate(
        r.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"].encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"redis", "localhost"}
    assert r.outputs["env"]["REDIS_URL"] == r.outputs["redisUrl"] == "rediss://127.0.0.1:6379/0"
    assert not {"sentinelUrl", "sentinelPassword", "masterName"} & set(r.outputs)
    assert "REDIS_SENTINEL_MASTER" not in r.outputs["env"]


# --- bad input ---------------------------------------------------------------------------------------

def test_minority_quorum_is_refused_before_anything_is_declared() -> None:
    config, keys = config_with(sentinel={"quorum": 1})
    with pytest.raises(SettingsErrors) as info:
        run_program(config, secret_keys=keys)
    [err] = [e for e in info.value.errors if e.key == "sentinel.quorum"]
    assert err.value == 1 and "greater than or equal to 2" in err.allowed


def test_unknown_topology_names_key_value_and_choices() -> None:
    from infra.settings import parse_settings

    base = ls.LocalStackArgs.from_settings(parse_settings(load_stack_file("Pulumi.dev.yaml")[0], stack="dev"))
    with pytest.raises(SettingError) as info:
        ls.LocalStackArgs(**{**base.__dict__, "topology": "cluster"})
    assert info.value.key == "local.topology" and info.value.value == "cluster"
    assert "single" in info.value.allowed and "sentinel" in info.value.allowed
