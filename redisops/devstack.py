"""`redisops dev up|down|status`: the developer's local stack, with or without Docker.

Public API (wired into the CLI by redisops/cli.py)::

    up(project_dir: Path | None = None, *, stack: str = "dev", mode: Mode = "auto",
       overrides: Mapping[str, Any] | None = None, run_smoke: bool = True,
       out: Callable[[str], None] = print) -> DevStatus
    down(project_dir: Path | None = None, *, stack: str = "dev",
         out: Callable[[str], None] = print) -> DevStatus
    status(project_dir: Path | None = None, *, stack: str = "dev") -> DevStatus

`mode`:

* ``"docker"`` - `pulumi up` of the dev stack (infra/components/local_stack.py) against a
  local file state backend in ``<project>/.pulumi-state`` (set through PULUMI_BACKEND_URL, so
  the developer's own `pulumi login` is left alone), on the Docker engine of the docker CLI's
  active context (DOCKER_HOST for the Pulumi process, `docker_endpoint`). Secrets in that state
  are encrypted with PULUMI_CONFIG_PASSPHRASE / PULUMI_CONFIG_PASSPHRASE_FILE when set;
  otherwise a random passphrase is generated once into ``.pulumi-state/<stack>.passphrase``
  (0600). `shell_env` prints the same settings for the manual `pulumi` flow (`redisops dev env`).
* ``"processes"`` - no Docker, no Pulumi CLI: the same Pulumi program runs offline under the
  project's mocks (real random passwords, real TLS keys/certificates), every container's
  uploaded files are written under ``.run/<stack>/<service>/root/...`` and the programs the
  images run (redis-server, prometheus-redis-exporter, prometheus from Debian) are started
  detached with the same arguments; only in-container paths, hostnames and ports are
  remapped, by `Remap` (explicit and tested). Grafana is not packaged for Debian: it runs only
  in docker mode; its provisioning files are still written and validated.
* ``"auto"`` - docker when both `pulumi` and a reachable Docker engine exist, else processes
  (`resolve_mode`).

Either way credentials end up in ``.run/<stack>/.env`` (0600; REDIS_* as the app reads them
plus REDIS_CA_CERT and REDIS_ADMIN_*), the stack outputs in ``.run/<stack>/outputs.json``
(0600, the format `redisops --stack-outputs` reads); passwords are never printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.components import local_stack as ls
from infra.envcontract import render_dotenv
from redisops import devpulumi, mockrun
from redisops.devpulumi import DevStackError

__all__ = ["DevStackError", "DevStatus", "ServiceStatus", "down", "shell_env", "status", "up"]

Mode = Literal["auto", "docker", "processes"]
Out = Callable[[str], None]

STATE_FILE = "state.json"
ENV_FILE = ".env"
OUTPUTS_FILE = "outputs.json"
CA_FILE = "ca.crt"
CONTAINER_TYPE = "docker:index/container:Container"
# What stands in for each image's entrypoint when there is no Docker (Debian package names in
# the comments: redis-server/redis-tools, prometheus-redis-exporter, prometheus).
LOCAL_PROGRAMS: Mapping[str, tuple[str, ...]] = {
    "redis-server": ("redis-server",),
    "valkey-server": ("valkey-server", "redis-server"),
    "/redis_exporter": ("prometheus-redis-exporter", "redis_exporter"),
    "/bin/prometheus": ("prometheus",),
}
# The example application (examples/app) that `up(app=True)` runs beside the stack.
APP_SERVICE = "app"
NOT_PACKAGED = {"grafana": "Grafana is not packaged for Debian; it runs only with Docker (mode docker)"}
APT_HINT = "apt-get install redis-server redis-tools prometheus prometheus-redis-exporter"
# `pulumi up` waits for the healthchecks it can see; the exporter (scratch image, no shell for a
# healthcheck) and anything after the last wait are polled here, as `redisops dev status` does.
DOCKER_HEALTH_DEADLINE_S = 240.0
# A container process starts with umask 0022 (runc's default; docker-library/redis#305 is the
# report that made the redis entrypoint set 0077). Processes started here get the same, so the
# private umask must come from the command itself, as in the container.
CONTAINER_UMASK = 0o022


# --- reading what the program hands to Docker ---------------------------------------------------

@dataclass(frozen=True)
class Upload:
    path: str
    content: str = field(repr=False)
    mode: int = 0o644


@dataclass(frozen=True)
class ContainerSpec:
    """One container as the stack declares it (resolved inputs of docker.Container)."""

    service: str
    image: str
    hostname: str
    entrypoint: tuple[str, ...]
    command: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    uploads: tuple[Upload, ...]
    ports: tuple[tuple[int, int, str], ...]  # (container port, host port, host address)
    volumes: tuple[str, ...]  # container paths
    healthcheck: tuple[str, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        return (*self.entrypoint, *self.command)

    @property
    def shell_wrapper(self) -> str | None:
        """The script of a `sh -c <script>` entrypoint (its command is then the script's "$0" "$@")."""
        if self.entrypoint[:2] == ("sh", "-c") and len(self.entrypoint) == 3:
            return self.entrypoint[2]
        return None

    @property
    def program(self) -> str:
        """The program the container runs: the entrypoint, or what a `sh -c` wrapper execs."""
        if self.shell_wrapper is not None and self.command:
            return self.command[0]
        return self.entrypoint[0] if self.entrypoint else ""


def _plain(value: Any) -> Any:
    """Recorded mock inputs / resolved outputs with Pulumi's secret wrappers removed."""
    return mockrun.unwrap(value)


def _fresh_secret(_key: str) -> str:
    # `secure:` config values cannot be decrypted without the Pulumi CLI: they are replaced by
    # fresh random secrets, never by predictable placeholders.
    return "Dev-" + secrets.token_hex(16)


def container_specs(resources: Sequence[Any], images: Mapping[str, str] | None = None) -> dict[str, ContainerSpec]:
    """ContainerSpec per service label from recorded resources (redisops.mockrun)."""
    image_names = dict(images or {})
    for r in resources:
        if r.type == "docker:index/remoteImage:RemoteImage":
            image_names[str(r.outputs.get("imageId"))] = str(_plain(r.inputs.get("name")))
    specs: dict[str, ContainerSpec] = {}
    for r in resources:
        if r.type != CONTAINER_TYPE:
            continue
        inp = _plain(r.inputs)
        labels = {lab["label"]: lab["value"] for lab in inp.get("labels", [])}
        service = labels.get(ls.SERVICE_LABEL)
        if service is None:
            continue
        env = dict(e.split("=", 1) for e in inp.get("envs", []))
        uploads = tuple(Upload(u["file"], u.get("content", ""), int(u.get("permissions", "0644"), 8))
                        for u in inp.get("uploads", []))
        ports = tuple((int(p["internal"]), int(p["external"]), str(p.get("ip", "0.0.0.0")))  # noqa: S104
                      for p in inp.get("ports", []))
        specs[service] = ContainerSpec(
            service=service, image=image_names.get(inp.get("image", ""), inp.get("image", "")),
            hostname=inp.get("hostname", service), entrypoint=tuple(inp.get("entrypoints", [])),
            command=tuple(inp.get("command", [])), env=env, uploads=uploads, ports=ports,
            volumes=tuple(v["containerPath"] for v in inp.get("volumes", [])),
            healthcheck=tuple((inp.get("healthcheck") or {}).get("tests", [])),
        )
    return specs


# --- the remapping: container world -> this machine ----------------------------------------------

_BOUNDARY_BEFORE = r"(?<![\w./+-])"
_BOUNDARY_AFTER = r"(?=$|[/\s\"',;)\]}])"


@dataclass(frozen=True)
class Remap:
    """What changes when a container's program runs as a plain process here. Nothing else does.

    * paths: every absolute path a container knows (its uploads, their directories, its
      volumes) moves under ``roots[service]``, keeping its in-container layout;
    * endpoints: ``<hostname>:<container port>`` of any service (and ``127.0.0.1`` /
      ``localhost`` / ``0.0.0.0`` + the service's own container port) becomes the host address
      and published port; ``host.docker.internal:<port>`` (the application on the host) becomes
      ``127.0.0.1:<port>``;
    * redis.conf's listening directives (``bind``, ``port``, ``tls-port``) follow the same table.
    """

    roots: Mapping[str, Path]
    known_paths: Mapping[str, tuple[str, ...]]
    endpoints: Mapping[tuple[str, int], tuple[str, int]]  # (hostname, container port) -> (host, port)
    own: Mapping[str, tuple[tuple[int, str, int], ...]]  # service -> (container port, listen host, port)

    @staticmethod
    def build(specs: Mapping[str, ContainerSpec], run_dir: Path) -> Remap:
        roots = {s: run_dir / s / "root" for s in specs}
        known: dict[str, tuple[str, ...]] = {}
        endpoints: dict[tuple[str, int], tuple[str, int]] = {}
        own: dict[str, tuple[tuple[int, str, int], ...]] = {}
        for s, spec in specs.items():
            paths = {u.path for u in spec.uploads} | {str(Path(u.path).parent) for u in spec.uploads}
            paths |= set(spec.volumes)
            known[s] = tuple(sorted(paths, key=len, reverse=True))
            listens = []
            for cport, hport, hip in spec.ports:
                dial = "127.0.0.1" if hip in ("0.0.0.0", "::") else hip  # noqa: S104
                endpoints[(spec.hostname, cport)] = (dial, hport)
                listens.append((cport, hip, hport))
            own[s] = tuple(listens)
        return Remap(roots, known, endpoints, own)

    def path(self, service: str, container_path: str) -> Path:
        if not container_path.startswith("/"):
            raise ValueError(f"Remap.path: {container_path!r} is not an absolute in-container path")
        return self.roots[service] / container_path.lstrip("/")

    def endpoint(self, service: str, host: str, port: int) -> tuple[str, int]:
        """Where `host:port`, as written inside `service`'s container, is reached here."""
        for cport, hip, hport in self.own[service]:
            if port == cport and host in ("127.0.0.1", "localhost", "0.0.0.0"):  # noqa: S104
                if host == "0.0.0.0":  # noqa: S104 - a listen address keeps the published host address
                    return hip, hport
                return ("127.0.0.1" if hip in ("0.0.0.0", "::") else hip), hport  # noqa: S104
        if (host, port) in self.endpoints:
            return self.endpoints[(host, port)]
        if host == ls.HOST_GATEWAY:
            return "127.0.0.1", port  # the host itself: processes here share its loopback
        return host, port

    def text(self, service: str, text: str) -> str:
        paths = self.known_paths[service]
        if paths:
            # One pass over all paths (longest first): a replaced path is never scanned again,
            # whatever the run directory's own path looks like.
            alternation = "|".join(re.escape(p) for p in paths)
            text = re.sub(f"{_BOUNDARY_BEFORE}({alternation}){_BOUNDARY_AFTER}",
                          lambda m: str(self.path(service, m.group(1))), text)
        hosts = {h for h, _ in self.endpoints} | {"127.0.0.1", "localhost", "0.0.0.0", ls.HOST_GATEWAY}  # noqa: S104
        pattern = r"(?<![\w.-])(" + "|".join(re.escape(h) for h in sorted(hosts, key=len, reverse=True)) + r"):(\d+)\b"

        def repl(m: re.Match[str]) -> str:
            host, port = self.endpoint(service, m.group(1), int(m.group(2)))
            return f"{host}:{port}"

        return re.sub(pattern, repl, text)

    def argv(self, service: str, argv: Sequence[str]) -> list[str]:
        return [self.text(service, a) for a in argv]

    def redis_conf(self, service: str, text: str) -> str:
        """redis.conf: paths/endpoints via text(), then the listening directives."""
        cport, hip, hport = next(iter(self.own[service]))
        out = []
        for line in self.text(service, text).splitlines():
            word = line.split(" ", 1)[0]
            if word == "bind":
                line = f"bind {hip}"
            elif word in ("port", "tls-port") and line.split()[1] == str(cport):
                line = f"{word} {hport}"
            out.append(line)
        return "\n".join(out) + "\n"

    def file(self, service: str, upload: Upload) -> str:
        if upload.content.lstrip().startswith("-----BEGIN"):
            return upload.content  # keys and certificates are opaque: never rewritten
        if service == "redis" and upload.path.endswith(".conf"):
            return self.redis_conf(service, upload.content)
        return self.text(service, upload.content)


# --- processes ---------------------------------------------------------------------------------

def local_program(entrypoint: str) -> str | None:
    for candidate in LOCAL_PROGRAMS.get(entrypoint, ()):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def local_argv(spec: ContainerSpec, remap: Remap) -> list[str]:
    """The container's command line with only the program path and the Remap applied: a
    `sh -c` wrapper (e.g. the private umask) runs here exactly as in the container."""
    program = local_program(spec.program)
    if program is None:
        raise DevStackError(f"{spec.service}: no local program for {spec.program!r} "
                            f"(image {spec.image}); on Debian: {APT_HINT}")
    wrapper = spec.shell_wrapper
    if wrapper is not None:
        shell = shutil.which("sh") or "/bin/sh"
        return [shell, "-c", wrapper, program, *remap.argv(spec.service, spec.command[1:])]
    return [program, *remap.argv(spec.service, spec.argv[1:])]


def write_files(spec: ContainerSpec, remap: Remap) -> list[Path]:
    written = []
    for volume in spec.volumes:
        remap.path(spec.service, volume).mkdir(parents=True, exist_ok=True, mode=0o700)
    for up in spec.uploads:
        target = remap.path(spec.service, up.path)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, up.mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(remap.file(spec.service, up))
        os.chmod(target, up.mode)  # umask must not widen or narrow what the stack declared
        written.append(target)
    return written


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now, judged as the servers themselves bind.

    Redis sets SO_REUSEADDR before bind (redis src/anet.c, anetSetReuseAddr called from
    _anetTcpServer) and so do Go's net.Listen (prometheus, redis_exporter, Grafana, Docker's
    port publishing): connections of a stopped server that sit in TIME_WAIT do not stop them.
    A probe without SO_REUSEADDR fails on exactly those and reports a false "in use" right
    after `down`. With it, bind + listen still fail when another socket listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host.strip("[]"), port))
            s.listen(1)
        except OSError:
            return False
    return True


