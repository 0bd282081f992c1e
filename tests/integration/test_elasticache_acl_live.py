"""On a real redis-server: a user created from a derived ElastiCache access string may run
exactly what the ACL model's user may, for every command ElastiCache keeps available.

ElastiCache creates an RBAC user from its access string alone (a fresh user), so each derived
string is applied to a new user; the model's rules are applied the way render_acl_file applies
them (`reset on ... <rules>`). Then ACL DRYRUN (Redis 7.0+) asks both users about every command
and subcommand the server knows, with arguments that satisfy the command's arity and name
limiter keys (`rl:...`), and the answers must match - except for the commands ElastiCache makes
unavailable (redis_conf.elasticache.RESTRICTED_COMMANDS), which neither user can run there.

Fidelity: this runs Debian's redis 7.0; ElastiCache redis7 is 7.0/7.1 and valkey7/8 keep the
Redis 7 ACL semantics (docs/fidelity.md, AWS section).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_conf import acl
from redis_conf.elasticache import FAMILIES, RESTRICTED_COMMANDS, elasticache_users
from tests.support.redisproc import have_redis, redis_process

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    workdir: Path = tmp_path_factory.mktemp("ec-acl")
    with redis_process(workdir, "bind 127.0.0.1\nenable-debug-command no\n") as rp:
        client = redis.Redis(host="127.0.0.1", port=rp.port, decode_responses=True, socket_timeout=10)
        client.set_response_callback("COMMAND", lambda response, **_: response)  # the raw reply
        yield client
        client.close()


def _commands(client: redis.Redis) -> list[tuple[str, int]]:
    """(name, arity) of every command and subcommand ("config|get")."""
    found: list[tuple[str, int]] = []
    for entry in client.execute_command("COMMAND"):
        name, arity = str(entry[0]).lower(), int(entry[1])
        subcommands = entry[9] if len(entry) > 9 else []
        if subcommands:
            found += [(str(sub[0]).lower(), int(sub[1])) for sub in subcommands]
        else:
            found.append((name, arity))
    return found


def _dryrun(client: redis.Redis, user: str, name: str, arity: int) -> str:
    words = name.split("|")
    count = arity if arity > 0 else -arity
    args = words + [f"rl:{i}" for i in range(max(0, count - len(words)))]
    try:
        return str(client.execute_command("ACL", "DRYRUN", user, *args))
    except redis.ResponseError as exc:
        return f"ERR {exc}"


def _allowed(answer: str) -> bool:
    return answer == "OK"


@pytest.mark.parametrize("family", FAMILIES)
def test_derived_users_may_run_exactly_what_the_model_allows(server: redis.Redis, family: str) -> None:
    model = {u.password_setting: u for u in acl.USERS}
    commands = _commands(server)
    assert len(commands) > 200
    restricted = RESTRICTED_COMMANDS[family]
    checked: dict[str, int] = {}
    for user in elasticache_users(family):  # type: ignore[arg-type]
        model_user, derived_user = f"model-{user.credential}", f"ec-{family}-{user.credential}"
        server.execute_command("ACL", "SETUSER", model_user, "reset", "on", "nopass",
                               *model[user.credential].rules.split())
        server.execute_command("ACL", "DELUSER", derived_user)
        server.execute_command("ACL", "SETUSER", derived_user, "nopass", *user.access_string.split())
        differences: list[tuple[str, str, str]] = []
        for name, arity in commands:
            if name.split("|")[0] in restricted:
                continue
            a, b = _dryrun(server, model_user, name, arity), _dryrun(server, derived_user, name, arity)
            if _allowed(a) != _allowed(b):
                differences.append((name, a, b))
        assert differences == [], f"{user.credential}: model vs ElastiCache user differ on {differences[:5]}"
        checked[user.credential] = sum(_allowed(_dryrun(server, derived_user, n, a)) for n, a in commands)
    # Not vacuous: the app may run most commands, the monitor a handful, the admin everything.
    assert checked["admin"] > checked["app"] > checked["monitor"] > 5


def test_the_app_user_on_elasticache_keeps_the_denials_that_matter(server: redis.Redis) -> None:
    app = next(u for u in elasticache_users("redis7") if u.credential == "app")
    server.execute_command("ACL", "SETUSER", "ec-app-probe", "nopass", *app.access_string.split())
    for command in ("flushall", "flushdb", "keys"):
        answer = _dryrun(server, "ec-app-probe", command, -1 if command != "keys" else 2)
        assert not _allowed(answer), (command, answer)
    assert _allowed(_dryrun(server, "ec-app-probe", "get", 2))
