"""The dev stack's `topology: sentinel` without a Docker engine.

The real Pulumi program runs under the mocks (real passwords, keys, certificates); the six
Redis/Sentinel containers' uploaded files are written to a temp dir and each container's own
entrypoint (`sh -c` seeding the writable copy, then `exec redis-server|redis-sentinel`) is run.

What is remapped, and nothing else (`remap_line` / `remap_paths`):

* in-container paths (/usr/local/etc/redis, /data) -> a directory per container;
* `bind 0.0.0.0` -> 127.0.0.1, each member's container port -> its own loopback port (the
  primary's is the host port the stack publishes);
* the container hostnames redis-N / sentinel-N -> `localhost`. They resolve only on the stack's
  Docker network; `localhost` keeps Sentinel in hostname mode (resolve/announce-hostnames) and
  is one of the names the stack's certificate carries, so TLS is verified exactly as there.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from redis.sentinel import Sentinel

from infra.components import local_sentinel as lsn
from redis_conf.sentinel import MASTER_NAME, REDIS_PORT, SENTINEL_PORT
from redisops import devstack
from tests.integration._sentinel_topology import SETTLE_S, wait_until
from tests.support.pulumi_harness import load_stack_file, run_program
from tests.support.redisproc import free_port, have_redis, wait_for_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server/redis-sentinel not "
                                                   "installed (apt-get install redis-server redis-sentinel)")]

HOST = "localhost"
MEMBERS = (*lsn.NODE_HOSTNAMES, *lsn.SENTINEL_HOSTNAMES)
_NAME = re.compile(r"^(?:redis|sentinel)-\d+$")


@dataclass
class Member:
    host: str
    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "member.log"


def remap_paths(text: str, root: Path) -> str:
    for prefix in (lsn.ETC, lsn.DATA):
        text = re.sub(rf"(?<![\w./-]){re.escape(prefix)}(?=$|[/\s;])", str(root) + prefix, text, flags=re.M)
    return text


def remap_line(line: str, ports: dict[str, int], own: int) -> str:
    words = line.split(" ")
    if words[0] == "bind":
        return "bind 127.0.0.1"
    if words[0] in ("port", "tls-port") and words[1] in (str(REDIS_PORT), str(SENTINEL_PORT)):
        return f"{words[0]} {own}"
    if words[:2] == ["sentinel", "announce-port"] or words[0] == "replica-announce-port":
        return " ".join([*words[:-1], str(own)])
    # "<hostname> <port>" pairs (replicaof, sentinel monitor) and announced names.
    out = []
    for i, w in enumerate(words):
        if _NAME.match(w):
            out.append(HOST)
            if i + 1 < len(words) and words[i + 1] in (str(REDIS_PORT), str(SENTINEL_PORT)):
                words[i + 1] = str(ports[w])
        else:
            out.append(w)
    return " ".join(out)


def remap_conf(text: str, root: Path, ports: dict[str, int], own: int) -> str:
    return "\n".join(remap_line(line, ports, own) for line in remap_paths(text, root).splitlines()) + "\n"


@dataclass
class Topology:
    members: dict[str, Member]
    outputs: dict[str, Any]
    ca: Path

    def ssl(self) -> dict[str, Any]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca), "ssl_cert_reqs": "required"}

    def client(self, host: str, user: str, password: str) -> redis.Redis:
        return redis.Redis(HOST, self.members[host].port, username=user, password=password, socket_timeout=10,
                           **self.ssl())

    def admin(self, host: str) -> redis.Redis:
        return self.client(host, "admin", self.outputs["adminPassword"])

    def sentinel(self) -> Sentinel:
        """What an application builds from the env output (discovery with REDIS_SENTINEL_PASSWORD)."""
        env = self.outputs["env"]
        return Sentinel([(HOST, self.members[h].port) for h in lsn.SENTINEL_HOSTNAMES],
                        sentinel_kwargs={"password": env["REDIS_SENTINEL_PASSWORD"], "socket_timeout": 10,
                                         **self.ssl()},
                        password=env["REDIS_PASSWORD"], socket_timeout=10, **self.ssl())

    def master_port(self, sentinel_host: str) -> int:
        host, port = cast(tuple[Any, Any], self.admin(sentinel_host).sentinel_get_master_addr_by_name(MASTER_NAME))
        assert host in (HOST, HOST.encode()), host
        return int(port)

    def online_replicas(self, node: str) -> int:
        info = self.admin(node).info("replication")
        assert info["role"] == "master", info["role"]
        return sum(1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                   and v.get("state") == "online")


def _stop(member: Member) -> None:
    proc = member.proc
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def devstack_sentinel(tmp: Path) -> Iterator[Topology]:
    primary_port = free_port()
    config, keys = load_stack_file("Pulumi.dev.yaml")
    config["local"] = {**config.get("local", {}), "topology": "sentinel",
                       "ports": {**config["local"]["ports"], "redis": primary_port}}
    # Steady until the test's own kill (a Redis starved of CPU for a second on a busy machine
    # must not be replaced before it); the test then switches the Sentinels to down-after 1 s /
    # failover-timeout 5 s (FIELD-NOTES: healed in ~2.3 s with these). min-replicas-max-lag stays
    # the dev config's (10 s): with 2 s, a replica starved of CPU for ~2 s refuses the first,
    # unretried write below with NOREPLICAS (tests/integration/_sentinel_topology.py).
    config["sentinel"] = {"downAfterMs": 60000, "failoverTimeoutMs": 180000}
    run = run_program(config, secret_keys=keys)
    specs = devstack.container_specs(run.resources)
    assert set(MEMBERS) <= set(specs), sorted(specs)
    # The stack publishes the initial primary only; everyone else gets a free loopback port here.
    assert specs["redis-0"].ports == ((REDIS_PORT, primary_port, "127.0.0.1"),)
    ports = {h: primary_port if h == "redis-0" else free_port() for h in MEMBERS}
    assert len(set(ports.values())) == len(MEMBERS)
    members = {h: Member(h, tmp / h / "root", ports[h]) for h in MEMBERS}
    ca = tmp / "ca.crt"
    ca.write_text(run.outputs["caCertPem"])
    for h, m in members.items():
        spec = specs[h]
        for volume in spec.volumes:
            Path(remap_paths(volume, m.root)).mkdir(parents=True, mode=0o700)
        for up in spec.uploads:
            target = Path(remap_paths(up.path, m.root))
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            content = (up.content if up.content.startswith("-----BEGIN")
                       else remap_conf(up.content, m.root, ports, m.port) if up.path.endswith(".conf")
                       else up.content)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, up.mode)
            with os.fdopen(fd, "w") as fh:
                fh.write(content)
    topo = Topology(members, run.outputs, ca)
    try:
        # Nodes first, Sentinels once the nodes answer: the stack's depends_on order.
        for h in MEMBERS:
            spec, m = specs[h], members[h]
            assert spec.entrypoint == ("sh", "-c"), spec.entrypoint
            argv = [*spec.entrypoint, *(remap_paths(a, m.root) for a in spec.command)]
            with open(m.log, "ab") as log:
                # A container's process starts with umask 0022; the entrypoint script sets 0077.
                m.proc = subprocess.Popen(argv, cwd=m.root, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          umask=devstack.CONTAINER_UMASK)
            try:
                wait_for_port(m.port, timeout=30, proc=m.proc)
            except TimeoutError:
                raise AssertionError(f"{h} did not start: {m.log.read_text(errors='replace')[-2000:]}") from None
        yield topo
    finally:
        for m in reversed(list(members.values())):
            _stop(m)


def test_remap_is_explicit() -> None:
    ports = {"redis-0": 7001, "redis-1": 7002, "sentinel-0": 7100}
    root = Path("/tmp/x")
    assert remap_line("replicaof redis-0 6379", ports, 7002) == "replicaof localhost 7001"
    assert remap_line("sentinel monitor redisstack redis-0 6379 2", ports, 7100) == \
        "sentinel monitor redisstack localhost 7001 2"
    assert remap_line("sentinel announce-ip sentinel-0", ports, 7100) == "sentinel announce-ip localhost"
    assert remap_line("sentinel announce-port 26379", ports, 7100) == "sentinel announce-port 7100"
    assert remap_line("replica-announce-port 6379", ports, 7002) == "replica-announce-port 7002"
    assert remap_line("tls-port 26379", ports, 7100) == "tls-port 7100"
    assert remap_line("bind 0.0.0.0", ports, 7100) == "bind 127.0.0.1"
    # Passwords and digests are never touched, even where they look like a name.
    assert remap_line("sentinel auth-pass redisstack redis-1abc", ports, 7100) == \
        "sentinel auth-pass redisstack redis-1abc"
    assert remap_paths("aclfile /usr/local/etc/redis/users.acl", root) == "aclfile /tmp/x/usr/local/etc/redis/users.acl"
    assert remap_paths("cp /data/a /data", root) == "cp /tmp/x/data/a /tmp/x/data"
    assert remap_paths("dir /database", root) == "dir /database"


def test_the_stack_files_start_a_healthy_sentinel_topology(tmp_path: Path) -> None:
    with devstack_sentinel(tmp_path) as topo:
        members, p0 = topo.members, topo.members["redis-0"].port
        # Each container's entrypoint seeded its writable copy from the upload.
        for h in lsn.NODE_HOSTNAMES:
            assert (members[h].root / "data" / "redis.conf.rendered").is_file()
        # Replication is up: the primary sees both replicas online, over TLS, as user replica.
        wait_until(lambda: topo.online_replicas("redis-0") == 2, SETTLE_S, "2 replicas online at redis-0")
        for h in ("redis-1", "redis-2"):
            info = topo.admin(h).info("replication")
            assert info["role"] == "slave" and info["master_link_status"] == "up"
            assert (info["master_host"], int(info["master_port"])) == (HOST, p0)
        # The Sentinels agree on the master and know each other and both replicas.
        wait_until(lambda: all(topo.master_port(s) == p0 for s in lsn.SENTINEL_HOSTNAMES), SETTLE_S,
                   "every Sentinel naming redis-0 as master")

        def complete() -> bool:
            return all(len(cast(list[Any], topo.admin(s).sentinel_sentinels(MASTER_NAME))) == 2
                       and len(cast(list[Any], topo.admin(s).sentinel_slaves(MASTER_NAME))) == 2
                       for s in lsn.SENTINEL_HOSTNAMES)

        wait_until(complete, SETTLE_S, "each Sentinel seeing 2 peers and 2 replicas")
        # An application with only the env output discovers the master and writes; the write replicates.
        app = topo.sentinel()
        assert app.discover_master(MASTER_NAME) == (HOST, p0)
        app.master_for(MASTER_NAME).set("proof:devstack-sentinel", "1")
        # On both replicas before the kill below: whichever is promoted must have it.
        for h in ("redis-1", "redis-2"):
            wait_until(lambda h=h: topo.admin(h).get("proof:devstack-sentinel") == b"1", SETTLE_S, f"the write on {h}")
        # Everything the members wrote into their data volumes (seeded configs, replicas' RDB from
        # the full sync, AOF, Sentinel's rewritten config) is private, as under the redis image's
        # entrypoint umask 0077 (docker-library/redis 7.2/debian/docker-entrypoint.sh, 7.2.5).
        for h in lsn.NODE_HOSTNAMES:
            topo.admin(h).bgsave()
        for h in (*lsn.NODE_HOSTNAMES, *lsn.SENTINEL_HOSTNAMES):
            data = members[h].root / "data"
            if h in lsn.NODE_HOSTNAMES:
                wait_until(lambda data=data: (data / "dump.rdb").exists(), SETTLE_S, f"{h}: dump.rdb")
            modes = {str(p.relative_to(data)): oct(p.stat().st_mode & 0o777) for p in data.rglob("*")
                     if not p.name.startswith("temp-")}
            assert modes and modes == {k: "0o700" if (data / k).is_dir() else "0o600" for k in modes}, (h, modes)
        # The app password gets discovery only on the Sentinels, nothing that changes their state.
        with pytest.raises(redis.exceptions.NoPermissionError):
            topo.client("sentinel-0", "default", topo.outputs["sentinelPassword"]).execute_command(
                "SENTINEL", "FAILOVER", MASTER_NAME)

        # A failover is healed by the Sentinels and handed out by name, as in the containers.
        for h in lsn.SENTINEL_HOSTNAMES:
            topo.admin(h).execute_command("SENTINEL", "SET", MASTER_NAME, "down-after-milliseconds", "1000",
                                          "failover-timeout", "5000")
        members["redis-0"].proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        new = wait_until(lambda: (m := app.discover_master(MASTER_NAME))[1] != p0 and m, SETTLE_S, "a new master")
        assert new[0] == HOST and new[1] in (members["redis-1"].port, members["redis-2"].port)
        master = app.master_for(MASTER_NAME, socket_timeout=10)
        wait_until(lambda: master.set("proof:after-failover", "1"), SETTLE_S, "a write through the new master")
        assert master.get("proof:devstack-sentinel") == b"1"