def _wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
            return True
        time.sleep(0.05)
    return False


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: with the PID it identifies one process (PIDs get reused,
    and redis-server rewrites its command line, so neither alone is proof)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid: int, started: int | None) -> bool:
    now = proc_start_time(pid)
    return now is not None and now == started and not _zombie(pid)


def start_process(spec: ContainerSpec, remap: Remap, run_dir: Path,
                  on_started: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Start one service and wait until it is healthy; `on_started` gets its record (pid, ...)
    as soon as it runs, so that the state file names it before the wait (down() can stop it)."""
    argv = local_argv(spec, remap)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(remap.roots[spec.service]),
           **{k: remap.text(spec.service, v) for k, v in spec.env.items()}}
    log = run_dir / f"{spec.service}.log"
    workdir = remap.roots[spec.service]
    workdir.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, umask=CONTAINER_UMASK)
    _, host_port, host_ip = spec.ports[0]
    dial = "127.0.0.1" if host_ip in ("0.0.0.0", "::") else host_ip  # noqa: S104
    record = {"pid": proc.pid, "started": proc_start_time(proc.pid), "argv": argv, "host": dial, "port": host_port,
              "log": str(log), "image": spec.image}
    if on_started is not None:
        on_started(record)
    _await_healthy_process(proc, spec.service, dial, host_port, log, run_dir, 30.0)
    return record


def _await_healthy_process(proc: subprocess.Popen[bytes], name: str, host: str, port: int, log: Path,
                           run_dir: Path, timeout: float) -> None:
    """Until `name`'s health probe passes; a process that exits or stays unhealthy is reaped and
    reported with its log."""
    info = {"host": host, "port": port}
    deadline = time.monotonic() + timeout
    while not (_wait_port(host, port, 0.5) and _service_health(name, info, run_dir)[0]):
        if time.monotonic() > deadline or proc.poll() is not None:
            _reap(proc)
            tail = log.read_text(errors="replace")[-2000:]
            raise DevStackError(f"{name} is not healthy on {host}:{port}; log {log}:\n{tail}")
        time.sleep(0.1)


def _reap(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, SIGKILL after `timeout`, and wait: a failed start leaves neither a process nor a zombie."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop_pid(pid: int, started: int | None, timeout: float = 15.0) -> bool:
    """SIGTERM (Redis flushes AOF/RDB on it), SIGKILL after `timeout`. False: not ours/not running."""
    if not _pid_alive(pid, started):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid, started):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def app_target(spec: ContainerSpec, remap: Remap) -> tuple[str, int]:
    """Where the dev stack's Prometheus looks for the application (job ratelimit-app), here."""
    import yaml

    from infra.monitoring.prometheus import APP_SCRAPE_JOB_NAME

    upload = next(u for u in spec.uploads if u.path.endswith("/prometheus.yml"))
    config = yaml.safe_load(remap.file(spec.service, upload))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == APP_SCRAPE_JOB_NAME)
    host, _, port = job["static_configs"][0]["targets"][0].rpartition(":")
    return host, int(port)


