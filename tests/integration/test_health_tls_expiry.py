"""`redisops health` reads the days left on the certificate a TLS server presents: the check that
a renewed certificate reached a running server (self-hosted Sentinel hosts renew in place,
docs/sentinel.md "TLS renewal"). Lines: WARNING below TLS_DAYS_WARNING, CRITICAL below
TLS_DAYS_CRITICAL (infra/monitoring/cloudwatch.py, shared with the hosts' CloudWatch alarm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.monitoring.cloudwatch import TLS_DAYS_CRITICAL, TLS_DAYS_WARNING
from redisops import connection as rc
from redisops.health import HealthOptions, run_health
from tests.support.certs import make_tls_files
from tests.support.redisproc import free_port, have_redis, redis_process

pytestmark = pytest.mark.skipif(not have_redis(), reason="redis-server not installed")
PASSWORD = "App-password-0123456789abcdef"


@pytest.mark.parametrize(("days", "level"), [
    (TLS_DAYS_CRITICAL - 4, "CRITICAL"), (TLS_DAYS_WARNING - 5, "WARNING"), (400, "OK")])
def test_days_left_on_the_served_certificate_set_the_level(tmp_path: Path, days: int, level: str) -> None:
    tls = make_tls_files(tmp_path / "tls", days=days)
    port = free_port()
    conf = "\n".join(["bind 127.0.0.1", "port 0", f"tls-port {port}", f"tls-cert-file {tls.cert}",
                      f"tls-key-file {tls.key}", f"tls-ca-cert-file {tls.ca_cert}", "tls-auth-clients no",
                      f"user default on >{PASSWORD} ~* &* +@all", ""])
    env = {"REDIS_URL": f"rediss://127.0.0.1:{port}/0", "REDIS_PASSWORD": PASSWORD, "REDIS_TLS": "true",
           "REDIS_CA_CERT": str(tls.ca_cert), "REDIS_TIMEOUT": "2000"}
    with redis_process(tmp_path / "redis", conf, port=port):
        report = run_health(rc.resolve(environ=env), options=HealthOptions(sample_seconds=0.2))
    check = report.get("tls_certificate")
    assert check.status == level, check
    assert days - 1 <= check.data["days_left"] <= days
    assert check.data["subject"] == "CN=redis"


def test_a_plaintext_server_has_no_certificate_row(tmp_path: Path) -> None:
    port = free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "REDIS_PASSWORD": PASSWORD, "REDIS_TLS": "false"}
    with redis_process(tmp_path / "redis", f"bind 127.0.0.1\nuser default on >{PASSWORD} ~* &* +@all\n", port=port):
        report = run_health(rc.resolve(environ=env), options=HealthOptions(sample_seconds=0.2))
    assert "tls_certificate" not in {c.name for c in report.checks}
