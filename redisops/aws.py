"""ElastiCache operations with boto3: endpoint discovery, manual snapshots, credential rotation
(AUTH token or RBAC user password, with an overlap so no client is refused), KMS key-policy
check, alarm status.

Every function takes the boto3 client(s) it uses, so tests hand in moto or Stubber clients and
nothing talks to AWS at import time. `register(app)` adds them to a typer CLI as `aws ...`.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import string
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redisops.errors import OperationError, UsageError

if TYPE_CHECKING:
    from infra.keypolicy import KeyUse

# ElastiCache AUTH tokens: 16-128 printable characters; the only specials AWS allows.
TOKEN_SPECIALS = "!&#$^<>-"
TOKEN_ALPHABET = string.ascii_letters + string.digits + TOKEN_SPECIALS
SNAPSHOT_MARK = "-manual-"
_STAMP = "%Y%m%d-%H%M%S"


@dataclass(frozen=True)
class Endpoint:
    replication_group_id: str
    host: str
    port: int
    reader_host: str | None
    cluster_mode: bool
    tls: bool
    auth_token_enabled: bool
    user_group_ids: tuple[str, ...]
    status: str
    members: tuple[str, ...]
    replicas: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"


def _group(client: Any, replication_group_id: str) -> dict[str, Any]:
    try:
        groups = client.describe_replication_groups(ReplicationGroupId=replication_group_id)["ReplicationGroups"]
    except client.exceptions.ReplicationGroupNotFoundFault:
        raise UsageError(f"replication group {replication_group_id!r} not found in this account/region") from None
    return dict(groups[0])


def discover_endpoint(client: Any, replication_group_id: str) -> Endpoint:
    """Where clients connect: the configuration endpoint in cluster mode, else the primary."""
    rg = _group(client, replication_group_id)
    cluster = bool(rg.get("ClusterEnabled")) or rg.get("ClusterMode") == "enabled"
    node_groups = rg.get("NodeGroups") or []
    reader = None
    if cluster:
        ep = rg.get("ConfigurationEndpoint")
    else:
        ep = node_groups[0].get("PrimaryEndpoint") if node_groups else None
        reader = (node_groups[0].get("ReaderEndpoint") or {}).get("Address") if node_groups else None
    if not ep:
        raise OperationError(f"replication group {replication_group_id} has no endpoint yet "
                             f"(status {rg.get('Status')})")
    replicas = tuple(m["CacheClusterId"] for g in node_groups for m in g.get("NodeGroupMembers") or []
                     if m.get("CurrentRole") == "replica")
    return Endpoint(
        replication_group_id=replication_group_id, host=ep["Address"], port=int(ep["Port"]), reader_host=reader,
        cluster_mode=cluster, tls=bool(rg.get("TransitEncryptionEnabled")),
        auth_token_enabled=bool(rg.get("AuthTokenEnabled")), user_group_ids=tuple(rg.get("UserGroupIds") or ()),
        status=str(rg.get("Status")), members=tuple(rg.get("MemberClusters") or ()), replicas=replicas)


def wait_group_available(client: Any, replication_group_id: str, *, timeout_s: float = 1800, poll_s: float = 15,
                         sleep: Callable[[float], None] = time.sleep) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = _group(client, replication_group_id).get("Status")
        if status == "available":
            return
        if time.monotonic() >= deadline:
            raise OperationError(f"replication group {replication_group_id} still {status!r} after {timeout_s:.0f}s")
        sleep(poll_s)


# ---------------------------------------------------------------------------------------------
# snapshots
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotInfo:
    name: str
    status: str
    source: str
    created: dt.datetime | None


def snapshot_name(replication_group_id: str, now: dt.datetime) -> str:
    return f"{replication_group_id}{SNAPSHOT_MARK}{now.astimezone(dt.UTC).strftime(_STAMP)}"


def create_snapshot(client: Any, replication_group_id: str, *, now: dt.datetime | None = None,
                    name: str | None = None) -> str:
    """Start a manual snapshot and return its name.

    Cluster mode: of the whole group. Otherwise: of a replica, so the fork and its memory
    spike never hit the primary that answers the limiter (AWS's own recommendation)."""
    ep = discover_endpoint(client, replication_group_id)
    name = name or snapshot_name(replication_group_id, now or dt.datetime.now(dt.UTC))
    if ep.cluster_mode:
        client.create_snapshot(ReplicationGroupId=replication_group_id, SnapshotName=name)
    else:
        source = ep.replicas[0] if ep.replicas else (ep.members[0] if ep.members else None)
        if source is None:
            raise OperationError(f"replication group {replication_group_id} has no member to snapshot")
        client.create_snapshot(CacheClusterId=source, SnapshotName=name)
    return name


def wait_snapshot_available(client: Any, name: str, *, timeout_s: float = 3600, poll_s: float = 15,
                            sleep: Callable[[float], None] = time.sleep) -> SnapshotInfo:
    deadline = time.monotonic() + timeout_s
    while True:
        snap = client.describe_snapshots(SnapshotName=name)["Snapshots"][0]
        info = _snapshot_info(snap)
        if info.status == "available":
            return info
        if info.status in ("failed", "deleting", "deleted"):
            raise OperationError(f"snapshot {name} ended in status {info.status}")
        if time.monotonic() >= deadline:
            raise OperationError(f"snapshot {name} still {info.status!r} after {timeout_s:.0f}s")
        sleep(poll_s)


def _snapshot_info(snap: dict[str, Any]) -> SnapshotInfo:
    times = [n["SnapshotCreateTime"] for n in snap.get("NodeSnapshots") or [] if n.get("SnapshotCreateTime")]
    created: dt.datetime | None = min(times) if times else None
    name = snap["SnapshotName"]
    if created is None and SNAPSHOT_MARK in name:
        try:
            created = dt.datetime.strptime(name.rsplit(SNAPSHOT_MARK, 1)[1], _STAMP).replace(tzinfo=dt.UTC)
        except ValueError:
            created = None
    return SnapshotInfo(name=name, status=str(snap.get("SnapshotStatus")), source=str(snap.get("SnapshotSource")),
                        created=created)


def list_snapshots(client: Any, replication_group_id: str, *, source: str | None = None) -> list[SnapshotInfo]:
    """Snapshots of the group (source "manual", "automated" or None for both), oldest first."""
    kwargs: dict[str, Any] = {"ReplicationGroupId": replication_group_id}
    if source:
        kwargs["SnapshotSource"] = source
    found: list[SnapshotInfo] = []
    marker: str | None = None
    while True:
        page = client.describe_snapshots(**kwargs, **({"Marker": marker} if marker else {}))
        found.extend(_snapshot_info(s) for s in page.get("Snapshots", []))
        marker = page.get("Marker")
        if not marker:
            break
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return sorted(found, key=lambda s: (s.created or epoch, s.name))


def prune_snapshots(client: Any, replication_group_id: str, *, retention_days: int, now: dt.datetime | None = None,
                    keep_min: int = 1, dry_run: bool = False) -> list[str]:
    """Delete this tool's manual snapshots older than `retention_days`, never the newest `keep_min`
    and never one whose age is unknown. Automated snapshots are ElastiCache's to expire."""
    if retention_days < 1:
        raise UsageError(f"--retention-days {retention_days}: expected at least 1")
    now = now or dt.datetime.now(dt.UTC)
    ours = [s for s in list_snapshots(client, replication_group_id, source="manual")
            if s.name.startswith(f"{replication_group_id}{SNAPSHOT_MARK}") and s.status == "available"]
    protected = {s.name for s in ours[-keep_min:]} if keep_min > 0 else set()
    cutoff = now - dt.timedelta(days=retention_days)
    doomed = [s.name for s in ours if s.created is not None and s.created < cutoff and s.name not in protected]
    if not dry_run:
        for name in doomed:
            client.delete_snapshot(SnapshotName=name)
    return doomed


# ---------------------------------------------------------------------------------------------
# AUTH token rotation
# ---------------------------------------------------------------------------------------------
def generate_token(length: int = 64, specials: str = TOKEN_SPECIALS) -> str:
    """A token in ElastiCache's alphabet with every character class present (`specials=""`:
    letters and digits only, what the Sentinel hosts' generated passwords are)."""
    if not 32 <= length <= 128:
        raise UsageError(f"--length {length}: expected 32..128")
    alphabet = string.ascii_letters + string.digits + specials
    classes = tuple(c for c in (string.ascii_lowercase, string.ascii_uppercase, string.digits, specials) if c)
    while True:
        token = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in token) for cls in classes):
            return token


