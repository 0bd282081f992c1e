"""The rotation Lambda of the AWS targets: Secrets Manager's four-step protocol for every credential
the stacks keep in Secrets Manager (infra/components/rotation.py deploys it, one per stack).

Secrets Manager calls `handler` once per step with {SecretId, ClientRequestToken, Step}; the
new value lives in the version `ClientRequestToken` under the label AWSPENDING until finishSecret
moves AWSCURRENT onto it (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotate-secrets_lambda-functions.html,
and the generic template aws-samples/aws-secrets-manager-rotation-lambdas
SecretsManagerRotationTemplate/lambda_function.py). When a step fails, Secrets Manager retries
the whole rotation with the same token, so every step here is idempotent and converges from any
partial state:

* createSecret - a new value as the AWSPENDING version `token`, unless that version exists.
* setSecret    - the target accepts old AND new (the overlap): ElastiCache RBAC user
  [old, new], AUTH token ROTATE (skipped when the group already takes the pending token: a
  retry after the ROTATE landed), or on the Sentinel hosts `ACL SETUSER <user>
  >new` on every Redis node and every Sentinel. Adding what is there already changes nothing.
* testSecret   - a real connection authenticates with the pending value (TLS, AUTH, PING).
* finishSecret - AWSCURRENT moves to `token` (the old value becomes AWSPREVIOUS). What happens to
  the old value is the setting `rotation.overlap` (config `overlap`):
  - `interval` (default): nothing more. The target keeps [AWSPREVIOUS, AWSCURRENT] until the NEXT
    rotation's setSecret replaces them with [current, pending], so a client that read the secret
    (or got REDIS_PASSWORD at deploy time) has one whole rotation interval to read it again.
    Secrets Manager's own single-user strategy keeps clients on the old value until they re-read
    (https://docs.aws.amazon.com/secretsmanager/latest/userguide/rotation-strategy.html).
    Exception: an ElastiCache AUTH token is still SET here, because what a ROTATE does to a group
    that already holds two tokens is not documented (docs/decisions.md).
  - `finish`: the old value is dropped right after the move: the user keeps [new], the token is
    SET, or `ACL SETUSER <user> >new !<digest of every other password>`. Run again after the move
    (a crash in between), it still drops the old value.
  setSecret sets the target to exactly [current, pending] in both modes (ModifyUser passwords, or
  `ACL SETUSER <user> >current >pending !<every other digest>`), so no target ever holds more than
  two passwords and a retried setSecret converges to the same state.

Admin lockout: on the Sentinel hosts the function works as the ACL `admin` user, whose own secret
it also rotates. It authenticates with whichever version of the admin secret the node accepts
(AWSCURRENT, then AWSPENDING, then AWSPREVIOUS), and the old admin password is only dropped in
finishSecret, after the new one was verified on every node: a crash at any point leaves a
password the next attempt can log in with.

Nothing secret is logged or returned: log lines name the secret ARN, the version and the step.
The function's environment (`REDISSTACK_ROTATION`, JSON) holds addresses and ARNs only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from redisops import aws as ops
from redisops.errors import OperationError, UsageError

CONFIG_VARIABLE = "REDISSTACK_ROTATION"
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
TARGETS = ("elasticache", "sentinel")
# rotation.overlap (infra/settings.py): when the previous password stops working (module docstring).
OVERLAP_MODES = ("interval", "finish")
# Sentinel hosts: which ACL user of the Redis nodes and of the Sentinels each rotated credential
# is (redis_conf/acl.py USERS: `default` is the app; redis_conf/sentinel.py: the Sentinels'
# `default` user authenticates discovery with the app's password, `admin` is the operators').
SENTINEL_USERS: Mapping[str, str] = {"app": "default", "admin": "admin"}
# The Sentinel hosts' generated passwords are letters and digits (sentinel_hosts._password);
# ElastiCache's take its AUTH-token specials (redisops.aws.TOKEN_SPECIALS).
SENTINEL_PASSWORD_LENGTH = 40
# Left for Secrets Manager to record the failure when an ElastiCache wait runs out.
WAIT_MARGIN_S = 30.0

log = logging.getLogger("redisops.rotation")


class Backend(Protocol):
    """What one target does in the four steps (the versions are handled by `run_step`)."""

    def generate(self) -> str: ...

    def set(self, credential: str, current: ops.StoredCredential, pending: ops.StoredCredential) -> None: ...

    def test(self, credential: str, pending: ops.StoredCredential) -> None: ...

    def finish(self, credential: str, pending: ops.StoredCredential, *, keep_previous: bool) -> bool:
        """Returns whether the previous value was dropped."""
        ...


# ---------------------------------------------------------------------------------------------
# configuration (the function's environment)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RotationConfig:
    """What the function may rotate and where: secret ARN -> credential name (app, admin,
    monitor), and the target's addresses. No secret in it."""

    target: str
    secrets: Mapping[str, str]
    replication_group_id: str | None = None
    nodes: tuple[str, ...] = ()  # Sentinel hosts: "ip:port" of the Redis nodes ...
    sentinels: tuple[str, ...] = ()  # ... and of the Sentinels
    tls: bool = True
    ca_cert_pem: str | None = None
    admin_secret_arn: str | None = None
    overlap: str = "interval"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"rotation target {self.target!r}: expected one of {', '.join(TARGETS)}")
        if self.overlap not in OVERLAP_MODES:
            raise UsageError(f"rotation overlap {self.overlap!r}: expected one of {', '.join(OVERLAP_MODES)}")
        if not self.secrets:
            raise UsageError("rotation: no secrets to rotate")
        if self.target == "elasticache" and not self.replication_group_id:
            raise UsageError("rotation target elasticache: replicationGroupId is required")
        if self.target == "sentinel":
            unknown = sorted(set(self.secrets.values()) - set(SENTINEL_USERS))
            if unknown:
                raise UsageError(f"rotation target sentinel: credentials {unknown} cannot be rotated; expected "
                                 f"{', '.join(SENTINEL_USERS)}")
            if not self.nodes or not self.admin_secret_arn:
                raise UsageError("rotation target sentinel: nodes and adminSecretArn are required")

    def to_json(self) -> str:
        doc: dict[str, Any] = {"target": self.target, "secrets": dict(sorted(self.secrets.items())), "tls": self.tls,
                               "overlap": self.overlap}
        for key, value in (("replicationGroupId", self.replication_group_id), ("nodes", list(self.nodes)),
                           ("sentinels", list(self.sentinels)), ("caCertPem", self.ca_cert_pem),
                           ("adminSecretArn", self.admin_secret_arn)):
            if value:
                doc[key] = value
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RotationConfig:
        doc = json.loads(text)
        return cls(target=doc["target"], secrets=dict(doc["secrets"]), replication_group_id=doc.get("replicationGroupId"),
                   nodes=tuple(doc.get("nodes", ())), sentinels=tuple(doc.get("sentinels", ())),
                   tls=bool(doc.get("tls", True)), ca_cert_pem=doc.get("caCertPem"),
                   admin_secret_arn=doc.get("adminSecretArn"), overlap=doc.get("overlap", "interval"))

    def credential_of(self, secret_id: str) -> str:
        if secret_id not in self.secrets:
            raise UsageError(f"secret {secret_id} is not one this function rotates ({', '.join(sorted(self.secrets))})")
        return self.secrets[secret_id]


