"""The Pulumi CLI and the Docker engine behind `redisops dev` in docker mode and the manual flow.

Both ways of running the dev stack (`redisops dev up` / `scripts/dev.sh`, and `pulumi ...` by hand
after `eval "$(redisops dev env)"`) use one state, one passphrase and one engine:

* state: a file backend in ``<project>/.pulumi-state`` through PULUMI_BACKEND_URL, so the
  developer's own `pulumi login` is left alone;
* passphrase: Pulumi's own precedence (pulumi/pulumi pkg/secrets/passphrase/manager.go,
  readPassphrase): PULUMI_CONFIG_PASSPHRASE when it is set at all, else the file named by a
  non-empty PULUMI_CONFIG_PASSPHRASE_FILE; when neither is set, ``.pulumi-state/<stack>.passphrase``,
  generated once. A stack file whose `encryptionsalt` was made with a passphrase this checkout
  does not hold is refused up front: Pulumi would only say "incorrect passphrase";
* engine: the docker CLI's active context (`docker context inspect`), handed to the docker
  provider as DOCKER_HOST. The provider's `host` defaults to DOCKER_HOST or the default socket
  and its `context` to DOCKER_CONTEXT, read from ~/.docker/contexts only
  (kreuzwerker/terraform-provider-docker v4.5.0 internal/provider/provider.go, New and
  getContextHost): it never follows the CLI's current context (Docker Desktop, Colima, Rancher
  Desktop, Podman), while `docker info` does.

Every failing CLI call raises DevStackError with its stdout and its stderr (an update's
diagnostics are on stdout, the summary on stderr) and a hint where the failure is a known one.
A stack lock left by a Pulumi that no longer runs (an interrupted or timed-out `up`) is removed
with `pulumi cancel`, which on a file backend deletes the stack's lock files
(pkg/backend/diy/backend.go, CancelCurrentUpdate), after saying so; a live lock is reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STATE_DIR = ".pulumi-state"
DEFAULT_PROJECT = "redisstack"
PULUMI_TIMEOUT_S = 900.0
# After a timeout Pulumi gets SIGINT: it cancels the update, lets in-flight operations finish,
# writes its state and releases the stack lock. SIGKILL only after this grace.
INTERRUPT_GRACE_S = 60.0
DOCKER_CLI_TIMEOUT_S = 30.0
TAIL = 4000
# docker context inspect reports this as the TLS path of contexts that keep nothing on disk
# (the default context built from DOCKER_HOST / DOCKER_CERT_PATH, which the provider reads itself).
IN_MEMORY = "<IN MEMORY>"


class DevStackError(RuntimeError):
    """The dev stack cannot be brought up/down; the message says what to do."""


Out = Callable[[str], None]


# --- the Docker engine -------------------------------------------------------------------------

@dataclass(frozen=True)
class DockerEndpoint:
    """The engine the docker CLI's active context talks to."""

    context: str
    host: str
    cert_path: str | None = None

    def env(self) -> dict[str, str]:
        """What the docker provider reads: DOCKER_HOST (and DOCKER_CERT_PATH for a TLS context)."""
        env = {"DOCKER_HOST": self.host}
        if self.cert_path:
            env["DOCKER_CERT_PATH"] = self.cert_path
        return env


