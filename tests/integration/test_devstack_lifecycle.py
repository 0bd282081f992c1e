"""redisops.devstack up / status / down as a developer runs them (`redisops dev ...`).

The container-less path runs here for real (detached processes, files under .run/<stack>/);
the Docker path needs the Pulumi CLI and a Docker engine and is skipped without them.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from infra.components import local_stack as ls
from redisops import devstack
from tests.support.procs import have_exporter, have_prometheus
from tests.support.redisproc import free_port, have_redis

REPO = Path(__file__).resolve().parents[2]
needs_programs = pytest.mark.skipif(not (have_redis() and have_exporter() and have_prometheus()),
                                    reason="needs " + devstack.APT_HINT)


def project(tmp_path: Path) -> Path:
    """A project directory of its own (Pulumi.yaml, the dev stack file, infra/ marker), so the
    test never touches the checkout's .run/dev of a developer."""
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "infra").mkdir()
    return tmp_path


def alive(pid: int, started: int | None) -> bool:
    return devstack.proc_start_time(pid) == started and not devstack._zombie(pid)


@pytest.mark.slow
@needs_programs
def test_up_status_down(tmp_path: Path) -> None:
    proj = project(tmp_path)
    ports = {s: free_port() for s in (*ls.SERVICES, "app")}
    said: list[str] = []
    st = devstack.up(proj, mode="processes", overrides={"local": {"ports": ports}}, app=True, out=said.append)
    run_dir = proj / ".run" / "dev"
    try:
        assert st.mode == "processes" and st.healthy, st.lines()
        assert st.smoke == "passed"
        by_name = {s.name: s for s in st.services}
        assert by_name["redis"].url == f"rediss://127.0.0.1:{ports['redis']}/0"
        assert by_name["grafana"].running is False and "not packaged for Debian" in by_name["grafana"].detail
        # The example app runs beside it (--app), on the port the stack's Prometheus scrapes.
        assert by_name["app"].healthy and by_name["app"].url == f"http://127.0.0.1:{ports['app']}"
        # Credentials only in files readable by the developer alone, never printed.
        env_file = run_dir / ".env"
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        assert oct((run_dir / "outputs.json").stat().st_mode & 0o777) == "0o600"
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["REDIS_CA_CERT"] == str(run_dir / "ca.crt") and env["REDIS_TLS"] == "true"
        secrets = [env[k] for k in ("REDIS_PASSWORD", "REDIS_ADMIN_PASSWORD", "REDIS_MONITOR_PASSWORD",
                                    "GRAFANA_ADMIN_PASSWORD")]
        assert all(len(s) >= 32 for s in secrets)
        printed = "\n".join(said)
        assert not [s for s in secrets if s in printed]
        assert f"127.0.0.1:{ports['prometheus']}" in printed
        # The connection the app would make from the .env works.
        import redis

        r = redis.Redis.from_url(env["REDIS_URL"], password=env["REDIS_PASSWORD"], ssl_ca_certs=env["REDIS_CA_CERT"])
        assert r.ping() is True

        state = devstack._read_state(run_dir)
        assert state is not None
        pids = {n: (i["pid"], i["started"]) for n, i in state["services"].items() if "pid" in i}
        assert set(pids) == {"redis", "exporter", "prometheus", "app"}
        assert all(alive(*p) for p in pids.values())

        again: list[str] = []
        st2 = devstack.up(proj, mode="processes", overrides={"local": {"ports": ports}}, out=again.append)
        assert "already running" in again[0] and st2.healthy
        state2 = devstack._read_state(run_dir)
        assert state2 is not None and {n: i["pid"] for n, i in state2["services"].items() if "pid" in i} == {
            n: p[0] for n, p in pids.items()}

        assert devstack.status(proj).healthy
    finally:
        down = devstack.down(proj, out=said.append)
    assert down.mode == "down"
    assert not run_dir.exists()
    assert not any(alive(*p) for p in pids.values())
    assert devstack.status(proj).mode == "down"


@pytest.mark.slow
@needs_programs
def test_a_busy_port_is_named_with_the_config_key_and_nothing_is_left_behind(tmp_path: Path) -> None:
    proj = project(tmp_path)
    ports = {s: free_port() for s in ls.SERVICES}
    with socket.socket() as blocker:
        # SO_REUSEADDR, as a server binds: free_port() holds the port with a non-listening socket.
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", ports["prometheus"]))
        blocker.listen()
        with pytest.raises(devstack.DevStackError, match=r"local\.ports\.prometheus"):
            devstack.up(proj, mode="processes", overrides={"local": {"ports": ports}}, run_smoke=False,
                        out=lambda _m: None)
    assert not (proj / ".run" / "dev").exists()
    assert devstack.status(proj).mode == "down"