Verifier = Callable[[Endpoint, str, str], None]  # (endpoint, username, token); raises when refused

# What ModifyReplicationGroup answers a strategy it does not allow now ("SET - allowed only after
# ROTATE", AuthTokenUpdateStrategy in the API reference; botocore elasticache 2015-02-02 error shapes).
TOKEN_STRATEGY_REFUSALS = frozenset({"InvalidParameterValue", "InvalidParameterCombination"})


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def is_auth_refusal(exc: BaseException) -> bool:
    """Redis refused the credential itself (redis-py AuthenticationError: WRONGPASS / invalid
    username-password pair), as opposed to a network or TLS failure."""
    import redis

    return isinstance(exc, redis.exceptions.AuthenticationError) or (
        isinstance(exc, redis.exceptions.ResponseError) and str(exc).upper().startswith(("WRONGPASS", "NOAUTH")))


def verify_with_redis(endpoint: Endpoint, username: str, token: str, *, ca_cert: str | None = None,
                      timeout_s: float = 5.0) -> None:
    """Connect over TLS, AUTH, PING: what the application will do with the new token."""
    import redis

    client = redis.Redis(host=endpoint.host, port=endpoint.port, username=username, password=token,
                         ssl=endpoint.tls, ssl_ca_certs=ca_cert, socket_timeout=timeout_s,
                         socket_connect_timeout=timeout_s)
    try:
        if client.ping() is not True:
            raise OperationError("PING with the new token did not answer PONG")
    finally:
        client.close()


