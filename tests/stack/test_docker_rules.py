"""What a real `pulumi up` of the local target meets and the mocks do not: the rules of the Docker
engine, of the docker provider and of the pinned images, held against every container the program
declares (both topologies, TLS on and off) and against the committed render of every stack.

Each rule names its source; infra/components/docker_rules.py applies them.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infra.components import docker_rules as rules
from infra.components import local_stack as ls
from infra.components.local_sentinel import NODE_HOSTNAMES, PRIMARY_ALIAS, SENTINEL_HOSTNAMES
from tests.support.leaks import generated_secrets
from tests.support.pulumi_harness import StackRun, load_stack_file, run_program, unwrap_secret

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = "docker:index/container:Container"
RUNS = {"single-tls": {}, "sentinel-tls": {"topology": "sentinel"},
        "sentinel-plain": {"topology": "sentinel", "tls": False}}
# Programs each pinned image ships, for its healthcheck (a check whose binary is missing never
# passes, so `wait` times out):
#  - redis / valkey: redis-cli / valkey-cli (docker-library/redis 7.2/debian/Dockerfile installs
#    the built binaries into /usr/local/bin);
#  - prom/prometheus: busybox (wget) (prometheus/prometheus Dockerfile at v2.53.0 and v3.x:
#    FROM quay.io/prometheus/busybox-${OS}-${ARCH});
#  - grafana/grafana: curl (grafana/grafana Dockerfile, final stage, both the alpine and the
#    ubuntu variant install curl);
#  - oliver006/redis_exporter: nothing but /redis_exporter (docker/Dockerfile at v1.62.0 and
#    v1.81.0: FROM scratch), so no healthcheck can run in it.
HEALTHCHECK_PROGRAMS = {"redis": {"redis-cli", "valkey-cli"}, "sentinel": {"redis-cli", "valkey-cli"},
                        "prometheus": {"wget"}, "grafana": {"curl"}, "exporter": set()}
SERVER_PROGRAMS = ("redis-server", "valkey-server", "redis-sentinel", "valkey-sentinel")


def _run(variant: str) -> StackRun:
    config, keys = load_stack_file("Pulumi.dev.yaml")
    extra = dict(RUNS[variant])
    local = {**config.get("local", {})}
    if "topology" in extra:
        local["topology"] = extra.pop("topology")
    config.update(local=local, **extra)
    return run_program(config, secret_keys=keys)


@pytest.fixture(scope="module")
def runs() -> dict[str, StackRun]:
    return {v: _run(v) for v in RUNS}


def containers(run: StackRun) -> dict[str, dict[str, Any]]:
    """Container inputs (secrets unwrapped) by service label (sentinel members by hostname)."""
    out = {}
    for r in run.of_type(CONTAINER):
        inputs = unwrap_secret(r.inputs)
        labels = {lab["label"]: lab["value"] for lab in inputs.get("labels", [])}
        out[labels[ls.SERVICE_LABEL]] = inputs
    return out


def committed_render_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((ROOT / "docs" / "stacks").glob("*.yaml")):
        for res in yaml.safe_load(path.read_text())["resources"]:
            if res["type"] == CONTAINER:
                yield f"{path.name}:{res['name']}", res["inputs"]


def kind(service: str) -> str:
    if service in NODE_HOSTNAMES:
        return "redis"
    if service in SENTINEL_HOSTNAMES:
        return "sentinel"
    return service


# --- network --------------------------------------------------------------------------------------

def _network_violation(inputs: dict[str, Any]) -> str | None:
    advanced = [n["name"] for n in inputs.get("networksAdvanced") or []]
    mode = inputs.get("networkMode")
    if mode is not None and mode in advanced:
        return f"network_mode {mode!r} is also in networks_advanced"
    if mode is not None and mode not in ("bridge",):
        return f"network_mode {mode!r}: join the stack network through networks_advanced only"
    if len(advanced) != 1:
        return f"expected the stack network once in networks_advanced, got {advanced}"
    return None


def test_no_container_joins_the_stack_network_twice(runs: dict[str, StackRun]) -> None:
    # Rule: the provider sets HostConfig.NetworkMode from `network_mode` at create and then
    # NetworkConnect()s each `networks_advanced` entry with its aliases; the engine ignores a
    # connect to the network the container is already on, so the aliases are lost.
    # Source: kreuzwerker/terraform-provider-docker v4.5.0,
    # internal/provider/resource_docker_container_funcs.go, resourceDockerContainerCreate.
    checked = 0
    for variant, run in runs.items():
        for service, inputs in containers(run).items():
            assert _network_violation(inputs) is None, (variant, service, _network_violation(inputs))
            checked += 1
    assert checked == 4 + 9 + 9


def test_no_committed_render_joins_a_network_twice() -> None:
    # The same rule on what reviewers see: `redisops render` of every committed stack.
    found = list(committed_render_containers())
    assert found, "the dev render declares containers"
    bad = {name: _network_violation(inputs) for name, inputs in found if _network_violation(inputs)}
    assert not bad, f"{bad}; regenerate the renders with `python -m redisops.render --write`"


def test_the_rule_catches_the_combination_it_forbids() -> None:
    dup = {"networkMode": "redis-net", "networksAdvanced": [{"name": "redis-net", "aliases": ["redis"]}]}
    assert "also in networks_advanced" in str(_network_violation(dup))
    assert _network_violation({"networksAdvanced": [{"name": "redis-net", "aliases": ["redis"]}]}) is None


def _dialed_hosts(cs: dict[str, dict[str, Any]]) -> set[str]:
    """Every host name one container dials to reach another, read from what they are given."""
    hosts: set[str] = set()
    exporter = cs["exporter"]["command"]
    hosts.add(urlsplit(exporter[exporter.index("-redis.addr") + 1]).hostname or "")
    uploads = {s: {u["file"]: u["content"] for u in c.get("uploads", [])} for s, c in cs.items()}
    prom = yaml.safe_load(uploads["prometheus"][f"{ls.PROMETHEUS_ETC}/prometheus.yml"])
    for job in prom["scrape_configs"]:
        for static in job["static_configs"]:
            hosts |= {t.rsplit(":", 1)[0] for t in static["targets"]}
    datasource = yaml.safe_load(uploads["grafana"][f"{ls.GRAFANA_PROVISIONING}/datasources/prometheus.yaml"])
    hosts |= {urlsplit(d["url"]).hostname or "" for d in datasource["datasources"]}
    for files in uploads.values():
        for path, text in files.items():
            if not path.endswith(".conf"):
                continue
            for line in text.splitlines():
                words = line.split()
                if words[:1] == ["replicaof"]:
                    hosts.add(words[1])
                if words[:2] == ["sentinel", "monitor"]:
                    hosts.add(words[3])
    return hosts


def test_every_name_a_container_dials_is_an_alias_on_the_stack_network(runs: dict[str, StackRun]) -> None:
    # Rule: on a user-defined network the engine's DNS answers container names and network
    # aliases (Docker docs, "Networking overview": containers on a user-defined network resolve
    # each other by name and alias); the container names here are auto-named by Pulumi, so only
    # aliases are stable. Hostnames are not DNS names.
    for variant, run in runs.items():
        cs = containers(run)
        aliases = {a for c in cs.values() for n in c["networksAdvanced"] for a in n.get("aliases", [])}
        dialed = _dialed_hosts(cs)
        assert ls.HOSTNAMES["redis"] in dialed and ls.HOSTNAMES["exporter"] in dialed
        # The one name that is not on the stack network: the host (the application beside the
        # stack), which the engine resolves from the container's --add-host entry.
        host_entries = {h["host"] for c in cs.values() for h in c.get("hosts", [])}
        assert host_entries == {ls.HOST_GATEWAY}
        assert dialed - host_entries <= aliases, (variant, dialed - host_entries - aliases)
        if variant.startswith("sentinel"):
            # The exporter watches `redis`, the initial primary's second alias.
            assert PRIMARY_ALIAS in cs["redis-0"]["networksAdvanced"][0]["aliases"]
            assert {"redis-0"} <= dialed


# --- uploads --------------------------------------------------------------------------------------

def _readable(mode: int, file_uid: int, file_gid: int, uid: int, gids: set[int]) -> bool:
    """POSIX permission check for reading (no capabilities: the containers drop ALL)."""
    if uid == file_uid:
        return bool(mode & 0o400)
    if file_gid in gids:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def test_every_upload_is_readable_by_its_container_user_whoever_owns_it(runs: dict[str, StackRun]) -> None:
    # Rule: the provider writes each upload as a tar entry and copies it with
    # CopyToContainerOptions{} (no CopyUIDGID). Upstream v4.5.0 sets only name, mode, size and
    # mtime in the tar header, so the file lands root:root with the declared mode
    # (kreuzwerker/terraform-provider-docker v4.5.0, resource_docker_container_funcs.go, the
    # `upload` block of resourceDockerContainerCreate); pulumi-docker 5.2.0 declares
    # owner/group, whose implementation was not among the sources read. Both outcomes must work.
    # The image's primary gid is not counted (the exporter's scratch image has no /etc/group).
    for variant, run in runs.items():
        for service, c in containers(run).items():
            uid = int(c["user"].split(":")[0])
            gids = {int(g) for g in c.get("groupAdds") or []}
            for up in c.get("uploads") or []:
                mode = int(up["permissions"], 8)
                honoured = (int(up["owner"]), int(up["group"]))
                for file_uid, file_gid in (honoured, (0, 0)):
                    assert _readable(mode, file_uid, file_gid, uid, gids), (variant, service, up["file"],
                                                                             oct(mode), file_uid, file_gid)


def test_secret_uploads_are_readable_by_nobody_else(runs: dict[str, StackRun]) -> None:
    # Group 0 plus the service's uid, never "other"; group 0 only in containers that read one.
    for variant, run in runs.items():
        generated = list(generated_secrets(run).values())
        seen = 0
        for service, c in containers(run).items():
            for up in c.get("uploads") or []:
                content = str(up["content"])
                acl_digests = up["file"].endswith(".acl") and "#" in content
                if "PRIVATE KEY" in content or acl_digests or any(g in content for g in generated):
                    seen += 1
                    assert up["permissions"] == rules.SECRET_MODE, (variant, service, up["file"])
                    assert int(up["permissions"], 8) & 0o007 == 0
                    assert c.get("groupAdds") == [rules.UPLOAD_GROUP], (variant, service)
        # single: key, ACL, exporter password, Grafana password; sentinel: per member conf/ACL.
        assert seen >= (4 if variant == "single-tls" else 9), (variant, seen)


def test_the_readability_check_would_catch_a_root_owned_private_file() -> None:
    # What the old uploads (owner 999, 0600, no group) become when the owner is not honoured.
    assert not _readable(0o600, 0, 0, 999, set())
    assert _readable(0o600, 999, 999, 999, set())
    assert _readable(0o440, 0, 0, 999, {0})


# --- umask ----------------------------------------------------------------------------------------

def _server_script(c: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(shell script, argv) when the container starts a Redis/Valkey server or Sentinel."""
    argv = [*c.get("entrypoints", []), *c.get("command", [])]
    if argv[:2] != ["sh", "-c"]:
        return None if not any(p in argv[:1] for p in SERVER_PROGRAMS) else ("", argv)
    script, rest = argv[2], argv[3:]
    if any(p in script.split() for p in SERVER_PROGRAMS) or any(p in rest[:1] for p in SERVER_PROGRAMS):
        return script, rest
    return None