def _time_wait_ports() -> set[int]:
    """Local ports of IPv4 sockets in TIME_WAIT (state 06 in /proc/net/tcp)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {int(f[1].split(":")[1], 16) for f in (line.split() for line in lines) if f[3] == "06"}


@pytest.mark.slow
@needs_programs
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads TIME_WAIT sockets from /proc/net/tcp (Linux)")
def test_down_then_up_at_once_while_connections_sit_in_time_wait(tmp_path: Path) -> None:
    # Rule: Redis sets SO_REUSEADDR before it binds (redis src/anet.c: anetSetReuseAddr, called
    # from _anetTcpServer), so it restarts on a port whose old connections sit in TIME_WAIT;
    # `up` must not call that port busy (the probe binds the same way: devstack.port_free).
    proj = project(tmp_path)
    ports = {s: free_port() for s in ls.SERVICES}
    overrides = {"local": {"ports": ports}}
    quiet: list[str] = []
    try:
        for _ in range(3):
            st = devstack.up(proj, mode="processes", overrides=overrides, run_smoke=False, out=quiet.append)
            assert st.healthy, st.lines()
            # Clients still connected when `down` stops Redis: its side closes first, so those
            # sockets (local port = the Redis port) go to TIME_WAIT once the clients close.
            clients = [socket.create_connection(("127.0.0.1", ports["redis"]), timeout=5) for _ in range(3)]
            devstack.down(proj, out=quiet.append)
            for c in clients:
                c.settimeout(5)
                assert c.recv(1) == b""  # the server's FIN
                c.close()
            assert ports["redis"] in _time_wait_ports()
            with socket.socket() as plain, pytest.raises(OSError):
                plain.bind(("127.0.0.1", ports["redis"]))  # why a probe without SO_REUSEADDR failed here
    finally:
        devstack.down(proj, out=quiet.append)
    assert devstack.status(proj).mode == "down"


@pytest.mark.slow
def test_process_mode_refuses_the_sentinel_topology_and_leaves_nothing(tmp_path: Path) -> None:
    proj = project(tmp_path)
    with pytest.raises(devstack.DevStackError, match="topology single or cluster only"):
        devstack.up(proj, mode="processes", overrides={"local": {"topology": "sentinel"}}, run_smoke=False,
                    out=lambda _m: None)
    assert devstack.status(proj).mode == "down"


def test_find_project_and_target_check(tmp_path: Path) -> None:
    with pytest.raises(devstack.DevStackError, match="no redisstack project"):
        devstack.find_project(tmp_path)
    proj = project(tmp_path)
    assert devstack.find_project(proj / "infra") == proj
    (proj / "Pulumi.prod.yaml").write_text("config:\n  redisstack:target: elasticache\n")
    with pytest.raises(devstack.DevStackError, match="needs target local"):
        devstack.offline_run(proj, "prod")


# A first `pulumi up` downloads the providers' plugins and pulls four images: minutes, not the suite's
# 300 s per test. It runs in the pull-request workflow's docker-e2e job, which fetches those first and
# opts in with REDISSTACK_DOCKER_E2E=1 (.github/workflows/pr.yml; tests/unit/test_workflows.py).
DOCKER_E2E = "REDISSTACK_DOCKER_E2E"


@pytest.mark.slow
@pytest.mark.needs_cli
@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get(DOCKER_E2E) != "1",
                    reason=f"opt-in ({DOCKER_E2E}=1): runs in the docker-e2e job of .github/workflows/pr.yml")
def test_docker_path_up_and_down() -> None:  # pragma: no cover - runs where Docker exists (CI)
    # Opted in, it must not skip: the docker-e2e job exists to run it, and a job that goes green
    # on "1 skipped" proves nothing.
    if not devstack.docker_available():
        pytest.fail(f"{DOCKER_E2E}=1 but there is no Pulumi CLI on PATH or no Docker engine answering `docker info`: "
                    "this test needs both (pulumi up of the dev stack)")
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "ci-dev-stack")
    st = devstack.up(REPO, mode="docker", out=print)
    try:
        assert st.mode == "docker" and st.healthy, st.lines()
        assert st.smoke == "passed"
    finally:
        devstack.down(REPO, out=print)