@dataclass
class RotationResult:
    replication_group_id: str
    secret_id: str
    dry_run: bool
    steps: list[str]
    mode: str = "token"
    username: str | None = None


@dataclass(frozen=True)
class StoredCredential:
    """A credential secret as the stacks write it: JSON {username, password[, userId]}
    (ElastiCache), or the bare password (`bare`: the Sentinel hosts' secrets, which their TLS
    renewal timer hands to redis-cli as it is)."""

    secret_id: str
    raw: str
    document: dict[str, Any]
    bare: bool = False

    @property
    def username(self) -> str:
        return str(self.document.get("username") or "default")

    @property
    def password(self) -> str:
        return str(self.document["password"])

    @property
    def user_id(self) -> str | None:
        value = self.document.get("userId")
        return str(value) if value else None

    def with_password(self, password: str) -> str:
        """The secret string holding `password` instead, in the same format."""
        return password if self.bare else json.dumps({**self.document, "password": password})


def parse_credential(secret_id: str, text: str) -> StoredCredential:
    """Either format the stacks write (StoredCredential)."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("password"), str):
        return StoredCredential(secret_id, text, document)
    if not text or text != text.strip():
        raise UsageError(f"secret {secret_id}: expected JSON {{username, password}} or a bare password")
    return StoredCredential(secret_id, text, {"password": text}, bare=True)


def read_credential(secretsmanager: Any, secret_id: str) -> StoredCredential:
    current = secretsmanager.get_secret_value(SecretId=secret_id)
    try:
        document = json.loads(current["SecretString"])
    except (KeyError, json.JSONDecodeError):
        raise UsageError(f"secret {secret_id}: expected a JSON object with username and password") from None
    if not isinstance(document, dict) or "password" not in document:
        raise UsageError(f"secret {secret_id}: expected a JSON object with username and password")
    return StoredCredential(secret_id, current["SecretString"], document)


def store_credential(secretsmanager: Any, credential: StoredCredential, password: str) -> None:
    """A new AWSCURRENT version (the previous one becomes AWSPREVIOUS)."""
    secretsmanager.put_secret_value(SecretId=credential.secret_id, SecretString=credential.with_password(password))


def restore_credential(secretsmanager: Any, credential: StoredCredential) -> None:
    secretsmanager.put_secret_value(SecretId=credential.secret_id, SecretString=credential.raw)


# -- RBAC users: two passwords at once (ModifyUser AuthenticationMode.Passwords, "up to two") --
def _wait_active(status: Callable[[], str], what: str, timeout_s: float, poll_s: float,
                 sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        now = status()
        if now == "active":
            return
        if time.monotonic() >= deadline:
            raise OperationError(f"ElastiCache {what} still {now!r} after {timeout_s:.0f}s")
        sleep(poll_s)


def wait_user_active(client: Any, user_id: str, *, timeout_s: float = 900, poll_s: float = 10,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    def status() -> str:
        users = client.describe_users(UserId=user_id)["Users"]
        return str(users[0].get("Status")) if users else "missing"
    _wait_active(status, f"user {user_id}", timeout_s, poll_s, sleep)


def wait_user_group_active(client: Any, group_id: str, *, timeout_s: float = 900, poll_s: float = 10,
                           sleep: Callable[[float], None] = time.sleep) -> None:
    def status() -> str:
        groups = client.describe_user_groups(UserGroupId=group_id)["UserGroups"]
        return str(groups[0].get("Status")) if groups else "missing"
    _wait_active(status, f"user group {group_id}", timeout_s, poll_s, sleep)


# ModifyUser on a user that is still `modifying` (a deploy's ModifyUser or ModifyUserGroup, an
# earlier attempt) fails with InvalidUserStateFault (botocore elasticache service model, ModifyUser
# errors). InvalidUserGroupStateFault is listed there only for the user-group and replication-group
# calls (botocore 1.44.8); it is retried too, as harmless insurance. The user and its groups are
# waited for and the call retried within the step, until USER_STATE_RETRY_S has passed.
_USER_STATE_FAULTS = ("InvalidUserStateFault", "InvalidUserGroupStateFault")
USER_STATE_RETRY_S = 300.0


def set_user_passwords(client: Any, user_id: str, passwords: list[str], *,
                       wait: Callable[[Any, str], None] = wait_user_active,
                       group_ids: Sequence[str] = (),
                       wait_group: Callable[[Any, str], None] = wait_user_group_active,
                       retry_s: float = USER_STATE_RETRY_S) -> None:
    """Replace the user's passwords (one or two) once the user and its user groups are `active`,
    and wait until the change is live."""
    if not 1 <= len(passwords) <= 2:
        raise ValueError("an ElastiCache user holds one or two passwords")
    deadline = time.monotonic() + retry_s
    while True:
        wait(client, user_id)
        for group_id in group_ids:
            wait_group(client, group_id)
        try:
            client.modify_user(UserId=user_id, AuthenticationMode={"Type": "password", "Passwords": passwords})
            break
        except Exception as exc:  # botocore's ClientError; botocore is not imported by this module
            if error_code(exc) not in _USER_STATE_FAULTS or time.monotonic() >= deadline:
                raise
    wait(client, user_id)


def user_of_group(client: Any, ep: Endpoint, credential: StoredCredential) -> str:
    """The user id of the secret's user, checked to be in the replication group's user group."""
    group_users: set[str] = set()
    for group_id in ep.user_group_ids:
        for group in client.describe_user_groups(UserGroupId=group_id)["UserGroups"]:
            group_users.update(group.get("UserIds") or [])
    user_id = credential.user_id
    if user_id is None:
        users = client.describe_users()["Users"]
        matches = [u["UserId"] for u in users if u.get("UserName") == credential.username and u["UserId"] in group_users]
        if len(matches) != 1:
            raise UsageError(f"secret {credential.secret_id}: no single user named {credential.username!r} in "
                             f"{ep.replication_group_id}'s user group(s); add \"userId\" to the secret")
        user_id = matches[0]
    if user_id not in group_users:
        raise UsageError(f"user {user_id} (secret {credential.secret_id}) is not in {ep.replication_group_id}'s user "
                         f"group(s) {', '.join(ep.user_group_ids)}")
    return user_id


# -- AUTH token: ROTATE keeps old and new valid, SET keeps only the new one ------------------
def set_auth_token(client: Any, replication_group_id: str, token: str, strategy: str, *,
                   wait: Callable[[Any, str], None] = wait_group_available) -> None:
    client.modify_replication_group(ReplicationGroupId=replication_group_id, AuthToken=token,
                                    AuthTokenUpdateStrategy=strategy, ApplyImmediately=True)
    wait(client, replication_group_id)


def rotate_credential(
    elasticache: Any,
    secretsmanager: Any,
    replication_group_id: str,
    secret_id: str,
    *,
    verify: Verifier,
    generate: Callable[[], str] = generate_token,
    dry_run: bool = False,
    wait: Callable[[Any, str], None] = wait_group_available,
    wait_user: Callable[[Any, str], None] = wait_user_active,
) -> RotationResult:
    """Rotate the credential in `secret_id` with no moment where a client holding either the old
    or the new value is refused, whatever the group's auth mode:

    1. overlap: AUTH token ROTATE, or the RBAC user gets [old, new] (ElastiCache users take two);
    2. the secret's new AWSCURRENT version holds the new value (the old one is AWSPREVIOUS);
    3. a real TLS connection authenticates with the new value;
    4. finish: AUTH token SET, or the user keeps only [new].

    If 3 fails the secret is put back and the old value stays valid (the overlap is undone for
    a user, the ROTATE stays harmless for a token), so nothing is down; the error says what to
    do. The overlap (begin_overlap / end_overlap) is the same code the rotation Lambda runs in
    setSecret / finishSecret (redisops/rotation.py)."""
    ep = discover_endpoint(elasticache, replication_group_id)
    if not ep.tls:
        raise UsageError(f"replication group {replication_group_id}: rotation requires transit encryption")
    if ep.status != "available":
        raise OperationError(f"replication group {replication_group_id} is {ep.status!r}; rotate when available")
    credential = read_credential(secretsmanager, secret_id)
    user_id = credential_target(elasticache, ep, credential)
    return _rotate(elasticache, secretsmanager, ep, credential, user_id, verify=verify, generate=generate,
                   dry_run=dry_run, wait=wait, wait_user=wait_user)


# -- the overlap, shared by `redisops rotate-token` and the rotation Lambda (redisops.rotation) --
def begin_overlap(elasticache: Any, ep: Endpoint, user_id: str | None, old: str, new: str, *,
                  wait: Callable[[Any, str], None] = wait_group_available,
                  wait_user: Callable[[Any, str], None] = wait_user_active) -> None:
    """Old and new both valid: the RBAC user gets [old, new], or the AUTH token is ROTATEd.
    Sending it again with the same values leaves the same state (a retried step is harmless)."""
    if user_id is not None:
        set_user_passwords(elasticache, user_id, [old, new], wait=wait_user, group_ids=ep.user_group_ids)
    else:
        set_auth_token(elasticache, ep.replication_group_id, new, "ROTATE", wait=wait)


def end_overlap(elasticache: Any, ep: Endpoint, user_id: str | None, new: str, *,
                wait: Callable[[Any, str], None] = wait_group_available,
                wait_user: Callable[[Any, str], None] = wait_user_active) -> None:
    """Only the new value valid: the user keeps [new], or the token is SET. Idempotent."""
    if user_id is not None:
        set_user_passwords(elasticache, user_id, [new], wait=wait_user, group_ids=ep.user_group_ids)
    else:
        set_auth_token(elasticache, ep.replication_group_id, new, "SET", wait=wait)


def credential_target(elasticache: Any, ep: Endpoint, credential: StoredCredential) -> str | None:
    """The ElastiCache user the credential is (RBAC), or None for the group's AUTH token."""
    if ep.user_group_ids:
        return user_of_group(elasticache, ep, credential)
    if not ep.auth_token_enabled:
        raise UsageError(f"replication group {ep.replication_group_id} has neither an AUTH token nor RBAC user groups")
    return None