def test_every_redis_server_starts_under_the_images_private_umask(runs: dict[str, StackRun]) -> None:
    # Rule: the image's entrypoint sets `umask 0077` (when the inherited umask is 0022) before it
    # execs the server, so RDB/AOF files are 0600 and directories 0700
    # (docker-library/redis 7.2/debian/docker-entrypoint.sh at REDIS_VERSION 7.2.5, "set an
    # appropriate umask", docker-library/redis#305). A container that runs the server without
    # that entrypoint must set it itself, first.
    servers = 0
    for variant, run in runs.items():
        for service, c in containers(run).items():
            found = _server_script(c)
            if found is None:
                continue
            servers += 1
            script, _ = found
            first = shlex.split(script.split(";")[0].split("&&")[0]) if script else []
            assert first == ["umask", rules.PRIVATE_UMASK], (variant, service, script)
            assert re.search(r"\bexec\b", script), (variant, service, script)
    assert servers == 1 + 6 + 6


# --- healthchecks and waits -----------------------------------------------------------------------

def test_wait_only_where_a_healthcheck_exists(runs: dict[str, StackRun]) -> None:
    # Rule: with `wait` the provider polls the container's health and fails when it has no
    # healthcheck ("you have supplied a 'wait' argument, but the container does not have a
    # healthcheck defined"); it gives up after `wait_timeout` seconds (default 60).
    # Source: resource_docker_container_funcs.go v4.5.0, resourceDockerContainerCreate.
    for variant, run in runs.items():
        for service, c in containers(run).items():
            if c.get("wait"):
                assert c.get("healthcheck", {}).get("tests"), (variant, service)
                assert c.get("waitTimeout", 60) >= 60, (variant, service)


