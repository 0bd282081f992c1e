"""redisops.devstack.Remap: the only thing that differs between the containers and the
container-less run (in-container paths, hostnames, ports). Built from the real dev stack
program under mocks, then checked value by value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.components import local_stack as ls
from infra.versions import DEFAULT_IMAGES
from redisops.devstack import ContainerSpec, Remap, Upload, container_specs, write_files
from tests.support.pulumi_harness import load_stack_file, run_program

PORTS = {"redis": 16379, "exporter": 19121, "prometheus": 19090, "grafana": 13001}


def specs_for(**local: object) -> dict[str, ContainerSpec]:
    config, keys = load_stack_file("Pulumi.dev.yaml")
    config["local"] = {**config["local"], "ports": PORTS, **local}
    return container_specs(run_program(config, secret_keys=keys).resources)


@pytest.fixture(scope="module")
def specs() -> dict[str, ContainerSpec]:
    return specs_for()


def test_specs_read_back_what_the_program_declared(specs: dict[str, ContainerSpec]) -> None:
    assert set(specs) == set(ls.SERVICES)
    # The server under the private-umask wrapper; the program is what the wrapper execs.
    assert specs["redis"].command == ("redis-server", ls.REDIS_CONF)
    assert specs["redis"].shell_wrapper == 'umask 0077 && exec "$0" "$@"'
    assert specs["redis"].program == "redis-server"
    assert specs["exporter"].program == "/redis_exporter" and specs["exporter"].shell_wrapper is None
    assert specs["redis"].image == DEFAULT_IMAGES["redis"]
    assert specs["redis"].ports == ((6379, 16379, "127.0.0.1"),)
    assert specs["redis"].volumes == ("/data",)
    assert {u.path: oct(u.mode) for u in specs["redis"].uploads}[ls.REDIS_ACL] == "0o440"


def test_paths_move_under_the_service_root(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    assert remap.path("redis", ls.REDIS_CONF) == tmp_path / "redis/root/usr/local/etc/redis/redis.conf"
    assert remap.path("prometheus", "/prometheus") == tmp_path / "prometheus/root/prometheus"
    with pytest.raises(ValueError, match="not an absolute"):
        remap.path("redis", "data")


def test_exporter_argv_dials_the_published_redis_port(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    argv = remap.argv("exporter", specs["exporter"].argv)
    flag = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
    assert flag["-redis.addr"] == "rediss://127.0.0.1:16379"
    assert flag["-web.listen-address"] == "127.0.0.1:19121"
    assert flag["-redis.password-file"] == str(tmp_path / "exporter/root/etc/redis_exporter/password.json")
    assert flag["-tls-ca-cert-file"] == str(tmp_path / "exporter/root/etc/redis_exporter/ca.crt")
    assert flag["-redis.user"] == "monitor" and argv[0] == "/redis_exporter"


def test_password_file_key_follows_the_address(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    upload = next(u for u in specs["exporter"].uploads if u.path == ls.EXPORTER_PASSWORD_FILE)
    remapped = json.loads(remap.file("exporter", upload))
    # Both lookups (1.45 by address, 1.69+ by address with the user) follow the remap.
    assert list(remapped) == ["rediss://127.0.0.1:16379", "rediss://monitor@127.0.0.1:16379"]
    assert list(remapped.values()) == list(json.loads(upload.content).values())


def test_redis_conf_listens_on_the_published_address(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    upload = next(u for u in specs["redis"].uploads if u.path == ls.REDIS_CONF)
    conf = dict(line.split(" ", 1) for line in remap.file("redis", upload).splitlines() if line[:1] != "#")
    root = tmp_path / "redis/root"
    assert conf["bind"] == "127.0.0.1"
    assert conf["port"] == "0" and conf["tls-port"] == "16379"
    assert conf["dir"] == str(root / "data")
    assert conf["aclfile"] == str(root / "usr/local/etc/redis/users.acl")
    assert conf["tls-key-file"] == str(root / "usr/local/etc/redis/tls/server.key")
    # everything else is the container's redis.conf, untouched
    original = dict(line.split(" ", 1) for line in upload.content.splitlines() if line[:1] != "#")
    changed = {k for k in original if original[k] != conf[k]}
    assert changed == {"bind", "tls-port", "dir", "aclfile", "tls-cert-file", "tls-key-file", "tls-ca-cert-file"}


def test_prometheus_and_healthcheck(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    upload = next(u for u in specs["prometheus"].uploads if u.path.endswith("prometheus.yml"))
    text = remap.file("prometheus", upload)
    assert "- 127.0.0.1:19121" in text and "redis-exporter" not in text
    # The application beside the stack: host.docker.internal is this host's loopback here.
    assert "- 127.0.0.1:8000" in text and "host.docker.internal" not in text
    assert "- redis-alerts.yml" in text  # relative: resolved beside prometheus.yml wherever it lives
    args = remap.argv("prometheus", specs["prometheus"].argv)
    assert f"--config.file={tmp_path}/prometheus/root/etc/prometheus/prometheus.yml" in args
    assert "--web.listen-address=127.0.0.1:19090" in args
    health = remap.argv("redis", specs["redis"].healthcheck)[1]
    assert f"--cacert {tmp_path}/redis/root/usr/local/etc/redis/tls/ca.crt" in health
    assert "-u rediss://127.0.0.1:16379 PING" in health


def test_unrelated_text_is_left_alone(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    for text in ("/data2/x", "/srv/data", "myredis:6379", "redis:6380", "redis-exporterx:9121",
                 "http://example.org/data", "prometheus:9091"):
        assert remap.text("redis", text) == text
        assert remap.text("exporter", text) == text
    pem = next(u for u in specs["redis"].uploads if u.path.endswith("server.key"))
    assert remap.file("redis", pem) == pem.content


def test_run_dir_that_looks_like_a_container_path_is_not_remapped_twice(specs: dict[str, ContainerSpec],
                                                                         tmp_path: Path) -> None:
    run_dir = tmp_path / "data" / "usr" / "local" / "etc" / "redis"
    remap = Remap.build(specs, run_dir)
    upload = next(u for u in specs["redis"].uploads if u.path == ls.REDIS_CONF)
    conf = dict(line.split(" ", 1) for line in remap.file("redis", upload).splitlines() if line[:1] != "#")
    assert conf["dir"] == str(run_dir / "redis/root/data")
    assert conf["aclfile"] == str(run_dir / "redis/root/usr/local/etc/redis/users.acl")


def test_all_interfaces_listen_everywhere_but_dial_loopback(tmp_path: Path) -> None:
    specs = specs_for(bindAddress="0.0.0.0")
    remap = Remap.build(specs, tmp_path)
    argv = remap.argv("exporter", specs["exporter"].argv)
    assert "0.0.0.0:19121" in argv and "rediss://127.0.0.1:16379" in argv
    upload = next(u for u in specs["redis"].uploads if u.path == ls.REDIS_CONF)
    assert "bind 0.0.0.0" in remap.file("redis", upload).splitlines()


def test_write_files_keeps_declared_modes(specs: dict[str, ContainerSpec], tmp_path: Path) -> None:
    remap = Remap.build(specs, tmp_path)
    written = write_files(specs["redis"], remap)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {
        "redis.conf": "0o444", "users.acl": "0o440", "server.crt": "0o444", "server.key": "0o440", "ca.crt": "0o444"}
    assert (tmp_path / "redis/root/data").is_dir()
    spec = ContainerSpec("x", "img", "x", ("/bin/x",), (), {}, (Upload("/etc/x/y", "z", 0o400),), ((1, 2, "127.0.0.1"),),
                         ())
    remap_x = Remap.build({"x": spec}, tmp_path)
    assert oct(write_files(spec, remap_x)[0].stat().st_mode & 0o777) == "0o400"
