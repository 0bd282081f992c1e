"""The dev stack (target local) under Pulumi mocks: every security and wiring property asserted
from what the program hands to Docker (recorded resource inputs) and what it exports."""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from infra.components import local_stack as ls
from infra.monitoring import grafana as gf
from infra.monitoring import prometheus as prom
from infra.settings import Images
from ratelimit.tiers import DEFAULT_TIERS
from tests.support.leaks import generated_secrets, plain_occurrences
from tests.support.pulumi_harness import StackRun, is_secret, load_stack_file, run_program, unwrap_secret

CONTAINER = "docker:index/container:Container"
PASSWORD = "random:index/randomPassword:RandomPassword"
PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*$|@sha256:[0-9a-f]{64}$")


def dev_config(**extra: Any) -> tuple[dict[str, Any], tuple[str, ...]]:
    config, secret_keys = load_stack_file("Pulumi.dev.yaml")
    local = dict(config.get("local", {}))
    local.update(extra.pop("local", {}))
    config.update(local=local, **extra)
    return config, secret_keys


@pytest.fixture(scope="module")
def run() -> StackRun:
    config, secret_keys = dev_config()
    return run_program(config, secret_keys=secret_keys)


def container(run: StackRun, service: str) -> dict[str, Any]:
    for r in run.of_type(CONTAINER):
        inputs = unwrap_secret(r.inputs)
        labels = {lab["label"]: lab["value"] for lab in inputs.get("labels", [])}
        if labels.get(ls.SERVICE_LABEL) == service:
            return inputs
    raise AssertionError(f"no container labelled {service}")


def uploads(run: StackRun, service: str) -> dict[str, dict[str, Any]]:
    return {u["file"]: u for u in container(run, service)["uploads"]}


def generated(run: StackRun, user: str) -> str:
    return str(run.one(PASSWORD, f"redis-{user}-password").outputs["result"])


# --- images, ports, network -----------------------------------------------------------------------

def test_images_pinned_and_used_by_their_containers(run: StackRun) -> None:
    defaults = Images().model_dump()
    for service in ls.SERVICES:
        image = run.one("docker:index/remoteImage:RemoteImage", f"redis-{service}-image")
        assert image.inputs["name"] == defaults[service]
        assert PINNED.search(image.inputs["name"]) and not image.inputs["name"].endswith(":latest")
        assert container(run, service)["image"] == image.outputs["imageId"]


def test_image_override_is_used() -> None:
    config, keys = dev_config(local={"images": {"redis": "valkey/valkey:8.0.10"}}, engine="valkey",
                              engineVersion="8.0")
    r = run_program(config, secret_keys=keys)
    assert r.one("docker:index/remoteImage:RemoteImage", "redis-redis-image").inputs["name"] == "valkey/valkey:8.0.10"
    redis = container(r, "redis")
    assert redis["command"] == ["valkey-server", ls.REDIS_CONF]
    assert redis["healthcheck"]["tests"][1].startswith("valkey-cli ")


def test_ports_published_on_loopback_only_by_default(run: StackRun) -> None:
    published = {s: container(run, s)["ports"] for s in ls.SERVICES}
    assert {s: [(p["internal"], p["external"], p["ip"]) for p in ps] for s, ps in published.items()} == {
        "redis": [(6379, 6379, "127.0.0.1")], "exporter": [(9121, 9121, "127.0.0.1")],
        "prometheus": [(9090, 9090, "127.0.0.1")], "grafana": [(3000, 3001, "127.0.0.1")]}
    net = run.one("docker:index/network:Network")
    assert net.inputs["options"]["com.docker.network.bridge.host_binding_ipv4"] == "127.0.0.1"
    assert run.outputs["bindAddress"] == "127.0.0.1"
    assert run.outputs["exposedBeyondLoopback"] is False
    assert run.outputs["redisUrl"] == "rediss://127.0.0.1:6379/0"
    assert run.outputs["grafanaUrl"] == "http://127.0.0.1:3001"


def test_all_interfaces_only_when_configured_and_reported() -> None:
    config, keys = dev_config(local={"bindAddress": "0.0.0.0"})
    r = run_program(config, secret_keys=keys)
    for service in ls.SERVICES:
        assert [p["ip"] for p in container(r, service)["ports"]] == ["0.0.0.0"]
    assert r.outputs["bindAddress"] == "0.0.0.0"
    assert r.outputs["exposedBeyondLoopback"] is True
    # A developer on the machine still dials loopback, which the certificate names.
    assert r.outputs["redisUrl"] == "rediss://127.0.0.1:6379/0"