def start_app(run_dir: Path, host: str, port: int, on_started: Callable[[dict[str, Any]], None] | None = None,
              timeout: float = 60.0) -> dict[str, Any]:
    """The example application (examples/app, uvicorn) beside the stack, with the stack's .env, on
    the address Prometheus scrapes; waits until GET /health answers. The app's code comes from the
    checkout redisops runs from (examples/ is not installed), the stack from `run_dir`."""
    code = Path(__file__).resolve().parents[1]
    if not (code / "examples" / "app" / "__main__.py").is_file():
        raise DevStackError(f"no example app in {code}/examples/app (an installed redisops has no examples/: "
                            "run from a checkout)")
    if not port_free(host, port):
        raise DevStackError(f"app: {host}:{port} is already in use; free it or choose another port with "
                            "overrides {'local': {'ports': {'app': <port>}}} (stack config redisstack:local.ports.app)")
    argv = [sys.executable, "-m", "examples.app", "--host", host, "--port", str(port),
            "--env-file", str(run_dir / ENV_FILE)]
    log = run_dir / f"{APP_SERVICE}.log"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code)}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, cwd=code, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    record = {"pid": proc.pid, "started": proc_start_time(proc.pid), "argv": argv, "host": host, "port": port,
              "log": str(log), "url": f"http://{host}:{port}"}
    if on_started is not None:
        on_started(record)
    _await_healthy_process(proc, APP_SERVICE, host, port, log, run_dir, timeout)
    return record


