"""Dev stack process handling and the Pulumi/Docker CLIs without real services.

* A start that never gets healthy is reaped (SIGTERM, SIGKILL, wait) and was recorded first.
* The port probe judges a port as the servers bind it (SO_REUSEADDR): TIME_WAIT is free, a
  listener is not.
* The Pulumi CLI talks to the engine of the docker CLI's active context, with one state and one
  passphrase for `redisops dev` and the manual flow; every CLI failure is surfaced whole; a stale
  lock is removed with a message, a live one reported. `pulumi` and `docker` are stand-ins on
  PATH (tests/support/fakecli.py); everything else is real (processes, signals, files, sockets).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redisops import devpulumi
from redisops import devstack as ds
from tests.support import fakecli

REPO = Path(__file__).resolve().parents[2]


class FastClock:
    """devstack's `time` with a clock that passes the 30 s health deadline at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 10.0
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.01))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_start_that_never_gets_healthy_is_killed_and_reaped_and_was_recorded_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A service that ignores SIGTERM and never listens.
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
    spec = ds.ContainerSpec("redis", "redis:7", "redis", ("redis-server",), ("-c", code), {}, (),
                            ((6379, free_port(), "127.0.0.1"),), ())
    monkeypatch.setattr(ds, "local_program", lambda _e: sys.executable)

    def not_listening(*_a: object) -> bool:  # once the service ignores SIGTERM
        deadline = time.monotonic() + 10
        while "up" not in (tmp_path / "redis.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        return False

    monkeypatch.setattr(ds, "_wait_port", not_listening)
    monkeypatch.setattr(ds, "time", FastClock())
    recorded: list[dict[str, Any]] = []
    remap = ds.Remap.build({"redis": spec}, tmp_path)
    with pytest.raises(ds.DevStackError, match="not healthy"):
        ds.start_process(spec, remap, tmp_path, on_started=recorded.append)
    assert len(recorded) == 1 and recorded[0]["port"] == spec.ports[0][1]
    pid = recorded[0]["pid"]
    with pytest.raises(ProcessLookupError):  # gone, and no zombie left behind
        os.kill(pid, 0)


# --- the port probe -------------------------------------------------------------------------------

def _time_wait_ports() -> set[int]:
    """Local ports of IPv4 sockets in TIME_WAIT (state 06 in /proc/net/tcp)."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "06":
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def _leave_time_wait(port: int) -> None:
    """A server on `port` that closes an accepted connection first: its side, local port `port`,
    goes to TIME_WAIT, as Redis's does when it is stopped with clients connected."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # active close on the server side
        client.recv(1)  # sees the FIN
        client.close()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads TIME_WAIT sockets from /proc/net/tcp (Linux)")
def test_port_probe_binds_as_redis_does_time_wait_is_free_a_listener_is_not() -> None:
    # Rule: Redis sets SO_REUSEADDR before bind (redis src/anet.c, anetSetReuseAddr from
    # _anetTcpServer), so a restart binds while the last run's connections sit in TIME_WAIT; a
    # probe without it reports a false "in use" right after `down`.
    port = free_port()
    _leave_time_wait(port)
    assert port in _time_wait_ports(), "the setup must leave a TIME_WAIT socket on the port"
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the old probe did: it would call the port busy
    assert ds.port_free("127.0.0.1", port)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1)
        assert not ds.port_free("127.0.0.1", port)


# --- the fake CLIs --------------------------------------------------------------------------------

@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fakecli.FakeClis]:
    clis = fakecli.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", fakecli.path_with(clis.bin))
    for var in ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST", "DOCKER_CONTEXT",
                "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(var, raising=False)
    yield clis


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml"):
        (proj / name).write_text((REPO / name).read_text())
    (proj / "infra").mkdir()
    return proj