def _plan(ep: Endpoint, credential: StoredCredential, user_id: str | None) -> list[str]:
    rg, name, secret = ep.replication_group_id, credential.username, credential.secret_id
    stored = f"put the new value into secret {secret} (AWSCURRENT; the old becomes AWSPREVIOUS)"
    check = f"verify: TLS connection to {ep.host}:{ep.port} as {name} with the new value"
    if user_id is not None:
        return [f"modify user {user_id} ({name}): passwords [old, new] (both valid); wait until active", stored,
                check, f"modify user {user_id}: passwords [new] (the old one stops working); wait until active"]
    return [f"modify {rg}: new AUTH token, strategy ROTATE (old and new valid)", f"wait until {rg} is available",
            stored, check, f"modify {rg}: strategy SET (only the new token valid)", f"wait until {rg} is available"]


def _rotate(elasticache: Any, secretsmanager: Any, ep: Endpoint, credential: StoredCredential,
            user_id: str | None, *, verify: Verifier, generate: Callable[[], str], dry_run: bool,
            wait: Callable[[Any, str], None], wait_user: Callable[[Any, str], None]) -> RotationResult:
    """One rotation, either mode: begin_overlap, store, verify, end_overlap."""
    mode = "rbac" if user_id is not None else "token"
    steps = _plan(ep, credential, user_id)
    if dry_run:
        return RotationResult(ep.replication_group_id, credential.secret_id, True, steps, mode, credential.username)
    new = generate()
    begin_overlap(elasticache, ep, user_id, credential.password, new, wait=wait, wait_user=wait_user)
    store_credential(secretsmanager, credential, new)
    try:
        verify(ep, credential.username, new)
    except Exception as exc:
        restore_credential(secretsmanager, credential)
        if user_id is not None:
            set_user_passwords(elasticache, user_id, [credential.password], wait=wait_user,
                               group_ids=ep.user_group_ids)
            undone = f"which user {user_id} still accepts (the new one was removed again)"
        else:
            undone = "which stays valid (SET was not sent)"
        raise OperationError(
            f"the new {'password' if user_id else 'token'} was refused ({type(exc).__name__}); secret "
            f"{credential.secret_id} is back to the old value, {undone}. Rerun the rotation once the cause is "
            "fixed.") from exc
    end_overlap(elasticache, ep, user_id, new, wait=wait, wait_user=wait_user)
    return RotationResult(ep.replication_group_id, credential.secret_id, False, steps, mode, credential.username)


