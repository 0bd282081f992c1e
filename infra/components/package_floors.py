"""Boot check of the Sentinel hosts' Debian packages against their floors (infra/versions.py).

The hosts install redis-server, redis-sentinel and prometheus-redis-exporter from Debian's
archive at first boot, so the version they get is whatever the mirror serves that day. Before
any secret is fetched or any unit is started, user data compares each installed package with its
floor for the running release (`dpkg --compare-versions`, Debian's own ordering of epochs,
revisions and `~`). Below a floor, or on a release without floors, the boot is refused loudly:
the units are stopped and disabled, a critical line goes to the journal and to stderr (cloud-init
copies it to /var/log/cloud-init-output.log and the console, `aws ec2 get-console-output`), the
`BootRefused` metric is published (1) for the host's alarm, and user data exits non-zero
(cloud-init reports the failure). A boot that passes publishes 0, which clears the alarm.
"""

from __future__ import annotations

import shlex

from infra.versions import DEBIAN_FLOORS, DebianFloor

METRIC = "BootRefused"
UNITS = ("redis-server", "redis-sentinel", "prometheus-redis-exporter")


def _case_arm(release: str, number: str, floors: list[DebianFloor]) -> str:
    pairs = " ".join(f"{f.package}={f.floor}" for f in floors)
    why = "; ".join(f"{f.package}: {f.why()}" for f in floors)
    return (f"    {release}|{number})\n"
            f"      floors={shlex.quote(pairs)}\n"
            f"      why={shlex.quote(why)} ;;")


def check_functions(namespace: str) -> str:
    """Shell functions `refuse_boot` and `check_package_floors <release>`; they read $REGION and
    $NODE. Pure text, so a test can run exactly this with fake package tools."""
    releases: dict[tuple[str, str], list[DebianFloor]] = {}
    for f in DEBIAN_FLOORS:
        releases.setdefault((f.release, f.number), []).append(f)
    arms = "\n".join(_case_arm(r, n, fl) for (r, n), fl in releases.items())
    known = ", ".join(r for r, _ in releases)
    units = " ".join(UNITS)
    return f"""refuse_boot() {{
  msg="redisstack: refusing to start redis on $NODE: $1"
  echo "$msg" >&2
  logger -t redisstack -p daemon.crit "$msg" || true
  systemctl disable --now {units} || true
  aws cloudwatch put-metric-data --region "$REGION" --namespace {shlex.quote(namespace)} \\
    --metric-name {METRIC} --dimensions "node=$NODE" --value 1 || true
  exit 1
}}
check_package_floors() {{
  local floors why pair pkg floor have
  case "$1" in
{arms}
    *) refuse_boot "Debian release '$1' has no package floors in infra/versions.py (known: {known})" ;;
  esac
  for pair in $floors; do
    pkg=${{pair%%=*}}; floor=${{pair#*=}}
    have=$(dpkg-query -W -f='${{Version}}' "$pkg" 2>/dev/null) || refuse_boot "$pkg is not installed"
    dpkg --compare-versions "$have" ge "$floor" || \\
      refuse_boot "$pkg $have is below its floor $floor (fixes: $why)"
  done
  # 0 clears the alarm of a host that replaced a refused one (the alarm ignores missing data).
  aws cloudwatch put-metric-data --region "$REGION" --namespace {shlex.quote(namespace)} \\
    --metric-name {METRIC} --dimensions "node=$NODE" --value 0 || true
}}"""


def check_call() -> str:
    """The call in user data: the running release, from os-release (VERSION_CODENAME)."""
    return 'check_package_floors "$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")"'