def test_the_provider_gets_the_engine_of_the_clis_active_context(fake: fakecli.FakeClis, project: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Rule: the docker provider's `host` defaults to DOCKER_HOST or unix:///var/run/docker.sock and
    # its `context` (DOCKER_CONTEXT) reads ~/.docker/contexts only; it does not follow the CLI's
    # current context (kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/provider.go,
    # New + getContextHost). `docker info` (mode detection) follows it. So the endpoint of the
    # active context is handed to the Pulumi process as DOCKER_HOST, DOCKER_CONTEXT removed.
    colima = "unix:///home/dev/.colima/default/docker.sock"
    fake.docker_does(context=fakecli.context("colima", colima))
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    cli = ds.local_pulumi(project, "dev")
    assert cli.endpoint == devpulumi.DockerEndpoint("colima", colima)
    cli.run("up", "--yes")
    (call,) = fake.calls()
    assert call["env"]["DOCKER_HOST"] == colima and "DOCKER_CONTEXT" not in call["env"]
    assert call["env"]["PULUMI_BACKEND_URL"] == f"file://{project / '.pulumi-state'}"
    assert call["argv"][-3:] == ["--stack", "dev", "--non-interactive"]


def test_a_tls_context_hands_over_its_certificates(fake: fakecli.FakeClis) -> None:
    fake.docker_does(context=fakecli.context("remote", "tcp://10.0.0.5:2376", tls_path="/home/dev/.docker/tls/abc"))
    endpoint = devpulumi.docker_endpoint()
    assert endpoint.env() == {"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_CERT_PATH": "/home/dev/.docker/tls/abc/docker"}
    fake.docker_does(context=fakecli.context("default", "unix:///var/run/docker.sock"))
    assert devpulumi.docker_endpoint().env() == {"DOCKER_HOST": "unix:///var/run/docker.sock"}


def test_a_failing_docker_context_is_reported_with_its_output(fake: fakecli.FakeClis) -> None:
    fake.docker_does(fail="context \"gone\": context not found\n")
    with pytest.raises(ds.DevStackError, match=r"docker context inspect.*failed(?s:.*)context not found"):
        devpulumi.docker_endpoint()


def test_shell_env_gives_the_manual_flow_the_same_state_passphrase_and_engine(
        fake: fakecli.FakeClis, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.docker_does(context=fakecli.context("desktop-linux", "unix:///home/dev/.docker/desktop/docker.sock"))
    monkeypatch.setenv("DOCKER_CONTEXT", "desktop-linux")
    lines = ds.shell_env(project)
    state = project / ".pulumi-state"
    assert lines == [f"export PULUMI_BACKEND_URL=file://{state}",
                     f"export PULUMI_CONFIG_PASSPHRASE_FILE={state / 'dev.passphrase'}",
                     "export DOCKER_HOST=unix:///home/dev/.docker/desktop/docker.sock", "unset DOCKER_CONTEXT"]
    # Evaluated by a shell, the next `pulumi` gets exactly what `redisops dev up` gives it.
    script = "\n".join(lines) + "\npulumi stack select --create --stack dev\n"
    subprocess.run(["sh", "-c", script], check=True, env={**os.environ}, timeout=60)
    ds.local_pulumi(project, "dev").run("up")
    manual, tool = fake.calls()
    assert manual["env"] == tool["env"]


# --- passphrase ----------------------------------------------------------------------------------

def test_passphrase_follows_pulumis_precedence_and_is_generated_once(project: Path) -> None:
    # Rule: Pulumi reads PULUMI_CONFIG_PASSPHRASE when it is set at all (even empty), else the file
    # of a non-empty PULUMI_CONFIG_PASSPHRASE_FILE (pulumi/pulumi pkg/secrets/passphrase/
    # manager.go, readPassphrase).
    cli = devpulumi.LocalPulumi(project, "dev", environ={"PULUMI_CONFIG_PASSPHRASE": ""})
    assert cli.passphrase() == ({}, "PULUMI_CONFIG_PASSPHRASE")
    cli = devpulumi.LocalPulumi(project, "dev", environ={"PULUMI_CONFIG_PASSPHRASE_FILE": "/secure/pp"})
    assert cli.passphrase() == ({}, "PULUMI_CONFIG_PASSPHRASE_FILE=/secure/pp")
    assert not (project / ".pulumi-state" / "dev.passphrase").exists()
    cli = devpulumi.LocalPulumi(project, "dev", environ={"PULUMI_CONFIG_PASSPHRASE_FILE": ""})
    add, source = cli.passphrase()
    pfile = project / ".pulumi-state" / "dev.passphrase"
    assert add == {"PULUMI_CONFIG_PASSPHRASE_FILE": str(pfile)} and source == str(pfile)
    first = pfile.read_text()
    assert len(first) >= 40 and oct(pfile.stat().st_mode & 0o777) == "0o600"
    cli.passphrase()
    assert pfile.read_text() == first


def test_a_salt_made_with_another_passphrase_is_refused_before_pulumi_runs(fake: fakecli.FakeClis,
                                                                           project: Path) -> None:
    # `pulumi stack init/select` with an `encryptionsalt` in the stack file checks the
    # passphrase against it and fails with "incorrect passphrase" (manager.go,
    # NewPromptingPassphraseSecretsManager: "If we have a salt, we can just use it").
    stack_file = project / "Pulumi.dev.yaml"
    stack_file.write_text("encryptionsalt: v1:abcd:v1:efgh:ijkl\n" + stack_file.read_text())
    with pytest.raises(ds.DevStackError, match=r"encryptionsalt.*PULUMI_CONFIG_PASSPHRASE"):
        ds.local_pulumi(project, "dev").run("up")
    assert fake.calls() == [] and not (project / ".pulumi-state" / "dev.passphrase").exists()
    # With the passphrase it was made with (here: in the environment), Pulumi is called.
    cli = devpulumi.LocalPulumi(project, "dev", environ={**os.environ, "PULUMI_CONFIG_PASSPHRASE": "the-one"})
    cli.run("up")
    assert fake.calls()[0]["env"]["PULUMI_CONFIG_PASSPHRASE"] == "the-one"


def test_the_committed_dev_stack_carries_no_salt() -> None:
    # The salt belongs to one machine's passphrase: committed, it breaks every other checkout.
    proc = subprocess.run(["git", "show", "HEAD:Pulumi.dev.yaml"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    text = proc.stdout if proc.returncode == 0 else (REPO / "Pulumi.dev.yaml").read_text()
    assert "encryptionsalt" not in text


# --- errors, timeouts, locks ----------------------------------------------------------------------

def test_every_pulumi_failure_is_surfaced_with_stdout_and_stderr(fake: fakecli.FakeClis, project: Path) -> None:
    # An update's diagnostics are on stdout; stderr carries only the summary line.
    fake.pulumi_does(up={"exit": 255, "stdout": "Diagnostics:\n  docker:index:Container (redis-redis):\n"
                         "    error: Bind for 127.0.0.1:6379 failed: port is already allocated\n",
                         "stderr": "error: update failed\n"})
    with pytest.raises(ds.DevStackError) as err:
        ds.local_pulumi(project, "dev").run("up", "--yes")
    text = str(err.value)
    assert "port is already allocated" in text and "error: update failed" in text and "exit 255" in text
    assert "hint:" in text and "systemctl disable --now redis-server" in text


SECRET_OUTPUT = "Zq8-app-password-9kL"


@pytest.mark.parametrize("behaviour", [
    {"stdout": f'warning: something\n{{"env": {{"REDIS_PASSWORD": "{SECRET_OUTPUT}"}}}}'},  # not JSON
    {"stdout": f'{{"env": {{"REDIS_PASSWORD": "{SECRET_OUTPUT}"', "exit": 255, "stderr": "error: boom\n"},
], ids=["unparsable", "failed"])
def test_stack_output_with_secrets_never_reaches_an_error_message(fake: fakecli.FakeClis, project: Path,
                                                                  behaviour: dict[str, Any]) -> None:
    # Rule: secrets only as Pulumi secrets, never in logs (BRIEFING, secure by default).
    # `pulumi stack output --show-secrets` prints them in clear; a DevStackError is printed to the
    # terminal and CI logs, so it carries that stdout neither when the call fails nor when it is
    # not JSON.
    fake.pulumi_does(**{"stack output": behaviour})
    with pytest.raises(ds.DevStackError) as err:
        ds.local_pulumi(project, "dev").outputs()
    text = str(err.value)
    assert SECRET_OUTPUT not in text
    assert "withheld" in text and ("boom" in text or "printed no JSON" in text)


def test_incorrect_passphrase_names_where_the_passphrase_came_from(fake: fakecli.FakeClis, project: Path) -> None:
    fake.pulumi_does(up={"exit": 255, "stderr": "error: incorrect passphrase\n"})
    with pytest.raises(ds.DevStackError, match=r"(?s)incorrect passphrase.*hint: the passphrase from .*dev\.passphrase"):
        ds.local_pulumi(project, "dev").run("up")


def test_a_failing_stack_select_stops_the_docker_path(fake: fakecli.FakeClis, project: Path) -> None:
    fake.pulumi_does(**{"stack select": {"exit": 255, "stderr": "error: could not create stack: boom\n"}})
    with pytest.raises(ds.DevStackError, match=r"(?s)pulumi stack select --create failed.*boom"):
        ds._up_docker(project, "dev", project / ".run" / "dev", print)
    assert [c["key"] for c in fake.calls()] == ["stack select"]


@pytest.mark.parametrize("ignores_sigint", [False, True], ids=["cancels-on-sigint", "ignores-sigint"])
def test_a_hung_pulumi_is_interrupted_then_killed_and_reported(fake: fakecli.FakeClis, project: Path,
                                                               ignores_sigint: bool) -> None:
    fake.pulumi_does(up={"sleep": 120, "lock": True, "ignore_sigint": ignores_sigint, "stdout": "Updating...\n"})
    cli = ds.local_pulumi(project, "dev")
    with pytest.raises(ds.DevStackError, match="did not finish within 5 s") as err:
        cli.run("up", timeout=5, grace=3)
    (call,) = fake.calls()
    assert ("was killed" if ignores_sigint else "interrupted (SIGINT)") in str(err.value)
    assert "Updating..." in str(err.value)
    with pytest.raises(ProcessLookupError):
        os.kill(call["pid"], 0)
    # Pulumi releases its lock on SIGINT; a killed one leaves it behind (handled below).
    assert [lock.pid for lock in cli.locks()] == ([call["pid"]] if ignores_sigint else [])


def test_a_stale_lock_is_removed_with_pulumi_cancel_and_a_message(fake: fakecli.FakeClis, project: Path) -> None:
    # A lock from this host whose process is gone (pkg/backend/diy/lock.go: {pid, hostname}; Pulumi
    # itself treats only same-host dead pids as stale) is removed with `pulumi cancel`, which on a
    # file backend deletes the stack's lock files (pkg/backend/diy/backend.go, CancelCurrentUpdate).
    fake.pulumi_does(up={"lock": True, "leave_lock": True})
    cli = ds.local_pulumi(project, "dev")
    cli.run("up")  # exits, its lock stays: a timed-out or killed `pulumi up`
    (stale,) = cli.locks()
    assert stale.stale and stale.hostname == socket.gethostname()
    said: list[str] = []
    fake.pulumi_does()
    cli.recover_stale_locks(said.append)
    assert cli.locks() == []
    assert [c["key"] for c in fake.calls()][-1] == "cancel" and "--yes" in fake.calls()[-1]["argv"]
    assert len(said) == 1 and f"pid {stale.pid}" in said[0] and "no longer runs" in said[0]
    cli.recover_stale_locks(said.append)  # nothing left: nothing said, nothing run
    assert len(said) == 1 and [c["key"] for c in fake.calls()].count("cancel") == 1


@pytest.mark.parametrize("whose", ["live-here", "other-host"])
def test_a_lock_that_may_be_live_is_reported_not_removed(fake: fakecli.FakeClis, project: Path, whose: str) -> None:
    cli = ds.local_pulumi(project, "dev")
    locks = project / ".pulumi-state" / ".pulumi" / "locks" / "organization" / "redisstack" / "dev"
    locks.mkdir(parents=True)
    host = socket.gethostname() if whose == "live-here" else "ci-runner-7"
    (locks / "a.json").write_text(json.dumps({"pid": os.getpid() if whose == "live-here" else 4242,
                                              "username": "dev", "hostname": host, "timestamp": "2026-12-01T10:00:00Z"}))
    with pytest.raises(ds.DevStackError, match=rf"(?s)locked by a `pulumi` that may still run.*{host}.*pulumi cancel"):
        cli.recover_stale_locks(print)
    assert (locks / "a.json").exists() and fake.calls() == []


# --- waiting for health ---------------------------------------------------------------------------

class _Grafana(http.server.BaseHTTPRequestHandler):
    """/api/health that answers 503 until `ready_after` requests, as Grafana before it serves."""

    ready_after = 3
    seen = 0

    def do_GET(self) -> None:
        type(self).seen += 1
        ok = self.path == "/api/health" and type(self).seen > type(self).ready_after
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(b'{"database": "ok"}' if ok else b"{}")

    def log_message(self, *_a: Any) -> None:
        return


@pytest.fixture
def grafana() -> Iterator[tuple[type[_Grafana], int]]:
    handler = type("Grafana", (_Grafana,), {"seen": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_docker_path_waits_for_a_grafana_that_migrates_first(grafana: tuple[type[_Grafana], int],
                                                             tmp_path: Path) -> None:
    handler, port = grafana
    services = {"grafana": {"url": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port}}
    said: list[str] = []
    ds.await_healthy(services, tmp_path, timeout=60, out=said.append)
    assert handler.seen == handler.ready_after + 1
    assert len(said) == 1 and "grafana" in said[0]


def test_docker_path_gives_up_at_its_deadline_naming_the_service(grafana: tuple[type[_Grafana], int],
                                                                 tmp_path: Path) -> None:
    handler, port = grafana
    handler.ready_after = 10**6
    services = {"grafana": {"url": f"http://127.0.0.1:{port}", "host": "127.0.0.1", "port": port}}
    with pytest.raises(ds.DevStackError, match=r"not healthy within 1 s: grafana \(http://127\.0\.0\.1"):
        ds.await_healthy(services, tmp_path, timeout=1, out=lambda _m: None)


def test_the_example_app_beside_docker_is_refused_with_the_manual_command(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: redisstack\n")
    (tmp_path / "infra").mkdir()
    with pytest.raises(ds.DevStackError, match=r"process mode only; with Docker run it yourself: "
                                                     r"python -m examples.app --env-file \.run/dev/\.env"):
        ds.up(tmp_path, mode="docker", app=True, out=lambda _m: None)
    assert not (tmp_path / ".run").exists()  # refused before anything was created


def test_the_example_app_beside_a_cluster_is_refused_before_anything_starts(tmp_path: Path) -> None:
    # It was a KeyError after the whole cluster had come up (no app address for a cluster).
    (tmp_path / "Pulumi.yaml").write_text("name: redisstack\n")
    (tmp_path / "infra").mkdir()
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  redisstack:target: local\n")
    with pytest.raises(ds.DevStackError, match=r"--app runs the example app beside the single topology only"):
        ds.up(tmp_path, mode="processes", app=True, overrides={"local": {"topology": "cluster"}}, out=lambda _m: None)
    assert not (tmp_path / ".run").exists()  # refused before anything was created
