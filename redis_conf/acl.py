"""The ACL model: who may do what on a self-managed Redis (container or Sentinel host).

Four users, each with only what its job needs (see docs/decisions.md, "ACL model"):

* ``default`` - the application. Password-only clients (the guide's REDIS_URL +
  REDIS_PASSWORD, ElastiCache's AUTH token) authenticate as ``default``, so the app user
  must be it. Everything except ``@dangerous``, ``@scripting`` and the guide's disabled
  commands; INFO is given back so health/smoke checks can read memory policy and persistence,
  FCALL / FCALL_RO so it can call the admin-loaded ``ratelimit`` library.
* ``monitor`` - redis_exporter: read-only server introspection, no key access.
* ``replica`` - replicas (``masteruser``) and nothing else: PSYNC/REPLCONF/PING.
* ``admin`` - operators and ``redisops backup/restore``: everything.
* ``sentinel`` - Sentinel's own link to every instance (redis.io "Sentinel and ACL").

Passwords are written as SHA-256 digests (``#<hex>``), so the ACL file holds no plaintext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

# The guide's `rename-command X ""` list. ACL denies them per user instead of renaming them
# away for everyone, because admin (CONFIG GET/SET) and Sentinel (CONFIG REWRITE) still need
# some of them. DEBUG is additionally disabled server-wide (enable-debug-command no).
GUIDE_DISABLED_COMMANDS: tuple[str, ...] = ("FLUSHDB", "FLUSHALL", "CONFIG", "DEBUG")

# Destructive or revealing commands the application user must never run; the smoke test
# probes each of them (MULTI / cmd / DISCARD) and expects NOPERM or "unknown command".
APP_FORBIDDEN_COMMANDS: tuple[str, ...] = ("FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG", "KEYS")

# Every Lua-engine CVE of the versions table (infra/versions.py) needs a user allowed to send Lua
# source, and EVAL, EVALSHA, SCRIPT and FUNCTION are all in @scripting (not @dangerous). The
# application may only call what an admin loaded: FCALL / FCALL_RO of the `ratelimit` library.
APP_SCRIPTING_RULES = "-@scripting +fcall +fcall_ro"
# The scripting commands the application user must be refused; the smoke test probes each
# (MULTI / cmd / DISCARD) with the argument list below, its least damaging form.
APP_FORBIDDEN_SCRIPTING: dict[str, tuple[str, ...]] = {
    "EVAL": ("EVAL", "return 1", "0"),
    "EVALSHA": ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),  # sha1("return 1")
    "SCRIPT LOAD": ("SCRIPT", "LOAD", "return 1"),
    "FUNCTION LOAD": ("FUNCTION", "LOAD",
                      "#!lua name=smoke_probe\nredis.register_function('smoke_probe', function() return 1 end)"),
    "FUNCTION DELETE": ("FUNCTION", "DELETE", "smoke_probe"),
    "FUNCTION FLUSH": ("FUNCTION", "FLUSH"),
    "FUNCTION RESTORE": ("FUNCTION", "RESTORE", "smoke-probe-not-a-payload"),
    # The rest of @scripting: an operator ACL that denies EVAL one by one but forgets the
    # read-only variants (Redis 7.0+) or the management subcommands must fail smoke too.
    "EVAL_RO": ("EVAL_RO", "return 1", "0"),
    "EVALSHA_RO": ("EVALSHA_RO", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
    "SCRIPT FLUSH": ("SCRIPT", "FLUSH"),
    "SCRIPT KILL": ("SCRIPT", "KILL"),
    "FUNCTION KILL": ("FUNCTION", "KILL"),
    "FUNCTION DUMP": ("FUNCTION", "DUMP"),
    "FUNCTION LIST": ("FUNCTION", "LIST"),
    "FUNCTION STATS": ("FUNCTION", "STATS"),
}

# No pub/sub at all: the limiter needs none, and a user that may PUBLISH to `__sentinel__:hello`
# can forge a Sentinel hello. sentinelProcessHelloMessage (redis/redis src/sentinel.c) takes a
# hello whose master_config_epoch is higher than its own and re-points the master to the address
# in it (sentinelResetMasterAndChangeAddress): any app credential could redirect every client.
# `resetchannels` (no `&` pattern) refuses every channel on a self-managed Redis, and `-@pubsub`
# refuses the commands themselves, which also holds where channel defaults differ (Redis 6.2's
# acl-pubsub-default allchannels) and is what the ElastiCache access string carries.
APP_PUBSUB_RULES = "resetchannels -@pubsub"
# Channel probes the smoke test queues (MULTI / cmd / DISCARD) as the application user.
APP_FORBIDDEN_PUBSUB: dict[str, tuple[str, ...]] = {
    "PUBLISH __sentinel__:hello": ("PUBLISH", "__sentinel__:hello", "x"),
}

APP_RULES = ("~* +@all -@dangerous " + APP_PUBSUB_RULES + " " + APP_SCRIPTING_RULES + " +info "
             + " ".join(f"-{c.lower()}" for c in GUIDE_DISABLED_COMMANDS))

# Exactly the commands redis_exporter sends with the flags this stack passes, derived from the
# pinned exporter's source (redis_conf/exporter.py, oliver006/redis_exporter v1.88.0) and a
# superset of what Debian's 1.45 sends (tests/integration/test_monitoring_live.py: ACL LOG stays
# empty). No @category: +@connection would also grant CLIENT KILL / CLIENT PAUSE / CLIENT LIST.
# No key pattern: the exporter only counts limiter keys with SCAN, which reads no key. PING is
# not sent by the exporter (-ping-on-connect is off) but lets operators probe with this user.
# No CONFIG GET: Redis answers it with `masterauth` (the replica user's password) in clear, and
# the exporter runs with `-config-command -` (redis_conf/exporter.py).
MONITOR_RULES = (
    "resetkeys resetchannels -@all +ping +info +client|setname +latency|latest"
    " +latency|histogram +slowlog|get +slowlog|len +cluster|info +select +scan"
)

REPLICA_RULES = "resetkeys resetchannels -@all +psync +replconf +ping"

SENTINEL_RULES = (
    "resetkeys allchannels -@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite"
    " +role +publish +info +client|setname +client|kill +script|kill"
)

ADMIN_RULES = "~* &* +@all"


@dataclass(frozen=True)
class AclUser:
    name: str
    rules: str
    password_setting: str  # which credential (key of the passwords mapping) this user authenticates with


USERS: tuple[AclUser, ...] = (
    AclUser("default", APP_RULES, "app"),
    AclUser("monitor", MONITOR_RULES, "monitor"),
    AclUser("replica", REPLICA_RULES, "replica"),
    AclUser("sentinel", SENTINEL_RULES, "sentinel"),
    AclUser("admin", ADMIN_RULES, "admin"),
)
CREDENTIALS: tuple[str, ...] = tuple(u.password_setting for u in USERS)


def password_digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl_file(passwords: Mapping[str, str]) -> str:
    """The aclfile body. `passwords` maps each of CREDENTIALS to its plaintext secret."""
    missing = [c for c in CREDENTIALS if not passwords.get(c)]
    if missing:
        raise ValueError(f"render_acl_file: missing passwords for {', '.join(missing)}")
    lines = [
        f"user {u.name} reset on #{password_digest(passwords[u.password_setting])} {u.rules}"
        for u in USERS
    ]
    return "\n".join(lines) + "\n"
