"""The redisstack CrossGuard policies, importable without starting a policy server.

`policy/__main__.py` hands `POLICIES` to `PolicyPack(...)`, which starts a gRPC server and
blocks; everything else (the unit tests, `redisops`) imports this module and calls each
policy's `validate(args, report_violation)` directly.

Properties arrive the way the engine sends them: camelCase input names, secrets already
unwrapped (an analyzer cannot tell a secret Output from plain text, so the container policy
judges what `docker inspect` would show, which is the same either way).

Policy configuration (``pulumi preview --policy-pack policy --policy-pack-config cfg.json``):

    redis-ports-not-open-to-internet   {"ports": [6379, 6380, 26379]}
    elasticache-multi-az-in-production {"productionStacks": ["prod", "production"]}
    elasticache-snapshots              {"minRetentionDays": 7}
    versions-at-or-above-floor         (none: the floors are infra/versions.py)
    containers-publish-on-loopback     {"allowedAddresses": []}
    containers-no-plaintext-secrets    {"allowedEnvNames": []}

Every policy is mandatory unless it says otherwise; the eviction-policy check is advisory
because `allkeys-lru` is a legitimate choice for a cache, just a risky one for counters, and
the token-mode check is advisory because token mode stays an explicit choice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from infra import versions
from infra.cidr import cidr_problem
from infra.user_data import unpack as unpack_user_data
from redis_conf.elasticache import RESTRICTED_COMMANDS, RESTRICTED_COMMANDS_SOURCE, named_commands

REDIS_PORTS: tuple[int, ...] = (6379, 6380, 26379)
PRODUCTION_STACKS: tuple[str, ...] = ("prod", "production")
MIN_SNAPSHOT_RETENTION_DAYS = 7
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
CACHE_CLUSTER = "aws:elasticache/cluster:Cluster"
PARAMETER_GROUP = "aws:elasticache/parameterGroup:ParameterGroup"
ELASTICACHE_USER = "aws:elasticache/user:User"
CONTAINER = "docker:index/container:Container"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"

EVICTIONS_ALARM = ("the evictions alarm (Prometheus RedisKeysEvicted / CloudWatch Evictions > 0, "
                   "thresholds row 'evicted_keys')")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _cfg(args: ResourceValidationArgs, key: str, default: Any) -> Any:
    value = (args.get_config() or {}).get(key)
    return default if value is None else value


def _get(props: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = props.get(key, default) if isinstance(props, Mapping) else default
    return default if value is None else value


def _is_world(cidr: str) -> bool:
    """Reachable from the internet: /0, any public range, or a private range wider than /8 (/48)
    (the same rule as the stack settings, infra/cidr.py)."""
    problem = cidr_problem(cidr)
    return problem is not None and "is not a CIDR" not in problem


def _covers(protocol: Any, from_port: Any, to_port: Any, ports: Iterable[int]) -> list[int]:
    """Which of `ports` a rule admits. Protocol -1/all admits every port whatever the range says."""
    proto = str(protocol if protocol is not None else "tcp").lower()
    if proto in ("-1", "all"):
        return sorted(ports)
    if proto not in ("tcp", "6"):
        return []
    lo = int(from_port) if from_port is not None else 0
    hi = int(to_port) if to_port is not None else 65535
    if lo < 0 or hi < 0:  # the API's "every port" spelling
        lo, hi = 0, 65535
    return sorted(p for p in ports if lo <= p <= hi)


def _tags(props: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = _get(props, "tags", {})
    return tags if isinstance(tags, Mapping) else {}


def is_production(args: ResourceValidationArgs) -> bool:
    """A resource is production when its `stack`/`environment`/`env` tag (redisstack tags every AWS
    resource with `stack`) or the stack's tag of that name is one of `productionStacks`."""
    names = {str(n).lower() for n in _cfg(args, "productionStacks", PRODUCTION_STACKS)}
    sources = [_tags(args.props), args.stack_tags or {}]
    return any(str(src.get(k, "")).lower() in names for src in sources for k in ("stack", "environment", "env"))


def _policy(name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None],
            *, level: EnforcementLevel = EnforcementLevel.MANDATORY,
            schema: PolicyConfigSchema | None = None, remediation: str | None = None) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=level, config_schema=schema, remediation_steps=remediation)