def test_concrete_lan_address_is_in_the_certificate_and_urls() -> None:
    config, keys = dev_config(local={"bindAddress": "192.168.10.5"})
    r = run_program(config, secret_keys=keys)
    assert r.outputs["exposedBeyondLoopback"] is True
    assert r.outputs["redisUrl"] == "rediss://192.168.10.5:6379/0"
    cert = x509.load_pem_x509_certificate(r.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"].encode())
    ips = {str(i) for i in cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
           .get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", "192.168.10.5"}


def test_private_network_with_aliases(run: StackRun) -> None:
    net = run.one("docker:index/network:Network")
    assert net.inputs["driver"] == "bridge"
    assert net.inputs["attachable"] is False
    for service in ls.SERVICES:
        c = container(run, service)
        # One mechanism (tests/stack/test_docker_rules.py): networks_advanced, no network_mode.
        assert "networkMode" not in c
        assert c["networksAdvanced"] == [{"name": net.outputs["name"], "aliases": [ls.HOSTNAMES[service]]}]
        assert c["hostname"] == ls.HOSTNAMES[service]


def test_every_child_belongs_to_the_component(run: StackRun) -> None:
    top = run.one("redisstack:local:LocalRedisStack")
    assert top.parent_type == "pulumi:pulumi:Stack"
    tls_children = {r.name for r in run.resources if r.parent_name == "redis-tls"}
    assert tls_children == {"redis-tls-ca-key", "redis-tls-ca", "redis-tls-server-key", "redis-tls-server-csr",
                            "redis-tls-server"}
    for r in run.resources:
        if r is not top and r.name not in tls_children:
            assert (r.parent_type, r.parent_name) == ("redisstack:local:LocalRedisStack", "redis"), r.name


# --- users, privileges, persistence -------------------------------------------------------------

def test_every_container_runs_as_non_root_without_capabilities(run: StackRun) -> None:
    for service in ls.SERVICES:
        c = container(run, service)
        assert c["user"] == ls.USERS[service]
        assert c["user"] not in ("0", "root", "") and not c["user"].startswith("0:")
        assert c["capabilities"] == {"drops": ["ALL"]}
        assert "no-new-privileges:true" in c["securityOpts"]
        for up in c["uploads"]:
            # Group 0 so that the file stays readable if the provider leaves it root-owned
            # (tests/stack/test_docker_rules.py).
            assert (up["owner"], up["group"]) == (ls.USERS[service], "0"), up["file"]


def test_redis_persists_aof_and_rdb_on_a_named_volume_at_data(run: StackRun) -> None:
    redis = container(run, "redis")
    volume = run.one("docker:index/volume:Volume", "redis-redis-data")
    assert redis["volumes"] == [{"volumeName": volume.outputs["name"], "containerPath": "/data"}]
    conf = uploads(run, "redis")[ls.REDIS_CONF]["content"]
    lines = conf.splitlines()
    assert "dir /data" in lines and "appendonly yes" in lines and "appendfsync everysec" in lines
    assert "save 900 1 300 10 60 10000" in lines
    assert redis["memory"] == 1200  # 800mb maxmemory + 50 % fork headroom
    prom_volume = run.one("docker:index/volume:Volume", "redis-prometheus-data")
    assert container(run, "prometheus")["volumes"] == [{"volumeName": prom_volume.outputs["name"],
                                                         "containerPath": "/prometheus"}]


def test_redis_reads_the_uploaded_files_and_speaks_tls_only(run: StackRun) -> None:
    redis = container(run, "redis")
    ups = uploads(run, "redis")
    assert redis["entrypoints"][:2] == ["sh", "-c"] and redis["command"] == ["redis-server", ls.REDIS_CONF]
    conf = dict(line.split(" ", 1) for line in ups[ls.REDIS_CONF]["content"].splitlines() if line[:1] != "#")
    assert conf["aclfile"] == ls.REDIS_ACL and ls.REDIS_ACL in ups
    assert conf["port"] == "0" and conf["tls-port"] == "6379"
    for directive in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert conf[directive] in ups, directive
    assert ups[conf["tls-key-file"]]["permissions"] == "0440"
    assert ups[ls.REDIS_ACL]["permissions"] == "0440"
    key = run.one("tls:index/privateKey:PrivateKey", "redis-tls-server-key").outputs["privateKeyPem"]
    assert ups[conf["tls-key-file"]]["content"] == key
    assert ups[conf["tls-ca-cert-file"]]["content"] == run.outputs["caCertPem"]


def test_acl_file_holds_digests_of_the_generated_passwords(run: StackRun) -> None:
    acl = uploads(run, "redis")[ls.REDIS_ACL]["content"]
    users = {line.split()[1]: line for line in acl.splitlines()}
    assert set(users) == {"default", "monitor", "replica", "sentinel", "admin"}
    for user, password in (("default", generated(run, "app")), ("monitor", run.outputs["monitorPassword"]),
                           ("admin", run.outputs["adminPassword"]), ("replica", generated(run, "replica")),
                           ("sentinel", generated(run, "sentinel"))):
        assert f"#{hashlib.sha256(password.encode()).hexdigest()}" in users[user].split()
        assert password not in acl
    assert "-@dangerous" in users["default"] and "-@all" in users["monitor"]


def test_generated_passwords_are_long_and_distinct(run: StackRun) -> None:
    passwords = [r for r in run.of_type(PASSWORD)]
    assert {r.name for r in passwords} == {f"redis-{u}-password" for u in
                                           ("app", "monitor", "replica", "sentinel", "admin", "grafana-admin")}
    for r in passwords:
        assert r.inputs["length"] >= 32
        assert len(r.outputs["result"]) == r.inputs["length"]
    assert len({r.outputs["result"] for r in passwords}) == len(passwords)


def test_configured_passwords_are_used_instead_of_generated() -> None:
    config, keys = dev_config(password="Configured-App-Password-123", grafanaAdminPassword="Configured-Grafana-Pw-1")
    r = run_program(config, secret_keys=(*keys, "password", "grafanaAdminPassword"))
    names = {p.name for p in r.of_type(PASSWORD)}
    assert "redis-app-password" not in names and "redis-grafana-admin-password" not in names
    acl = uploads(r, "redis")[ls.REDIS_ACL]["content"]
    assert f"#{hashlib.sha256(b'Configured-App-Password-123').hexdigest()}" in acl.splitlines()[0]
    assert r.outputs["env"]["REDIS_PASSWORD"] == "Configured-App-Password-123"
    assert uploads(r, "grafana")[ls.GRAFANA_ADMIN_PASSWORD_FILE]["content"] == "Configured-Grafana-Pw-1"
    assert "env" in r.secret_outputs and "grafanaAdminPassword" in r.secret_outputs


def test_redis_healthcheck_holds_no_credential(run: StackRun) -> None:
    redis = container(run, "redis")
    test = redis["healthcheck"]["tests"]
    assert test[0] == "CMD-SHELL" and "PING" in test[1] and "NOAUTH" in test[1]
    assert "-a " not in test[1] and "REDISCLI_AUTH" not in test[1] and "--user" not in test[1]
    assert f"--cacert {ls.REDIS_TLS_DIR}/ca.crt" in test[1] and "rediss://127.0.0.1:6379" in test[1]
    assert "envs" not in redis or redis["envs"] == []
    assert redis["wait"] is True


# --- no secret where it can leak ------------------------------------------------------------------

def test_no_secret_in_commands_env_healthchecks_or_plain_outputs(run: StackRun) -> None:
    needles = generated_secrets(run)
    assert len(needles) == 8  # 6 passwords + CA key + server key
    for service in ls.SERVICES:
        c = container(run, service)
        exposed = json.dumps([c.get("command"), c.get("entrypoints"), c.get("envs"), c.get("healthcheck"),
                              c.get("labels"), c.get("hostname")])
        for name, secret in needles.items():
            assert secret not in exposed, f"{name} in {service}'s command/env/healthcheck"
    plain = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
    for name, secret in needles.items():
        assert secret not in json.dumps(plain, default=str), f"{name} in a plain output"
    assert {"env", "adminPassword", "monitorPassword", "grafanaAdminPassword"} <= run.secret_outputs


def test_every_recorded_value_holding_a_secret_is_marked_secret(run: StackRun) -> None:
    needles = generated_secrets(run)
    own = {("random:index/randomPassword:RandomPassword", "result"), ("tls:index/privateKey:PrivateKey", "privateKeyPem"),
           ("tls:index/privateKey:PrivateKey", "privateKeyPemPkcs8")}
    leaks: list[str] = []
    for r in run.resources:
        leaks += [f"{r.name} input{p}" for p in plain_occurrences(r.inputs, needles)]
        outputs = {k: v for k, v in r.outputs.items() if (r.type, k) not in own}
        leaks += [f"{r.name} output{p}" for p in plain_occurrences(outputs, needles)]
    assert leaks == []
    # The uploads that must carry secrets are wrapped as a whole (secret in state and diffs).
    for r in run.of_type(CONTAINER):
        if r.name in ("redis-redis", "redis-exporter", "redis-grafana"):
            assert is_secret(r.inputs["uploads"]), r.name


# --- exporter / Prometheus / Grafana wiring -------------------------------------------------------

def test_exporter_scrapes_redis_as_monitor_over_tls_with_a_password_file(run: StackRun) -> None:
    exp = container(run, "exporter")
    args = exp["command"]
    flag = {args[i]: args[i + 1] for i in range(0, len(args) - 1) if args[i].startswith("-")}
    redis = container(run, "redis")
    addr = f"rediss://{redis['networksAdvanced'][0]['aliases'][0]}:{redis['ports'][0]['internal']:.0f}"
    assert flag["-redis.addr"] == addr
    assert flag["-redis.user"] == "monitor"
    ups = uploads(run, "exporter")
    pw_file = ups[flag["-redis.password-file"]]
    user_addr = addr.replace("rediss://", "rediss://monitor@")  # the 1.69+ lookup key (test_exporter_acl.py)
    assert json.loads(pw_file["content"]) == {addr: run.outputs["monitorPassword"],
                                              user_addr: run.outputs["monitorPassword"]}
    assert pw_file["permissions"] == "0440"
    assert ups[flag["-tls-ca-cert-file"]]["content"] == run.outputs["caCertPem"]
    assert flag["-web.listen-address"].endswith(f":{exp['ports'][0]['internal']:.0f}")
    assert exp["entrypoints"] == ["/redis_exporter"]
    assert not any(e.startswith("REDIS_PASSWORD") for e in exp.get("envs", []))


def test_prometheus_scrapes_the_exporter_and_loads_the_rules_table(run: StackRun) -> None:
    p = container(run, "prometheus")
    flags = dict(a.split("=", 1) for a in p["command"])
    ups = uploads(run, "prometheus")
    config = yaml.safe_load(ups[flags["--config.file"]]["content"])
    exp = container(run, "exporter")
    target = f"{exp['networksAdvanced'][0]['aliases'][0]}:{exp['ports'][0]['internal']:.0f}"
    assert config["scrape_configs"][0]["static_configs"] == [{"targets": [target]}]
    rules_path = posixpath.join(posixpath.dirname(flags["--config.file"]), config["rule_files"][0])
    assert ups[rules_path]["content"] == prom.render_alert_rules()
    assert flags["--storage.tsdb.path"] == "/prometheus"
    assert flags["--web.listen-address"] == f"0.0.0.0:{p['ports'][0]['internal']:.0f}"
    # The application on the host (job ratelimit-app): reached through Docker's host-gateway alias
    # (--add-host NAME:host-gateway maps to the default bridge's address, moby/moby#40007).
    app_job = config["scrape_configs"][1]
    assert app_job["job_name"] == prom.APP_SCRAPE_JOB_NAME and app_job["metrics_path"] == "/metrics"
    assert app_job["static_configs"] == [{"targets": [f"{ls.HOST_GATEWAY}:8000"]}]
    assert p["hosts"] == [{"host": ls.HOST_GATEWAY, "ip": "host-gateway"}]


def test_threshold_overrides_reach_the_rules() -> None:
    config, keys = dev_config(thresholds={"connected_clients": {"warn": 200}})
    r = run_program(config, secret_keys=keys)
    rules = yaml.safe_load(uploads(r, "prometheus")[f"{ls.PROMETHEUS_ETC}/{prom.RULES_FILE_NAME}"]["content"])
    exprs = [rule["expr"] for rule in rules["groups"][0]["rules"] if rule["labels"]["threshold"] == "connected_clients"]
    assert any(e.endswith("> 200") for e in exprs), exprs


def test_grafana_provisioning_is_wired_by_uid_and_locked_down(run: StackRun) -> None:
    g = container(run, "grafana")
    ups = uploads(run, "grafana")
    ds = yaml.safe_load(ups[f"{ls.GRAFANA_PROVISIONING}/datasources/prometheus.yaml"]["content"])["datasources"][0]
    pr = container(run, "prometheus")
    assert ds["url"] == f"http://{pr['networksAdvanced'][0]['aliases'][0]}:{pr['ports'][0]['internal']:.0f}"
    provider = yaml.safe_load(ups[f"{ls.GRAFANA_PROVISIONING}/dashboards/redisstack.yaml"]["content"])["providers"][0]
    dashboards = [p for p in ups if PurePosixPath(p).parent == PurePosixPath(provider["options"]["path"])]
    assert len(dashboards) == 1
    dash = json.loads(ups[dashboards[0]]["content"])
    uids = {t["datasource"]["uid"] for panel in dash["panels"] if panel["type"] != "row" for t in panel["targets"]}
    assert uids == {ds["uid"]} == {gf.DATASOURCE_UID}
    env = dict(e.split("=", 1) for e in g["envs"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    pw = ups[env["GF_SECURITY_ADMIN_PASSWORD__FILE"]]
    assert pw["content"] == run.outputs["grafanaAdminPassword"] != "admin"
    assert pw["permissions"] == "0440" and len(pw["content"]) >= 32
    assert env["GF_PATHS_PROVISIONING"] == ls.GRAFANA_PROVISIONING
    assert g["ports"][0]["internal"] == int(env["GF_SERVER_HTTP_PORT"])


# --- TLS ------------------------------------------------------------------------------------------

def test_server_certificate_names_the_container_and_loopback_and_chains_to_the_exported_ca(run: StackRun) -> None:
    cert = x509.load_pem_x509_certificate(run.one("tls:index/locallySignedCert:LocallySignedCert").outputs["certPem"].encode())
    ca = x509.load_pem_x509_certificate(run.outputs["caCertPem"].encode())
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"redis", "localhost"}
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    cert.verify_directly_issued_by(ca)
    assert uploads(run, "redis")[f"{ls.REDIS_TLS_DIR}/server.crt"]["content"] == cert.public_bytes(Encoding.PEM).decode()


def test_tls_off_means_plain_port_and_no_certificates() -> None:
    config, keys = dev_config(tls=False)
    r = run_program(config, secret_keys=keys)
    assert not [x for x in r.resources if x.type.startswith("tls:")]
    conf = uploads(r, "redis")[ls.REDIS_CONF]["content"].splitlines()
    assert "port 6379" in conf and not [line for line in conf if line.startswith("tls-")]
    args = container(r, "exporter")["command"]
    assert args[args.index("-redis.addr") + 1] == "redis://redis:6379" and "-tls-ca-cert-file" not in args
    assert "caCertPem" not in r.outputs
    assert r.outputs["redisUrl"] == "redis://127.0.0.1:6379/0" and r.outputs["env"]["REDIS_TLS"] == "false"


# --- outputs --------------------------------------------------------------------------------------

def test_env_contract_output(run: StackRun) -> None:
    env = run.outputs["env"]
    assert env["REDIS_URL"] == run.outputs["redisUrl"]
    assert env["REDIS_PASSWORD"] == generated(run, "app")
    assert env["REDIS_TLS"] == "true" and env["REDIS_TIMEOUT"] == "5000" and env["REDIS_ENABLED"] == "true"
    for tier in DEFAULT_TIERS:
        assert env[tier.env_name] == tier.spec
    assert run.outputs["exporterUrl"] == "http://127.0.0.1:9121/metrics"
    assert run.outputs["prometheusUrl"] == "http://127.0.0.1:9090"
    assert run.outputs["expectations"] == {"maxmemoryPolicy": "allkeys-lru", "appendonly": True,
                                           "maxmemoryBytes": 800 * 2**20}



def test_rendered_redis_conf_is_exported_in_plain_text_for_reviews(run: StackRun) -> None:
    assert "redisConf" not in run.secret_outputs
    exported = run.outputs["redisConf"]
    assert exported == uploads(run, "redis")[ls.REDIS_CONF]["content"], "the output is what the container reads"
    assert "maxmemory 800mb" in exported and "tls-port 6379" in exported
    for secret in generated_secrets(run).values():
        assert secret not in exported
