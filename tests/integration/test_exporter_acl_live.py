"""The rendered ACL file on a real redis-server: the `monitor` user may run every command the
pinned redis_exporter (v1.88.0) sends with our flags, and nothing it could be made to send
otherwise (redis_conf/exporter.py, derived from the exporter's source at that tag).

ACL DRYRUN (Redis 7.0+) asks the server's own ACL engine without running the command, so the
commands Debian's 1.45 exporter never sends (LATENCY HISTOGRAM) are judged by the server too.
The exporter's HTTP answer is also checked for the Content-Type Prometheus 3 insists on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from infra.monitoring.grafana import exporter_command, exporter_password_file, exporter_redis_addr
from redis_conf.acl import render_acl_file
from redis_conf.exporter import DENIED, SENT
from tests.support.procs import ProcessGroup, have_exporter, start_exporter
from tests.support.redisproc import RedisProcess, free_port, have_redis

pytestmark = pytest.mark.skipif(not have_redis(), reason="needs redis-server (Debian package redis-server)")

PASSWORDS = {name: f"{name}-Acl-Passw0rd-{i}x" for i, name in enumerate(("app", "monitor", "replica", "sentinel",
                                                                          "admin"))}
# Prometheus 3 fails a scrape whose Content-Type is not one of these (docs/migration.md at v3.13.2,
# "Scrape protocols"); parameters after the media type may vary (charset, escaping).
PROMETHEUS3_CONTENT_TYPES = ("text/plain; version=0.0.4", "text/plain;version=0.0.4", "text/plain; version=1.0.0",
                             "application/openmetrics-text", "application/vnd.google.protobuf")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[redis.Redis]:
    (tmp_path / "users.acl").write_text(render_acl_file(PASSWORDS))
    port = free_port()
    rp = RedisProcess(workdir=tmp_path, port=port, config_text="\n".join(
        [f"port {port}", f"aclfile {tmp_path / 'users.acl'}", 'save ""']) + "\n")
    rp.start()
    try:
        yield redis.Redis(host="127.0.0.1", port=port, username="admin", password=PASSWORDS["admin"],
                          decode_responses=True, socket_timeout=5)
    finally:
        rp.stop()


def dryrun(r: redis.Redis, argv: tuple[str, ...]) -> str:
    try:
        return str(r.execute_command("ACL", "DRYRUN", "monitor", *argv))
    except redis.ResponseError as exc:
        return f"ERR {exc}"


def test_monitor_may_run_every_command_the_exporter_sends(server: redis.Redis) -> None:
    known = {name.lower() for name in server.command_list()}
    for c in SENT:
        answer = dryrun(server, c.argv)
        if c.argv[0].lower() in known:
            assert answer == "OK", (c.argv, c.source, answer)
        else:  # COMMANDLOG: Valkey 8.1+ only; Redis answers unknown command before any ACL check
            assert c.acl is None and answer.startswith("ERR"), (c.argv, answer)


def test_monitor_is_refused_everything_else(server: redis.Redis) -> None:
    for d in DENIED:
        answer = dryrun(server, d.argv)
        assert "no permissions" in answer, (d.argv, d.via, answer)
    # The monitor user reads no key at all: not even the limiter's, which it counts by SCAN.
    server.set("rl:api:client-1", "1")
    assert "no permissions" in dryrun(server, ("GET", "rl:api:client-1"))
    assert "no permissions" in dryrun(server, ("DUMP", "rl:api:client-1"))
    assert "no permissions" in dryrun(server, ("MONITOR",))


def test_config_get_would_hand_out_the_replica_password_so_monitor_may_not_run_it(tmp_path: Path) -> None:
    # Why the monitor user has no +config|get (redis_conf/exporter.py): a Sentinel-topology node
    # carries `masterauth` (redis_conf/sentinel.py), and CONFIG GET answers it in clear.
    (tmp_path / "users.acl").write_text(render_acl_file(PASSWORDS))
    port = free_port()
    rp = RedisProcess(workdir=tmp_path, port=port, config_text="\n".join(
        [f"port {port}", f"aclfile {tmp_path / 'users.acl'}", 'save ""', "masteruser replica",
         f'masterauth "{PASSWORDS["replica"]}"']) + "\n")
    rp.start()
    try:
        admin = redis.Redis(host="127.0.0.1", port=port, username="admin", password=PASSWORDS["admin"],
                            decode_responses=True, socket_timeout=5)
        assert admin.config_get("masterauth") == {"masterauth": PASSWORDS["replica"]}
        monitor = redis.Redis(host="127.0.0.1", port=port, username="monitor", password=PASSWORDS["monitor"],
                              decode_responses=True, socket_timeout=5)
        with pytest.raises(redis.exceptions.NoPermissionError):
            monitor.config_get("masterauth")
        assert monitor.info("server")["tcp_port"] == port  # the user itself works
    finally:
        rp.stop()


@pytest.mark.skipif(not have_exporter(), reason="needs prometheus-redis-exporter (Debian package)")
def test_exporter_scrape_leaves_acl_log_empty_and_sends_a_prometheus3_content_type(
        server: redis.Redis, tmp_path: Path) -> None:
    import urllib.request

    port = server.connection_pool.connection_kwargs["port"]
    addr = exporter_redis_addr("127.0.0.1", port, tls=False)
    pw_file = tmp_path / "exporter" / "password.json"
    pw_file.parent.mkdir()
    pw_file.write_text(exporter_password_file(addr, PASSWORDS["monitor"]))
    pw_file.chmod(0o600)
    exp_port = free_port()
    server.execute_command("ACL", "LOG", "RESET")
    with ProcessGroup() as group:
        exp = group.add(start_exporter(tmp_path / "exporter", exporter_command(
            "127.0.0.1", port, password_file=str(pw_file), listen_address=f"127.0.0.1:{exp_port}")))
        with urllib.request.urlopen(f"{exp.url}/metrics", timeout=10) as resp:
            content_type = resp.headers.get("Content-Type", "")
            body = resp.read().decode()
    assert "\nredis_up 1\n" in body
    assert content_type.startswith(PROMETHEUS3_CONTENT_TYPES), content_type
    assert server.execute_command("ACL", "LOG") == []