# ---------------------------------------------------------------------------------------------
# the protocol: versions and staging labels
# ---------------------------------------------------------------------------------------------
def _version(sm: Any, secret_id: str, **which: str) -> ops.StoredCredential:
    got = sm.get_secret_value(SecretId=secret_id, **which)
    return ops.parse_credential(secret_id, got["SecretString"])


def _stages(sm: Any, secret_id: str, token: str) -> tuple[list[str], str | None]:
    """The labels on version `token` and the id of the AWSCURRENT version; refuses a secret
    without rotation or a token Secrets Manager did not stage (the template's checks)."""
    meta = sm.describe_secret(SecretId=secret_id)
    if not meta.get("RotationEnabled"):
        raise UsageError(f"secret {secret_id} is not enabled for rotation")
    versions: dict[str, list[str]] = meta.get("VersionIdsToStages") or {}
    if token not in versions:
        raise UsageError(f"secret {secret_id} has no version {token} to rotate to")
    current = next((v for v, labels in versions.items() if CURRENT in labels), None)
    return list(versions[token]), current


def run_step(sm: Any, backend: Backend, config: RotationConfig, secret_id: str, token: str, step: str) -> str:
    """One step of the protocol for one secret; returns what it did (for the log, no secret)."""
    if step not in STEPS:
        raise UsageError(f"Step {step!r}: expected one of {', '.join(STEPS)}")
    credential = config.credential_of(secret_id)
    labels, current_id = _stages(sm, secret_id, token)
    if CURRENT in labels and step != "finishSecret":
        return f"{step}: version {token} is already AWSCURRENT; nothing to do"
    if CURRENT not in labels and PENDING not in labels:
        raise UsageError(f"secret {secret_id}: version {token} is not AWSPENDING; it cannot be rotated to")
    if step == "createSecret":
        return _create(sm, backend, secret_id, token)
    pending = _version(sm, secret_id, VersionId=token)
    if step == "setSecret":
        current = _version(sm, secret_id, VersionStage=CURRENT)
        backend.set(credential, current, pending)
        return f"setSecret: {credential} accepts the current and the pending value"
    if step == "testSecret":
        backend.test(credential, pending)
        return f"testSecret: {credential} authenticates with the pending value"
    moved = "already AWSCURRENT"
    if current_id != token:
        sm.update_secret_version_stage(SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token,
                                       RemoveFromVersionId=current_id)
        moved = f"AWSCURRENT moved from {current_id}"
    dropped = backend.finish(credential, pending, keep_previous=config.overlap == "interval")
    if dropped:
        return f"finishSecret: version {token} {moved}; the old value of {credential} no longer works"
    return (f"finishSecret: version {token} {moved}; the old value of {credential} (AWSPREVIOUS) keeps working "
            "until the next rotation's setSecret")