# --- status ------------------------------------------------------------------------------------

@dataclass
class ServiceStatus:
    name: str
    url: str
    running: bool
    healthy: bool
    detail: str = ""
    pid: int | None = None


@dataclass
class DevStatus:
    stack: str
    mode: str  # "processes", "docker" or "down"
    run_dir: Path
    services: list[ServiceStatus] = field(default_factory=list)
    env_file: Path | None = None
    smoke: str | None = None
    functions: str | None = None
    seconds: float | None = None
    cluster: list[str] | None = None  # slot coverage lines (local.topology cluster)
    cluster_ok: bool = True

    @property
    def healthy(self) -> bool:
        """Every service that runs here is healthy (Grafana without Docker is reported, not run)."""
        run_here = [s for s in self.services if s.name not in NOT_PACKAGED or self.mode == "docker"]
        return self.mode != "down" and bool(run_here) and all(s.healthy for s in run_here) and self.cluster_ok

    def lines(self) -> list[str]:
        if self.mode == "down":
            return [f"dev stack {self.stack}: down (nothing in {self.run_dir})"]
        out = [f"dev stack {self.stack}: {self.mode}" + (f", up in {self.seconds:.1f}s" if self.seconds else "")]
        for s in self.services:
            state = "healthy" if s.healthy else ("running, unhealthy" if s.running else "not running")
            out.append(f"  {s.name:<11} {state:<20} {s.url}" + (f"  ({s.detail})" if s.detail else ""))
        for line in self.cluster or []:
            out.append(f"  {line}")
        if self.env_file:
            out.append(f"  credentials: {self.env_file} (mode 0600; `set -a; . {self.env_file}; set +a`)")
        if self.functions:
            out.append(f"  functions: {self.functions}")
        if self.smoke:
            out.append(f"  smoke: {self.smoke}")
        return out