# ---------------------------------------------------------------------------------------------
# 1. no security group rule open to the internet on Redis/Sentinel ports
# ---------------------------------------------------------------------------------------------
def _world_rules(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, Any, Any, Any]]:
    """(cidr, protocol, from, to) of every ingress open to the internet (0.0.0.0/0, ::/0, public ranges)."""
    found: list[tuple[str, Any, Any, Any]] = []

    def collect(rule: Mapping[str, Any], protocol_key: str, cidr_keys: Sequence[str]) -> None:
        for key in cidr_keys:
            value = _get(rule, key, [])
            for cidr in [value] if isinstance(value, str) else list(value):
                if _is_world(cidr):
                    found.append((str(cidr), _get(rule, protocol_key), rule.get("fromPort"), rule.get("toPort")))

    if resource_type == SECURITY_GROUP:
        for rule in _get(props, "ingress", []):
            collect(rule, "protocol", ("cidrBlocks", "ipv6CidrBlocks"))
    elif resource_type == SECURITY_GROUP_RULE:
        if str(_get(props, "type", "")).lower() == "ingress":
            collect(props, "protocol", ("cidrBlocks", "ipv6CidrBlocks"))
    elif resource_type == INGRESS_RULE:
        collect(props, "ipProtocol", ("cidrIpv4", "cidrIpv6"))
    return found


def _validate_no_world_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    ports = [int(p) for p in _cfg(args, "ports", REDIS_PORTS)]
    for cidr, protocol, lo, hi in _world_rules(args.resource_type, args.props):
        exposed = _covers(protocol, lo, hi, ports)
        if exposed:
            report(f"{args.name}: ingress from {cidr} admits Redis/Sentinel port(s) {', '.join(map(str, exposed))} "
                   f"(protocol {protocol}, ports {lo}-{hi}). Redis must only be reachable from the application: "
                   "use network.appSecurityGroupIds, or network.allowedCidrs with a private range.", None)


NO_WORLD_INGRESS = _policy(
    "redis-ports-not-open-to-internet",
    "No security group rule admits 0.0.0.0/0 or ::/0 on a Redis or Sentinel port.",
    _validate_no_world_ingress,
    schema=PolicyConfigSchema(properties={"ports": {
        "type": "array", "items": {"type": "integer"}, "default": list(REDIS_PORTS),
        "description": "Ports that must never be open to the internet"}}),
    remediation="Admit the application's security groups (network.appSecurityGroupIds) instead of a CIDR.",
)


# ---------------------------------------------------------------------------------------------
# 2. ElastiCache
# ---------------------------------------------------------------------------------------------
def _validate_transit_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (REPLICATION_GROUP, CACHE_CLUSTER):
        return
    props = args.props
    if str(_get(props, "engine", "redis")).lower() == "memcached":
        return
    if _get(props, "transitEncryptionEnabled", False) is not True:
        report(f"{args.name}: transitEncryptionEnabled is not true: AUTH tokens and rate-limit keys would cross "
               "the network in clear text. Set tls: true.", None)
    elif str(_get(props, "transitEncryptionMode", "required")).lower() != "required":
        report(f"{args.name}: transitEncryptionMode is {_get(props, 'transitEncryptionMode')!r}: plain-text "
               "clients are still accepted. 'preferred' is only the first of the two applies that turn TLS "
               "on for a live group; finish with 'required'.", None)


TRANSIT_ENCRYPTION = _policy(
    "elasticache-transit-encryption",
    "ElastiCache Redis/Valkey requires TLS in transit (transitEncryptionEnabled, mode required).",
    _validate_transit_encryption,
)


def _validate_at_rest_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    props = args.props
    if _get(props, "atRestEncryptionEnabled", False) not in (True, "true"):
        report(f"{args.name}: atRestEncryptionEnabled is not true (create-time only: fixing it later means a "
               "new replication group restored from a snapshot).", None)
    if not _get(props, "kmsKeyId", ""):
        report(f"{args.name}: no kmsKeyId: snapshots and disks would use the AWS-owned key, which cannot be "
               "audited, rotated on your schedule or revoked. Leave elasticache.kmsKeyArn unset to get a "
               "customer key, or point it at yours.", None)


AT_REST_ENCRYPTION = _policy(
    "elasticache-at-rest-encryption-kms",
    "ElastiCache encrypts data at rest with a customer-managed KMS key.",
    _validate_at_rest_encryption,
)