def _create(sm: Any, backend: Backend, secret_id: str, token: str) -> str:
    try:
        sm.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage=PENDING)
        return f"createSecret: version {token} exists already"
    except sm.exceptions.ResourceNotFoundException:
        pass
    current = _version(sm, secret_id, VersionStage=CURRENT)
    sm.put_secret_value(SecretId=secret_id, ClientRequestToken=token, SecretString=current.with_password(backend.generate()),
                        VersionStages=[PENDING])
    return f"createSecret: version {token} staged as AWSPENDING"


# ---------------------------------------------------------------------------------------------
# ElastiCache: RBAC users or the AUTH token, through redisops.aws (what `rotate-token` runs)
# ---------------------------------------------------------------------------------------------
@dataclass
class ElastiCacheBackend:
    elasticache: Any
    replication_group_id: str
    verify: ops.Verifier = field(default=ops.verify_with_redis)
    wait: Callable[[Any, str], None] = field(default=ops.wait_group_available)
    wait_user: Callable[[Any, str], None] = field(default=ops.wait_user_active)

    def generate(self) -> str:
        return ops.generate_token()

    def _where(self, credential: ops.StoredCredential) -> tuple[ops.Endpoint, str | None]:
        ep = ops.discover_endpoint(self.elasticache, self.replication_group_id)
        if not ep.tls:
            raise UsageError(f"replication group {self.replication_group_id}: rotation requires transit encryption")
        return ep, ops.credential_target(self.elasticache, ep, credential)

    def set(self, credential: str, current: ops.StoredCredential, pending: ops.StoredCredential) -> None:
        ep, user_id = self._where(pending)
        if user_id is None:
            group = ops._group(self.elasticache, self.replication_group_id)
            if group.get("Status") != "available":
                # A ROTATE of an earlier attempt may still be applying: let it finish first.
                self.wait(self.elasticache, self.replication_group_id)
            # A retried setSecret sends no second ROTATE: the group already taking the pending token
            # is the proof the first one landed (exact, unlike comparing AuthTokenLastModifiedDate with
            # the version's CreatedDate, which any other token change after createSecret also passes).
            if self._accepts(ep, pending):
                return
        ops.begin_overlap(self.elasticache, ep, user_id, current.password, pending.password, wait=self.wait,
                          wait_user=self.wait_user)

    def _accepts(self, ep: ops.Endpoint, credential: ops.StoredCredential) -> bool:
        """True when the server takes `credential`; False only when Redis itself refused it
        (WRONGPASS / invalid password). Anything else (network, TLS) raises: the step fails and is
        retried, and no ROTATE or SET is ever sent on a guess."""
        try:
            self.verify(ep, credential.username, credential.password)
        except Exception as exc:
            if ops.is_auth_refusal(exc):
                return False
            raise
        return True

    def test(self, credential: str, pending: ops.StoredCredential) -> None:
        ep, _ = self._where(pending)
        self.verify(ep, pending.username, pending.password)

    def finish(self, credential: str, pending: ops.StoredCredential, *, keep_previous: bool) -> bool:
        ep, user_id = self._where(pending)
        if keep_previous and user_id is not None:
            return False  # the user holds [previous, current] since setSecret
        try:
            ops.end_overlap(self.elasticache, ep, user_id, pending.password, wait=self.wait, wait_user=self.wait_user)
        except Exception as exc:  # botocore's ClientError (redisops.aws imports no botocore)
            # A retried finishSecret after its SET landed: ElastiCache allows SET "only after ROTATE"
            # (ModifyReplicationGroup AuthTokenUpdateStrategy), so the repeat is refused. Refused SET +
            # the group taking the pending token = the pending token is its only one: done.
            if (user_id is None and ops.error_code(exc) in ops.TOKEN_STRATEGY_REFUSALS
                    and self._accepts(ep, pending)):
                return True
            raise
        return True


