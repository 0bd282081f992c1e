"""The Sentinel hosts' TLS renewal (infra/components/tls_renewal.py) on a real redis-server.

The very script the hosts run is run here with bash, against Debian's redis-server 7.0 over
TLS, with real openssl and redis-cli. Only AWS is a test double (tests/support/fake_aws.py:
answers from a file, validates each call against botocore's models) and so is systemctl (a
recorder). Rules proven:

* Redis reloads its certificate, key and CA in place on
  `CONFIG SET tls-cert-file <same path> ...` (redis/redis src/config.c: the tls-* file configs are
  modifiable and carry the apply function `applyTlsCfg`, which configures a new OpenSSL context):
  a new TLS client sees the new certificate (serial, notAfter), with no restart (same PID), and
  a connection opened before keeps working;
* nothing is swapped when the key does not match the certificate or the certificate does not
  chain to the CA;
* an unchanged certificate changes nothing and still reports its days left.
* a reload that failed after the swap (CONFIG SET refused, Redis unreachable) is retried on the
  next run, and once it succeeded nothing is pending.
* Sentinel, which serves the same files on its TLS port, cannot reload them at runtime (a real
  TLS redis-sentinel 7.0 refuses CONFIG SET and SENTINEL CONFIG SET tls-cert-file), so it is
  restarted, and only while its `SENTINEL CKQUORUM` counts every Sentinel usable (one host at a
  time); otherwise the restart waits for a later run.

Fidelity: Debian's redis 7.0.15 here; the hosts run the same Debian package (docs/fidelity.md).
"""

from __future__ import annotations

import datetime as dt
import grp
import ipaddress
import json
import os
import pwd
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from infra.components.tls_renewal import METRIC, RENEW_SCRIPT
from redis_conf.sentinel import MASTER_NAME
from tests.support import fake_aws
from tests.support.redisproc import free_port, have_redis, redis_process

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not have_redis() or not shutil.which("openssl") or not shutil.which("redis-cli"),
                                 reason="redis-server, redis-cli and openssl are needed")]

ADMIN_PASSWORD = "Admin-Pw-0123456789abcdef"
ADMIN_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-admin-abc"
PREFIX = "/redisstack/test/redis/node-0"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def issue(self, days: int) -> tuple[bytes, bytes, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redis")]))
                .issuer_name(self.ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, cert

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)


def make_pki() -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redisstack test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return Pki(key, cert)


@dataclass
class Host:
    workdir: Path
    tls_dir: Path
    port: int
    pid: int
    state: Path
    log: Path
    systemctl_log: Path
    pki: Pki
    env: dict[str, str]
    sentinel_port: int

    def publish(self, cert: bytes, key: bytes, ca: bytes | None = None) -> None:
        """What `pulumi up` does on renewal: new values in the node's SSM parameters."""
        state = json.loads(self.state.read_text())
        state["ssm"].update({f"{PREFIX}/tls/server.crt": cert.decode().rstrip("\n"),
                             f"{PREFIX}/tls/server.key": key.decode().rstrip("\n"),
                             f"{PREFIX}/tls/ca.crt": (ca or self.pki.ca_pem).decode().rstrip("\n")})
        self.state.write_text(json.dumps(state))

    def renew(self) -> subprocess.CompletedProcess[str]:
        self.log.write_text("")
        self.systemctl_log.write_text("")
        return subprocess.run(["bash", "-c", RENEW_SCRIPT], env=self.env, text=True, capture_output=True,
                              timeout=60, check=False)

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def served(self) -> x509.Certificate:
        """The certificate a new TLS client gets."""
        ctx = ssl.create_default_context(cafile=str(self.tls_dir / "ca.crt"))
        ctx.check_hostname = False
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw, \
                ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
        assert der
        return x509.load_der_x509_certificate(der)

    def sentinel(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, ssl=True,
                           ssl_ca_certs=str(self.tls_dir / "ca.crt"), ssl_check_hostname=False, username="admin",
                           password=ADMIN_PASSWORD, socket_timeout=5)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, ssl=True, ssl_ca_certs=str(self.tls_dir / "ca.crt"),
                           ssl_check_hostname=False, username="admin", password=ADMIN_PASSWORD, socket_timeout=5)


