"""Run the real Pulumi program offline under mocks and record every resource.

`run_program(config)` sets the stack config, runs `infra.program.build()` under
`pulumi.runtime.set_mocks`, and returns every registered resource (type, name, parent, inputs,
options) plus the resolved stack outputs with their secret flags. The mocks compute realistic
outputs: RandomPassword gives a real random password of the requested length and alphabet,
tls resources give real keys and certificates (cryptography), AWS resources get ARNs/ids and
endpoints, so that the files a stack would upload can be started for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

PROJECT = "redisstack"
ACCOUNT = "123456789012"
REGION = "eu-west-1"


@dataclass
class Resource:
    type: str
    name: str
    parent_type: str | None
    parent_name: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False
    delete_before_replace: bool = False
    additional_secret_outputs: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    custom: bool = True
    depends_on: tuple[str, ...] = ()


@dataclass
class StackRun:
    resources: list[Resource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Resource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
        return found[0]


def _urn_parts(urn: str) -> tuple[str | None, str | None]:
    if not urn:
        return None, None
    # urn:pulumi:stack::project::parentType$type::name
    type_path, name = urn.split("::")[2:4]
    return type_path.split("$")[-1], name


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: RealisticMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            parent_type, parent_name = _urn_parts(request.parent)
            record = self.recorder.pending.pop((request.type, request.name), None)
            if record is not None:
                record.parent_type, record.parent_name = parent_type, parent_name
                record.protect = bool(request.protect)
                record.delete_before_replace = bool(request.deleteBeforeReplace)
                record.additional_secret_outputs = tuple(request.additionalSecretOutputs)
                record.ignore_changes = tuple(request.ignoreChanges)
                record.custom = bool(request.custom)
                record.depends_on = tuple(request.dependencies)
                self.recorder.resources.append(record)
        return response


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def is_secret(value: Any) -> bool:
    """An input Pulumi serialised as a secret (the mock receives it wrapped)."""
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def unwrap_secret(value: Any) -> Any:
    """`value` with every secret wrapper (at any depth) replaced by its plaintext."""
    if is_secret(value):
        return unwrap_secret(value["value"])
    if isinstance(value, dict):
        return {k: unwrap_secret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secret(v) for v in value]
    return value


def _pem_key(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _name(subject: Mapping[str, Any] | None) -> x509.Name:
    subject = subject or {}
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, str(subject.get("commonName", "redisstack")))]
    if subject.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(subject["organization"])))
    return x509.Name(attrs)


class RealisticMocks(Mocks):
    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.pending: dict[tuple[str, str], Resource] = {}
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self._keys: dict[str, Any] = {}

    # -- resources -------------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs = dict(inputs)
        rid = f"{args.name}-id"
        t = args.typ
        if t == "random:index/randomPassword:RandomPassword" or t == "random:index/randomString:RandomString":
            outputs["result"] = self._random_password(inputs)
        elif t == "random:index/randomId:RandomId":
            raw = secrets.token_bytes(int(inputs.get("byteLength", 8)))
            outputs.update(hex=raw.hex(), dec=str(int.from_bytes(raw, "big")),
                           b64Url=base64.urlsafe_b64encode(raw).decode().rstrip("="),
                           b64Std=base64.b64encode(raw).decode())
        elif t == "tls:index/privateKey:PrivateKey":
            key = (ec.generate_private_key(ec.SECP256R1()) if inputs.get("algorithm", "RSA") == "ECDSA"
                   else rsa.generate_private_key(public_exponent=65537, key_size=2048))
            pem = _pem_key(key)
            self._keys[pem] = key
            outputs.update(privateKeyPem=pem, privateKeyPemPkcs8=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
                publicKeyPem=key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
        elif t == "tls:index/selfSignedCert:SelfSignedCert":
            key = self._keys[unwrap_secret(inputs["privateKeyPem"])]
            outputs["certPem"] = self._cert(_name(inputs.get("subject")), key.public_key(), _name(inputs.get("subject")),
                                            key, inputs, is_ca=bool(inputs.get("isCaCertificate")))
        elif t == "tls:index/certRequest:CertRequest":
            outputs["certRequestPem"] = json.dumps(unwrap_secret(inputs))  # carried to LocallySignedCert below
        elif t == "tls:index/locallySignedCert:LocallySignedCert":
            req = json.loads(unwrap_secret(inputs["certRequestPem"]))
            key = self._keys[req["privateKeyPem"]]
            ca_key = self._keys[unwrap_secret(inputs["caPrivateKeyPem"])]
            ca_cert = x509.load_pem_x509_certificate(unwrap_secret(inputs["caCertPem"]).encode())
            outputs["certPem"] = self._cert(_name(req.get("subject")), key.public_key(), ca_cert.subject, ca_key,
                                            {**inputs, "dnsNames": req.get("dnsNames", []),
                                             "ipAddresses": req.get("ipAddresses", [])}, is_ca=False)
        elif t.startswith("aws:"):
            outputs.setdefault("arn", f"arn:aws:{t.split(':')[1].split('/')[0]}:{REGION}:{ACCOUNT}:{args.name}")
            if t == "aws:elasticache/replicationGroup:ReplicationGroup":
                rg = inputs.get("replicationGroupId") or args.name
                outputs.update(id=rg, primaryEndpointAddress=f"master.{rg}.abc123.euw1.cache.amazonaws.com",
                               readerEndpointAddress=f"replica.{rg}.abc123.euw1.cache.amazonaws.com",
                               configurationEndpointAddress=f"clustercfg.{rg}.abc123.euw1.cache.amazonaws.com",
                               memberClusters=[f"{rg}-{i:03d}" for i in range(1, int(inputs.get("numCacheClusters", 2)) + 1)])
                if inputs.get("clusterMode") == "enabled" or inputs.get("numNodeGroups") is not None:
                    outputs["memberClusters"] = [
                        f"{rg}-{s:04d}-{n:03d}" for s in range(1, int(inputs.get("numNodeGroups", 1)) + 1)
                        for n in range(1, int(inputs.get("replicasPerNodeGroup", 0)) + 2)]
                rid = rg
            elif t == "aws:ec2/securityGroup:SecurityGroup":
                rid = f"sg-{abs(hash(args.name)) % 16**12:012x}"
            elif t == "aws:ec2/networkInterface:NetworkInterface":
                # A private IP inside the subnet: third octet from the subnet id's last hex digit
                # (the same digit getSubnet turns into the AZ), host part from the resource name.
                subnet = str(inputs.get("subnetId", "subnet-0"))
                outputs.setdefault("privateIp", f"10.0.{int(subnet[-1], 16)}.{10 + sum(map(ord, args.name)) % 200}")
                outputs.setdefault("privateIps", [outputs["privateIp"]])
            elif t == "aws:ec2/instance:Instance":
                outputs.update(privateIp=f"10.0.{len(self.resources) % 250}.10",
                               privateDns=f"ip-10-0-{len(self.resources) % 250}-10.{REGION}.compute.internal")
            outputs.setdefault("name", inputs.get("name") or f"{args.name}-mock")
            outputs["id"] = rid
        elif t.startswith("docker:"):
            if t == "docker:index/remoteImage:RemoteImage":
                # What the provider reports after a pull: a content id derived from the pinned name.
                digest = hashlib.sha256(str(inputs.get("name")).encode()).hexdigest()
                outputs.update(imageId=f"sha256:{digest}", repoDigest=f"{inputs.get('name')}@sha256:{digest}")
            if t == "docker:index/container:Container":
                outputs.setdefault("hostname", inputs.get("hostname") or args.name)
            outputs.setdefault("name", inputs.get("name") or args.name)
        self.pending[(t, args.name)] = Resource(t, args.name, None, None, inputs, outputs)
        return rid, outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "ci"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}, []
        if args.token == "aws:ec2/getSubnet:getSubnet":
            sid = args.args.get("id", "subnet-0")
            azs = ["a", "b", "c", "d"]
            return {"id": sid, "availabilityZone": f"{REGION}{azs[int(sid[-1], 16) % 4]}",
                    "vpcId": "vpc-0abc1234def567890", "cidrBlock": "10.0.1.0/24"}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": "ami-0123456789abcdef0", "type": "String"}, []
        if args.token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": json.dumps({"Version": "2012-10-17", "Statement": args.args.get("statements", [])})}, []
        return {}, []

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _random_password(inputs: Mapping[str, Any]) -> str:
        length = int(inputs.get("length", 32))
        alphabet = ""
        if inputs.get("upper", True):
            alphabet += string.ascii_uppercase
        if inputs.get("lower", True):
            alphabet += string.ascii_lowercase
        if inputs.get("numeric", True):
            alphabet += string.digits
        if inputs.get("special", True):
            alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
        return "".join(secrets.choice(alphabet) for _ in range(length))

    @staticmethod
    def _cert(subject: x509.Name, public_key: Any, issuer: x509.Name, signing_key: Any,
              inputs: Mapping[str, Any], *, is_ca: bool) -> str:
        now = dt.datetime.now(dt.UTC)
        hours = int(inputs.get("validityPeriodHours", 24))
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=hours))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
        uses = set(inputs.get("allowedUses", []))
        ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if "server_auth" in uses else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if "client_auth" in uses else [])
        if ekus:
            builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        if is_ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in inputs.get("dnsNames", [])]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in inputs.get("ipAddresses", [])]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_program(config: Mapping[str, Any], *, stack: str = "dev", secret_keys: tuple[str, ...] = (),
                preview: bool = False) -> StackRun:
    """Run infra.program.build() under mocks with `config` (keys without namespace)."""
    from infra import program

    mocks = RealisticMocks()
    monitor = _RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    full = {f"{PROJECT}:{k}" if ":" not in k else k: _config_value(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(full, [f"{PROJECT}:{k}" for k in secret_keys])
    resolved: dict[str, Any] = {}
    secret_names: set[str] = set()

    @pulumi.runtime.test
    def _run() -> Any:
        outputs = program.build()

        async def _resolve() -> None:
            for key, value in outputs.items():
                out = pulumi.Output.from_input(value)
                resolved[key] = await out.future(with_unknowns=False)
                if await out.is_secret():
                    secret_names.add(key)

        return pulumi.Output.from_input(_resolve())

    _run()
    return StackRun(mocks.resources, resolved, secret_names, mocks.invokes)


def load_stack_file(path: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Config of a committed Pulumi.<stack>.yaml, with `secure:` values replaced by test secrets."""
    import yaml

    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    config: dict[str, Any] = {}
    secret: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        ns, _, short = key.partition(":")
        name = short if ns == PROJECT else key
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[name] = "Test-Secret-" + secrets.token_hex(12)
            secret.append(name)
        else:
            config[name] = value
    return config, tuple(secret)