def _validate_auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    props = args.props
    token = _get(props, "authToken", "") or _get(props, "authTokenWo", "")
    groups = [g for g in _get(props, "userGroupIds", []) if g]
    if not token and not groups:
        report(f"{args.name}: neither an AUTH token (authToken/authTokenWo) nor RBAC user groups "
               "(userGroupIds): any client that reaches the port can read and reset every counter.", None)
    elif token and groups:
        report(f"{args.name}: both an AUTH token and userGroupIds are set; ElastiCache rejects the "
               "combination. Choose elasticache.authMode token or rbac.", None)


AUTH_REQUIRED = _policy(
    "elasticache-auth-required",
    "ElastiCache requires authentication: an AUTH token or RBAC user groups.",
    _validate_auth,
)


def _validate_rbac_not_token(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    props = args.props
    token = _get(props, "authToken", "") or _get(props, "authTokenWo", "")
    if token and not [g for g in _get(props, "userGroupIds", []) if g]:
        report(f"{args.name}: AUTH token mode. Every client that knows the token logs in as ElastiCache's built-in "
               "`default` user with full access: the ACL model does not apply, so the application credential may "
               "FLUSHALL, read every key and load its own Lua (EVAL, FUNCTION LOAD). Use elasticache.authMode: rbac "
               "(the default): app, monitor and admin users derived from the ACL model, `default` disabled.", None)


RBAC_NOT_TOKEN = _policy(
    "elasticache-rbac-not-token",
    "Advisory: ElastiCache uses RBAC users (the ACL model), not one AUTH token with full access.",
    _validate_rbac_not_token,
    level=EnforcementLevel.ADVISORY,
    remediation="Set redisstack:elasticache.authMode to rbac (and remove authToken).",
)


def _validate_access_string(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != ELASTICACHE_USER:
        return
    restricted = frozenset().union(*RESTRICTED_COMMANDS.values())
    named = sorted(named_commands(str(_get(args.props, "accessString", ""))) & restricted)
    if named:
        report(f"{args.name}: the access string names {', '.join(named)}, which ElastiCache makes unavailable; it "
               f"rejects such a user at create time ({RESTRICTED_COMMANDS_SOURCE}). Derive access strings with "
               "redis_conf.elasticache.elasticache_access_string.", None)


ACCESS_STRING_ALLOWED = _policy(
    "elasticache-access-string-allowed",
    "ElastiCache RBAC access strings name no command ElastiCache restricts (they are rejected).",
    _validate_access_string,
)


def _validate_multi_az(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    if not is_production(args):
        args.not_applicable("not a production stack (tags.stack not in productionStacks)")
        return
    props = args.props
    if _get(props, "automaticFailoverEnabled", False) is not True:
        report(f"{args.name}: automaticFailoverEnabled is not true in production: a failed primary stays "
               "down until someone intervenes, and every rate-limited request fails meanwhile.", None)
    if _get(props, "multiAzEnabled", False) is not True:
        report(f"{args.name}: multiAzEnabled is not true in production: an AZ outage takes the primary and "
               "its replicas down together.", None)
    if _get(props, "numNodeGroups") is not None or _get(props, "replicasPerNodeGroup") is not None:
        replicas = int(_get(props, "replicasPerNodeGroup", 0))
        if replicas < 1:
            report(f"{args.name}: replicasPerNodeGroup={replicas}: a shard without a replica cannot fail over.",
                   None)
    elif int(_get(props, "numCacheClusters", 1)) < 2:
        report(f"{args.name}: numCacheClusters={int(_get(props, 'numCacheClusters', 1))}: Multi-AZ failover "
               "needs a primary and at least one replica (elasticache.numCacheClusters >= 2).", None)


MULTI_AZ = _policy(
    "elasticache-multi-az-in-production",
    "Production ElastiCache runs Multi-AZ with automatic failover and at least one replica.",
    _validate_multi_az,
    schema=PolicyConfigSchema(properties={"productionStacks": {
        "type": "array", "items": {"type": "string"}, "default": list(PRODUCTION_STACKS),
        "description": "Values of the stack/environment tag that mark production"}}),
)


def _validate_snapshots(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPLICATION_GROUP:
        return
    props = args.props
    minimum = int(_cfg(args, "minRetentionDays", MIN_SNAPSHOT_RETENTION_DAYS))
    retention = int(_get(props, "snapshotRetentionLimit", 0))
    if retention < minimum:
        report(f"{args.name}: snapshotRetentionLimit={retention} day(s), below the required {minimum} "
               "(backup.retentionDays).", None)
    if not _get(props, "finalSnapshotIdentifier", ""):
        report(f"{args.name}: no finalSnapshotIdentifier: deleting the group (or replacing it) would lose "
               "every counter and block list with no way back. Set backup.finalSnapshot: true.", None)


SNAPSHOTS = _policy(
    "elasticache-snapshots",
    "ElastiCache keeps automatic snapshots for at least the configured days and takes a final snapshot.",
    _validate_snapshots,
    schema=PolicyConfigSchema(properties={"minRetentionDays": {
        "type": "integer", "minimum": 1, "maximum": 35, "default": MIN_SNAPSHOT_RETENTION_DAYS,
        "description": "Minimum snapshotRetentionLimit in days"}}),
)


# ---------------------------------------------------------------------------------------------
# 3. local containers
# ---------------------------------------------------------------------------------------------
def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address.strip().lower() == "localhost"
    return ip.is_loopback


def _validate_loopback(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    props = args.props
    allowed = {str(a) for a in _cfg(args, "allowedAddresses", [])}
    if str(_get(props, "networkMode", "")).lower() == "host" and "host" not in allowed:
        report(f"{args.name}: networkMode host shares the host's interfaces, so every port the container "
               "listens on is reachable from the network. Use a private Docker network and published ports.", None)
    for port in _get(props, "ports", []):
        # Docker publishes on every interface when no address is given.
        ip = str(_get(port, "ip", "0.0.0.0"))  # noqa: S104 - the default we flag
        if not _is_loopback(ip) and ip not in allowed:
            report(f"{args.name}: port {_get(port, 'internal')} is published on {ip}:{_get(port, 'external', '?')}"
                   f", reachable from the network. Publish on 127.0.0.1 (local.bindAddress) or add {ip} to "
                   "this policy's allowedAddresses if that is intended.", None)


LOOPBACK_PORTS = _policy(
    "containers-publish-on-loopback",
    "Local containers publish ports on loopback only, unless the address is explicitly allowed.",
    _validate_loopback,
    schema=PolicyConfigSchema(properties={"allowedAddresses": {
        "type": "array", "items": {"type": "string"}, "default": [],
        "description": "Non-loopback addresses (or 'host' for networkMode host) explicitly allowed"}}),
)

SECRET_NAME = re.compile(r"(PASS(WORD|WD)?|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?|AUTH)$|"
                         r"(PASSWORD|SECRET|TOKEN)_", re.IGNORECASE)
# Flags whose next argument is a credential (redis-server, redis-cli, redis_exporter, sentinel).
SECRET_FLAGS = frozenset({"--requirepass", "--masterauth", "--pass", "--password", "-a", "--auth",
                          "-redis.password", "--redis.password", "--user-password", "--sentinel-auth-pass",
                          "--auth-pass", "--tls-key-file-pass", "--tls-client-key-file-pass"})
URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]*:([^@\s/]+)@", re.IGNORECASE)
# `>secret` in an ACL rule; `>/dev/null` and `>&2` are shell redirects, not passwords.
INLINE_ACL_PASSWORD = re.compile(r"(?:^|\s)>(?![/&\s])\S+")
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def secret_findings(env: Sequence[str], argv: Sequence[str], allowed_env: Iterable[str] = ()) -> list[str]:
    """What in a container's env (`NAME=value`) and argv would show a credential to `docker inspect`."""
    allowed = {a.upper() for a in allowed_env}
    findings: list[str] = []
    for entry in env:
        name, sep, value = str(entry).partition("=")
        if not sep or not value or name.upper() in allowed:
            continue
        # NAME_FILE / NAME__FILE point at a mounted file: the path is not the secret.
        if name.upper().endswith("_FILE"):
            continue
        if SECRET_NAME.search(name):
            findings.append(f"env {name} holds a value")
        elif URL_WITH_PASSWORD.search(value):
            findings.append(f"env {name} holds a URL with a password")
        elif PEM_PRIVATE_KEY.search(value):
            findings.append(f"env {name} holds a private key")
    args = [str(a) for a in argv]
    for i, arg in enumerate(args):
        flag, eq, inline = arg.partition("=")
        if flag.lower() in SECRET_FLAGS and (inline if eq else (i + 1 < len(args))):
            findings.append(f"argument {flag} is followed by a credential")
        elif URL_WITH_PASSWORD.search(arg):
            findings.append(f"argument {i} is a URL with a password")
        elif PEM_PRIVATE_KEY.search(arg):
            findings.append(f"argument {i} holds a private key")
    joined = " ".join(args)
    if re.search(r"(^|\s)(--)?user\s", joined) and INLINE_ACL_PASSWORD.search(joined):
        findings.append("the command defines an ACL user with an inline >password")
    return findings


def _validate_no_plaintext_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    props = args.props
    argv = [*_get(props, "entrypoints", []), *_get(props, "command", [])]
    hc = _get(props, "healthcheck", {})
    if isinstance(hc, Mapping):
        argv += list(_get(hc, "tests", []))
    for finding in secret_findings(_get(props, "envs", []), argv, _cfg(args, "allowedEnvNames", [])):
        report(f"{args.name}: {finding}. Container env and command line are readable by anyone who can run "
               "`docker inspect` or read /proc/<pid>/environ and cmdline. Upload the secret as a file (uploads) "
               "and point at it: aclfile for redis-server, REDIS_PASSWORD_FILE for redis_exporter, "
               "GF_SECURITY_ADMIN_PASSWORD__FILE for Grafana.", None)


NO_PLAINTEXT_SECRETS = _policy(
    "containers-no-plaintext-secrets",
    "No secret-looking value in a container's env, command, entrypoint or healthcheck.",
    _validate_no_plaintext_secrets,
    schema=PolicyConfigSchema(properties={"allowedEnvNames": {
        "type": "array", "items": {"type": "string"}, "default": [],
        "description": "Env names reviewed and accepted despite a secret-looking name"}}),
)

FLOATING_TAGS = frozenset({"latest", "stable", "edge", "main", "master", "nightly", "alpine", "bookworm",
                           "lts", "current", "rolling", "dev"})
IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_pin_problem(image: str) -> str | None:
    """None when `image` names exactly one build (a digest, an image id or an exact version tag)."""
    image = image.strip()
    if IMAGE_ID.match(image) or DIGEST.search(image):
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() in FLOATING_TAGS:
        return f"uses the floating tag :{tag}"
    if not re.search(r"\d+\.\d+", tag):
        return f"tag :{tag} is not an exact version (expected e.g. :7.2.5 or a @sha256 digest)"
    return None


def _validate_pinned_images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == CONTAINER:
        image = str(_get(args.props, "image", ""))
    elif args.resource_type == REMOTE_IMAGE:
        image = str(_get(args.props, "name", ""))
    else:
        return
    problem = image_pin_problem(image)
    if problem:
        report(f"{args.name}: image {image!r} {problem}: the next pull may run a different Redis/exporter than "
               "the one reviewed. Pin an exact version or digest (local.images).", None)


PINNED_IMAGES = _policy(
    "container-images-pinned",
    "Container images are pinned to an exact version tag or digest.",
    _validate_pinned_images,
)



def _validate_version_floors(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The same floors as the stack settings (infra/versions.py), on what the resources declare."""
    props = args.props
    if args.resource_type in (CONTAINER, REMOTE_IMAGE):
        image = str(_get(props, "image" if args.resource_type == CONTAINER else "name", "")).strip()
        ref = versions.split_image(image)
        # An image id or a bare digest names no version (container-images-pinned judges those);
        # images of other components are not ours to judge.
        if IMAGE_ID.match(image) or ref.tag is None or ref.name not in versions.REPOSITORY_NAMES:
            return
        problem = versions.image_problem(image)
        if problem:
            report(f"{args.name}: image {image!r}: {problem}. Raise local.images to a patched release.", None)
    elif args.resource_type in (REPLICATION_GROUP, CACHE_CLUSTER):
        engine = str(_get(props, "engine", "redis")).lower()
        version = str(_get(props, "engineVersion", "")).strip()
        if version and engine in ("redis", "valkey"):
            problem = versions.engine_problem(engine, version)
            if problem:
                report(f"{args.name}: engine {engine} {version}: {problem} (infra/versions.py).", None)


VERSION_FLOORS = _policy(
    "versions-at-or-above-floor",
    "Images and ElastiCache engine versions are on a reviewed line, at or above its floor (CVE ids in "
    "infra/versions.py).",
    _validate_version_floors,
    remediation="Use the default pins of infra/versions.py or a newer patch release of the same line.",
)


# ---------------------------------------------------------------------------------------------
# 4. eviction policy (advisory)
# ---------------------------------------------------------------------------------------------
# What each policy does to a rate-limit key: every counter carries a TTL, so volatile-* evicts
# them as readily as allkeys-*; only noeviction fails loudly (writes error, the limiter's
# failure policy decides) instead of silently resetting a client's window.
EVICTING = frozenset({"allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu",
                      "volatile-random", "volatile-ttl"})
ELASTICACHE_DEFAULT_POLICY = "volatile-lru"
CONF_DIRECTIVE = re.compile(r"^\s*maxmemory-policy\s+(\S+)", re.IGNORECASE | re.MULTILINE)


def eviction_policies_in_text(text: str) -> list[str]:
    return [m.lower().strip("\"'") for m in CONF_DIRECTIVE.findall(text)]


def _eviction_sources(args: ResourceValidationArgs) -> list[tuple[str, str]]:
    """(where, policy) pairs declared by the resource."""
    props = args.props
    found: list[tuple[str, str]] = []
    if args.resource_type == PARAMETER_GROUP:
        params = {str(_get(p, "name", "")).lower(): str(_get(p, "value", "")) for p in _get(props, "parameters", [])}
        family = str(_get(props, "family", ""))
        if "maxmemory-policy" in params:
            found.append(("parameter maxmemory-policy", params["maxmemory-policy"].lower()))
        elif family.startswith(("redis", "valkey")):
            found.append((f"{family} default (no maxmemory-policy parameter)", ELASTICACHE_DEFAULT_POLICY))
    elif args.resource_type == CONTAINER:
        for upload in _get(props, "uploads", []):
            for policy in eviction_policies_in_text(str(_get(upload, "content", ""))):
                found.append((f"uploaded {_get(upload, 'file', 'file')}", policy))
        argv = [str(a) for a in _get(props, "command", [])]
        for i, arg in enumerate(argv):
            if arg == "--maxmemory-policy" and i + 1 < len(argv):
                found.append(("command --maxmemory-policy", argv[i + 1].lower()))
            elif arg.startswith("--maxmemory-policy="):
                found.append(("command --maxmemory-policy", arg.split("=", 1)[1].lower()))
    elif args.resource_type in (INSTANCE, LAUNCH_TEMPLATE):
        for key, script in user_data_scripts(args.resource_type, props):
            for policy in eviction_policies_in_text(script):
                found.append((key, policy))
    return found


def user_data_scripts(resource_type: str, props: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(input, script) of each user data an instance or template carries, decoded: an instance's
    `userData` is the text, its `userDataBase64` (the Sentinel hosts') and a launch template's
    `userData` are base64, possibly of gzip (infra/user_data.py). A value that does not decode is
    read as it is."""
    encoded = ("userDataBase64",) if resource_type == INSTANCE else ("userData",)
    found: list[tuple[str, str]] = []
    for key in ("userData", "userDataBase64"):
        value = _get(props, key, None)
        if not isinstance(value, str) or not value:
            continue
        if key in encoded:
            with contextlib.suppress(ValueError):
                value = unpack_user_data(value)
        found.append((key, value))
    return found


def _validate_eviction_policy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, policy in _eviction_sources(args):
        if policy in EVICTING:
            report(f"{args.name}: {where} is {policy}. Under memory pressure Redis will silently evict "
                   "rate-limit counters (they all carry a TTL), resetting clients' windows and over-admitting "
                   f"without any error. Prefer noeviction (writes fail loudly and the limiter's failure "
                   f"policy decides) or size memory so it never evicts, and keep {EVICTIONS_ALARM} wired.", None)


EVICTION_POLICY = _policy(
    "rate-limit-eviction-policy",
    "Advisory: an evicting maxmemory-policy can silently drop rate-limit counters.",
    _validate_eviction_policy,
    level=EnforcementLevel.ADVISORY,
    remediation="Set redis.maxmemory-policy: noeviction, or accept the risk and watch the evictions alarm.",
)


POLICIES: list[ResourceValidationPolicy] = [
    NO_WORLD_INGRESS,
    TRANSIT_ENCRYPTION,
    AT_REST_ENCRYPTION,
    AUTH_REQUIRED,
    RBAC_NOT_TOKEN,
    ACCESS_STRING_ALLOWED,
    MULTI_AZ,
    SNAPSHOTS,
    LOOPBACK_PORTS,
    NO_PLAINTEXT_SECRETS,
    PINNED_IMAGES,
    VERSION_FLOORS,
    EVICTION_POLICY,
]