def _owner() -> str:
    user = pwd.getpwuid(os.getuid()).pw_name
    if grp.getgrgid(os.getgid()).gr_name != user:
        pytest.skip("the script installs files as <owner>:<owner>; this user's group has another name")
    return user


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    owner = _owner()
    pki = make_pki()
    cert, key, _ = pki.issue(days=20)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    # As user data's `fetch` writes them at first boot: the CLI's text output, newline-terminated.
    for name, data in (("server.crt", cert), ("server.key", key), ("ca.crt", pki.ca_pem)):
        (tls_dir / name).write_text(data.decode().rstrip("\n") + "\n")
    (tls_dir / "server.key").chmod(0o600)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake_aws.install(bindir)
    systemctl_log = tmp_path / "systemctl.log"
    (bindir / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {systemctl_log}\n")
    (bindir / "systemctl").chmod(0o755)
    state = tmp_path / "aws-state.json"
    state.write_text(json.dumps({"ssm": {}, "secretsmanager": {ADMIN_SECRET: ADMIN_PASSWORD}}))
    log = tmp_path / "aws-calls.log"
    port = free_port()
    conf = "\n".join([
        "bind 127.0.0.1", "port 0", f"tls-port {port}", f"tls-cert-file {tls_dir / 'server.crt'}",
        f"tls-key-file {tls_dir / 'server.key'}", f"tls-ca-cert-file {tls_dir / 'ca.crt'}", "tls-auth-clients no",
        "user default off", f"user admin on >{ADMIN_PASSWORD} ~* &* +@all", ""])
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(tmp_path), "FAKE_AWS_STATE": str(state),
           "FAKE_AWS_LOG": str(log), "REGION": "eu-west-1", "PREFIX": PREFIX, "ADMIN_SECRET_ID": ADMIN_SECRET,
           "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "NODE": "node-0", "TLS_DIR": str(tls_dir),
           "EXPORTER_CA_FILE": str(tmp_path / "exporter-ca.crt"), "FILE_OWNER": owner, "EXPORTER_OWNER": owner,
           "NAMESPACE": "redisstack/Redis", "SENTINEL_UNIT": "redis-sentinel"}
    # A real TLS Sentinel on the same files, monitoring this Redis (the only Sentinel: SENTINELS=1).
    sentinel_port = free_port()
    env.update(SENTINEL_PORT=str(sentinel_port), MASTER_NAME=MASTER_NAME, SENTINELS="1")
    sentinel_conf = "\n".join([
        "bind 127.0.0.1", "port 0", f"tls-port {sentinel_port}", f"tls-cert-file {tls_dir / 'server.crt'}",
        f"tls-key-file {tls_dir / 'server.key'}", f"tls-ca-cert-file {tls_dir / 'ca.crt'}", "tls-auth-clients no",
        "tls-replication yes", "user default off", f"user admin on >{ADMIN_PASSWORD} allchannels +@all",
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 1", f"sentinel auth-user {MASTER_NAME} admin",
        f"sentinel auth-pass {MASTER_NAME} {ADMIN_PASSWORD}", ""])
    with redis_process(tmp_path / "redis", conf, port=port) as rp, \
            redis_process(tmp_path / "sentinel", sentinel_conf, port=sentinel_port, sentinel=True):
        h = Host(tmp_path, tls_dir, port, rp.pid, state, log, systemctl_log, pki, env, sentinel_port)
        h.publish(cert, key)
        yield h


def _days_published(host: Host) -> float:
    [put] = [c for c in host.calls() if c["operation"] == "PutMetricData"]
    assert put["params"]["Namespace"] == "redisstack/Redis"
    [datum] = put["params"]["MetricData"]
    assert datum["MetricName"] == METRIC and datum["Dimensions"] == [{"Name": "node", "Value": "node-0"}]
    return float(datum["Value"])


def test_a_renewed_certificate_is_served_without_restart_and_old_connections_survive(host: Host) -> None:
    old_client = host.client()
    old_client.set("rl:{renewal}:k", "1")
    connection_id = old_client.client_id()
    before = host.served()
    new_cert, new_key, new = host.pki.issue(days=365)
    assert new.serial_number != before.serial_number
    host.publish(new_cert, new_key)

    result = host.renew()
    assert result.returncode == 0, result.stderr

    after = host.served()
    assert after.serial_number == new.serial_number
    assert after.not_valid_after_utc == new.not_valid_after_utc
    # Reloaded in place: the same process, and the connection opened before still works.
    assert redis.Redis(host="127.0.0.1", port=host.port, ssl=True, ssl_ca_certs=str(host.tls_dir / "ca.crt"),
                       ssl_check_hostname=False, username="admin", password=ADMIN_PASSWORD).info("server")[
        "process_id"] == host.pid
    assert old_client.get("rl:{renewal}:k") == b"1"
    assert old_client.ping() is True
    # The very same connection (redis-py would reconnect silently; the server-side id would change).
    assert old_client.client_id() == connection_id
    # What the script did: fetched from SSM with decryption, read the admin secret, restarted Sentinel.
    gets = [c["params"] for c in host.calls() if c["operation"] == "GetParameter"]
    assert gets == [{"Name": f"{PREFIX}/tls/{f}", "WithDecryption": True} for f in ("server.crt", "server.key", "ca.crt")]
    assert [c["params"] for c in host.calls() if c["operation"] == "GetSecretValue"] == [{"SecretId": ADMIN_SECRET}]
    assert host.systemctl_log.read_text().split("\n")[0] == "restart redis-sentinel"
    assert 363 <= _days_published(host) <= 365
    assert oct((host.tls_dir / "server.key").stat().st_mode & 0o777) == "0o600"
    assert (Path(host.env["EXPORTER_CA_FILE"]).stat().st_mode & 0o777) == 0o444
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    old_client.close()


