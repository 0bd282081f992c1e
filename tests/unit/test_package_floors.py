"""The Sentinel hosts' boot check of Debian package floors, run as rendered: real bash and the
real `dpkg --compare-versions` (Debian's version ordering), fake `dpkg-query` (the installed
versions), `aws`, `logger` and `systemctl` (recorded, so nothing on this machine is touched)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from infra import versions as V
from infra.components.package_floors import METRIC, UNITS, check_call, check_functions

pytestmark = pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("bash") is None,
                                reason="needs bash and Debian's dpkg (the hosts' own version comparison)")

BOOKWORM = {f.package: f.floor for f in V.debian_floors("bookworm")}
FAKE_DPKG_QUERY = """#!/bin/sh
# dpkg-query -W -f='${Version}' <package>: the version from $FAKE/versions/<package>, else not installed.
for last; do :; done
[ -f "$FAKE/versions/$last" ] || { echo "dpkg-query: no packages found matching $last" >&2; exit 1; }
printf '%s' "$(cat "$FAKE/versions/$last")"
"""
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE/calls"
"""


def run_check(tmp_path: Path, release: str, installed: dict[str, str]) -> tuple[int, str, list[str]]:
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "versions").mkdir()
    for pkg, version in installed.items():
        (fake / "versions" / pkg).write_text(version)
    for tool, body in {"dpkg-query": FAKE_DPKG_QUERY, "aws": RECORDER, "logger": RECORDER,
                       "systemctl": RECORDER}.items():
        (fake / "bin" / tool).write_text(body)
        (fake / "bin" / tool).chmod(0o755)
    dpkg = shutil.which("dpkg")
    assert dpkg is not None
    script = "\n".join(["set -euo pipefail", "REGION=eu-west-1", "NODE=node-1", check_functions("redisstack/Redis"),
                        f"check_package_floors {release}", "echo floors-ok"])
    env = {"PATH": f"{fake / 'bin'}:{Path(dpkg).parent}:/usr/bin:/bin", "FAKE": str(fake)}
    result = subprocess.run(["bash", "-c", script], env=env, text=True, capture_output=True, timeout=30, check=False)
    calls = (fake / "calls").read_text().splitlines() if (fake / "calls").exists() else []
    return result.returncode, result.stdout + result.stderr, calls


def test_packages_at_their_floors_and_binary_rebuilds_pass(tmp_path: Path) -> None:
    # A binNMU ("+b1") of the floor version sorts above it; nothing is refused and the alarm's
    # metric says so (0), nothing else is called.
    installed = {pkg: f"{floor}+b1" if pkg.startswith("prometheus") else floor for pkg, floor in BOOKWORM.items()}
    code, out, calls = run_check(tmp_path, "bookworm", installed)
    assert (code, calls) == (0, ["aws cloudwatch put-metric-data --region eu-west-1 --namespace redisstack/Redis "
                                 f"--metric-name {METRIC} --dimensions node=node-1 --value 0"]), out
    assert "floors-ok" in out


def test_a_package_below_its_floor_refuses_the_boot_loudly(tmp_path: Path) -> None:
    floor = BOOKWORM["redis-server"]
    n = re.search(r"\d+$", floor)
    assert n is not None
    below = f"{floor[:n.start()]}{int(n.group()) - 1}"  # the previous bookworm-security upload (deb12uN-1)
    code, out, calls = run_check(tmp_path, "bookworm", {**BOOKWORM, "redis-server": below})
    assert code == 1 and "floors-ok" not in out
    assert f"refusing to start redis on node-1: redis-server {below} is below its floor {floor}" in out
    for cve in V.debian_floors("bookworm")[0].cves:
        assert cve in out
    assert f"systemctl disable --now {' '.join(UNITS)}" in calls
    assert any(c.startswith("logger -t redisstack -p daemon.crit") for c in calls)
    assert ("aws cloudwatch put-metric-data --region eu-west-1 --namespace redisstack/Redis "
            f"--metric-name {METRIC} --dimensions node=node-1 --value 1") in calls


def test_a_missing_package_or_a_release_without_floors_is_refused(tmp_path: Path) -> None:
    missing = {k: v for k, v in BOOKWORM.items() if k != "redis-sentinel"}
    code, out, _ = run_check(tmp_path / "missing", "bookworm", missing)
    assert code == 1 and "redis-sentinel is not installed" in out
    code, out, calls = run_check(tmp_path / "trixie", "trixie", BOOKWORM)
    assert code == 1 and "Debian release 'trixie' has no package floors" in out
    assert any(METRIC in c for c in calls)


def test_the_release_comes_from_os_release() -> None:
    assert ". /etc/os-release" in check_call() and "VERSION_CODENAME" in check_call()
