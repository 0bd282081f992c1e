"""The dev stack: the guide's Docker Compose stack (redis, redis_exporter, Prometheus, Grafana)
as pulumi-docker resources, secure by default.

Every file a container needs is rendered here and handed to Docker as an *upload* (never a
bind mount of the developer's checkout, never a secret on a command line or in container
env, which `docker inspect` and /proc/<pid>/cmdline show to anyone). The in-container paths,
users and hostnames are module constants because `redisops.devstack` runs the very same
programs without Docker by remapping exactly these values (see `redisops.devstack.Remap`).
What the real engine, the docker provider and the pinned images require of every container (one
network mechanism, uploads readable whoever owns them, the redis entrypoint's umask, Grafana's
readiness) lives in infra/components/docker_rules.py, with its sources.

Healthcheck decision: the Redis healthcheck sends an unauthenticated PING and accepts
PONG or NOAUTH. NOAUTH proves the server is up, parsing commands and (with TLS) completing
the handshake against the exported CA, while the check holds no credential at all: no
REDISCLI_AUTH in the container env (visible in `docker inspect`), no password file the
healthcheck user could leak.

Topology: `single` is one `_redis_node`. `sentinel` replaces it by `LocalSentinel` (3 nodes +
3 Sentinels on the same network, infra/components/local_sentinel.py); its initial primary keeps
the `redis` alias and the published host port, so the exporter, Prometheus, Grafana and host
tools are unchanged, while applications get a Sentinel URL. Sentinel answers with container
hostnames, so only clients on the stack network can follow a failover (docs/dev-stack.md).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from infra.components import docker_rules as rules
from infra.components.local_sentinel import (
    NODE_HOSTNAMES,
    SENTINEL_HOSTNAMES,
    TLS_DNS_NAMES,
    LocalSentinel,
    LocalSentinelArgs,
)
from infra.components.local_tls import LocalTls, LocalTlsArgs, server_sans
from infra.envcontract import env_contract, redis_url, sentinel_url
from infra.errors import SettingError
from infra.monitoring import grafana as gf
from infra.monitoring import prometheus as prom
from infra.settings import Settings
from infra.thresholds import Threshold
from ratelimit.tiers import Tier
from redis_conf.acl import render_acl_file
from redis_conf.render import TlsFiles, render_redis_conf
from redis_conf.schema import RedisConf
from redis_conf.sentinel import MASTER_NAME, REDIS_PORT, SENTINEL_PORT, SentinelTuning

# --- what runs where (shared with redisops.devstack) -----------------------------------------
SERVICE_LABEL = "redisstack.service"
SERVICES = ("redis", "exporter", "prometheus", "grafana")
# DNS names on the private network (network aliases and container hostnames).
HOSTNAMES: Mapping[str, str] = {"redis": "redis", "exporter": "redis-exporter", "prometheus": "prometheus",
                                "grafana": "grafana"}
# Ports the programs listen on inside their containers; the host side is settings' ports.
CONTAINER_PORTS: Mapping[str, int] = {"redis": 6379, "exporter": 9121, "prometheus": 9090, "grafana": 3000}
# Non-root users the images are built with (redis/valkey: redis 999; redis_exporter: 59000;
# prom/prometheus: nobody; grafana: grafana 472). Uploaded files are owned by them and group 0
# (infra/components/docker_rules.py: readable even where the provider leaves them root-owned).
USERS: Mapping[str, str] = {"redis": "999", "exporter": "59000", "prometheus": "65534", "grafana": "472"}
# Containers that read a secret upload (password, ACL digests, TLS key) run with group 0.
READS_SECRET_UPLOADS = frozenset({"redis", "exporter", "grafana"})

REDIS_ETC = "/usr/local/etc/redis"
REDIS_CONF = f"{REDIS_ETC}/redis.conf"
REDIS_ACL = f"{REDIS_ETC}/users.acl"
REDIS_TLS_DIR = f"{REDIS_ETC}/tls"
REDIS_DATA = "/data"
EXPORTER_ETC = "/etc/redis_exporter"
EXPORTER_PASSWORD_FILE = f"{EXPORTER_ETC}/password.json"
EXPORTER_CA = f"{EXPORTER_ETC}/ca.crt"
PROMETHEUS_ETC = "/etc/prometheus"
# How a container reaches the host (the application beside the stack); the process mode maps it to
# 127.0.0.1 (redisops/devstack.py Remap).
HOST_GATEWAY = "host.docker.internal"
PROMETHEUS_DATA = "/prometheus"
GRAFANA_PROVISIONING = gf.PROVISIONING_DIR
# Not under /var/lib/grafana: that is the data volume, and files uploaded into a volume path
# would be hidden by the volume on restart.
GRAFANA_DASHBOARDS = "/etc/grafana/dashboards"
GRAFANA_ADMIN_PASSWORD_FILE = "/etc/grafana/secrets/admin_password"
GRAFANA_ADMIN_USER = "admin"

PASSWORD_LENGTH = 40
# Alphanumeric only: these passwords land in .env files, JSON and YAML; 40 characters of 62
# symbols is ~238 bits, so specials add nothing but quoting bugs.
GENERATED_USERS = ("monitor", "replica", "sentinel", "admin")
TOPOLOGIES = ("single", "sentinel")


@dataclass(frozen=True)
class LocalStackArgs:
    """Everything LocalRedisStack needs, validated; secrets are excluded from repr."""

    engine: str
    tls: bool
    bind_address: str
    ports: Mapping[str, int]
    images: Mapping[str, str]
    redis_conf: RedisConf
    tiers: tuple[Tier, ...]
    thresholds: tuple[Threshold, ...]
    timeout_ms: int = 5000
    enabled: bool = True
    rate_limit_mode: str = "redis"
    topology: str = "single"
    labels: Mapping[str, str] = field(default_factory=dict)
    sentinel_tuning: SentinelTuning = field(default_factory=SentinelTuning)
    app_password: str | None = field(default=None, repr=False)
    grafana_admin_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise SettingError("local.topology", self.topology,
                               "single (one Redis) or sentinel (1 primary + 2 replicas + 3 Sentinels) with Docker; "
                               "cluster runs without Docker only: redisops dev up --mode processes")
        missing = [s for s in SERVICES if s not in self.ports or s not in self.images]
        if missing:
            raise SettingError(f"local.ports.{missing[0]}", None, f"required for {', '.join(SERVICES)}")
        ipaddress.ip_address(self.bind_address)

    @staticmethod
    def from_settings(settings: Settings) -> LocalStackArgs:
        cfg = settings.config
        local = cfg.local
        return LocalStackArgs(
            engine=cfg.engine,
            tls=settings.tls,
            bind_address=local.bind_address,
            ports=local.ports.model_dump(),
            images=local.images.model_dump(),
            redis_conf=settings.redis_conf,
            tiers=settings.tiers,
            thresholds=settings.thresholds,
            timeout_ms=cfg.timeout_ms,
            enabled=cfg.enabled,
            rate_limit_mode=cfg.rate_limit_mode,
            topology=local.topology,
            sentinel_tuning=SentinelTuning.from_settings(cfg.sentinel),
            labels={"project": settings.project, "stack": settings.stack, "managed-by": "pulumi"},
            app_password=cfg.password.get_secret_value() if cfg.password else None,
            grafana_admin_password=(cfg.grafana_admin_password.get_secret_value()
                                    if cfg.grafana_admin_password else None),
        )

    @property
    def exposed_beyond_loopback(self) -> bool:
        return not ipaddress.ip_address(self.bind_address).is_loopback

    @property
    def client_host(self) -> str:
        """The address a developer on this machine dials: the bind address, or loopback when
        the ports are published on every interface."""
        addr = ipaddress.ip_address(self.bind_address)
        if addr.is_unspecified:
            return "127.0.0.1" if addr.version == 4 else "[::1]"
        return f"[{addr}]" if addr.version == 6 else str(addr)


def redis_container_conf(conf: RedisConf, *, tls: bool) -> str:
    """redis.conf as the container reads it (pure, so tests and devstack can call it)."""
    tls_files = (TlsFiles(cert_file=f"{REDIS_TLS_DIR}/server.crt", key_file=f"{REDIS_TLS_DIR}/server.key",
                          ca_cert_file=f"{REDIS_TLS_DIR}/ca.crt") if tls else None)
    # Inside the container Redis listens on its network interface; exposure to the outside is
    # decided by the published port's host address, not here.
    return render_redis_conf(conf, bind="0.0.0.0", port=CONTAINER_PORTS["redis"], data_dir=REDIS_DATA,  # noqa: S104
                             aclfile=REDIS_ACL, tls=tls_files)


def redis_healthcheck(engine: str, *, tls: bool) -> list[str]:
    cli = f"{engine}-cli"
    tls_args = f" --tls --cacert {REDIS_TLS_DIR}/ca.crt" if tls else ""
    url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{CONTAINER_PORTS['redis']}"
    return ["CMD-SHELL", f"{cli}{tls_args} -u {url} PING 2>&1 | grep -qE '^(PONG|NOAUTH)'"]


def redis_command(engine: str) -> list[str]:
    """What the Redis container runs (under docker_rules.with_private_umask)."""
    return [f"{engine}-server", REDIS_CONF]


def container_memory_mb(conf: RedisConf) -> int | None:
    """maxmemory + 50 %: BGSAVE / AOF rewrite fork and copy-on-write pages beyond maxmemory."""
    maxmemory = int(conf.get("maxmemory", 0) or 0)
    return math.ceil(maxmemory * 1.5 / 2**20) if maxmemory else None


def grafana_env() -> list[str]:
    """Grafana settings via env: none of them is a secret (the password comes from a file)."""
    return [
        f"GF_SECURITY_ADMIN_USER={GRAFANA_ADMIN_USER}",
        f"GF_SECURITY_ADMIN_PASSWORD__FILE={GRAFANA_ADMIN_PASSWORD_FILE}",
        "GF_AUTH_ANONYMOUS_ENABLED=false",
        "GF_AUTH_BASIC_ENABLED=true",
        "GF_USERS_ALLOW_SIGN_UP=false",
        "GF_USERS_ALLOW_ORG_CREATE=false",
        "GF_SECURITY_DISABLE_GRAVATAR=true",
        "GF_ANALYTICS_REPORTING_ENABLED=false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
        f"GF_SERVER_HTTP_PORT={CONTAINER_PORTS['grafana']}",
        f"GF_PATHS_PROVISIONING={GRAFANA_PROVISIONING}",
        f"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH={GRAFANA_DASHBOARDS}/redis.json",
    ]


def prometheus_command() -> list[str]:
    return [
        f"--config.file={PROMETHEUS_ETC}/prometheus.yml",
        f"--storage.tsdb.path={PROMETHEUS_DATA}",
        f"--web.listen-address=0.0.0.0:{CONTAINER_PORTS['prometheus']}",
        "--storage.tsdb.retention.time=15d",
    ]


def exporter_command(*, tls: bool) -> gf.ExporterCommand:
    return gf.exporter_command(
        HOSTNAMES["redis"], CONTAINER_PORTS["redis"], user="monitor",
        password_file=EXPORTER_PASSWORD_FILE,
        tls_ca_cert_file=EXPORTER_CA if tls else None,
        listen_address=f"0.0.0.0:{CONTAINER_PORTS['exporter']}",
    )


class LocalRedisStack(pulumi.ComponentResource):
    """Private network, Redis (+TLS, ACL users, persistence), redis_exporter, Prometheus, Grafana."""

    stack_outputs: dict[str, Any]

    def __init__(self, name: str, args: LocalStackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:local:LocalRedisStack", name, None, opts)
        self._name = name
        self._args = args
        child = pulumi.ResourceOptions(parent=self)
        labels = [docker.NetworkLabelArgs(label=k, value=v) for k, v in args.labels.items()]

        # A user-defined bridge: containers reach each other by alias and nothing else joins.
        # Not `internal`: Docker does not publish ports of containers on internal networks, and
        # every service here is published (on bind_address only, also the network default).
        self.network = docker.Network(
            f"{name}-net", driver="bridge", internal=False, attachable=False,
            options={"com.docker.network.bridge.host_binding_ipv4": args.bind_address},
            labels=labels, opts=child)

        self.passwords = self._passwords()
        app_password: pulumi.Output[str] = (
            pulumi.Output.secret(args.app_password) if args.app_password is not None
            else pulumi.Output.secret(self._random("app").result))
        grafana_password: pulumi.Output[str] = (
            pulumi.Output.secret(args.grafana_admin_password) if args.grafana_admin_password is not None
            else pulumi.Output.secret(self._random("grafana-admin").result))

        self.tls: LocalTls | None = None
        if args.tls:
            # The sentinel topology's members verify each other by container hostname.
            names = [HOSTNAMES["redis"]] if args.topology == "single" else [*TLS_DNS_NAMES]
            dns, ips = server_sans(names, args.bind_address)
            self.tls = LocalTls(f"{name}-tls", LocalTlsArgs(common_name=HOSTNAMES["redis"], dns_names=dns,
                                                            ip_addresses=ips), opts=child)

        self.images = {s: docker.RemoteImage(f"{name}-{s}-image", name=args.images[s], keep_locally=True,
                                             opts=child) for s in SERVICES}
        self.volumes = {s: docker.Volume(f"{name}-{s}-data", labels=[docker.VolumeLabelArgs(label=k, value=v)
                                                                      for k, v in args.labels.items()],
                                         opts=child)
                        # LocalSentinel brings a volume per node and Sentinel.
                        for s in (("redis",) if args.topology == "single" else ()) + ("prometheus", "grafana")}

        self.sentinel: LocalSentinel | None = None
        if args.topology == "sentinel":
            self.sentinel = self._sentinel(app_password)
            self.redis = self.sentinel.nodes[0]
        else:
            self.redis = self._redis_node(app_password)
        self.exporter = self._exporter(depends_on=[self.redis])
        self.prometheus = self._prometheus(depends_on=[self.exporter])
        self.grafana = self._grafana(grafana_password, depends_on=[self.prometheus])

        host = args.client_host
        url = redis_url(host, args.ports["redis"], tls=args.tls)
        app_url = (url if self.sentinel is None else
                   sentinel_url([(h, SENTINEL_PORT) for h in SENTINEL_HOSTNAMES], MASTER_NAME, tls=args.tls))
        env = app_password.apply(lambda pw: self._env(app_url, pw))
        self.stack_outputs = {
            "env": pulumi.Output.secret(env),
            "redisUrl": url,
            "exporterUrl": f"http://{host}:{args.ports['exporter']}/metrics",
            "prometheusUrl": f"http://{host}:{args.ports['prometheus']}",
            "grafanaUrl": f"http://{host}:{args.ports['grafana']}",
            "bindAddress": args.bind_address,
            "exposedBeyondLoopback": args.exposed_beyond_loopback,
            "tls": args.tls,
            "topology": args.topology,
            "networkName": self.network.name,
            "adminPassword": pulumi.Output.secret(self.passwords["admin"]),
            "monitorPassword": pulumi.Output.secret(self.passwords["monitor"]),
            "grafanaAdminUser": GRAFANA_ADMIN_USER,
            "grafanaAdminPassword": pulumi.Output.secret(grafana_password),
        }
        if self.sentinel is None:
            # The provider keeps container uploads secret as a whole (one of them is the ACL
            # file), so the rendered redis.conf - which holds no secret - is also exported in
            # plain text: a reviewer sees a redis.conf change in the stack render's diff.
            self.stack_outputs["redisConf"] = redis_container_conf(args.redis_conf, tls=args.tls)
        if self.sentinel is not None:
            tuning = args.sentinel_tuning
            sentinel_password: pulumi.Output[str] = pulumi.Output.secret(app_password)
            self.stack_outputs.update({
                "sentinelUrl": app_url,
                "masterName": MASTER_NAME,
                "sentinelEndpoints": [f"{h}:{SENTINEL_PORT}" for h in SENTINEL_HOSTNAMES],
                "redisNodes": [f"{h}:{REDIS_PORT}" for h in NODE_HOSTNAMES],
                # Sentinels' default user authenticates with the application's password.
                "sentinelPassword": sentinel_password,
                "sentinelTuning": {"quorum": tuning.quorum, "downAfterMs": tuning.down_after_ms,
                                   "failoverTimeoutMs": tuning.failover_timeout_ms,
                                   "parallelSyncs": tuning.parallel_syncs,
                                   "minReplicasToWrite": tuning.min_replicas_to_write,
                                   "minReplicasMaxLag": tuning.min_replicas_max_lag},
            })
        if self.tls is not None:
            self.stack_outputs["caCertPem"] = self.tls.ca_cert_pem
        self.register_outputs(self.stack_outputs)

    def _env(self, url: str, password: str) -> dict[str, str]:
        args = self._args
        env = env_contract(url=url, password=password, tls=args.tls, timeout_ms=args.timeout_ms, tiers=args.tiers,
                           enabled=args.enabled, rate_limit_mode=args.rate_limit_mode)
        if self.sentinel is not None:
            # As the EC2 sentinel target: spelled out so clients set sentinel_kwargs={"password": ...}.
            env["REDIS_SENTINEL_MASTER"] = MASTER_NAME
            env["REDIS_SENTINEL_PASSWORD"] = password
        return env

    # -- children ---------------------------------------------------------------------------
    def _random(self, user: str) -> random.RandomPassword:
        return random.RandomPassword(f"{self._name}-{user}-password", length=PASSWORD_LENGTH, special=False,
                                     min_upper=2, min_lower=2, min_numeric=2,
                                     opts=pulumi.ResourceOptions(parent=self))

    def _passwords(self) -> dict[str, pulumi.Output[str]]:
        # Explicitly secret: everything derived from them (uploads, env output) stays secret
        # even where a provider's schema would not say so.
        return {user: pulumi.Output.secret(self._random(user).result) for user in GENERATED_USERS}

    def _labels(self, service: str) -> list[docker.ContainerLabelArgs]:
        return [docker.ContainerLabelArgs(label=k, value=v)
                for k, v in {**self._args.labels, SERVICE_LABEL: service}.items()]

    def _ports(self, service: str) -> list[docker.ContainerPortArgs]:
        return [docker.ContainerPortArgs(internal=CONTAINER_PORTS[service], external=self._args.ports[service],
                                         ip=self._args.bind_address, protocol="tcp")]

    def _common(self, service: str) -> dict[str, Any]:
        return dict(
            image=self.images[service].image_id,
            hostname=HOSTNAMES[service],
            user=USERS[service],
            # The stack network with the service's alias, through networks_advanced only.
            **rules.attach(self.network.name, [HOSTNAMES[service]]),
            ports=self._ports(service),
            labels=self._labels(service),
            restart="unless-stopped",
            # Non-root users that cannot gain privileges; none of these programs needs a capability.
            **rules.hardening(reads_secret_uploads=service in READS_SECRET_UPLOADS),
        )

    def _sentinel(self, app_password: pulumi.Output[str]) -> LocalSentinel:
        """1 primary + 2 replicas + 3 Sentinels; only the initial primary is published."""
        args = self._args
        return LocalSentinel(f"{self._name}-sentinel", LocalSentinelArgs(
            engine=args.engine, tls=args.tls, redis_conf=args.redis_conf, tuning=args.sentinel_tuning,
            network_name=self.network.name, image=self.images["redis"].image_id,
            passwords={"app": app_password, **self.passwords},
            tls_cert_pem=self.tls.cert_pem if self.tls else None,
            tls_key_pem=self.tls.private_key_pem if self.tls else None,
            tls_ca_pem=self.tls.ca_cert_pem if self.tls else None,
            labels=args.labels, memory_mb=container_memory_mb(args.redis_conf),
            primary_ports=[docker.ContainerPortArgs(internal=REDIS_PORT, external=args.ports["redis"],
                                                    ip=args.bind_address, protocol="tcp")]),
            opts=pulumi.ResourceOptions(parent=self))

    def _redis_node(self, app_password: pulumi.Output[str]) -> docker.Container:
        """The single topology's Redis container."""
        args, name, owner = self._args, self._name, USERS["redis"]
        acl = pulumi.Output.all(app_password, *[self.passwords[u] for u in GENERATED_USERS]).apply(
            lambda pws: render_acl_file(dict(zip(("app", *GENERATED_USERS), pws, strict=True))))
        uploads = [
            # redis.conf holds no secret (it is a plain stack output too); the ACL file holds digests.
            rules.upload(REDIS_CONF, redis_container_conf(args.redis_conf, tls=args.tls), owner, secret=False),
            rules.upload(REDIS_ACL, acl, owner, secret=True),
        ]
        if self.tls is not None:
            uploads += [
                rules.upload(f"{REDIS_TLS_DIR}/server.crt", self.tls.cert_pem, owner, secret=False),
                rules.upload(f"{REDIS_TLS_DIR}/server.key", self.tls.private_key_pem, owner, secret=True),
                rules.upload(f"{REDIS_TLS_DIR}/ca.crt", self.tls.ca_cert_pem, owner, secret=False),
            ]
        return docker.Container(
            f"{name}-redis",
            **self._common("redis"),
            # The server itself under the image entrypoint's umask 0077, not the entrypoint: nothing
            # to chown (the volume inherits /data's ownership), no root step, and the process mode
            # runs this very command (redisops.devstack).
            **rules.with_private_umask(redis_command(args.engine)),
            uploads=uploads,
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volumes["redis"].name, container_path=REDIS_DATA)],
            memory=container_memory_mb(args.redis_conf),
            healthcheck=docker.ContainerHealthcheckArgs(tests=redis_healthcheck(args.engine, tls=args.tls),
                                                        interval="10s", timeout="3s", retries=5,
                                                        start_period="5s"),
            # Dependants start once the healthcheck passes, not merely when the process exists.
            wait=True, wait_timeout=120,
            # SIGTERM makes Redis write a final RDB/AOF flush; give it time before SIGKILL.
            stop_timeout=30,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _exporter(self, depends_on: Sequence[pulumi.Resource]) -> docker.Container:
        args, owner = self._args, USERS["exporter"]
        cmd = exporter_command(tls=args.tls)
        addr = gf.exporter_redis_addr(HOSTNAMES["redis"], CONTAINER_PORTS["redis"], tls=args.tls)
        uploads = [rules.upload(EXPORTER_PASSWORD_FILE,
                                self.passwords["monitor"].apply(lambda pw: gf.exporter_password_file(addr, pw)),
                                owner, secret=True)]
        if self.tls is not None:
            uploads.append(rules.upload(EXPORTER_CA, self.tls.ca_cert_pem, owner, secret=False))
        return docker.Container(
            f"{self._name}-exporter",
            **self._common("exporter"),
            entrypoints=["/redis_exporter"],
            command=list(cmd.args),
            envs=[f"{k}={v}" for k, v in cmd.env.items()],
            uploads=uploads,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _prometheus(self, depends_on: Sequence[pulumi.Resource]) -> docker.Container:
        args, owner = self._args, USERS["prometheus"]
        config = prom.render_prometheus_config(f"{HOSTNAMES['exporter']}:{CONTAINER_PORTS['exporter']}",
                                               rule_files=(prom.RULES_FILE_NAME,),
                                               external_labels={"stack": args.labels.get("stack", "dev")},
                                               app_targets=(f"{HOST_GATEWAY}:{args.ports['app']}",))
        alert_rules = prom.render_alert_rules(args.thresholds) if args.thresholds else prom.render_alert_rules()
        return docker.Container(
            f"{self._name}-prometheus",
            **self._common("prometheus"),
            entrypoints=["/bin/prometheus"],
            command=prometheus_command(),
            # The application runs on the host (python -m examples.app): Docker's host-gateway alias.
            hosts=[docker.ContainerHostArgs(host=HOST_GATEWAY, ip="host-gateway")],
            uploads=[rules.upload(f"{PROMETHEUS_ETC}/prometheus.yml", config, owner, secret=False),
                     rules.upload(f"{PROMETHEUS_ETC}/{prom.RULES_FILE_NAME}", alert_rules, owner, secret=False)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volumes["prometheus"].name,
                                                container_path=PROMETHEUS_DATA)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "wget", "-q", "-O", "/dev/null",
                       f"http://127.0.0.1:{CONTAINER_PORTS['prometheus']}/-/ready"],
                interval="10s", timeout="3s", retries=5, start_period="5s"),
            # Grafana starts once Prometheus answers (depends_on), not merely once it exists.
            wait=True, wait_timeout=120,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )

    def _grafana(self, password: pulumi.Output[str], depends_on: Sequence[pulumi.Resource]) -> docker.Container:
        owner = USERS["grafana"]
        prometheus_url = f"http://{HOSTNAMES['prometheus']}:{CONTAINER_PORTS['prometheus']}"
        return docker.Container(
            f"{self._name}-grafana",
            **self._common("grafana"),
            envs=grafana_env(),
            uploads=[
                rules.upload(GRAFANA_ADMIN_PASSWORD_FILE, password, owner, secret=True),
                rules.upload(f"{GRAFANA_PROVISIONING}/datasources/prometheus.yaml",
                             gf.render_datasource(prometheus_url), owner, secret=False),
                rules.upload(f"{GRAFANA_PROVISIONING}/dashboards/redisstack.yaml",
                             gf.render_dashboard_provider(GRAFANA_DASHBOARDS), owner, secret=False),
                rules.upload(f"{GRAFANA_DASHBOARDS}/redis.json", gf.render_dashboard(), owner, secret=False),
            ],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volumes["grafana"].name,
                                                container_path="/var/lib/grafana")],
            # A first start migrates the database before Grafana listens: `pulumi up` ends once
            # /api/health answers, not with a container that reports unhealthy.
            healthcheck=rules.grafana_healthcheck(CONTAINER_PORTS["grafana"]),
            wait=True, wait_timeout=rules.GRAFANA_WAIT_TIMEOUT_S,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
        )
