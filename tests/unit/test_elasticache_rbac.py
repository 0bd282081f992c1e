"""ElastiCache RBAC access strings: derived from the ACL model minus ElastiCache's restricted
commands, for every parameter family the stacks allow.

The rule (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html): an access
string may not name a forbidden or renamed command, may not carry passwords and may not use
`reset`; CreateUser fails otherwise. The restricted commands are listed on
https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ClientConfig.RestrictedCommands.html.
tests/integration/test_elasticache_acl_live.py proves on a real redis-server that a derived user
may run exactly what the model's user may, for every command ElastiCache keeps.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from infra.components.elasticache import identity_id
from redis_conf import acl
from redis_conf.elasticache import (
    DISABLED_DEFAULT_ACCESS_STRING,
    ELASTICACHE_CREDENTIALS,
    FAMILIES,
    RESTRICTED_COMMANDS,
    RESTRICTED_COMMANDS_SOURCE,
    AccessStringError,
    elasticache_access_string,
    elasticache_users,
    mapping_report,
    named_commands,
)
from redis_conf.schema import load_base

# The page's list, read 2026-12 (the same for Redis OSS and Valkey node-based clusters).
DOCUMENTED = {"bgrewriteaof", "bgsave", "config", "debug", "migrate", "replicaof", "save", "slaveof", "shutdown",
              "sync"}


def test_named_commands_reads_commands_not_categories() -> None:
    assert named_commands("on ~* &* +@all -@dangerous +info -CONFIG +client|setname %R~rl:*") == {
        "info", "config", "client"}


def test_the_restricted_table_is_the_documented_list_with_its_source() -> None:
    assert RESTRICTED_COMMANDS_SOURCE.startswith("https://docs.aws.amazon.com/AmazonElastiCache/")
    assert set(RESTRICTED_COMMANDS) == set(FAMILIES) == {"redis7", "valkey7", "valkey8"}
    for family in FAMILIES:
        assert RESTRICTED_COMMANDS[family] == DOCUMENTED


def test_functions_are_not_restricted() -> None:
    # ElastiCache (Redis OSS) 7 "adds support for Redis OSS Functions"; Valkey 7.2+ carries the
    # Redis OSS 7.2 feature set (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/engine-versions.html).
    # The app user's lockdown (`-@scripting +fcall +fcall_ro`) must reach ElastiCache unchanged.
    for family in FAMILIES:
        assert not {"fcall", "fcall_ro", "function"} & RESTRICTED_COMMANDS[family]
        assert elasticache_access_string("~* -@scripting +fcall +fcall_ro", family) == "on ~* -@scripting +fcall +fcall_ro"


@pytest.mark.parametrize("family", FAMILIES)
def test_the_app_access_string_grants_no_pub_sub(family: str) -> None:
    # A forged `PUBLISH __sentinel__:hello` re-points a Sentinel master (redis/redis src/sentinel.c
    # sentinelProcessHelloMessage). `-@pubsub` is an ordinary ACL category rule, which RBAC access
    # strings take as in Redis OSS ACL; only passwords, `reset` and unavailable commands are refused
    # (https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/Clusters.RBAC.html, read 2026-12).
    # It also holds on Redis OSS 6.2, whose acl-pubsub-default is allchannels.
    app = next(u for u in elasticache_users(family) if u.credential == "app")  # type: ignore[arg-type]
    tokens = app.access_string.split()
    assert "-@pubsub" in tokens and not any(t.startswith("&") for t in tokens) and "allchannels" not in tokens
    assert tokens.index("-@pubsub") > tokens.index("+@all")


@pytest.mark.parametrize("family", FAMILIES)
def test_no_derived_access_string_names_a_restricted_command(family: str) -> None:
    users = elasticache_users(family)  # type: ignore[arg-type]
    assert [u.credential for u in users] == list(ELASTICACHE_CREDENTIALS) == ["app", "monitor", "admin"]
    for user in users:
        assert user.access_string.split()[0] == "on"
        assert not named_commands(user.access_string) & RESTRICTED_COMMANDS[family], user
        tokens = user.access_string.split()
        assert not {"reset", "resetpass", "nopass", "resetkeys", "resetchannels"} & {t.lower() for t in tokens}
        assert not [t for t in tokens if t[:1] in ">#<!"], "passwords are set through the API, never here"
    assert not named_commands(DISABLED_DEFAULT_ACCESS_STRING) & RESTRICTED_COMMANDS[family]
    assert DISABLED_DEFAULT_ACCESS_STRING.split()[0] == "off"


@pytest.mark.parametrize("family", FAMILIES)
def test_derived_strings_are_the_model_rules_minus_only_what_elasticache_refuses(family: str) -> None:
    by_credential = {u.password_setting: u for u in acl.USERS}
    for user in elasticache_users(family):  # type: ignore[arg-type]
        model = by_credential[user.credential].rules.split()
        kept = [t for t in model
                if t.lower() not in ("resetkeys", "resetchannels")
                and not named_commands(t) & RESTRICTED_COMMANDS[family]]
        assert user.access_string.split() == ["on", *kept]
        assert user.user_name == user.credential


def test_the_derivation_follows_changes_to_the_acl_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lockdown and exporter work change the model's rules; the ElastiCache strings follow.
    changed = tuple(dataclasses.replace(u, rules=u.rules + " -@scripting +fcall +fcall_ro +config|get")
                    if u.password_setting == "app" else u for u in acl.USERS)
    monkeypatch.setattr("redis_conf.elasticache.USERS", changed)
    app = next(u for u in elasticache_users("redis7") if u.credential == "app")
    assert app.access_string.endswith("-@scripting +fcall +fcall_ro")


def test_bad_rules_are_refused_instead_of_silently_changed() -> None:
    with pytest.raises(AccessStringError, match="selectors"):
        elasticache_access_string("~* +@all (~x +get)", "redis7")
    with pytest.raises(AccessStringError, match="on/off"):
        elasticache_access_string("on ~* +@all", "redis7")


def test_password_and_reset_rules_are_left_to_the_api() -> None:
    assert elasticache_access_string("reset resetkeys resetchannels >secret #abc nopass ~* +get", "valkey8") == \
        "on ~* +get"


def test_the_redis_conf_report_shows_the_derived_app_access_string() -> None:
    entries = [e for e in mapping_report(load_base(), "redis7") if e.directive == "rename-command"]
    app = next(u for u in elasticache_users("redis7") if u.credential == "app")
    assert entries and all(e.equivalent.endswith(app.access_string) for e in entries)
    assert all("-config" not in e.equivalent.split() for e in entries)


def test_rbac_ids_are_unique_per_stack_identity_and_fit_the_api() -> None:
    # User and user group ids share one namespace per account and region; botocore's elasticache
    # model: pattern [a-zA-Z][a-zA-Z0-9\-]*, stored lowercase. "-<credential>" must still fit in 40.
    pattern = re.compile(r"[a-z][a-z0-9-]*")
    # Stacks sharing the first 30 characters (the old truncated base id was equal for both).
    a = identity_id("redisstack", "production-eu-west-1-primary")
    b = identity_id("redisstack", "production-eu-west-1-secondary")
    assert a != b and len(a) <= 30 and len(b) <= 30
    # Spellings that sanitize alike ("." and "-", upper and lower case) stay apart too.
    assert len({identity_id("redisstack", s) for s in ("prod.eu", "prod-eu", "Prod-eu")}) == 3
    # An identity that fits and is spelled exactly keeps its id (no RBAC user replacement).
    assert identity_id("redisstack", "prod") == "redisstack-prod"
    assert identity_id("redisstack", "production-eu-west-1-primary") == a  # stable across runs
    for ident in (a, b, identity_id("1team", "x" * 80)):
        assert pattern.fullmatch(ident) and "--" not in ident and not ident.endswith("-"), ident
        for credential in ("app", "monitor", "admin", "default", "users"):
            assert len(f"{ident}-{credential}") <= 40
