"""Run the real Pulumi program offline under mocks and record every resource.

Shared by `redisops render` (reviewable stack renders) and usable by the test harness: no
Pulumi CLI, no provider plugins, no cloud. `run_program(config)` sets the stack config, runs
`infra.program.build()` under `pulumi.runtime.set_mocks`, and returns every registered resource
(type, name, parent, inputs, options) plus the resolved stack outputs with their secret flags.

The mocks compute what providers would: RandomPassword results, TLS keys and certificates (real
ones, via cryptography), AWS ids/ARNs/endpoints. Outputs a provider marks secret
(RandomPassword.result, PrivateKey.privateKeyPem, ...) come back secret as they would for real,
so anything the program derives from them is secret too.

With `deterministic=True` every generated value is a function of the resource's logical name
(passwords from a hash stream, Ed25519 keys from a hashed seed, certificates with fixed serials
and validity), so two runs produce identical inputs, and `StackRun.generated` maps each generated
value to a stable placeholder naming where it came from.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import secrets
import string
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import json_format
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

PROJECT = "redisstack"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
# How the engine marks a secret inside a property map (pulumi/sdk/go/common/resource/properties.go).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
# Outputs providers declare secret in their schema.
SECRET_OUTPUTS: Mapping[str, tuple[str, ...]] = {
    "random:index/randomPassword:RandomPassword": ("result", "bcryptHash"),
    "tls:index/privateKey:PrivateKey": ("privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"),
}
FIXED_NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """The value with every secret marker removed (for code that needs the plain data)."""
    if is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Resource:
    type: str
    name: str
    parent_type: str | None
    parent_name: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    additional_secret_outputs: tuple[str, ...] = ()
    ignore_changes: tuple[str, ...] = ()
    custom: bool = True
    depends_on: tuple[str, ...] = ()
    urn: str = ""
    replace_with: tuple[str, ...] = ()  # URNs whose replacement replaces this resource too
    replacement_trigger: Any = None  # the value whose change replaces this resource


@dataclass
class StackRun:
    resources: list[Resource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    generated: dict[str, str] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> Resource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def named(self, name: str) -> Resource:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one resource named {name}, found {len(found)}")
        return found[0]


def urn_parts(urn: str) -> tuple[str | None, str | None]:
    """(type, name) of a URN `urn:pulumi:stack::project::parentType$type::name`."""
    if not urn:
        return None, None
    type_path, name = urn.split("::")[2:4]
    return type_path.split("$")[-1], name


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            parent_type, parent_name = urn_parts(request.parent)
            record = self.recorder.pending.pop((request.type, request.name), None)
            if record is not None:
                record.parent_type, record.parent_name = parent_type, parent_name
                record.protect = bool(request.protect)
                record.retain_on_delete = bool(request.retainOnDelete)
                record.delete_before_replace = bool(request.deleteBeforeReplace)
                record.additional_secret_outputs = tuple(request.additionalSecretOutputs)
                record.ignore_changes = tuple(request.ignoreChanges)
                record.custom = bool(request.custom)
                record.depends_on = tuple(request.dependencies)
                record.replace_with = tuple(request.replace_with)
                if request.HasField("replacement_trigger"):
                    record.replacement_trigger = json_format.MessageToDict(request.replacement_trigger)
                record.urn = response.urn
                self.recorder.resources.append(record)
        return response


def _stream(seed: str) -> Iterator[int]:
    counter = 0
    while True:
        yield from hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1


def _x509_name(subject: Mapping[str, Any] | None) -> x509.Name:
    subject = subject or {}
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, str(subject.get("commonName", "redisstack")))]
    if subject.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(subject["organization"])))
    return x509.Name(attrs)


class RecordingMocks(Mocks):
    """Realistic provider outputs; with `deterministic`, a pure function of the logical names."""

    def __init__(self, *, deterministic: bool = False) -> None:
        self.deterministic = deterministic
        self.resources: list[Resource] = []
        self.pending: dict[tuple[str, str], Resource] = {}
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        self.generated: dict[str, str] = {}
        self._keys: dict[str, Any] = {}
        self._requests: dict[str, Mapping[str, Any]] = {}

    def _generate(self, value: str, label: str) -> str:
        self.generated[value] = f"[generated:{label}]"
        return value

    # -- resources -------------------------------------------------------------------------
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs = dict(inputs)
        rid = f"{args.name}-id"
        t, name = args.typ, args.name
        plain = unwrap(inputs)
        if t in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            outputs["result"] = self._generate(self._random_password(plain, name), f"{name}.result")
        elif t == "random:index/randomId:RandomId":
            raw = bytes(itertools.islice(self._bytes(name), int(plain.get("byteLength", 8))))
            outputs.update(hex=self._generate(raw.hex(), f"{name}.hex"), dec=str(int.from_bytes(raw, "big")),
                           b64Url=base64.urlsafe_b64encode(raw).decode().rstrip("="),
                           b64Std=base64.b64encode(raw).decode())
        elif t == "random:index/randomInteger:RandomInteger":
            lo, hi = int(plain.get("min", 0)), int(plain.get("max", 100))
            outputs["result"] = lo + next(iter(self._bytes(name))) % (hi - lo + 1)
        elif t == "random:index/randomUuid:RandomUuid":
            outputs["result"] = self._generate(str(uuid.UUID(bytes=bytes(itertools.islice(
                self._bytes(name), 16)))), f"{name}.result")
        elif t == "tls:index/privateKey:PrivateKey":
            self._private_key(name, plain, outputs)
        elif t == "tls:index/selfSignedCert:SelfSignedCert":
            key = self._keys[plain["privateKeyPem"]]
            outputs["certPem"] = self._generate(self._cert(
                name, _x509_name(plain.get("subject")), key.public_key(), _x509_name(plain.get("subject")), key,
                plain, is_ca=bool(plain.get("isCaCertificate"))), f"{name}.certPem")
        elif t == "tls:index/certRequest:CertRequest":
            # A stand-in CSR: it names the request (kept here for LocallySignedCert) without
            # carrying the private key it was made from.
            token = hashlib.sha256(f"csr:{name}:{len(self._requests)}".encode()).hexdigest()
            self._requests[token] = plain
            outputs["certRequestPem"] = self._generate(
                f"-----BEGIN CERTIFICATE REQUEST-----\n{token}\n-----END CERTIFICATE REQUEST-----\n",
                f"{name}.certRequestPem")
        elif t == "tls:index/locallySignedCert:LocallySignedCert":
            req = self._requests[plain["certRequestPem"].split("\n")[1]]
            key = self._keys[req["privateKeyPem"]]
            ca_key = self._keys[plain["caPrivateKeyPem"]]
            ca_cert = x509.load_pem_x509_certificate(plain["caCertPem"].encode())
            outputs["certPem"] = self._generate(self._cert(
                name, _x509_name(req.get("subject")), key.public_key(), ca_cert.subject, ca_key,
                {**plain, "dnsNames": req.get("dnsNames", []), "ipAddresses": req.get("ipAddresses", [])},
                is_ca=False), f"{name}.certPem")
        elif t.startswith("aws:"):
            rid = self._aws(t, name, plain, outputs) or rid
        elif t.startswith("docker:"):
            if t == "docker:index/container:Container":
                outputs.setdefault("hostname", plain.get("hostname") or name)
            if t == "docker:index/remoteImage:RemoteImage":
                digest = hashlib.sha256(str(plain.get("name", name)).encode()).hexdigest()
                outputs.setdefault("imageId", f"sha256:{digest}")
                outputs.setdefault("repoDigest", f"{plain.get('name', name)}@sha256:{digest}")
            outputs.setdefault("name", plain.get("name") or name)
        # The record keeps generated values plain (what a test compares against) and echoed
        # inputs as they came; the engine gets provider-secret outputs wrapped, as for real.
        self.pending[(t, name)] = Resource(t, name, None, None, inputs, dict(outputs))
        for key in SECRET_OUTPUTS.get(t, ()):
            if key in outputs and not is_secret(outputs[key]):
                outputs[key] = secret(outputs[key])
        return rid, outputs

    def _aws(self, t: str, name: str, inputs: Mapping[str, Any], outputs: dict[str, Any]) -> str | None:
        rid: str | None = None
        # pulumi-aws 7's per-resource `region` argument (a second region) shows in regional ARNs.
        region = str(inputs.get("region") or REGION)
        outputs.setdefault("arn", f"arn:aws:{t.split(':')[1].split('/')[0]}:{region}:{ACCOUNT}:{name}")
        digest = hashlib.sha256(name.encode()).hexdigest()
        if t == "aws:elasticache/replicationGroup:ReplicationGroup":
            rg = str(inputs.get("replicationGroupId") or name)
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
            rid = f"sg-{digest[:17]}"
        elif t == "aws:ec2/networkInterface:NetworkInterface":
            # A private IP inside the subnet: third octet from the subnet id's last hex digit
            # (the same digit getSubnet turns into the AZ), host part from the resource name.
            subnet = str(inputs.get("subnetId", "subnet-0"))
            outputs.setdefault("privateIp", f"10.0.{int(subnet[-1], 16)}.{10 + int(digest[:4], 16) % 200}")
            outputs.setdefault("privateIps", [outputs["privateIp"]])
        elif t == "aws:ec2/launchTemplate:LaunchTemplate":
            outputs.setdefault("latestVersion", 1)
            outputs.setdefault("defaultVersion", 1)
        elif t == "aws:ec2/instance:Instance":
            octet = int(digest[:4], 16) % 250
            outputs.update(privateIp=f"10.0.{octet}.10",
                           privateDns=f"ip-10-0-{octet}-10.{REGION}.compute.internal")
        elif t == "aws:sns/topic:Topic" and inputs.get("name"):
            # A named topic's ARN ends in its name, as for real (key and topic policies name it).
            outputs["arn"] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{inputs['name']}"
        elif t == "aws:cloudwatch/logGroup:LogGroup" and inputs.get("name"):
            outputs["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{inputs['name']}"
        elif t == "aws:kms/key:Key":
            rid = str(uuid.UUID(digest[:32]))
            outputs["arn"] = f"arn:aws:kms:{region}:{ACCOUNT}:key/{rid}"
            outputs["keyId"] = rid
        elif t == "aws:s3/bucket:Bucket":
            # bucket_prefix + the provider's 26-character unique suffix; the id is the name.
            bucket = str(inputs.get("bucket") or f"{inputs.get('bucketPrefix', name + '-')}{digest[:26]}")
            outputs.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
            rid = bucket
        elif t == "aws:s3/bucketObjectv2:BucketObjectv2":
            # Versioned bucket: S3 returns an opaque version id per write.
            outputs.setdefault("versionId", f"v{digest[:31]}")
        elif t == "aws:signer/signingProfile:SigningProfile":
            profile = str(inputs.get("name") or f"{inputs.get('namePrefix', '')}{digest[:26]}")
            version = digest[26:36]
            outputs.update(name=profile, version=version,
                           arn=f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/{profile}",
                           versionArn=f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/{profile}/{version}")
            rid = profile
        elif t == "aws:signer/signingJob:SigningJob":
            # Signer writes the signed zip to the destination prefix under the job id (a new job, a
            # new key); the job id here depends on what is signed, as a replaced job's would change.
            s3 = (inputs.get("source") or {}).get("s3") or {}
            rid = str(uuid.UUID(hashlib.sha256(f"{name}:{s3.get('key')}:{s3.get('version')}".encode())
                                .hexdigest()[:32]))
            dest = (inputs.get("destination") or {}).get("s3") or {}
            outputs.update(jobId=rid, status="Succeeded", platformId="AWSLambda-SHA384-ECDSA",
                           signedObjects=[{"s3s": [{"bucket": dest.get("bucket"),
                                                    "key": f"{dest.get('prefix', '')}{rid}.zip"}]}])
        elif t == "aws:lambda/codeSigningConfig:CodeSigningConfig":
            rid = f"csc-{digest[:17]}"
            outputs.update(configId=rid, arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:{rid}")
        outputs.setdefault("name", inputs.get("name") or f"{name}-mock")
        outputs["id"] = rid or f"{name}-id"
        return outputs["id"]

    # pulumi 3.272's mock monitor iterates the failure list: return [] rather than None.
    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append((args.token, dict(args.args)))
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "ci"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": [f"{REGION}{z}" for z in "abc"], "zoneIds": ["euw1-az1", "euw1-az2", "euw1-az3"]}, []
        if args.token == "aws:ec2/getSubnet:getSubnet":
            sid = str(args.args.get("id", "subnet-0"))
            azs = ["a", "b", "c", "d"]
            return {"id": sid, "availabilityZone": f"{REGION}{azs[int(sid[-1], 16) % 4]}",
                    "vpcId": "vpc-0abc1234def567890", "cidrBlock": "10.0.1.0/24"}, []
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": "ami-0123456789abcdef0", "type": "String"}, []
        if args.token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": json.dumps({"Version": "2012-10-17", "Statement": args.args.get("statements", [])})}, []
        return {}, []

    # -- generators --------------------------------------------------------------------------
    def _bytes(self, name: str) -> Iterator[int]:
        if self.deterministic:
            return _stream(name)
        return iter(secrets.token_bytes(4096))

    def _random_password(self, inputs: Mapping[str, Any], name: str) -> str:
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
        if not self.deterministic:
            return "".join(secrets.choice(alphabet) for _ in range(length))
        stream = _stream(name)
        return "".join(alphabet[next(stream) % len(alphabet)] for _ in range(length))

    def _private_key(self, name: str, inputs: Mapping[str, Any], outputs: dict[str, Any]) -> None:
        key: Any
        if self.deterministic:
            # Ed25519 signatures are deterministic, so certificates signed with it are too.
            key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(f"key:{name}".encode()).digest())
            pem_format = serialization.PrivateFormat.PKCS8
        elif inputs.get("algorithm", "RSA") == "ECDSA":
            key, pem_format = ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem_format = serialization.PrivateFormat.TraditionalOpenSSL
        pem = key.private_bytes(serialization.Encoding.PEM, pem_format, serialization.NoEncryption()).decode()
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self._keys[pem] = key
        outputs.update(privateKeyPem=self._generate(pem, f"{name}.privateKeyPem"),
                       privateKeyPemPkcs8=self._generate(pkcs8, f"{name}.privateKeyPemPkcs8"),
                       publicKeyPem=self._generate(public, f"{name}.publicKeyPem"))

    def _cert(self, name: str, subject: x509.Name, public_key: Any, issuer: x509.Name, signing_key: Any,
              inputs: Mapping[str, Any], *, is_ca: bool) -> str:
        now = FIXED_NOW if self.deterministic else dt.datetime.now(dt.UTC)
        serial = (int(hashlib.sha256(f"serial:{name}".encode()).hexdigest()[:30], 16) if self.deterministic
                  else x509.random_serial_number())
        hours = int(inputs.get("validityPeriodHours", 24))
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                   .serial_number(serial)
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
        algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        return builder.sign(signing_key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def aws_identity(type_: str, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs (id, arn, name, ...) a run gives the AWS resource `name` with these inputs: the
    same rules, so a render's values can be traced back to the resource they name
    (redisops.tfplan)."""
    outputs = dict(inputs)
    RecordingMocks(deterministic=True)._aws(type_, name, inputs, outputs)
    return outputs


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_program(config: Mapping[str, Any], *, stack: str = "dev", secret_keys: tuple[str, ...] = (),
                project: str = PROJECT, preview: bool = False, deterministic: bool = False) -> StackRun:
    """Run infra.program.build() under mocks with `config` (keys without the project namespace
    belong to the project; `aws:region` etc. keep theirs)."""
    from infra import program

    mocks = RecordingMocks(deterministic=deterministic)
    monitor = _RecordingMonitor(mocks)
    # Pulumi's mocks run on the thread's current event loop; after an asyncio.run() in this
    # process (an asyncio limiter, a test) there is none, and set_mocks raises RuntimeError.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    full = {f"{project}:{k}" if ":" not in k else k: _config_value(v) for k, v in config.items()}
    pulumi.runtime.set_all_config(full, [f"{project}:{k}" if ":" not in k else k for k in secret_keys])
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
    return StackRun(mocks.resources, resolved, secret_names, mocks.invokes, dict(mocks.generated))


def placeholder_secret(key: str) -> str:
    """A stand-in for a `secure:` config value: valid for every secret setting (16+ chars from the
    AUTH-token alphabet) and the same on every run."""
    return "Render-Secret-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def load_stack_config(path: str | Path, *, project: str = PROJECT,
                      secret_value: Any = placeholder_secret) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Config of a committed Pulumi.<stack>.yaml; `secure:` values become `secret_value(key)`."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    config: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        ns, _, short = key.partition(":")
        name = short if ns == project else key
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[name] = secret_value(name)
            secret_keys.append(name)
        else:
            config[name] = value
    return config, tuple(secret_keys)
