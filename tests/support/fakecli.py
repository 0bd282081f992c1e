"""Stand-ins for the `pulumi` and `docker` CLIs on PATH, for tests of redisops.devpulumi.

They are small Python scripts that record every call (argv and the environment variables that
matter) and behave as told by a JSON file: exit code, stdout/stderr, a sleep, whether SIGINT is
ignored, whether a stack lock is held while running. The lock is written where Pulumi's file
backend writes it (pkg/backend/diy/lock.go: <state>/.pulumi/locks/organization/<project>/<stack>/
<id>.json with pid, username, hostname, timestamp) and `pulumi cancel` deletes the stack's locks
as CancelCurrentUpdate does (pkg/backend/diy/backend.go).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDED_ENV = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "DOCKER_HOST",
                "DOCKER_CERT_PATH", "DOCKER_CONTEXT")

PULUMI = r'''
import signal
early = []
signal.signal(signal.SIGINT, lambda *_: early.append(1))  # first thing: no SIGINT is lost at start-up
import datetime, getpass, json, os, socket, sys, time, uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
args = sys.argv[1:]
stack = args[args.index("--stack") + 1] if "--stack" in args else "dev"
words = [a for a in args if not a.startswith("-") and a != stack]
key = " ".join(words[:2]) if words[:1] == ["stack"] else (words[0] if words else "")
with open(HERE / "calls.jsonl", "a") as fh:
    fh.write(json.dumps({"argv": args, "key": key, "pid": os.getpid(),
                         "env": {k: os.environ[k] for k in RECORDED if k in os.environ}}) + "\n")
todo = json.loads((HERE / "behaviour.json").read_text()).get(key, {})
state = Path(os.environ.get("PULUMI_BACKEND_URL", "file:///nonexistent")[len("file://"):])
locks = state / ".pulumi" / "locks" / "organization" / "redisstack" / stack
if key == "cancel":
    for f in locks.glob("*.json"):
        f.unlink()
lock = None
if todo.get("lock"):
    locks.mkdir(parents=True, exist_ok=True)
    lock = locks / f"{uuid.uuid4()}.json"
    lock.write_text(json.dumps({"pid": os.getpid(), "username": getpass.getuser(), "hostname": socket.gethostname(),
                                "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat()}))
def interrupted(*_):
    if lock is not None:
        lock.unlink()
    sys.stderr.write("error: update canceled\n")
    sys.exit(255)
signal.signal(signal.SIGINT, signal.SIG_IGN if todo.get("ignore_sigint") else interrupted)
if early and not todo.get("ignore_sigint"):
    interrupted()
default_out = {"stack output": "{}", "stack export": json.dumps({"version": 3, "deployment": {"resources": []}})}
sys.stdout.write(todo.get("stdout", default_out.get(key, "")))
sys.stderr.write(todo.get("stderr", ""))
sys.stdout.flush()
deadline = time.monotonic() + float(todo.get("sleep", 0))
while time.monotonic() < deadline:
    time.sleep(0.05)
if lock is not None and not todo.get("leave_lock"):
    lock.unlink()
sys.exit(int(todo.get("exit", 0)))
'''

DOCKER = r'''
import json, sys
from pathlib import Path
HERE = Path(__file__).resolve().parent
todo = json.loads((HERE / "docker.json").read_text())
with open(HERE / "docker-calls.jsonl", "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
if sys.argv[1:3] == ["context", "inspect"]:
    if todo.get("fail"):
        sys.stderr.write(todo["fail"])
        sys.exit(1)
    sys.stdout.write(json.dumps([todo["context"]], indent=4))
    sys.exit(0)
if sys.argv[1:2] == ["info"]:
    sys.exit(0 if todo.get("engine", True) else 1)
sys.exit(2)
'''


def context(name: str, host: str, *, tls_path: str | None = None) -> dict[str, Any]:
    """A `docker context inspect` entry, in the CLI's own format."""
    return {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}},
            "TLSMaterial": {"docker": ["ca.pem", "cert.pem", "key.pem"]} if tls_path else {},
            "Storage": {"MetadataPath": "<IN MEMORY>" if not tls_path else "/m", "TLSPath": tls_path or "<IN MEMORY>"}}


@dataclass
class FakeClis:
    bin: Path

    def pulumi_does(self, **behaviour: dict[str, Any]) -> None:
        """Behaviour per command key ("up", "stack select", "cancel", ...)."""
        (self.bin / "behaviour.json").write_text(json.dumps(behaviour))

    def docker_does(self, **todo: Any) -> None:
        (self.bin / "docker.json").write_text(json.dumps(todo))

    def calls(self) -> list[dict[str, Any]]:
        path = self.bin / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def install(bin_dir: Path) -> FakeClis:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in (("pulumi", PULUMI.replace("RECORDED", repr(RECORDED_ENV))), ("docker", DOCKER)):
        script = bin_dir / name
        script.write_text(f"#!{sys.executable}\n{body}")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    fake = FakeClis(bin_dir)
    fake.pulumi_does()
    fake.docker_does(context=context("default", "unix:///var/run/docker.sock"))
    return fake


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