# ---------------------------------------------------------------------------------------------
# Sentinel hosts: ACL SETUSER on every Redis node and Sentinel, as the admin user
# ---------------------------------------------------------------------------------------------
Connect = Callable[[str, int, str, str], Any]  # (host, port, username, password) -> redis.Redis, authenticated


def password_digest(password: str) -> str:
    """How Redis stores an ACL password (and what ACL GETUSER lists): SHA-256 hex."""
    return hashlib.sha256(password.encode()).hexdigest()


def redis_connect(*, tls: bool, ca_cert_pem: str | None, timeout_s: float = 5.0) -> Connect:
    def connect(host: str, port: int, username: str, password: str) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py counts a refused AUTH as a ConnectionError and retries it with
        # backoff, and a refused admin password here only means "try the next version".
        client = redis.Redis(host=host, port=port, username=username, password=password, ssl=tls,
                             ssl_ca_data=ca_cert_pem if tls else None, socket_timeout=timeout_s,
                             socket_connect_timeout=timeout_s, decode_responses=True, retry=Retry(NoBackoff(), 0))
        client.ping()
        return client
    return connect


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@dataclass
class SentinelBackend:
    sm: Any
    admin_secret_arn: str
    nodes: Sequence[str]
    sentinels: Sequence[str]
    connect: Connect

    def generate(self) -> str:
        return ops.generate_token(SENTINEL_PASSWORD_LENGTH, specials="")

    def _everywhere(self) -> list[tuple[str, bool]]:
        return [(a, False) for a in self.nodes] + [(a, True) for a in self.sentinels]

    def _admin_passwords(self) -> list[str]:
        found: list[str] = []
        for stage in (CURRENT, PENDING, PREVIOUS):
            try:
                cred = _version(self.sm, self.admin_secret_arn, VersionStage=stage)
            except self.sm.exceptions.ResourceNotFoundException:
                continue
            if cred.password not in found:
                found.append(cred.password)
        return found

    def _as_admin(self, address: str) -> Any:
        host, port = _address(address)
        refused: list[str] = []
        for i, password in enumerate(self._admin_passwords()):
            try:
                return self.connect(host, port, SENTINEL_USERS["admin"], password)
            except Exception as exc:  # the next version of the admin secret may be the one it holds
                refused.append(f"version {i + 1}: {type(exc).__name__}")
        raise OperationError(f"{address}: no version of the admin secret is accepted ({'; '.join(refused)})")

    @staticmethod
    def _persist(client: Any, sentinel: bool) -> None:
        """Make the change survive a restart: the node's aclfile, the Sentinel's config file."""
        if sentinel:
            client.execute_command("SENTINEL", "FLUSHCONFIG")
        else:
            client.execute_command("ACL", "SAVE")

    def set(self, credential: str, current: ops.StoredCredential, pending: ops.StoredCredential) -> None:
        self._keep_only(credential, [current.password, pending.password])

    def _keep_only(self, credential: str, passwords: list[str]) -> None:
        """The user holds exactly `passwords` on every node and Sentinel. One command each: the
        kept ones are (still) there before any other goes; sent again it changes nothing."""
        user = SENTINEL_USERS[credential]
        keep = {password_digest(p) for p in passwords}
        for address, sentinel in self._everywhere():
            client = self._as_admin(address)
            try:
                held = client.acl_getuser(user)["passwords"]
                stale = [f"!{h}" for h in held if h not in keep]
                client.execute_command("ACL", "SETUSER", user, *(f">{p}" for p in passwords), *stale)
                self._persist(client, sentinel)
            finally:
                client.close()

    def test(self, credential: str, pending: ops.StoredCredential) -> None:
        user = SENTINEL_USERS[credential]
        for address, _ in self._everywhere():
            host, port = _address(address)
            try:
                self.connect(host, port, user, pending.password).close()
            except Exception as exc:
                raise OperationError(f"{address}: {user} with the pending password was refused "
                                     f"({type(exc).__name__})") from None

    def finish(self, credential: str, pending: ops.StoredCredential, *, keep_previous: bool) -> bool:
        if keep_previous:
            return False  # every node holds [previous, current] since setSecret
        self._keep_only(credential, [pending.password])
        return True


