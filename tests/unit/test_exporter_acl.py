"""The `monitor` ACL user allows exactly what the pinned redis_exporter sends with our flags.

The command table (redis_conf/exporter.py) is read from github.com/oliver006/redis_exporter at
the pinned tag (exporter/exporter.go, latency.go, slowlog.go, keys.go, commandlog.go); the
real-server side (ACL DRYRUN of each command against the rendered ACL file) is in
tests/integration/test_exporter_acl_live.py.
"""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlsplit, urlunsplit

from infra import versions
from infra.components import local_stack as ls
from infra.components.sentinel_hosts import exporter_args
from infra.monitoring.grafana import exporter_password_file
from redis_conf.acl import MONITOR_RULES
from redis_conf.exporter import DENIED, DERIVED_FROM, KNOWN_FLAGS, SENT

RULE_TOKENS = MONITOR_RULES.split()


def test_table_is_derived_from_the_pinned_exporter() -> None:
    # Renovate bumps the pin; this fails until redis_conf/exporter.py is re-read at the new tag.
    assert versions.line("exporter", "1").pin == DERIVED_FROM == "1.88.0"


def test_monitor_rules_allow_exactly_the_sent_commands() -> None:
    allowed = {t for t in RULE_TOKENS if t.startswith("+")}
    needed = {c.acl for c in SENT if c.acl is not None}
    # +ping: not sent by the exporter (-ping-on-connect is off), kept for operators' probes.
    assert allowed == needed | {"+ping"}
    assert RULE_TOKENS[:3] == ["resetkeys", "resetchannels", "-@all"]
    # No category grant (+@connection carried CLIENT KILL/PAUSE/LIST), no key or channel pattern.
    assert not any(t.startswith(("+@", "~", "%", "&", "allkeys", "allchannels", "allcommands")) for t in RULE_TOKENS)


def test_every_sent_command_maps_to_its_rule_and_no_denied_one_does() -> None:
    for c in SENT:
        if c.acl is None:
            continue
        name = c.acl.removeprefix("+")
        command, _, sub = name.partition("|")
        assert c.argv[0].lower() == command and (not sub or c.argv[1].lower() == sub), c
    for d in DENIED:
        command = d.argv[0].lower()
        sub = d.argv[1].lower() if len(d.argv) > 1 else ""
        assert f"+{command}" not in RULE_TOKENS and f"+{command}|{sub}" not in RULE_TOKENS, d


def stack_exporter_flags() -> list[list[str]]:
    """Exporter argv as the local stack (pinned image) and the Sentinel hosts (Debian) start it."""
    local = list(ls.exporter_command(tls=True).args)
    local_plain = list(ls.exporter_command(tls=False).args)
    sentinel = shlex.split(exporter_args("10.0.1.10", tls=True))
    return [local, local_plain, sentinel]


def test_the_stack_passes_no_flag_that_sends_more() -> None:
    for argv in stack_exporter_flags():
        # Every exporter flag we pass takes a value (Go's flag package: `-name value`).
        flags = argv[0::2]
        assert all(f.startswith("-") for f in flags) and len(argv) % 2 == 0, argv
        assert set(flags) <= set(KNOWN_FLAGS), set(flags) - set(KNOWN_FLAGS)
    local = stack_exporter_flags()[0]
    assert local[local.index("-count-keys") + 1] == "db0=rl:*"
    assert local[local.index("-redis.user") + 1] == "monitor"


def lookup_v1_45(password_map: dict[str, str], addr: str, user: str) -> str | None:
    """exporter/redis.go at v1.45.0: `e.options.PasswordMap[uri]`, the -redis.addr as given."""
    return password_map.get(addr)


def lookup_v1_88(password_map: dict[str, str], addr: str, user: str) -> str | None:
    """exporter/redis.go lookupPasswordInPasswordMap at v1.88.0 (since v1.69.0, #983): the URI
    with url.User(user) set, then ":@host" -> "@host"."""
    parts = urlsplit(addr)
    netloc = f"{user}@{parts.hostname}:{parts.port}" if user else parts.netloc
    uri = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return password_map.get(uri.replace(f":@{parts.hostname}", f"@{parts.hostname}"))


def test_password_file_authenticates_both_exporter_versions_and_no_other_target() -> None:
    addr = "rediss://redis:6379"
    pw_map = json.loads(exporter_password_file(addr, "monitor-pw"))
    assert lookup_v1_45(pw_map, addr, "monitor") == "monitor-pw"
    assert lookup_v1_88(pw_map, addr, "monitor") == "monitor-pw"
    # /scrape?target=<elsewhere> reuses the options but finds no password for a foreign URI.
    assert lookup_v1_88(pw_map, "redis://attacker.example:6379", "monitor") is None
    assert set(pw_map) == {"rediss://redis:6379", "rediss://monitor@redis:6379"}


def test_no_exporter_sends_config_get_and_the_monitor_user_may_not() -> None:
    # Rule: Redis answers CONFIG GET masterauth in clear to any user allowed +config|get (shown on
    # a real server in tests/integration/test_exporter_acl_live.py), and every node of a Sentinel
    # topology carries `masterauth` (redis_conf/sentinel.py): with +config|get the monitor user
    # (whose password sits in the exporter's container) could read the replica user's password and
    # PSYNC the whole dataset. `-config-command -` makes the exporter skip both of its CONFIG GETs
    # (oliver006/redis_exporter v1.88.0 exporter/exporter.go:836 and exporter/commandlog.go:46;
    # the flag exists in Debian's 1.45 too, main.go:72 at v1.45.0).
    assert not any(t.startswith(("+config", "+@admin", "+@dangerous")) for t in RULE_TOKENS)
    assert not any(c.argv[0] == "CONFIG" for c in SENT)
    assert ("CONFIG", "GET", "masterauth") in {d.argv for d in DENIED}
    for argv in stack_exporter_flags():
        assert argv[argv.index("-config-command") + 1] == "-", argv