def _http_ok(url: str, expect: str | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URLs we built
            body = r.read().decode(errors="replace")
            return r.status == 200 and (expect is None or expect in body)
    except OSError:
        return False


def redis_ping(host: str, port: int, *, ca_file: Path | None) -> str:
    """An unauthenticated PING, exactly what the container healthcheck does: PONG or NOAUTH."""
    with socket.create_connection((host, port), timeout=2) as raw:
        sock: socket.socket = raw
        if ca_file is not None:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            sock = ctx.wrap_socket(raw, server_hostname=host)
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(256).decode(errors="replace").strip()


def _service_health(name: str, info: Mapping[str, Any], run_dir: Path) -> tuple[bool, str]:
    host, port = info["host"], int(info["port"])
    name = name.split("-", 1)[0]  # the cluster topology's redis-<i>, exporter-<i>
    if name == "redis":
        ca = run_dir / CA_FILE
        try:
            reply = redis_ping(host, port, ca_file=ca if ca.exists() else None)
        except (OSError, ssl.SSLError) as exc:
            return False, f"PING failed: {exc.__class__.__name__}"
        if reply.startswith("-NOAUTH"):
            return True, "unauthenticated PING refused with NOAUTH: up, password enforced"
        return reply.startswith("+PONG"), f"PING answered {reply[:40]!r}"
    if name == "exporter":
        return _http_ok(f"http://{host}:{port}/metrics", "redis_up 1"), ""
    if name == "prometheus":
        return _http_ok(f"http://{host}:{port}/-/ready"), ""
    if name == APP_SERVICE:
        return _http_ok(f"http://{host}:{port}/health", "ok"), ""
    return _http_ok(f"http://{host}:{port}/api/health"), ""


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir / STATE_FILE).read_text())
        return data
    except (OSError, json.JSONDecodeError):
        return None


def status(project_dir: Path | None = None, *, stack: str = "dev") -> DevStatus:
    """What runs now, each service probed (the same checks as the container healthchecks)."""
    project = find_project(project_dir)
    run_dir = project / ".run" / stack
    state = _read_state(run_dir)
    if state is None:
        return DevStatus(stack, "down", run_dir)
    result = DevStatus(stack, state["mode"], run_dir, env_file=run_dir / ENV_FILE)
    for name, info in state["services"].items():
        url = info.get("url", "")
        if "note" in info:
            result.services.append(ServiceStatus(name, url, False, False, info["note"]))
            continue
        pid = info.get("pid")
        running = True if pid is None else _pid_alive(int(pid), info.get("started"))
        healthy, detail = _service_health(name, info, run_dir) if running else (False, "")
        result.services.append(ServiceStatus(name, url, running, healthy, detail, pid))
    if state.get("topology") == "cluster":
        from redisops import devcluster

        result.cluster_ok, result.cluster = devcluster.coverage_lines(run_dir, state)
    return result


# --- up / down ---------------------------------------------------------------------------------

