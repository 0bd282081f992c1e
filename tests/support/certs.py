"""Throwaway CA + server/client certificates for TLS tests (cryptography, no openssl CLI)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject_cn: str, key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
           ca_key: ec.EllipticCurvePrivateKey, usages: list[x509.ObjectIdentifier],
           sans: list[x509.GeneralName], days: int) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def make_tls_files(directory: Path, hostnames: tuple[str, ...] = ("localhost",), *, days: int = 400) -> TlsFiles:
    """`days`: validity of the server and client certificates (the CA outlives them). The
    default is far from `redisops health`'s expiry lines (30/14 days)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redisstack test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days + 365))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    srv_key = _key()
    # Redis presents its own certificate as a client on replication and Sentinel links.
    srv_cert = _issue("redis", srv_key, ca_cert, ca_key,
                      [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], sans, days)
    cli_key = _key()
    cli_cert = _issue("redis-client", cli_key, ca_cert, ca_key, [ExtendedKeyUsageOID.CLIENT_AUTH], sans, days)
    files = TlsFiles(directory / "ca.crt", directory / "redis.crt", directory / "redis.key",
                     directory / "client.crt", directory / "client.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(_pem_key(srv_key))
    files.client_cert.write_bytes(cli_cert.public_bytes(serialization.Encoding.PEM))
    files.client_key.write_bytes(_pem_key(cli_key))
    for p in (files.key, files.client_key):
        p.chmod(0o600)
    return files