def test_healthchecks_use_only_programs_their_image_ships(runs: dict[str, StackRun]) -> None:
    for variant, run in runs.items():
        for service, c in containers(run).items():
            tests = (c.get("healthcheck") or {}).get("tests") or []
            allowed = HEALTHCHECK_PROGRAMS[kind(service)]
            if not allowed:
                assert not tests, (variant, service, "a scratch image runs no healthcheck")
                continue
            program = tests[1] if tests[0] == "CMD" else shlex.split(tests[1])[0]
            assert program in allowed, (variant, service, tests)


def test_grafana_is_waited_for_until_api_health_answers(runs: dict[str, StackRun]) -> None:
    # Rule: Grafana runs its database migrations before it listens (tens of seconds on a first
    # start); GET /api/health answers 200 once it serves with a working database.
    for run in runs.values():
        g = containers(run)["grafana"]
        env = dict(e.split("=", 1) for e in g["envs"])
        hc = g["healthcheck"]
        assert hc["tests"][0] == "CMD" and hc["tests"][1] == "curl" and "--fail" in hc["tests"]
        assert hc["tests"][-1] == f"http://127.0.0.1:{env['GF_SERVER_HTTP_PORT']}/api/health"
        start = int(hc["startPeriod"].rstrip("s"))
        assert start >= 120, "a first start migrates the database for tens of seconds"
        assert g["wait"] is True and g["waitTimeout"] > start
        # Prometheus, which Grafana depends on, is waited for too.
        assert containers(run)["prometheus"]["wait"] is True


def test_rules_module_states_its_sources() -> None:
    doc = json.dumps(rules.__doc__)
    for source in ("resource_docker_container_funcs.go", "docker-entrypoint.sh", "GF_GID", "CopyUIDGID"):
        assert source in doc, source
