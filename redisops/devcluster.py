"""`redisops dev up --mode processes` with `local.topology: cluster`: N x M redis-server processes,
an exporter per node and Prometheus scraping them all, on this machine, without Docker.

What is shared with the single topology comes from the same offline run of the stack program
(the single topology's passwords, TLS certificate and CA, Prometheus' files); what is the
cluster's own is rendered by `redis_conf.cluster.node_conf` (every node's redis.conf) and built
by `redisops.cluster.create_cluster`. Node i listens on `local.ports.redis + i` (its bus 10000
above) and its exporter on `local.ports.exporter + i`; every node announces the address a
developer dials. The ACL file is `redis_conf.acl`'s, with the single topology's app, monitor and
admin passwords and fresh replica/sentinel ones (the replica password is written into each
node's redis.conf as `masterauth`, mode 0600, as on every self-managed node).

Docker mode refuses the topology (infra/components/local_stack.py): the nodes would announce
container addresses a host client cannot reach.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis
import yaml

from infra.monitoring.grafana import exporter_command, exporter_password_file, exporter_redis_addr
from infra.monitoring.prometheus import cluster_static_config
from infra.settings import parse_settings
from redis_conf import render_acl_file
from redis_conf.cluster import BUS_PORT_OFFSET, Announce, ClusterLayout, ClusterTuning, node_conf
from redis_conf.render import TlsFiles
from redisops import devstack as ds
from redisops import mockrun
from redisops.cluster import SLOTS, coverage, create_cluster

Out = Callable[[str], None]
TLS_UPLOADS = {"cert": "server.crt", "key": "server.key", "ca": "ca.crt"}


def stack_config(project: Path, stack: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The stack's config (namespace stripped, `secure:` values fresh) with `overrides` merged."""
    config, _ = mockrun.load_stack_config(project / f"Pulumi.{stack}.yaml", secret_value=ds._fresh_secret)
    return ds._deep_merge(config, overrides or {})


def _private(path: Path, text: str) -> Path:
    ds._write_private(path, text)
    return path


def _upload(spec: ds.ContainerSpec, name: str) -> str:
    return next(u.content for u in spec.uploads if u.path.endswith("/" + name))


def _spawn(argv: list[str], cwd: Path, log: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    cwd.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, cwd=cwd, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                    "HOME": str(cwd), **(env or {})},
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, umask=0o077)
    return {"pid": proc.pid, "started": ds.proc_start_time(proc.pid), "argv": argv, "log": str(log)}