def rotate_auth_token(elasticache: Any, secretsmanager: Any, replication_group_id: str, secret_id: str, *,
                      verify: Verifier, generate: Callable[[], str] = generate_token, dry_run: bool = False,
                      wait: Callable[[Any, str], None] = wait_group_available) -> RotationResult:
    """AUTH token rotation only (refuses RBAC groups); `rotate_credential` handles both."""
    ep = discover_endpoint(elasticache, replication_group_id)
    if not ep.auth_token_enabled:
        raise UsageError(f"replication group {replication_group_id} does not use an AUTH token"
                         + (" (it uses RBAC user groups: rotate the user's password)" if ep.user_group_ids else ""))
    return rotate_credential(elasticache, secretsmanager, replication_group_id, secret_id, verify=verify,
                             generate=generate, dry_run=dry_run, wait=wait)


# ---------------------------------------------------------------------------------------------
# KMS key policy of a given key (elasticache.kmsKeyArn)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyPolicyReport:
    key_arn: str
    missing: list[str]
    required_statements: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.missing


def check_key_policy(kms: Any, key_arn: str, *, alarm_topic_arns: Iterable[str] = (),
                     log_group_names: Iterable[str] = ()) -> KeyPolicyReport:
    """Does the key's policy let CloudWatch alarms publish into the encrypted topics and CloudWatch
    Logs encrypt the log groups (infra.keypolicy, the same rules the stacks' own keys are built
    from)? Account, partition and region come from the key ARN."""
    from infra.keypolicy import KeyUse, log_group_arn, missing, statements

    parts = key_arn.split(":")
    if len(parts) < 6 or parts[2] != "kms" or not parts[5].startswith("key/"):
        raise UsageError(f"--kms-key-arn {key_arn!r}: expected a key ARN arn:aws:kms:<region>:<account>:key/<id> "
                         "(not an alias)")
    partition, region, account_id = parts[1], parts[3], parts[4]
    use = KeyUse(account_id=account_id, partition=partition, region=region,
                 alarm_topic_arns=tuple(sorted(alarm_topic_arns)),
                 log_group_arns=tuple(sorted(log_group_arn(partition, region, account_id, n) for n in log_group_names)))
    policy = kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"]
    return KeyPolicyReport(key_arn, _elsewhere(use) + missing(policy, use), statements(use))


