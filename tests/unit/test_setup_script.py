"""scripts/setup.sh --packages on the systems it meets, with the system tools replaced by
recorders on PATH (uname, id, sudo, apt-get, systemctl, service, update-rc.d) and nothing else
but the few coreutils the script uses: which packages it installs, and that it disables (not
only stops) their services, with systemd and without.

Rule: a Debian package's service is enabled on install and started again at every boot
(`systemctl disable --now` removes the unit from boot and stops it; without systemd,
`update-rc.d <name> disable` removes the boot links). Enabled, redis-server, prometheus and
prometheus-redis-exporter hold 6379/9090/9121 after a reboot and the dev stack cannot bind them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("redis-server", "redis-sentinel", "prometheus", "prometheus-redis-exporter")
COREUTILS = ("dirname", "cat", "cut")

RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$SETUP_LOG"
{body}
"""


def _tool(bin_dir: Path, name: str, body: str = "exit 0") -> None:
    path = bin_dir / name
    path.write_text(RECORDER.format(body=body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_setup(tmp_path: Path, *, system: str, systemd: bool, enabled: bool = True) -> tuple[int, str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for util in COREUTILS:
        real = shutil.which(util)
        assert real, util
        (bin_dir / util).symlink_to(real)
    (bin_dir / "basename").symlink_to(shutil.which("basename") or "/usr/bin/basename")
    _tool(bin_dir, "uname", f'echo "{system}"')
    _tool(bin_dir, "id", 'echo 1000')  # a developer, not root: everything goes through sudo
    _tool(bin_dir, "sudo", '"$@"')
    if system == "Linux":
        _tool(bin_dir, "apt-get")
    state = "exit 0" if enabled else "exit 1"
    _tool(bin_dir, "systemctl", f'case "$1" in cat) exit 0 ;; is-enabled|is-active) {state} ;; esac; exit 0')
    _tool(bin_dir, "service")
    _tool(bin_dir, "update-rc.d")
    init_d = tmp_path / "init.d"
    init_d.mkdir()
    for svc in SERVICES:
        _tool(init_d, svc)
    runtime = tmp_path / "run-systemd-system"
    if systemd:
        runtime.mkdir()
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {"PATH": str(bin_dir), "SETUP_LOG": str(log), "SYSTEMD_RUNTIME_DIR": str(runtime),
           "SYSV_INIT_DIR": str(init_d), "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("bash") or "/bin/bash", str(REPO / "scripts/setup.sh"), "--packages"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr, log.read_text().splitlines()


def test_macos_gets_no_apt_get_and_a_hint(tmp_path: Path) -> None:
    code, out, calls = run_setup(tmp_path, system="Darwin", systemd=False)
    assert code == 0, out
    assert not [c for c in calls if c.split()[0] in ("apt-get", "sudo", "systemctl", "update-rc.d", "service")], calls
    assert "not a Debian/Ubuntu system" in out and "brew install" in out and "Docker mode needs none" in out


def test_debian_with_systemd_installs_then_disables_each_service_now(tmp_path: Path) -> None:
    code, out, calls = run_setup(tmp_path, system="Linux", systemd=True)
    assert code == 0, out
    installs = [c for c in calls if c.startswith("apt-get install")]
    assert len(installs) == 1 and all(p in installs[0] for p in ("redis-server", "redis-sentinel", "redis-tools",
                                                                 "prometheus", "prometheus-redis-exporter"))
    for svc in SERVICES:
        assert f"sudo systemctl disable --now {svc}" in calls, calls
    assert not [c for c in calls if c.startswith(("update-rc.d", "service"))]
    assert calls.index(next(c for c in calls if c.startswith("apt-get install"))) < calls.index(
        "systemctl disable --now redis-server")


def test_services_already_disabled_are_left_alone(tmp_path: Path) -> None:
    code, out, calls = run_setup(tmp_path, system="Linux", systemd=True, enabled=False)
    assert code == 0, out
    assert not [c for c in calls if "disable" in c], calls


def test_debian_without_systemd_stops_and_removes_the_boot_links(tmp_path: Path) -> None:
    code, out, calls = run_setup(tmp_path, system="Linux", systemd=False)
    assert code == 0, out
    for svc in SERVICES:
        assert f"sudo update-rc.d {svc} disable" in calls and f"sudo service {svc} stop" in calls, calls
    assert not [c for c in calls if c.startswith("systemctl")]


@pytest.mark.parametrize("arg", ["--docker", "packages"])
def test_unknown_arguments_are_refused_naming_what_is_allowed(arg: str) -> None:
    proc = subprocess.run(["bash", str(REPO / "scripts/setup.sh"), arg], capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ})
    assert proc.returncode == 2 and f"'{arg}'" in proc.stderr and "--python, --packages" in proc.stderr