def docker_endpoint(environ: Mapping[str, str] | None = None) -> DockerEndpoint:
    """`docker context inspect` of the active context (it follows DOCKER_CONTEXT, DOCKER_HOST,
    DOCKER_CONFIG and the CLI's currentContext, as `docker info` does)."""
    argv = ["docker", "context", "inspect"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=DOCKER_CLI_TIMEOUT_S,
                              env=dict(environ) if environ is not None else None, check=False)
    except FileNotFoundError:
        raise DevStackError("docker CLI not found on PATH: docker mode needs it (or use --mode processes)") from None
    except subprocess.TimeoutExpired:
        raise DevStackError(f"`{' '.join(argv)}` did not answer within {DOCKER_CLI_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise DevStackError(f"`{' '.join(argv)}` failed (exit {proc.returncode}); the Docker engine to deploy to "
                            f"comes from the active docker context:\n{_tails(proc.stdout, proc.stderr)}")
    try:
        (ctx,) = json.loads(proc.stdout)
        host = str(ctx["Endpoints"]["docker"]["Host"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DevStackError(f"`{' '.join(argv)}` printed no docker endpoint ({exc.__class__.__name__}: {exc}):\n"
                            f"{proc.stdout[-TAIL:]}") from None
    if not host:
        raise DevStackError(f"docker context {ctx.get('Name')!r} has no docker endpoint host")
    tls_path = str((ctx.get("Storage") or {}).get("TLSPath") or "")
    has_tls = bool((ctx.get("TLSMaterial") or {}).get("docker"))
    cert_path = str(Path(tls_path) / "docker") if has_tls and tls_path and tls_path != IN_MEMORY else None
    return DockerEndpoint(context=str(ctx.get("Name", "")), host=host, cert_path=cert_path)


# --- state, passphrase, locks --------------------------------------------------------------------

def encryption_salt(stack_file: Path) -> str | None:
    """The passphrase provider's salt Pulumi keeps in Pulumi.<stack>.yaml (`encryptionsalt`)."""
    try:
        doc = yaml.safe_load(stack_file.read_text()) or {}
    except FileNotFoundError:
        return None
    salt = doc.get("encryptionsalt") if isinstance(doc, dict) else None
    return str(salt) if salt else None


def _project_name(project: Path) -> str:
    try:
        doc = yaml.safe_load((project / "Pulumi.yaml").read_text()) or {}
    except FileNotFoundError:
        return DEFAULT_PROJECT
    return str(doc.get("name") or DEFAULT_PROJECT)


def pid_alive(pid: int) -> bool:
    """As Pulumi's own probe (pkg/backend/diy/lock_process_unix.go): signal 0; EPERM is alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class StackLock:
    """One lock file of a file backend: {pid, username, hostname, timestamp} (pkg/backend/diy/lock.go)."""

    path: Path
    pid: int
    username: str
    hostname: str
    timestamp: str

    @property
    def stale(self) -> bool:
        """Left on this host by a process that no longer runs (another host cannot be probed)."""
        return self.hostname == socket.gethostname() and not pid_alive(self.pid)

    def describe(self) -> str:
        return f"{self.path}: pid {self.pid}, {self.username}@{self.hostname}, since {self.timestamp}"


@dataclass
class LocalPulumi:
    """The Pulumi CLI on one stack of the project's local state backend."""

    project: Path
    stack: str
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    endpoint: DockerEndpoint | None = None

    @property
    def state_dir(self) -> Path:
        return self.project / STATE_DIR

    @property
    def backend_url(self) -> str:
        return f"file://{self.state_dir}"

    @property
    def passphrase_file(self) -> Path:
        return self.state_dir / f"{self.stack}.passphrase"

    @property
    def stack_file(self) -> Path:
        return self.project / f"Pulumi.{self.stack}.yaml"

    # -- passphrase ------------------------------------------------------------------------------
    def passphrase(self) -> tuple[dict[str, str], str]:
        """(variables to add to the environment, where the passphrase comes from)."""
        if "PULUMI_CONFIG_PASSPHRASE" in self.environ:
            return {}, "PULUMI_CONFIG_PASSPHRASE"
        if self.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
            return {}, f"PULUMI_CONFIG_PASSPHRASE_FILE={self.environ['PULUMI_CONFIG_PASSPHRASE_FILE']}"
        pfile = self.passphrase_file
        if not pfile.exists():
            if encryption_salt(self.stack_file):
                raise DevStackError(
                    f"{self.stack_file.name} has an `encryptionsalt`, made with a passphrase this checkout does not "
                    f"hold: neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set and {pfile} "
                    "does not exist. Set PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) to the "
                    "passphrase used with it. If it is lost and no state depends on it, delete the "
                    f"`encryptionsalt:` line and every `secure:` value from {self.stack_file.name}: a new "
                    "passphrase is then generated (the salt is per machine; do not commit it).")
            self.state_dir.mkdir(exist_ok=True, mode=0o700)
            fd = os.open(pfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
        return {"PULUMI_CONFIG_PASSPHRASE_FILE": str(pfile)}, str(pfile)

    def env(self) -> dict[str, str]:
        """The environment of every `pulumi` call (and what `shell_env` exports)."""
        self.state_dir.mkdir(exist_ok=True, mode=0o700)
        env = {**self.environ, "PULUMI_BACKEND_URL": self.backend_url, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        env.update(self.passphrase()[0])
        if self.endpoint is not None:
            env.update(self.endpoint.env())
            # The provider's `context` (DOCKER_CONTEXT) overrides `host` and reads only
            # ~/.docker/contexts: the endpoint resolved by the CLI is the one to use.
            env.pop("DOCKER_CONTEXT", None)
        return env

    def shell_env(self) -> list[str]:
        """`export` lines that give a shell the same state, passphrase and engine."""
        env = self.env()
        keys = ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST", "DOCKER_CERT_PATH"]
        lines = [f"export {k}={shlex.quote(env[k])}" for k in keys
                 if k in env and env.get(k) != self.environ.get(k)]
        if self.endpoint is not None and "DOCKER_CONTEXT" in self.environ:
            lines.append("unset DOCKER_CONTEXT")
        return lines

    # -- running the CLI -------------------------------------------------------------------------
    def run(self, *args: str, timeout: float = PULUMI_TIMEOUT_S, grace: float = INTERRUPT_GRACE_S,
            secret_stdout: bool = False) -> str:
        """`pulumi <args> --stack <stack> --non-interactive`; its stdout, or DevStackError with both streams
        (stderr only when `secret_stdout`: the output of `--show-secrets` never reaches a message)."""
        argv = ["pulumi", *args, "--stack", self.stack, "--non-interactive"]
        what = f"pulumi {' '.join(args)}"
        env = self.env()
        try:
            proc = subprocess.Popen(argv, cwd=self.project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        except FileNotFoundError:
            raise DevStackError("the Pulumi CLI (`pulumi`) is not on PATH: https://www.pulumi.com/docs/install/ "
                                "(or run the dev stack without Docker: --mode processes)") from None
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout, stderr, how = _interrupt(proc, grace)
            stdout = _WITHHELD if secret_stdout else stdout
            raise DevStackError(
                f"{what} did not finish within {timeout:.0f} s; {how}. The stack may be half-updated: run "
                "`redisops dev up` again (a lock left behind is removed) or `redisops dev down`.\n"
                f"{_tails(stdout, stderr)}") from None
        if proc.returncode != 0:
            shown = _WITHHELD if secret_stdout else stdout
            raise DevStackError(f"{what} failed (exit {proc.returncode}):\n{_tails(shown, stderr)}"
                                f"{self._hint(shown + stderr)}")
        return stdout

    def _hint(self, text: str) -> str:
        low = text.lower()
        hints = []
        if "incorrect passphrase" in low:
            source = self.passphrase()[1]
            hints.append(f"the passphrase from {source} is not the one {self.stack_file.name}'s `encryptionsalt` was "
                         "made with; use that one (PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE)")
        if "currently locked" in low:
            hints.append("another `pulumi` holds the stack lock; `redisops dev up` removes a lock whose process "
                         "is gone")
        if "address already in use" in low or "port is already allocated" in low:
            hints.append("a host port is taken, e.g. by a Debian service left enabled: sudo systemctl disable "
                         "--now redis-server prometheus prometheus-redis-exporter (or choose other ports with "
                         f"pulumi config set --stack {self.stack} redisstack:local.ports.<service> <port>)")
        return "".join(f"\nhint: {h}" for h in hints)

    def select_or_create(self) -> None:
        self.run("stack", "select", "--create", timeout=120)

    def outputs(self) -> dict[str, Any]:
        text = self.run("stack", "output", "--json", "--show-secrets", timeout=120, secret_stdout=True)
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            # Not echoed: it holds the stack's secrets in clear (passwords, keys).
            raise DevStackError(f"pulumi stack output --json --show-secrets printed no JSON ({exc.__class__.__name__} "
                                f"at char {getattr(exc, 'pos', '?')} of {len(text)}; output withheld, it holds "
                                f"secrets): run `pulumi stack output --json --stack {self.stack}` to see it "
                                "with secrets masked") from None
        return data

    def deployed_resources(self) -> int:
        """Custom resources in the stack's state (0 for a new or destroyed stack)."""
        text = self.run("stack", "export", timeout=120)
        try:
            resources = json.loads(text).get("deployment", {}).get("resources") or []
        except (ValueError, AttributeError) as exc:
            raise DevStackError(f"pulumi stack export printed no deployment ({exc}):\n{text[-TAIL:]}") from None
        return sum(1 for r in resources if not str(r.get("type", "")).startswith(("pulumi:", "redisstack:")))

    # -- locks -----------------------------------------------------------------------------------
    def locks(self) -> list[StackLock]:
        """The stack's lock files: <state>/.pulumi/locks/<org>/<project>/<stack>/<id>.json for
        project-scoped stacks, <state>/.pulumi/locks/<stack>/<id>.json in the legacy layout
        (pkg/backend/diy/lock.go: stackLockDir(FullyQualifiedName), lockPath)."""
        root = self.state_dir / ".pulumi" / "locks"
        project = _project_name(self.project)
        found = []
        for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
            parts = path.relative_to(root).parts
            if parts[-2] != self.stack or not (len(parts) == 2 or (len(parts) == 4 and parts[1] == project)):
                continue
            try:
                data = json.loads(path.read_text())
                found.append(StackLock(path, int(data["pid"]), str(data.get("username", "?")),
                                       str(data.get("hostname", "?")), str(data.get("timestamp", "?"))))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise DevStackError(f"unreadable Pulumi lock file {path} ({exc.__class__.__name__}: {exc}); "
                                    f"if no `pulumi` runs on stack {self.stack}, delete it") from None
        return found

    def recover_stale_locks(self, out: Out) -> None:
        """Remove locks whose process is gone (with a message); refuse when one is live."""
        locks = self.locks()
        if not locks:
            return
        live = [lock for lock in locks if not lock.stale]
        if live:
            raise DevStackError(
                f"stack {self.stack} is locked by a `pulumi` that may still run:\n  "
                + "\n  ".join(lock.describe() for lock in live)
                + f"\nWait for it to end. If it is gone (another machine, a killed CLI), remove the lock with: "
                f"PULUMI_BACKEND_URL={shlex.quote(self.backend_url)} pulumi cancel --yes --stack {self.stack}")
        for lock in locks:
            out(f"stack {self.stack}: removing a stale Pulumi lock left by pid {lock.pid} ({lock.username}@"
                f"{lock.hostname}, {lock.timestamp}), which no longer runs: an interrupted or timed-out "
                "`pulumi up`/`destroy`. Resources it was changing are reconciled by the next `pulumi up`.")
        self.run("cancel", "--yes", timeout=120)
        left = self.locks()
        if left:
            raise DevStackError("pulumi cancel left lock files behind:\n  " + "\n  ".join(x.describe() for x in left))


def _interrupt(proc: subprocess.Popen[str], grace: float) -> tuple[str, str, str]:
    """SIGINT the CLI's process group (Pulumi cancels and releases its lock), SIGKILL after `grace`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=grace)
        return stdout or "", stderr or "", f"it was interrupted (SIGINT) and exited with {proc.returncode}"
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return stdout or "", stderr or "", f"it ignored SIGINT for {grace:.0f} s and was killed"


_WITHHELD = "(withheld: it holds the stack's secrets in clear)\n"


def _tails(stdout: str, stderr: str) -> str:
    parts = []
    if stdout.strip():
        parts.append(f"--- stdout (last {TAIL} chars) ---\n{stdout[-TAIL:].rstrip()}")
    if stderr.strip():
        parts.append(f"--- stderr (last {TAIL} chars) ---\n{stderr[-TAIL:].rstrip()}")
    return "\n".join(parts) or "(no output)"
