"""A throw-away certificate authority and one server certificate for the local stack.

The CA lives only in Pulumi state (its key never leaves it); the server key is uploaded
into the Redis container and the CA certificate is exported so clients, redis_exporter
and the smoke test verify Redis instead of trusting any certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

# Long enough that a dev stack is not broken by expiry mid-sprint; early renewal makes the
# next `pulumi up` within the last 30 days re-issue instead of letting it lapse.
CA_VALIDITY_HOURS = 24 * 365 * 2
SERVER_VALIDITY_HOURS = 24 * 365
EARLY_RENEWAL_HOURS = 24 * 30


@dataclass(frozen=True)
class LocalTlsArgs:
    common_name: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    organization: str = "redisstack dev"

    def __post_init__(self) -> None:
        if not self.dns_names and not self.ip_addresses:
            raise ValueError("LocalTlsArgs: a server certificate needs at least one DNS name or IP address")


class LocalTls(pulumi.ComponentResource):
    """CA (ECDSA P-256, self-signed) + server certificate signed by it."""

    ca_cert_pem: pulumi.Output[str]
    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]

    def __init__(self, name: str, args: LocalTlsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("redisstack:local:LocalTls", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            early_renewal_hours=EARLY_RENEWAL_HOURS,
            subject=tls.SelfSignedCertSubjectArgs(common_name=f"{args.common_name} CA",
                                                  organization=args.organization),
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=child,
        )
        key = tls.PrivateKey(f"{name}-server-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-server-csr",
            private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=args.common_name, organization=args.organization),
            dns_names=list(args.dns_names),
            ip_addresses=list(args.ip_addresses),
            opts=child,
        )
        cert = tls.LocallySignedCert(
            f"{name}-server",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca_cert.cert_pem,
            validity_period_hours=SERVER_VALIDITY_HOURS,
            early_renewal_hours=EARLY_RENEWAL_HOURS,
            # client_auth too: the same certificate can serve a replica's outgoing TLS link
            # when the sentinel topology reuses this component.
            allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"],
            opts=child,
        )
        self.ca_cert_pem = ca_cert.cert_pem
        self.cert_pem = cert.cert_pem
        self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
        self.register_outputs({"caCertPem": self.ca_cert_pem, "certPem": self.cert_pem})


def server_sans(hostnames: Sequence[str], bind_address: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dns_names, ip_addresses): the container hostname(s), localhost, 127.0.0.1, and the
    host address the port is published on when that is a concrete non-loopback address."""
    import ipaddress

    dns = tuple(dict.fromkeys([*hostnames, "localhost"]))
    ips = ["127.0.0.1"]
    addr = ipaddress.ip_address(bind_address)
    if not addr.is_unspecified and str(addr) not in ips:
        ips.append(str(addr))
    return dns, tuple(ips)