def find_project(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file() and (d / "infra").is_dir():
            return d
    raise DevStackError(f"no redisstack project (Pulumi.yaml + infra/) at or above {here}")


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def offline_run(project: Path, stack: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """The dev stack program under the project's mocks (redisops.mockrun.StackRun)."""
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    stack_file = project / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        raise DevStackError(f"no stack file {stack_file}")
    config, secret_keys = mockrun.load_stack_config(stack_file, secret_value=_fresh_secret)
    config = _deep_merge(config, overrides or {})
    if config.get("target") != "local":
        raise DevStackError(f"stack {stack} has redisstack:target = {config.get('target')!r}; "
                            "the dev stack needs target local")
    return mockrun.run_program(config, stack=stack, secret_keys=secret_keys)


def dev_env(outputs: Mapping[str, Any], run_dir: Path) -> dict[str, str]:
    """The .env a developer sources: the app's env contract plus the operator credentials."""
    env = {str(k): str(v) for k, v in _plain(outputs["env"]).items()}
    if outputs.get("caCertPem"):
        env["REDIS_CA_CERT"] = str(run_dir / CA_FILE)
    env["REDIS_ADMIN_USERNAME"] = "admin"
    env["REDIS_ADMIN_PASSWORD"] = str(outputs["adminPassword"])
    env["REDIS_MONITOR_USERNAME"] = "monitor"
    env["REDIS_MONITOR_PASSWORD"] = str(outputs["monitorPassword"])
    env["GRAFANA_URL"] = str(outputs["grafanaUrl"])
    env["GRAFANA_ADMIN_USER"] = str(outputs.get("grafanaAdminUser", "admin"))
    env["GRAFANA_ADMIN_PASSWORD"] = str(outputs["grafanaAdminPassword"])
    return env


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def write_credentials(outputs: Mapping[str, Any], run_dir: Path) -> Path:
    if outputs.get("caCertPem"):
        (run_dir / CA_FILE).write_text(str(outputs["caCertPem"]))
    _write_private(run_dir / OUTPUTS_FILE, json.dumps(_plain(dict(outputs)), indent=2, default=str))
    _write_private(run_dir / ENV_FILE, render_dotenv(dev_env(outputs, run_dir)))
    return run_dir / ENV_FILE


def docker_available() -> bool:
    """A Pulumi CLI and a Docker engine that answers through the docker CLI's active context."""
    if not (shutil.which("pulumi") and shutil.which("docker")):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_mode(mode: Mode = "auto") -> Literal["docker", "processes"]:
    """The mode `up` runs in: as asked, or for "auto" docker when docker_available()."""
    if mode == "docker" or mode == "processes":
        return mode
    return "docker" if docker_available() else "processes"


def local_pulumi(project: Path, stack: str, *, environ: Mapping[str, str] | None = None,
                 with_engine: bool = True) -> devpulumi.LocalPulumi:
    """The Pulumi CLI on this project's local state, on the docker CLI's active engine."""
    env = dict(os.environ if environ is None else environ)
    endpoint = devpulumi.docker_endpoint(env) if with_engine else None
    return devpulumi.LocalPulumi(project, stack, environ=env, endpoint=endpoint)


def shell_env(project_dir: Path | None = None, *, stack: str = "dev", with_engine: bool = True) -> list[str]:
    """`export` lines for the manual flow (`eval "$(redisops dev env)"`): the state backend,
    passphrase and Docker engine `redisops dev up` uses, so both flows share one stack."""
    project = find_project(project_dir)
    return local_pulumi(project, stack, with_engine=with_engine).shell_env()


def published_ports(project: Path, stack: str) -> list[tuple[str, str, int]]:
    """(service, host address, port) of every port the stack publishes, from the program itself."""
    specs = container_specs(offline_run(project, stack).resources)
    return [(s, ip, hp) for s, spec in specs.items() for _, hp, ip in spec.ports]


def check_ports(ports: Sequence[tuple[str, str, int]], *, how_to_change: str) -> None:
    busy = [(s, ip, hp) for s, ip, hp in ports if not port_free(ip, hp)]
    if busy:
        s, ip, hp = busy[0]
        raise DevStackError(
            f"{s}: {ip}:{hp} is already in use; free it or choose another port with {how_to_change.format(s=s)}. "
            "A Debian service left enabled holds these after a reboot: sudo systemctl disable --now "
            "redis-server prometheus prometheus-redis-exporter (scripts/setup.sh --packages disables them)")


def _up_docker(project: Path, stack: str, run_dir: Path, out: Out) -> dict[str, Any]:
    cli = local_pulumi(project, stack)
    assert cli.endpoint is not None
    cli.select_or_create()
    cli.recover_stale_locks(out)
    if cli.deployed_resources() == 0:
        # A first `up` (or one after `down`): every published port must be free, or the engine
        # fails the container late with "port is already allocated".
        check_ports(published_ports(project, stack),
                    how_to_change=f"pulumi config set --stack {stack} redisstack:local.ports.{{s}} <port>")
    # Written first: a failed `pulumi up` still leaves what `down` needs to destroy.
    _save_state(run_dir, {"mode": "docker", "services": {}})
    out(f"pulumi up --stack {stack} (state: {cli.state_dir}; engine: {cli.endpoint.host}, "
        f"docker context {cli.endpoint.context or 'default'})")
    cli.run("up", "--yes", "--skip-preview")
    outputs = cli.outputs()
    services = {}
    for name, key in (("redis", "redisUrl"), ("exporter", "exporterUrl"), ("prometheus", "prometheusUrl"),
                      ("grafana", "grafanaUrl")):
        url = str(outputs[key])
        hostport = url.split("://", 1)[1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        services[name] = {"url": url, "host": host.strip("[]"), "port": int(port)}
    return {"outputs": outputs, "services": services}


def await_healthy(services: Mapping[str, Mapping[str, Any]], run_dir: Path, *,
                  timeout: float = DOCKER_HEALTH_DEADLINE_S, out: Out = print) -> None:
    """Poll every service's health probe (as `status` does) until all pass or `timeout` ends.
    Grafana migrates its database on a first start before it listens: a first `up` must wait for
    it, not report it unhealthy."""
    deadline = time.monotonic() + timeout
    pending = dict(services)
    said = False
    while True:
        details = {}
        for name, info in list(pending.items()):
            ok, detail = _service_health(name, info, run_dir)
            if ok:
                del pending[name]
            else:
                details[name] = detail
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DevStackError(
                f"not healthy within {timeout:.0f} s: "
                + ", ".join(f"{n} ({pending[n].get('url', '')}{'; ' + d if d else ''})" for n, d in details.items())
                + "; see `docker logs <container>` (label redisstack.service=<name>)")
        if not said:
            out(f"waiting for {', '.join(pending)} to answer (up to {timeout:.0f} s; Grafana migrates its "
                "database on a first start)")
            said = True
        time.sleep(1.0)


def _topology(project: Path, stack: str, overrides: Mapping[str, Any] | None) -> str:
    from redisops import devcluster

    return str(devcluster.stack_config(project, stack, overrides).get("local", {}).get("topology", "single"))


def _up_processes(project: Path, stack: str, run_dir: Path, overrides: Mapping[str, Any] | None,
                  out: Out) -> dict[str, Any]:
    from redisops import devcluster

    if _topology(project, stack, overrides) == "cluster":
        return devcluster.up(project, stack, run_dir, overrides, out)
    run = offline_run(project, stack, overrides)
    if run.outputs.get("topology") == "sentinel":
        # Sentinel hands out container hostnames; without Docker's network there is nothing
        # for host processes to resolve them to (tests/integration/test_devstack_sentinel.py
        # maps them by hand to prove the files, which is no dev environment).
        raise DevStackError("the process mode runs local.topology single or cluster only; use Docker "
                            "(mode docker) for local.topology sentinel")
    specs = container_specs(run.resources)
    check_ports([(s, ip, hp) for s, spec in specs.items() if s not in NOT_PACKAGED for _, hp, ip in spec.ports],
                how_to_change="overrides {{'local': {{'ports': {{'{s}': <port>}}}}}} "
                              "(stack config redisstack:local.ports.{s})")
    missing = [f"{s} ({spec.program})" for s, spec in specs.items()
               if s not in NOT_PACKAGED and not local_program(spec.program)]
    if missing:
        raise DevStackError(f"missing programs for {', '.join(missing)}; on Debian: {APT_HINT}")
    remap = Remap.build(specs, run_dir)
    services: dict[str, Any] = {}
    outputs = run.outputs
    if outputs.get("caCertPem"):
        # The readiness probe verifies Redis against the stack's CA from the start.
        (run_dir / CA_FILE).write_text(str(outputs["caCertPem"]))
    urls = {"redis": outputs["redisUrl"], "exporter": outputs["exporterUrl"],
            "prometheus": outputs["prometheusUrl"], "grafana": outputs["grafanaUrl"]}
    # Written before anything starts so that down() can clean up after a partial start.
    _save_state(run_dir, {"mode": "processes", "services": services})
    for name in ("redis", "exporter", "prometheus", "grafana"):
        spec = specs[name]
        write_files(spec, remap)
        if name in NOT_PACKAGED:
            services[name] = {"url": urls[name], "note": NOT_PACKAGED[name] + "; provisioning files in "
                              f"{remap.roots[name]}"}
            continue
        def started(record: dict[str, Any], name: str = name) -> None:
            services[name] = {"url": urls[name], **record}
            _save_state(run_dir, {"mode": "processes", "services": services})

        start_process(spec, remap, run_dir, on_started=started)
    return {"outputs": outputs, "services": services, "app_target": app_target(specs["prometheus"], remap)}


def _save_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    _write_private(run_dir / STATE_FILE, json.dumps(state, indent=2))


def _run_spec(run_dir: Path) -> Any:
    from redisops.connection import resolve

    environ = {"REDIS_CA_CERT": str(run_dir / CA_FILE)} if (run_dir / CA_FILE).exists() else {}
    return resolve(stack_outputs=run_dir / OUTPUTS_FILE, environ=environ)


def load_functions(run_dir: Path) -> str:
    """`redisops functions load` with the stack's admin credential: the application user may only
    FCALL the limiter's library, so every start (re)loads it (FUNCTION LOAD REPLACE, idempotent)."""
    from redisops import functions

    result = functions.load(_run_spec(run_dir))
    if not result["passed"]:
        raise DevStackError(f"redisops functions load: {result['message']}")
    return str(result["message"])


def _smoke(run_dir: Path) -> str:
    """`redisops smoke` (redisops.smoke.run_smoke) against the stack, from the outputs file."""
    from redisops.smoke import run_smoke

    report = run_smoke(_run_spec(run_dir))
    if report.passed:
        return "passed"
    return "FAILED: " + ", ".join(f"{c.name}" for c in report.failed)


def up(project_dir: Path | None = None, *, stack: str = "dev", mode: Mode = "auto",
       overrides: Mapping[str, Any] | None = None, run_smoke: bool = True, app: bool = False,
       out: Out = print) -> DevStatus:
    """Bring the dev stack up (idempotent: an already running stack is reported, not restarted).

    `app` also runs the example application (examples/app) on the port Prometheus scrapes
    (local.ports.app), with the stack's .env; process mode only (with Docker, Prometheus reaches
    the host through host.docker.internal, where a loopback-only app is not listening)."""
    started = time.monotonic()
    project = find_project(project_dir)
    run_dir = project / ".run" / stack
    current = status(project, stack=stack)
    if current.mode != "down":
        if current.services and all(s.running for s in current.services
                                    if s.pid is not None or current.mode == "docker"):
            out(f"dev stack {stack} is already running ({current.mode}); `redisops dev down` first to recreate")
            return current
        if current.mode != "docker" or current.services:
            down(project, stack=stack, out=out)
        # else: a docker `up` that failed half-way; `pulumi up` converges from what it left.
    chosen = resolve_mode(mode)
    if chosen == "docker" and app:
        raise DevStackError("--app runs the example app beside the process mode only; with Docker run it "
                            "yourself: python -m examples.app --env-file .run/dev/.env (see README)")
    if app and chosen == "processes" and _topology(project, stack, overrides) == "cluster":
        # examples/app/app.py redis_client connects to one server; a cluster client it does not build.
        raise DevStackError("--app runs the example app beside the single topology only (it connects to one "
                            "server); local.topology is cluster here")
    if chosen == "docker" and overrides:
        raise DevStackError("overrides apply to the container-less run only; with Docker set them as stack "
                            f"config: pulumi config set --stack {stack} redisstack:<key> <value>")
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if chosen == "docker":
            result = _up_docker(project, stack, run_dir, out)
        else:
            out("no Docker engine/Pulumi CLI in use: running the dev stack as local processes "
                "(same files and arguments as the containers)")
            result = _up_processes(project, stack, run_dir, overrides, out)
    except Exception:
        if chosen == "processes":
            down(project, stack=stack, out=lambda _m: None)
        raise
    _save_state(run_dir, {"mode": chosen, "services": result["services"],
                          **({"topology": result["topology"]} if "topology" in result else {})})
    env_file = write_credentials(result["outputs"], run_dir)
    if app:
        services = result["services"]

        def app_started(record: dict[str, Any]) -> None:
            services[APP_SERVICE] = record
            _save_state(run_dir, {"mode": chosen, "services": services})

        try:
            app_host, app_port = result["app_target"]
            start_app(run_dir, app_host, app_port, on_started=app_started)
        except Exception:
            down(project, stack=stack, out=lambda _m: None)
            raise
    if chosen == "docker":
        await_healthy(result["services"], run_dir, out=out)
    final = status(project, stack=stack)
    final.functions = load_functions(run_dir)
    if run_smoke:
        final.smoke = _smoke(run_dir)
    final.seconds = time.monotonic() - started
    for line in final.lines():
        out(line)
    final.env_file = env_file
    return final


def down(project_dir: Path | None = None, *, stack: str = "dev", out: Out = print) -> DevStatus:
    """Stop what up() started and remove its run directory (docker mode: `pulumi destroy`)."""
    project = find_project(project_dir)
    run_dir = project / ".run" / stack
    state = _read_state(run_dir)
    if state is not None and state.get("mode") == "docker":
        cli = local_pulumi(project, stack)
        cli.recover_stale_locks(out)
        out(f"pulumi destroy --stack {stack}")
        cli.run("destroy", "--yes", "--skip-preview")
    elif state is not None:
        for name, info in reversed(list(state.get("services", {}).items())):
            pid = info.get("pid")
            if pid is not None and _stop_pid(int(pid), info.get("started")):
                out(f"stopped {name} (pid {pid})")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return DevStatus(stack, "down", run_dir)