def _elsewhere(use: KeyUse) -> list[str]:
    """A key in another account or region than the stack's resources (the alarm topic's ARN names
    the stack's): its account-root statement delegates to the key's own account, not the stack's,
    and the deploy and drift roles use only keys of the stack's account and region
    (docs/bootstrap/production-policy.json and prod-read-policy.json grant
    `arn:aws:kms:${REGION}:${ACCOUNT_ID}:key/*`), so the first `pulumi up` would fail at the secrets
    and the functions' environments however the key policy reads."""
    out = []
    for arn in use.alarm_topic_arns:
        parts = arn.split(":")
        if len(parts) > 4 and (parts[1], parts[3], parts[4]) != (use.partition, use.region, use.account_id):
            out.append(f"the key is in account {use.account_id}, region {use.region}; the stack ({arn}) is in account "
                       f"{parts[4]}, region {parts[3]}: the deploy and drift roles use keys of the stack's account "
                       "and region only (docs/bootstrap/production-policy.json, prod-read-policy.json); "
                       "give a key of that account and region")
    return out


# ---------------------------------------------------------------------------------------------
# alarms
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlarmStatus:
    name: str
    state: str
    reason: str
    updated: str
    metric: str
    member: str | None


def alarm_status(cloudwatch: Any, *, names: Iterable[str] = (), prefix: str | None = None) -> list[AlarmStatus]:
    """State of this stack's alarms (the stack output `alarmNames`, or a name prefix), ALARM first."""
    names = list(names)
    if not names and not prefix:
        raise UsageError("give the alarm names (stack output alarmNames) or --prefix")
    raw: list[dict[str, Any]] = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    if names:
        for i in range(0, len(names), 100):  # API limit per call
            for page in paginator.paginate(AlarmNames=names[i:i + 100], AlarmTypes=["MetricAlarm"]):
                raw.extend(page.get("MetricAlarms", []))
    else:
        for page in paginator.paginate(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm"]):
            raw.extend(page.get("MetricAlarms", []))
    order = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}
    out = [AlarmStatus(
        name=a["AlarmName"], state=a.get("StateValue", "INSUFFICIENT_DATA"), reason=a.get("StateReason", ""),
        updated=str(a.get("StateUpdatedTimestamp", "")), metric=a.get("MetricName", ""),
        member=next((d["Value"] for d in a.get("Dimensions", []) if d["Name"] == "CacheClusterId"), None))
        for a in raw]
    missing = sorted(set(names) - {a.name for a in out})
    out += [AlarmStatus(n, "MISSING", "no such alarm (deleted, or another account/region)", "", "", None)
            for n in missing]
    return sorted(out, key=lambda a: (order.get(a.state, -1), a.name))
