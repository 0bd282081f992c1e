"""The Sentinel hosts' boot lines load the `ratelimit` library as the admin on the primary only.

The lines `functions_load_commands` puts in the user data run here with bash and the real
redis-cli against a rendered primary + replica (TLS, as deployed), with a stand-in `aws` on PATH
that prints the admin password (the host reads it from Secrets Manager). The replica's run must
leave it alone (FUNCTION LOAD is refused on a replica); the primary's loads the library, which
reaches the replica by replication.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from infra.components.sentinel_hosts import functions_load_commands
from ratelimit import LIBRARY_RELEASE
from ratelimit.functions import read_version
from tests.integration._sentinel_topology import HOST, sentinel_topology
from tests.support.procs import wait_until
from tests.support.redisproc import have_redis

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (have_redis() and shutil.which("redis-cli")),
                                                    reason="redis-server / redis-cli not installed")]
ADMIN_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redisstack/prod/admin-AbCdEf"


def run_boot_lines(tmp_path: Path, port: int, password: str, ca_file: str, deadline_s: int = 120,
                   loading_pings: int = 0) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    aws = fake / "aws"
    # Answers exactly the calls the boot lines make (the secret; the metric, recorded), nothing else.
    aws.write_text(f"""#!/bin/sh
if [ "$1 $2" = "cloudwatch put-metric-data" ]; then echo "$*" >> "$METRICS"; exit 0; fi
[ "$1 $2" = "secretsmanager get-secret-value" ] || exit 64
case "$*" in *"--secret-id {ADMIN_ARN} "*) printf '%s\\n' "$ADMIN_PW" ;; *) exit 65 ;; esac
""")
    aws.chmod(aws.stat().st_mode | stat.S_IXUSR)
    cli = fake / "redis-cli"
    cli.unlink(missing_ok=True)
    if loading_pings:
        # What a primary still loading its dataset answers to PING (redis server.c: shared.loadingerr),
        # for the first `loading_pings` PINGs; then the real redis-cli.
        count = tmp_path / "pings"
        count.write_text("0")
        cli.write_text(f"""#!/bin/sh
for a in "$@"; do last="$a"; done
if [ "$last" = "PING" ]; then
  n=$(cat {count}); echo $((n + 1)) > {count}
  if [ "$n" -lt {loading_pings} ]; then echo "LOADING Redis is loading the dataset in memory"; exit 0; fi
fi
exec {shutil.which("redis-cli")} "$@"
""")
        cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    lines = functions_load_commands(ip=HOST, tls=True, admin_secret_arn=ADMIN_ARN, port=port,
                                    library_file=str(tmp_path / "ratelimit.lua"), ca_file=ca_file,
                                    deadline_s=deadline_s, namespace="redisstack/redisstack/prod-sentinel")
    metrics = tmp_path / "metrics"
    metrics.unlink(missing_ok=True)
    env = {"PATH": f"{fake}:{os.environ.get('PATH', '')}", "REGION": "eu-west-1", "NODE": "redis-a",
           "ADMIN_PW": password, "METRICS": str(metrics)}
    # `set -euo pipefail` as in the user data, and a line after: the load never ends the boot.
    proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + lines + "\necho boot-went-on\n"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    proc.stdout += "".join(f"METRIC {m}\n" for m in (metrics.read_text().splitlines() if metrics.exists() else []))
    return proc


def test_boot_lines_load_the_library_on_the_primary_only(tmp_path: Path) -> None:
    with sentinel_topology(tmp_path / "topo", tls=True, start_sentinels=False, load_functions=False) as topo:
        ca = str(topo.tls.ca_cert)
        replica, primary = topo.node_client(1), topo.node_client(0)
        try:
            on_replica = run_boot_lines(tmp_path, topo.nodes[1].port, topo.passwords["admin"], ca)
            assert on_replica.returncode == 0, on_replica.stderr
            assert "loaded the ratelimit library" not in on_replica.stdout
            assert read_version(primary) is None and read_version(replica) is None
            on_primary = run_boot_lines(tmp_path, topo.nodes[0].port, topo.passwords["admin"], ca)
            assert on_primary.returncode == 0, on_primary.stderr
            assert f"loaded the ratelimit library ({LIBRARY_RELEASE})" in on_primary.stdout
            assert "--metric-name LibraryLoadFailed --dimensions node=redis-a --value 0" in on_primary.stdout
            assert read_version(primary) == LIBRARY_RELEASE
            wait_until(lambda: read_version(replica) == LIBRARY_RELEASE, 30, "the library replicated")
            for out in (on_replica, on_primary):
                assert topo.passwords["admin"] not in out.stdout + out.stderr
            # A wrong admin password: said (stderr, metric 1), and the boot goes on (the renewal
            # timer is installed before; the deploy workflow's `functions load` repairs it).
            wrong = run_boot_lines(tmp_path, topo.nodes[0].port, "not-the-admin-password", ca, deadline_s=1)
            assert wrong.returncode == 0 and "boot-went-on" in wrong.stdout
            assert "never answered PING" in wrong.stderr and "WRONGPASS" in wrong.stderr
            assert "redisops functions load" in wrong.stderr
            assert "--metric-name LibraryLoadFailed --dimensions node=redis-a --value 1" in wrong.stdout
        finally:
            replica.close()
            primary.close()


def test_boot_lines_wait_for_a_primary_still_loading_its_dataset(tmp_path: Path) -> None:
    with sentinel_topology(tmp_path / "topo", tls=True, start_sentinels=False, load_functions=False) as topo:
        primary = topo.node_client(0)
        try:
            run = run_boot_lines(tmp_path, topo.nodes[0].port, topo.passwords["admin"], str(topo.tls.ca_cert),
                                 loading_pings=3)
            assert run.returncode == 0, run.stderr
            assert (tmp_path / "pings").read_text().strip() == "4"  # three LOADING, then PONG
            assert f"loaded the ratelimit library ({LIBRARY_RELEASE})" in run.stdout
            assert read_version(primary) == LIBRARY_RELEASE
        finally:
            primary.close()

