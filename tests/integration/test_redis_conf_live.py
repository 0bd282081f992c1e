"""A real redis-server started from the rendered redis.conf + ACL file proves every directive."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ratelimit import (
    LIBRARY_NAME,
    LIBRARY_RELEASE,
    LibraryUnavailable,
    RateLimiter,
    function_library,
    make_key,
)
from ratelimit.functions import load_library, read_version
from redis_conf import load_base, render_acl_file, render_redis_conf
from redis_conf.acl import APP_FORBIDDEN_COMMANDS, APP_FORBIDDEN_PUBSUB, APP_FORBIDDEN_SCRIPTING, CREDENTIALS
from redis_conf.render import TlsFiles
from tests.support.certs import make_tls_files
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess, free_port, have_redis, redis_process

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_redis(), reason="redis-server not installed "
                                                   "(apt-get install redis-server)")]
PASSWORDS = {c: f"{c}-Pw-{i}-0123456789abcdef" for i, c in enumerate(CREDENTIALS)}


def _start(tmp: Path, *, tls: TlsFiles | None = None) -> tuple[str, int]:
    port = free_port()
    (tmp / "users.acl").write_text(render_acl_file(PASSWORDS))
    text = render_redis_conf(load_base(), bind="127.0.0.1", port=port, data_dir=str(tmp),
                             aclfile=str(tmp / "users.acl"), tls=tls)
    return text, port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    tmp = tmp_path_factory.mktemp("redis-plain")
    text, port = _start(tmp)
    with redis_process(tmp, text, port) as proc:
        yield proc


def client(proc: RedisProcess, user: str | None, password: str | None, **kw: object) -> redis.Redis:
    # No retries: a refused AUTH or TLS handshake must surface at once, not after backoff.
    return redis.Redis(host="127.0.0.1", port=proc.port, username=user, password=password,
                       decode_responses=True, single_connection_client=True,
                       retry=Retry(NoBackoff(), 0), **{"socket_timeout": 5, **kw})


def admin(proc: RedisProcess) -> redis.Redis:
    return client(proc, "admin", PASSWORDS["admin"])


def app(proc: RedisProcess) -> redis.Redis:
    return client(proc, None, PASSWORDS["app"])  # password-only AUTH = the `default` user


def test_memory_directives(server: RedisProcess) -> None:
    cfg = admin(server).config_get("maxmemory*")
    assert cfg["maxmemory"] == str(800 * 1024 * 1024)
    assert cfg["maxmemory-policy"] == "allkeys-lru"
    assert cfg["maxmemory-samples"] == "5"


def test_persistence_directives_and_files(server: RedisProcess) -> None:
    a = admin(server)
    cfg = a.config_get("*")
    assert cfg["appendonly"] == "yes" and cfg["appendfsync"] == "everysec"
    assert cfg["save"] == "900 1 300 10 60 10000"
    assert cfg["aof-use-rdb-preamble"] == "yes" and cfg["timeout"] == "0"
    app(server).set("persist:probe", "1")
    assert a.info("persistence")["rdb_changes_since_last_save"] > 0
    a.bgsave()

    def saved() -> dict | None:
        info = a.info("persistence")
        return info if not info["rdb_bgsave_in_progress"] and info["rdb_changes_since_last_save"] == 0 else None

    info = wait_until(saved, 30, "BGSAVE done")
    assert info["rdb_last_bgsave_status"] == "ok"
    assert (server.workdir / "dump.rdb").stat().st_size > 0
    aof_dir = server.workdir / "appendonlydir"
    assert aof_dir.is_dir() and any(p.name.endswith(".incr.aof") for p in aof_dir.iterdir())


def _probe(c: redis.Redis, *command: str) -> str:
    """Queue a command inside MULTI and DISCARD it: denied ones fail at queue time, nothing runs."""
    conn = c.connection
    assert conn is not None
    c.execute_command("MULTI")
    try:
        conn.send_command(*command)
        return str(conn.read_response())
    except redis.exceptions.NoPermissionError as exc:
        return f"NOPERM {exc}"  # redis-py strips the error code from the message
    except redis.ResponseError as exc:
        return str(exc)
    finally:
        c.execute_command("DISCARD")


@pytest.mark.parametrize("command", APP_FORBIDDEN_COMMANDS)
def test_app_user_cannot_run_dangerous_commands(server: RedisProcess, command: str) -> None:
    c = app(server)
    c.set("survivor", "still-here")
    args = {"CONFIG": ("CONFIG", "GET", "maxmemory"), "DEBUG": ("DEBUG", "SLEEP", "0"),
            "KEYS": ("KEYS", "*")}.get(command, (command,))
    answer = _probe(c, *args)
    denied = ("NOPERM", "unknown command", "DEBUG command not allowed")
    assert answer.startswith(denied), answer
    assert c.get("survivor") == "still-here"


def test_admin_may_queue_what_app_may_not_and_debug_is_off_for_everyone(server: RedisProcess) -> None:
    a = admin(server)
    assert _probe(a, "FLUSHALL") == "QUEUED"
    assert "DEBUG command not allowed" in _probe(a, "DEBUG", "SLEEP", "0")


@pytest.mark.parametrize("command", sorted(APP_FORBIDDEN_SCRIPTING))
def test_app_user_may_not_send_or_manage_lua(server: RedisProcess, command: str) -> None:
    # Queued inside MULTI (refused at queue time) and also sent on its own: no Lua source, no
    # library management, whatever the transport.
    c = app(server)
    args = APP_FORBIDDEN_SCRIPTING[command]
    assert _probe(c, *args).startswith("NOPERM"), command
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.execute_command(*args)
    assert _probe(admin(server), *args) == "QUEUED"  # the admin may (queued, then discarded)


def test_app_user_may_not_publish_a_sentinel_hello(server: RedisProcess) -> None:
    # A forged hello with a higher master_config_epoch re-points the master
    # (redis/redis src/sentinel.c sentinelProcessHelloMessage): the app credential gets NOPERM,
    # queued inside MULTI and sent on its own, and may not subscribe to the channel either.
    c = app(server)
    args = APP_FORBIDDEN_PUBSUB["PUBLISH __sentinel__:hello"]
    assert args == ("PUBLISH", "__sentinel__:hello", "x")
    assert _probe(c, *args).startswith("NOPERM"), args
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.execute_command(*args)
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.execute_command("SUBSCRIBE", "__sentinel__:hello")
    a = admin(server)
    assert a.execute_command(*args) == 0  # the admin may (nobody subscribed here)
    log = a.acl_log()
    assert any(e["username"] == "default" and e["object"] == "publish" for e in log), log


def test_admin_loads_the_library_and_the_app_user_rate_limits_through_fcall(server: RedisProcess) -> None:
    a = admin(server)
    assert load_library(a) == LIBRARY_NAME
    c = app(server)
    limiter = RateLimiter(c, "fixed_window", timeout=1.0, load_library=False)
    decisions = [limiter.hit("live", 2, 60) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False] and not any(d.fallback for d in decisions)
    assert limiter.peek("live", 2, 60).remaining == 0
    assert limiter.check_library() == LIBRARY_RELEASE
    # The peek entry point is no-writes: Redis itself refuses a write there (mode "0").
    with pytest.raises(redis.ResponseError, match="Write commands are not allowed from read-only scripts"):
        c.fcall_ro("ratelimit_fixed_window_ro", 1, make_key("rl", "live-ro", "fixed_window"), "2", "60000", "1", "0")
    with pytest.raises(redis.ResponseError, match="Can not execute a script with write flag using \\*_ro command"):
        c.fcall_ro("ratelimit_fixed_window", 1, make_key("rl", "live-ro", "fixed_window"), "2", "60000", "1", "1")
    assert "used_memory" in c.info("memory")
    a.delete(make_key("rl", "live", "fixed_window"))


def test_app_user_that_finds_no_library_gets_the_tier_policy_and_the_fix(server: RedisProcess,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    a = admin(server)
    a.function_delete(LIBRARY_NAME) if read_version(a) else None
    try:
        limiter = RateLimiter(app(server), "gcra", timeout=1.0)  # may_load: it tries, and is refused (NOPERM)
        closed = limiter.hit("nolib", 5, 60)
        opened = limiter.hit("nolib", 5, 60, fail_open=True)
        assert closed.fallback and not closed.allowed and opened.fallback and opened.allowed
        assert limiter.library_loads == 1 and not limiter.may_load  # asked once, never again
        assert limiter.library_problem is not None and "redisops functions load" in limiter.library_problem
        assert "redisops functions load" in caplog.text
        with pytest.raises(LibraryUnavailable, match="redisops functions load"):
            limiter.check_library()
        # An older library is named by its version.
        a.function_load(function_library().replace(f"return '{LIBRARY_RELEASE}'", "return '0.9.0'"))
        older = RateLimiter(app(server), "gcra", timeout=1.0)
        with pytest.raises(LibraryUnavailable, match=r"0\.9\.0 on the server is older"):
            older.check_library()
    finally:
        load_library(a)


def test_monitor_user_reads_info_but_no_data(server: RedisProcess) -> None:
    m = client(server, "monitor", PASSWORDS["monitor"])
    assert m.info("server")["redis_version"].startswith("7.")
    # INFO carries maxmemory; CONFIG GET is refused since the exporter runs with
    # -config-command - (redis_conf/acl.py MONITOR_RULES: CONFIG GET could read requirepass).
    assert m.info("memory")["maxmemory"] == 800 * 1024 * 1024
    with pytest.raises(redis.exceptions.NoPermissionError):
        m.config_get("maxmemory")
    with pytest.raises(redis.exceptions.NoPermissionError):
        m.get("survivor")
    with pytest.raises(redis.exceptions.NoPermissionError):
        m.execute_command("FLUSHALL")


def test_replica_user_only_replicates(server: RedisProcess) -> None:
    r = client(server, "replica", PASSWORDS["replica"])
    assert r.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.info()


def test_unauthenticated_and_wrong_password_are_refused(server: RedisProcess) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(server, None, None).get("survivor")
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(server, None, "not-the-password-123").get("survivor")


def test_tls_only_server(tmp_path: Path) -> None:
    certs = make_tls_files(tmp_path / "tls")
    tls = TlsFiles(str(certs.cert), str(certs.key), str(certs.ca_cert))
    text, port = _start(tmp_path, tls=tls)
    with redis_process(tmp_path, text, port) as proc:
        # The server drops a plaintext client at once; the timeout only bounds a hang.
        with pytest.raises(redis.exceptions.ConnectionError):
            client(proc, None, PASSWORDS["app"], socket_connect_timeout=30, socket_timeout=30).ping()
        secure = client(proc, None, PASSWORDS["app"], ssl=True, ssl_ca_certs=str(certs.ca_cert),
                        ssl_cert_reqs=ssl.CERT_REQUIRED, ssl_check_hostname=True)
        assert secure.set("tls:probe", "ok") and secure.get("tls:probe") == "ok"
        with pytest.raises(redis.exceptions.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            client(proc, None, PASSWORDS["app"], ssl=True, ssl_cert_reqs=ssl.CERT_REQUIRED,
                   ssl_ca_certs=str(certs.client_cert)).ping()