def _await(kind: str, info: dict[str, Any], run_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ds._service_health(kind, info, run_dir)[0]:
        if time.monotonic() > deadline or not ds._pid_alive(int(info["pid"]), info.get("started")):
            tail = Path(info["log"]).read_text(errors="replace")[-2000:]
            raise ds.DevStackError(f"{kind} on {info['host']}:{info['port']} is not healthy; log {info['log']}:\n{tail}")
        time.sleep(0.1)


def up(project: Path, stack: str, run_dir: Path, overrides: Mapping[str, Any] | None, out: Out) -> dict[str, Any]:
    config = stack_config(project, stack, overrides)
    settings = parse_settings(config, stack=stack)
    local = settings.config.local
    layout = ClusterLayout(local.cluster.primaries, local.cluster.replicas)
    # The single topology's program run provides passwords, TLS material and Prometheus' files.
    run = ds.offline_run(project, stack, ds._deep_merge(overrides or {}, {"local": {"topology": "single"}}))
    specs = ds.container_specs(run.resources)
    host = "127.0.0.1" if local.bind_address == "0.0.0.0" else local.bind_address  # noqa: S104
    ports = [local.ports.redis + i for i in range(layout.size)]
    exporter_ports = [local.ports.exporter + i for i in range(layout.size)]
    how = "overrides {{'local': {{'ports': {{'{s}': <port>}}}}}} (stack config redisstack:local.ports.{s})"
    ds.check_ports([("redis", local.bind_address, p) for p in ports]
                   + [("redis", local.bind_address, p + BUS_PORT_OFFSET) for p in ports]
                   + [("exporter", local.bind_address, p) for p in exporter_ports]
                   + [("prometheus", local.bind_address, local.ports.prometheus)], how_to_change=how)
    programs = {k: ds.local_program(k) for k in ("redis-server", "/redis_exporter", "/bin/prometheus")}
    if not all(programs.values()):
        raise ds.DevStackError(f"missing programs ({', '.join(k for k, v in programs.items() if not v)}); "
                               f"on Debian: {ds.APT_HINT}")

    outputs = dict(run.outputs)
    env = {str(k): str(v) for k, v in ds._plain(outputs["env"]).items()}
    passwords = {"app": env["REDIS_PASSWORD"], "admin": str(outputs["adminPassword"]),
                 "monitor": str(outputs["monitorPassword"]), "replica": secrets.token_urlsafe(32),
                 "sentinel": secrets.token_urlsafe(32)}
    etc = run_dir / "cluster" / "etc"
    acl = _private(etc / "users.acl", render_acl_file(passwords))
    tls = None
    ca_file = None
    if settings.tls:
        files = {k: _private(etc / "tls" / name, _upload(specs["redis"], name)) for k, name in TLS_UPLOADS.items()}
        tls = TlsFiles(str(files["cert"]), str(files["key"]), str(files["ca"]))
        ca_file = files["ca"]
        (run_dir / ds.CA_FILE).write_text(files["ca"].read_text())
    tuning = ClusterTuning(node_timeout_ms=local.cluster.node_timeout_ms)
    scheme = "rediss" if settings.tls else "redis"
    services: dict[str, Any] = {}
    state = {"mode": "processes", "topology": "cluster", "services": services}
    ds._save_state(run_dir, state)  # before anything starts: down() can clean up a partial start

    for i, port in enumerate(ports):
        node_dir = run_dir / "cluster" / f"node-{i}"
        node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = node_conf(settings.redis_conf, passwords=passwords, bind=local.bind_address, port=port,
                         bus_port=port + BUS_PORT_OFFSET, data_dir=str(node_dir), aclfile=str(acl), tls=tls,
                         announce=Announce(host, port, port + BUS_PORT_OFFSET), tuning=tuning)
        conf = _private(node_dir / "redis.conf", text)
        record = _spawn([str(programs["redis-server"]), str(conf)], node_dir, run_dir / f"redis-{i}.log")
        services[f"redis-{i}"] = {"url": f"{scheme}://{host}:{port}/0", "host": host, "port": port, **record}
        ds._save_state(run_dir, state)
    for i in range(layout.size):
        _await("redis", services[f"redis-{i}"], run_dir)
    ssl: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(ca_file)} if ca_file else {}
    admins = [redis.Redis(host=host, port=p, username="admin", password=passwords["admin"], socket_timeout=10, **ssl)
              for p in ports]
    try:
        out(f"creating the cluster: {layout.primaries} primaries x {layout.replicas} replica(s)")
        create_cluster(admins, [(host, p, p + BUS_PORT_OFFSET) for p in ports], layout.primaries)
    finally:
        for a in admins:
            a.close()

    for i, (port, eport) in enumerate(zip(ports, exporter_ports, strict=True)):
        edir = run_dir / "cluster" / f"exporter-{i}"
        addr = exporter_redis_addr(host, port, tls=settings.tls)
        pw = _private(edir / "password.json", exporter_password_file(addr, passwords["monitor"]))
        cmd = exporter_command(host, port, password_file=str(pw), tls_ca_cert_file=str(ca_file) if ca_file else None,
                               listen_address=f"{local.bind_address}:{eport}")
        record = _spawn([str(programs["/redis_exporter"]), *cmd.args], edir, run_dir / f"exporter-{i}.log",
                        dict(cmd.env))
        services[f"exporter-{i}"] = {"url": f"http://{host}:{eport}/metrics", "host": host, "port": eport, **record}
        ds._save_state(run_dir, state)
        _await("exporter", services[f"exporter-{i}"], run_dir)

    remap = ds.Remap.build(specs, run_dir)
    prom = specs["prometheus"]
    ds.write_files(prom, remap)
    config_path = next(remap.path("prometheus", u.path) for u in prom.uploads if u.path.endswith("prometheus.yml"))
    prom_config = yaml.safe_load(config_path.read_text())
    # Every node is a target; everything else (intervals, rules) is the stack's file.
    prom_config["scrape_configs"][0]["static_configs"] = [
        cluster_static_config([f"{host}:{p}" for p in exporter_ports])]
    os.chmod(config_path, 0o644)
    config_path.write_text(yaml.safe_dump(prom_config, sort_keys=False))
    os.chmod(config_path, 0o444)

    def started(record: dict[str, Any]) -> None:
        services["prometheus"] = {"url": str(outputs["prometheusUrl"]), **record}
        ds._save_state(run_dir, state)

    ds.start_process(prom, remap, run_dir, on_started=started)
    ds.write_files(specs["grafana"], remap)
    services["grafana"] = {"url": str(outputs["grafanaUrl"]), "note": ds.NOT_PACKAGED["grafana"]}

    url = f"{scheme}://{host}:{ports[0]}/0"
    env.update({"REDIS_URL": url, "REDIS_CLUSTER": "true"})
    outputs.update({"env": env, "redisUrl": url, "clusterMode": True, "topology": "cluster",
                    "clusterNodes": [f"{host}:{p}" for p in ports],
                    "exporterUrl": services["exporter-0"]["url"]})
    outputs.pop("redisConf", None)  # the single topology's file; the nodes' own hold masterauth
    return {"outputs": outputs, "services": services, "topology": "cluster"}


def coverage_lines(run_dir: Path, state: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """(every slot served and state ok, the per-shard lines) as the first live node sees it."""
    try:
        outputs = ds._plain(json.loads((run_dir / ds.OUTPUTS_FILE).read_text()))
    except (OSError, ValueError):
        return False, ["slot coverage: no outputs file yet"]
    ca = run_dir / ds.CA_FILE
    ssl: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(ca)} if ca.exists() else {}
    last = "no node answered"
    for name, info in state.get("services", {}).items():
        if not name.startswith("redis-"):
            continue
        client = redis.Redis(host=info["host"], port=int(info["port"]), username="admin",
                             password=str(outputs["adminPassword"]), socket_timeout=5, **ssl)
        try:
            cov = coverage(client)
        except (redis.RedisError, OSError) as exc:
            last = f"{name}: {type(exc).__name__}"
            continue
        finally:
            client.close()
        ok = cov.state == "ok" and cov.slots_ok == SLOTS
        return ok, [f"slot coverage (seen from {name}): " + cov.lines()[0], *cov.lines()[1:]]
    return False, [f"slot coverage: {last}"]

