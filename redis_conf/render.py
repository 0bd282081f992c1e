"""Render the typed settings into a redis.conf for a container or a host."""

from __future__ import annotations

from dataclasses import dataclass

from redis_conf.schema import SPECS, RedisConf


@dataclass(frozen=True)
class TlsFiles:
    """Absolute paths as seen by the server (Redis resolves them after chdir to `dir`)."""

    cert_file: str
    key_file: str
    ca_cert_file: str
    # "no": clients prove themselves with a password, not a certificate; "optional"/"yes"
    # turn on mutual TLS.
    auth_clients: str = "no"


@dataclass(frozen=True)
class ReplicaOf:
    """Replica wiring: the primary's address and the replication ACL user's password."""

    host: str
    port: int
    masteruser: str
    masterauth: str  # secret: only ever rendered into a file written with mode 0600


def listener_lines(port: int, tls: TlsFiles | None) -> list[str]:
    """The listening port: plain, or TLS only (`port 0`) for Redis and Sentinel alike."""
    if tls is None:
        return [f"port {port}"]
    return [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {tls.cert_file}",
        f"tls-key-file {tls.key_file}",
        f"tls-ca-cert-file {tls.ca_cert_file}",
        f"tls-auth-clients {tls.auth_clients}",
        # Outgoing links (replica -> primary, Sentinel -> Redis and peers) use TLS too.
        "tls-replication yes",
        'tls-protocols "TLSv1.2 TLSv1.3"',
        "tls-prefer-server-ciphers yes",
    ]


def render_redis_conf(
    conf: RedisConf,
    *,
    bind: str,
    port: int = 6379,
    data_dir: str = "/data",
    aclfile: str = "/usr/local/etc/redis/users.acl",
    tls: TlsFiles | None = None,
    replica_of: ReplicaOf | None = None,
    announce: tuple[str, int] | None = None,
) -> str:
    """redis.conf text. With TLS on, the plain port is closed (`port 0`) and `port` speaks TLS only.

    The only secret that can appear is `masterauth` on replicas; the ACL file carries
    password digests, never plaintext.
    """
    lines = [
        "# Rendered by redisstack from redis_conf/redis.conf; do not edit by hand.",
        f"bind {bind}",
        f"dir {data_dir}",
        f"aclfile {aclfile}",
    ]
    lines += listener_lines(port, tls)
    lines += ['appendfilename "appendonly.aof"', "dbfilename dump.rdb"]
    for name, value in conf.values.items():
        lines.append(f"{name} {SPECS[name].render(value)}")
    if replica_of is not None:
        lines += [
            f"replicaof {replica_of.host} {replica_of.port}",
            f"masteruser {replica_of.masteruser}",
            f'masterauth "{replica_of.masterauth}"',
            "replica-read-only yes",
        ]
    if announce is not None:
        lines += [f"replica-announce-ip {announce[0]}", f"replica-announce-port {announce[1]}"]
    return "\n".join(lines) + "\n"