def test_an_unchanged_certificate_changes_nothing_and_reports_its_days_left(host: Host) -> None:
    result = host.renew()
    assert result.returncode == 0, result.stderr
    assert [c["operation"] for c in host.calls()] == ["GetParameter"] * 3 + ["PutMetricData"]
    assert host.systemctl_log.read_text() == ""
    assert 18 <= _days_published(host) <= 20


def test_a_key_that_does_not_match_is_refused_and_nothing_changes(host: Host) -> None:
    before = host.served()
    cert, _, _ = host.pki.issue(days=365)
    _, other_key, _ = host.pki.issue(days=365)
    host.publish(cert, other_key)
    result = host.renew()
    assert result.returncode == 1 and "does not match" in result.stderr
    assert host.served().serial_number == before.serial_number
    assert host.systemctl_log.read_text() == ""
    assert "GetSecretValue" not in [c["operation"] for c in host.calls()]


def test_a_certificate_from_another_ca_is_refused(host: Host) -> None:
    before = host.served()
    cert, key, _ = make_pki().issue(days=365)
    host.publish(cert, key)
    result = host.renew()
    assert result.returncode != 0
    assert host.served().serial_number == before.serial_number


def test_a_reload_that_failed_is_retried_on_the_next_run(host: Host) -> None:
    # The files are swapped before CONFIG SET; if that reload fails (here: a wrong admin
    # password, as with Redis unreachable or still loading), the next run finds the files in SSM
    # equal to the files on disk. It must still reload: Redis keeps serving the old certificate
    # from memory until told to (redis/redis src/config.c, applyTlsCfg runs on CONFIG SET only),
    # and Sentinel was never restarted.
    before = host.served()
    new_cert, new_key, new = host.pki.issue(days=365)
    host.publish(new_cert, new_key)
    state = json.loads(host.state.read_text())
    state["secretsmanager"][ADMIN_SECRET] = "not-the-admin-password-0123"
    host.state.write_text(json.dumps(state))

    failed = host.renew()
    assert failed.returncode == 1 and "CONFIG SET answered" in failed.stderr
    assert host.served().serial_number == before.serial_number
    assert host.systemctl_log.read_text() == ""

    state["secretsmanager"][ADMIN_SECRET] = ADMIN_PASSWORD
    host.state.write_text(json.dumps(state))
    retried = host.renew()
    assert retried.returncode == 0, retried.stderr
    assert host.served().serial_number == new.serial_number
    assert host.systemctl_log.read_text().split("\n")[0] == "restart redis-sentinel"
    assert ADMIN_PASSWORD not in failed.stdout + failed.stderr + retried.stdout + retried.stderr

    # And once done, nothing is pending: the next run changes nothing.
    again = host.renew()
    assert again.returncode == 0, again.stderr
    assert host.systemctl_log.read_text() == ""
    assert "GetSecretValue" not in [c["operation"] for c in host.calls()]


def test_sentinel_cannot_reload_tls_at_runtime_so_it_is_restarted(host: Host) -> None:
    # The hosts' Debian redis-sentinel 7.0: no CONFIG command in Sentinel mode, and SENTINEL CONFIG
    # SET knows no tls-* key (redis/redis src/sentinel.c, sentinelConfigSetCommand).
    sentinel = host.sentinel()
    for command in (("CONFIG", "SET", "tls-cert-file", str(host.tls_dir / "server.crt")),
                    ("SENTINEL", "CONFIG", "SET", "tls-cert-file", str(host.tls_dir / "server.crt"))):
        with pytest.raises(redis.ResponseError):
            sentinel.execute_command(*command)
    sentinel.close()


def test_sentinel_is_restarted_only_while_every_sentinel_is_usable(host: Host) -> None:
    # Three Sentinels expected, this one sees only itself (as when another host restarts or is
    # down): Redis reloads, Sentinel is left alone and the restart is retried on the next run.
    new_cert, new_key, new = host.pki.issue(days=365)
    host.publish(new_cert, new_key)
    host.env["SENTINELS"] = "3"
    held = host.renew()
    assert held.returncode == 1
    assert "Sentinel not restarted while not all 3 Sentinels are usable (OK 1 usable Sentinels" in held.stderr
    assert host.served().serial_number == new.serial_number
    assert host.systemctl_log.read_text() == ""
    assert (host.tls_dir / ".reload-pending").exists()
    assert ADMIN_PASSWORD not in held.stdout + held.stderr

    host.env["SENTINELS"] = "1"  # every Sentinel usable again
    done = host.renew()
    assert done.returncode == 0, done.stderr
    assert host.systemctl_log.read_text().split("\n")[0] == "restart redis-sentinel"
    assert not (host.tls_dir / ".reload-pending").exists()