# ---------------------------------------------------------------------------------------------
# the Lambda handler
# ---------------------------------------------------------------------------------------------
def backend_for(config: RotationConfig, sm: Any, *, elasticache: Any = None,
                wait_s: float | None = None) -> Backend:
    if config.target == "elasticache":
        assert config.replication_group_id is not None
        kwargs: dict[str, Any] = {}
        if wait_s is not None:
            budget = max(wait_s, 1.0)
            kwargs = {"wait": lambda c, rg: ops.wait_group_available(c, rg, timeout_s=budget),
                      "wait_user": lambda c, uid: ops.wait_user_active(c, uid, timeout_s=budget)}
        return ElastiCacheBackend(elasticache, config.replication_group_id, **kwargs)
    assert config.admin_secret_arn is not None
    return SentinelBackend(sm, config.admin_secret_arn, config.nodes, config.sentinels,
                           redis_connect(tls=config.tls, ca_cert_pem=config.ca_cert_pem))


def handler(event: Mapping[str, Any], context: Any) -> dict[str, str]:
    """Secrets Manager's entry point: {SecretId, ClientRequestToken, Step}."""
    import boto3  # in every Lambda Python runtime; not packaged

    started = time.monotonic()
    secret_id, token, step = str(event["SecretId"]), str(event["ClientRequestToken"]), str(event["Step"])
    config = RotationConfig.from_json(os.environ[CONFIG_VARIABLE])
    sm = boto3.client("secretsmanager")
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else None
    backend = backend_for(config, sm, elasticache=boto3.client("elasticache") if config.target == "elasticache" else None,
                          wait_s=remaining - WAIT_MARGIN_S if remaining is not None else None)
    log.setLevel(logging.INFO)
    try:
        done = run_step(sm, backend, config, secret_id, token, step)
    except Exception as exc:
        # Only this module's own messages (ARNs, users, addresses); another library's could quote a
        # parameter value (botocore's validation errors do), so of those only the type is logged.
        said = str(exc) if isinstance(exc, (UsageError, OperationError)) else "(message withheld)"
        log.error("rotation %s %s of %s failed: %s: %s", step, token, secret_id, type(exc).__name__, said)
        # Not a bare `raise`: the Lambda runtime logs the message and traceback of what leaves the
        # handler (errorMessage / stackTrace), which would print the withheld message after all.
        # `from None` drops the chained original as well.
        raise RuntimeError(f"{step} failed: {type(exc).__name__}") from None
    log.info("rotation %s of %s: %s (%.1fs)", step, secret_id, done, time.monotonic() - started)
    return {"step": step, "result": done}
