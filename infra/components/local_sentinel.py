"""The dev stack's `topology: sentinel`: 1 primary + 2 replicas + 3 Sentinels as containers.

Instantiated by `LocalRedisStack` on its private network, with its Redis image, passwords and
TLS material; the files are the same renderers as the EC2 hosts (`redis_conf.sentinel`), with
container hostnames instead of IPs (so `resolve-hostnames` / `announce-hostnames` are on).

Sentinel rewrites its own sentinel.conf and, through CONFIG REWRITE, the redis.conf of the
nodes it reconfigures. The rendered files are therefore uploaded read-only and copied into
each container's data volume at start, only when the render changed (a stamp copy is kept):
a restarted container keeps what Sentinel learnt (who is master now), a `pulumi up` with a new
render re-seeds it.

Reaching the topology: Sentinel hands out container hostnames, which only resolve on the
stack's network; applications rehearsing failover run there (attach to the `networkName`
output). The exporter watches the initial primary under the `redis` alias; `primary_ports`
publishes that node (only that one) so host tools reach it, without following a failover.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from infra.components import docker_rules as rules
from redis_conf.acl import CREDENTIALS, render_acl_file
from redis_conf.render import TlsFiles
from redis_conf.schema import RedisConf
from redis_conf.sentinel import (
    MASTER_NAME,
    NODE_COUNT,
    REDIS_PORT,
    SENTINEL_COUNT,
    SENTINEL_PORT,
    Endpoint,
    NodeFiles,
    SentinelTuning,
    topology_files,
)

NODE_HOSTNAMES = tuple(f"redis-{i}" for i in range(NODE_COUNT))
SENTINEL_HOSTNAMES = tuple(f"sentinel-{i}" for i in range(SENTINEL_COUNT))
# The alias the single topology uses for Redis: the exporter and Prometheus keep working
# unchanged and watch the initial primary.
PRIMARY_ALIAS = "redis"
# DNS names the TLS server certificate must carry (LocalTls dns_names).
TLS_DNS_NAMES = (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES, PRIMARY_ALIAS, "localhost")

REDIS_USER = "999"
ETC = "/usr/local/etc/redis"
RENDERED_CONF = f"{ETC}/redis.conf"
RENDERED_SENTINEL = f"{ETC}/sentinel.conf"
ACL = f"{ETC}/users.acl"
TLS_DIR = f"{ETC}/tls"
DATA = "/data"


def container_tls_files() -> TlsFiles:
    return TlsFiles(cert_file=f"{TLS_DIR}/server.crt", key_file=f"{TLS_DIR}/server.key",
                    ca_cert_file=f"{TLS_DIR}/ca.crt")


def local_sentinel_files(conf: RedisConf, tuning: SentinelTuning, passwords: Mapping[str, str], *,
                         tls: bool) -> list[NodeFiles]:
    """What each node / Sentinel container reads (pure: tests start these very files)."""
    return topology_files(
        conf,
        [Endpoint(h, REDIS_PORT) for h in NODE_HOSTNAMES],
        [Endpoint(h, SENTINEL_PORT) for h in SENTINEL_HOSTNAMES],
        passwords=passwords, tuning=tuning,
        # Inside its container each program listens on the container's interface only.
        binds=["0.0.0.0"] * NODE_COUNT, sentinel_binds=["0.0.0.0"] * SENTINEL_COUNT,  # noqa: S104
        tls=container_tls_files() if tls else None,
        data_dirs=[DATA] * NODE_COUNT, sentinel_dirs=[DATA] * SENTINEL_COUNT, aclfile=ACL)


def seed_and_exec(rendered: str, live: str, argv: str) -> list[str]:
    """Entrypoint: under the redis image entrypoint's private umask (docker_rules.PRIVATE_UMASK),
    copy the rendered file to the writable live copy when the render changed, then exec the
    server on the live copy (PID 1, signals reach it)."""
    stamp = f"{live}.rendered"
    script = (f'umask {rules.PRIVATE_UMASK}; '
              f'if ! cmp -s {rendered} {stamp}; then cp {rendered} {live} && cp {rendered} {stamp}; fi; '
              f'chmod 600 {live} {stamp}; exec {argv} {live}')
    return ["sh", "-c", script]


def healthcheck(engine: str, port: int, *, tls: bool) -> list[str]:
    """Unauthenticated PING: PONG or NOAUTH proves the server answers, with no credential held."""
    tls_args = f" --tls --cacert {TLS_DIR}/ca.crt" if tls else ""
    return ["CMD-SHELL", f"{engine}-cli{tls_args} -p {port} PING 2>&1 | grep -qE '^(PONG|NOAUTH)'"]


@dataclass(frozen=True)
class LocalSentinelArgs:
    engine: str
    tls: bool
    redis_conf: RedisConf
    tuning: SentinelTuning
    network_name: pulumi.Input[str]
    image: pulumi.Input[str]  # image id of the stack's pinned Redis image
    passwords: Mapping[str, pulumi.Output[str]] = field(repr=False)  # app/monitor/replica/sentinel/admin
    tls_cert_pem: pulumi.Input[str] | None = None
    tls_key_pem: pulumi.Input[str] | None = field(default=None, repr=False)
    tls_ca_pem: pulumi.Input[str] | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int | None = None
    # Host ports of the initial primary (redis-0) only: Sentinel never hands out host ports.
    primary_ports: Sequence[docker.ContainerPortArgs] = ()

    def __post_init__(self) -> None:
        missing = [c for c in CREDENTIALS if c not in self.passwords]
        if missing:
            raise ValueError(f"LocalSentinelArgs: passwords for {', '.join(missing)} are required")
        if self.tls and not (self.tls_cert_pem and self.tls_key_pem and self.tls_ca_pem):
            raise ValueError("LocalSentinelArgs: tls needs tls_cert_pem, tls_key_pem and tls_ca_pem")


def _secret(value: pulumi.Output[str]) -> pulumi.Output[str]:
    # Explicit, so the uploads stay secret whatever the provider schema says about them.
    return pulumi.Output.secret(value)  # type: ignore[arg-type]


def _node_conf(i: int) -> Callable[[list[NodeFiles]], str]:
    return lambda files: files[i].redis_conf


def _sentinel_conf(i: int) -> Callable[[list[NodeFiles]], str]:
    return lambda files: files[i].sentinel_conf


def _upload(path: str, content: pulumi.Input[str], *, secret: bool) -> docker.ContainerUploadArgs:
    return rules.upload(path, content, REDIS_USER, secret=secret)


class LocalSentinel(pulumi.ComponentResource):
    """Three Redis nodes and three Sentinels on an existing Docker network."""

    nodes: list[docker.Container]
    sentinels: list[docker.Container]
    stack_outputs: dict[str, object]

    def __init__(self, name: str, args: LocalSentinelArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:local:LocalSentinel", name, None, opts)
        self._name, self._args = name, args
        pws = pulumi.Output.all(**{c: args.passwords[c] for c in CREDENTIALS})
        files = pws.apply(lambda p: local_sentinel_files(args.redis_conf, args.tuning, dict(p), tls=args.tls))
        acl = _secret(pws.apply(lambda p: render_acl_file(dict(p))))
        labels = [docker.VolumeLabelArgs(label=k, value=v) for k, v in args.labels.items()]
        self.volumes = [docker.Volume(f"{name}-{h}-data", labels=labels, opts=pulumi.ResourceOptions(parent=self))
                        for h in (*NODE_HOSTNAMES, *SENTINEL_HOSTNAMES)]
        tls_uploads: list[docker.ContainerUploadArgs] = []
        if args.tls:
            assert args.tls_cert_pem and args.tls_key_pem and args.tls_ca_pem
            tls_uploads = [_upload(f"{TLS_DIR}/server.crt", args.tls_cert_pem, secret=False),
                           _upload(f"{TLS_DIR}/server.key", pulumi.Output.secret(args.tls_key_pem), secret=True),
                           _upload(f"{TLS_DIR}/ca.crt", args.tls_ca_pem, secret=False)]
        self.nodes = []
        for i, host in enumerate(NODE_HOSTNAMES):
            conf = _secret(files.apply(_node_conf(i)))
            aliases = [host, PRIMARY_ALIAS] if i == 0 else [host]
            self.nodes.append(self._container(
                host, aliases, volume=self.volumes[i],
                uploads=[_upload(RENDERED_CONF, conf, secret=True), _upload(ACL, acl, secret=True), *tls_uploads],
                command=seed_and_exec(RENDERED_CONF, f"{DATA}/redis.conf", f"{args.engine}-server"),
                health=healthcheck(args.engine, REDIS_PORT, tls=args.tls), memory=args.memory_mb, depends=[],
                ports=list(args.primary_ports) if i == 0 else []))
        self.sentinels = []
        for i, host in enumerate(SENTINEL_HOSTNAMES):
            conf = _secret(files.apply(_sentinel_conf(i)))
            self.sentinels.append(self._container(
                host, [host], volume=self.volumes[NODE_COUNT + i],
                uploads=[_upload(RENDERED_SENTINEL, conf, secret=True), *tls_uploads],
                command=seed_and_exec(RENDERED_SENTINEL, f"{DATA}/sentinel.conf", f"{args.engine}-sentinel"),
                health=healthcheck(args.engine, SENTINEL_PORT, tls=args.tls), memory=64, depends=self.nodes))
        self.stack_outputs = {
            "topology": "sentinel",
            "masterName": MASTER_NAME,
            "sentinelEndpoints": [f"{h}:{SENTINEL_PORT}" for h in SENTINEL_HOSTNAMES],
            "redisNodes": [f"{h}:{REDIS_PORT}" for h in NODE_HOSTNAMES],
        }
        self.register_outputs(self.stack_outputs)

    def _container(self, host: str, aliases: list[str], *, volume: docker.Volume,
                   uploads: list[docker.ContainerUploadArgs], command: list[str], health: list[str],
                   memory: int | None, depends: list[docker.Container],
                   ports: list[docker.ContainerPortArgs] | None = None) -> docker.Container:
        args = self._args
        return docker.Container(
            f"{self._name}-{host}",
            image=args.image,
            hostname=host,
            user=REDIS_USER,
            # networks_advanced only: with network_mode on the same network the engine drops the
            # aliases, and `redis` (the exporter's target) would not resolve (docker_rules.py).
            **rules.attach(args.network_name, aliases),
            # Nothing published but what the caller asks for (the initial primary): Sentinel
            # hands out names that resolve only on this network.
            ports=ports or None,
            labels=[docker.ContainerLabelArgs(label=k, value=v)
                    for k, v in {**args.labels, "redisstack.service": host}.items()],
            restart="unless-stopped",
            **rules.hardening(reads_secret_uploads=True),
            entrypoints=command[:2],
            command=command[2:],
            uploads=uploads,
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA)],
            memory=memory,
            healthcheck=docker.ContainerHealthcheckArgs(tests=health, interval="10s", timeout="3s", retries=5,
                                                        start_period="5s"),
            wait=True, wait_timeout=120,
            stop_timeout=30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends)),
        )
