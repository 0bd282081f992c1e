"""redis_conf: the source file, typed values, overrides and the rendered redis.conf / ACL file."""

from __future__ import annotations

import hashlib

import pytest

from infra.errors import SettingsErrors
from redis_conf import load_base, render_acl_file, render_redis_conf
from redis_conf.acl import APP_RULES, CREDENTIALS, GUIDE_DISABLED_COMMANDS
from redis_conf.render import ReplicaOf, TlsFiles
from redis_conf.schema import parse_conf_text, parse_memory, render_memory

PASSWORDS = {c: f"{c}-password-0123456789" for c in CREDENTIALS}


@pytest.mark.parametrize(("text", "expected"), [
    ("800mb", 800 * 1024**2), ("800MB", 800 * 1024**2), ("1gb", 1024**3), ("1g", 10**9), ("1k", 1000),
    ("1kb", 1024), ("512", 512), (0, 0), ("100 mb", 100 * 1024**2),
])
def test_memory_sizes_follow_redis_units(text: object, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["800xb", "-1mb", "mb", "1.5gb", "", True, "1tb"])
def test_bad_memory_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="memory size"):
        parse_memory(bad)


def test_render_memory_round_trips() -> None:
    for n in (800 * 1024**2, 1024**3, 1000, 12345):
        assert parse_memory(render_memory(n)) == n


def test_source_is_the_guides_config() -> None:
    conf = load_base()
    assert conf["maxmemory"] == 800 * 1024**2
    assert conf["maxmemory-policy"] == "allkeys-lru"
    assert conf["maxmemory-samples"] == 5
    assert conf["appendonly"] is True
    assert conf["appendfsync"] == "everysec"
    assert conf["save"] == ((900, 1), (300, 10), (60, 10000))
    assert conf.disabled_commands == GUIDE_DISABLED_COMMANDS


def test_unknown_directive_in_source_is_an_error() -> None:
    with pytest.raises(ValueError, match="no schema entry"):
        parse_conf_text("maxmemory 1mb\nio-threads 4\n")
    with pytest.raises(ValueError, match="rename-command"):
        parse_conf_text('rename-command FLUSHALL "NUKE"\n')


def test_overrides_are_validated_together() -> None:
    with pytest.raises(SettingsErrors) as info:
        load_base().with_overrides({"maxmemory": "lots", "timeout": 3, "appendonly": "maybe"})
    assert {e.key for e in info.value.errors} == {"redis.maxmemory", "redis.timeout", "redis.appendonly"}


def test_rendered_conf_plain() -> None:
    text = render_redis_conf(load_base(), bind="0.0.0.0", port=6379, data_dir="/data", aclfile="/etc/users.acl")
    lines = text.splitlines()
    assert "port 6379" in lines and "tls-port 6379" not in text
    assert "maxmemory 800mb" in lines and "save 900 1 300 10 60 10000" in lines
    assert "appendonly yes" in lines and "appendfsync everysec" in lines
    assert "aclfile /etc/users.acl" in lines
    assert "rename-command" not in text, "disabled commands are ACL denials, not renames"
    assert "requirepass" not in text and "password" not in text


def test_rendered_conf_tls_closes_plain_port() -> None:
    tls = TlsFiles("/tls/redis.crt", "/tls/redis.key", "/tls/ca.crt")
    lines = render_redis_conf(load_base(), bind="0.0.0.0", port=6379, tls=tls).splitlines()
    assert "port 0" in lines and "tls-port 6379" in lines
    assert "tls-replication yes" in lines and "tls-ca-cert-file /tls/ca.crt" in lines


def test_replica_conf_carries_replication_user() -> None:
    text = render_redis_conf(load_base(), bind="0.0.0.0",
                             replica_of=ReplicaOf("primary", 6379, "replica", "s3cret-s3cret-s3cret"))
    assert "replicaof primary 6379" in text and "masteruser replica" in text
    assert 'masterauth "s3cret-s3cret-s3cret"' in text


def test_acl_file_has_digests_not_passwords() -> None:
    text = render_acl_file(PASSWORDS)
    for pw in PASSWORDS.values():
        assert pw not in text
        assert "#" + hashlib.sha256(pw.encode()).hexdigest() in text
    default = next(line for line in text.splitlines() if line.startswith("user default "))
    assert APP_RULES in default and "-@dangerous" in default
    # No channel access (forged Sentinel hello, redis/redis src/sentinel.c sentinelProcessHelloMessage).
    assert "resetchannels" in default and "-@pubsub" in default and "&" not in default.split("#", 1)[1]
    with pytest.raises(ValueError, match="missing passwords for admin"):
        render_acl_file({k: v for k, v in PASSWORDS.items() if k != "admin"})
