"""The rendered monitoring files against the real programs: redis-server (with the rendered
ACL file), prometheus-redis-exporter as the least-privilege `monitor` user, and prometheus
with the rendered config and alert rules. Loopback only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from infra.monitoring.grafana import (
    PANELS,
    dashboard_queries,
    exporter_command,
    exporter_password_file,
    exporter_redis_addr,
)
from infra.monitoring.prometheus import RULES_FILE_NAME, render_alert_rules, render_prometheus_config
from infra.thresholds import CLUSTER_ONLY_METRICS, DEFAULT_THRESHOLDS
from redis_conf.acl import render_acl_file
from tests.support.certs import make_tls_files
from tests.support.procs import (
    ProcessGroup,
    exporter_metric_names,
    have_exporter,
    have_prometheus,
    http_text,
    prometheus_query,
    prometheus_rules,
    prometheus_targets_up,
    start_exporter,
    start_prometheus,
    wait_until,
)
from tests.support.promql import metric_names
from tests.support.redisproc import RedisProcess, free_port, have_redis

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (have_redis() and have_exporter() and have_prometheus()),
                       reason="needs redis-server, prometheus-redis-exporter and prometheus (Debian packages)"),
]

PASSWORDS = {name: f"{name}-Test-Passw0rd-{i}x" for i, name in enumerate(
    ("app", "monitor", "replica", "sentinel", "admin"))}
# Waits for a state (scrapes every second, rules evaluated every second) return as soon as it is
# reached; the deadline is generous for a loaded machine.
SETTLE_S = 30
# Exporter log lines that mean the monitor user lacks a command it needs.
PERMISSION_ERRORS = ("NOPERM", "no permissions", "permission", "NOAUTH", "WRONGPASS")


def start_redis(group: ProcessGroup, workdir: Path, lines: list[str]) -> RedisProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "users.acl").write_text(render_acl_file(PASSWORDS))
    port = free_port()
    text = "\n".join([f"port {port}", f"aclfile {workdir / 'users.acl'}", 'save ""', *lines]) + "\n"
    rp = RedisProcess(workdir=workdir, config_text=text, port=port)
    group.on_exit(rp.stop)
    return rp.start()


def admin(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, username="admin", password=PASSWORDS["admin"],
                       decode_responses=True, socket_timeout=5)


def assert_secret_not_in_argv(exp_cmdline: list[str]) -> None:
    joined = " ".join(exp_cmdline)
    for secret in PASSWORDS.values():
        assert secret not in joined, "a password is visible in /proc/<pid>/cmdline"


def test_exporter_prometheus_and_rules_live(tmp_path: Path) -> None:
    with ProcessGroup() as group:
        primary = start_redis(group, tmp_path / "primary",
                              ["maxmemory 64mb", "maxmemory-policy allkeys-lru", "repl-diskless-sync-delay 0"])
        replica = start_redis(group, tmp_path / "replica", [
            f"replicaof 127.0.0.1 {primary.port}", "masteruser replica", f"masterauth {PASSWORDS['replica']}"])
        r = admin(primary.port)
        r.mset({"rl:api:client-1": 1, "rl:api:client-2": 2, "rl:auth:client-1": 3, "other:key": 0})
        r.get("rl:api:client-1"), r.get("rl:missing")  # one keyspace hit, one miss
        wait_until(lambda: admin(replica.port).info("replication")["master_link_status"] == "up", SETTLE_S,
                   "replica link up")

        # Primary: password via REDIS_PASSWORD; replica: via the exporter's password file.
        exp_port, exp2_port = free_port(), free_port()
        exp = group.add(start_exporter(tmp_path / "exporter", exporter_command(
            "127.0.0.1", primary.port, user="monitor", password=PASSWORDS["monitor"],
            listen_address=f"127.0.0.1:{exp_port}")))
        pw_file = tmp_path / "exporter2" / "redis-password.json"
        pw_file.parent.mkdir(parents=True)
        pw_file.write_text(exporter_password_file(exporter_redis_addr("127.0.0.1", replica.port, tls=False),
                                                  PASSWORDS["monitor"]))
        pw_file.chmod(0o600)
        exp2 = group.add(start_exporter(tmp_path / "exporter2", exporter_command(
            "127.0.0.1", replica.port, user="monitor", password_file=str(pw_file),
            listen_address=f"127.0.0.1:{exp2_port}", count_rate_limit_keys=False)))

        assert_secret_not_in_argv(exp.cmdline())
        assert_secret_not_in_argv(exp2.cmdline())
        assert exp.cmdline()[exp.cmdline().index("-redis.user") + 1] == "monitor"
        assert exp.environ()["REDIS_PASSWORD"] == PASSWORDS["monitor"]
        assert "REDIS_PASSWORD" not in exp2.environ()

        metrics = http_text(f"http://127.0.0.1:{exp_port}/metrics")
        metrics2 = http_text(f"http://127.0.0.1:{exp2_port}/metrics")
        for text in (metrics, metrics2):
            assert "\nredis_up 1\n" in text
            assert 'redis_exporter_last_scrape_error{err=""} 0' in text
        # -count-keys over the limiter prefix, read by the monitor user (SCAN, no values).
        assert 'redis_keys_count{db="db0",key="rl:*"} 3\n' in metrics
        assert 'redis_memory_max_bytes 6.7108864e+07\n' in metrics
        assert 'role="slave"' in metrics2 and "redis_master_link_up{" in metrics2

        # Prometheus with the rendered config (both exporters) and the rendered rules.
        prom_port = free_port()
        config = render_prometheus_config([f"127.0.0.1:{exp_port}", f"127.0.0.1:{exp2_port}"],
                                          scrape_interval="1s", evaluation_interval="1s")
        prom = group.add(start_prometheus(tmp_path / "prometheus", config,
                                          {RULES_FILE_NAME: render_alert_rules()}, prom_port))
        wait_until(lambda: prometheus_targets_up(prom.url, 2), SETTLE_S, "both exporter targets up")
        n_rules = sum(len(t.lines()) for t in DEFAULT_THRESHOLDS)

        def rules_ok() -> list[dict[str, object]]:
            rules = prometheus_rules(prom.url)
            ok = len(rules) == n_rules and all(x["health"] == "ok" for x in rules)
            return rules if ok else []

        rules = wait_until(rules_ok, SETTLE_S, f"{n_rules} rules with health ok")
        assert {x["name"] for x in rules} == {t.alert for t in DEFAULT_THRESHOLDS}

        # Every metric an alert or panel reads exists in the live exporters' output.
        live = exporter_metric_names(http_text(f"http://127.0.0.1:{exp_port}/metrics")) | \
            exporter_metric_names(http_text(f"http://127.0.0.1:{exp2_port}/metrics"))
        # The limiter's rules read the application's metrics (tests/integration/test_devstack_e2e.py).
        used_by_rules = set().union(*(metric_names(str(x["query"])) for x in rules
                                      if x["labels"]["service"] == "redis"))
        used_by_panels = set().union(*(metric_names(q) for q in dashboard_queries()))
        assert {"redis_memory_used_bytes", "redis_master_link_up", "redis_keys_count"} <= used_by_rules | used_by_panels
        # The cluster rows read metrics only a cluster node exports (CLUSTER INFO): proven on a
        # real cluster by tests/integration/test_cluster_monitoring.py.
        assert used_by_rules - live - CLUSTER_ONLY_METRICS == set(), "alert rules read metrics the exporter does not export"
        assert used_by_panels - live == set(), "dashboard panels read metrics the exporter does not export"

        # Every panel query evaluates, and returns data once rate() windows hold two samples.
        def all_queries_answer() -> dict[str, int]:
            sizes = {}
            for q in dashboard_queries():
                res = prometheus_query(prom.url, q)
                assert res["status"] == "success", (q, res)
                sizes[q] = len(res["data"]["result"])
            return sizes if all(sizes.values()) else {}

        sizes = wait_until(all_queries_answer, SETTLE_S, "every dashboard query returns series")
        assert sizes["redis_up"] == 2
        assert len(sizes) == len(dashboard_queries()) == sum(len(p.queries) for p in PANELS)
        mem_pct = prometheus_query(prom.url, "100 * redis_memory_used_bytes / (redis_memory_max_bytes > 0)")
        (sample,) = mem_pct["data"]["result"]  # the replica has no maxmemory: no series, no +Inf
        assert 0 < float(sample["value"][1]) < 10

        # A healthy pair raises nothing, not even pending.
        alerts = prometheus_query(prom.url, "ALERTS")["data"]["result"]
        assert alerts == [], alerts

        # An eviction on a rate limiter is critical at once: prove the rule fires end to end.
        # Headroom above what is in use now (the 1 MB replication backlog fills up and counts), so that
        # writes evict the LRU filler instead of failing with OOM.
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 4_000_000)
        filler = "x" * 10_000
        for i in range(800):
            r.set(f"fill:{i}", filler)
        assert int(r.info("stats")["evicted_keys"]) > 0

        def evicted_alert() -> list[dict[str, object]]:
            res = prometheus_query(prom.url, 'ALERTS{alertname="RedisKeysEvicted",alertstate="firing"}')
            return list(res["data"]["result"])

        (alert,) = wait_until(evicted_alert, SETTLE_S, "RedisKeysEvicted firing")
        assert alert["metric"]["severity"] == "critical"  # type: ignore[index]
        assert alert["metric"]["instance"] == f"127.0.0.1:{exp_port}"  # type: ignore[index]

        # The monitor ACL user had every command the exporter issued: no denials logged.
        assert r.acl_log() == []
        assert admin(replica.port).acl_log() == []
        for e in (exp, exp2):
            log = e.log_text()
            assert not [w for w in PERMISSION_ERRORS if w.lower() in log.lower()], log[-3000:]
        assert "level=error" not in prom.log_text(), prom.log_text()[-3000:]


def test_exporter_over_mutual_tls(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    with ProcessGroup() as group:
        port = free_port()
        workdir = tmp_path / "redis"
        workdir.mkdir()
        (workdir / "users.acl").write_text(render_acl_file(PASSWORDS))
        text = "\n".join([
            "port 0", f"tls-port {port}", f"tls-cert-file {tls.cert}", f"tls-key-file {tls.key}",
            f"tls-ca-cert-file {tls.ca_cert}", "tls-auth-clients yes",
            f"aclfile {workdir / 'users.acl'}", 'save ""']) + "\n"
        rp = RedisProcess(workdir=workdir, config_text=text, port=port)
        group.on_exit(rp.stop)
        rp.start()
        exp_port = free_port()
        cmd = exporter_command("127.0.0.1", port, password=PASSWORDS["monitor"],
                               tls_ca_cert_file=str(tls.ca_cert), tls_client_cert_file=str(tls.client_cert),
                               tls_client_key_file=str(tls.client_key),
                               listen_address=f"127.0.0.1:{exp_port}")
        exp = group.add(start_exporter(tmp_path / "exporter", cmd))
        assert f"rediss://127.0.0.1:{port}" in exp.cmdline()
        assert_secret_not_in_argv(exp.cmdline())
        metrics = http_text(f"http://127.0.0.1:{exp_port}/metrics")
        assert "\nredis_up 1\n" in metrics, exp.log_text()[-2000:]
        assert 'redis_exporter_last_scrape_error{err=""} 0' in metrics

        # Without the CA the exporter must not trust the server: TLS is really verified.
        bad_port = free_port()
        no_ca = exporter_command("127.0.0.1", port, password=PASSWORDS["monitor"],
                                 tls_ca_cert_file=str(tls.client_cert),  # not the issuing CA
                                 tls_client_cert_file=str(tls.client_cert), tls_client_key_file=str(tls.client_key),
                                 listen_address=f"127.0.0.1:{bad_port}")
        bad = group.add(start_exporter(tmp_path / "exporter-bad", no_ca))
        bad_metrics = http_text(f"http://127.0.0.1:{bad_port}/metrics")
        assert "\nredis_up 0\n" in bad_metrics
        wait_until(lambda: "Couldn't connect to redis instance" in bad.log_text(), SETTLE_S, "the exporter's error")
        # The exporter aborted the handshake over the server's certificate (its TLS alert).
        wait_until(lambda: "alert bad certificate" in rp.log_tail(), SETTLE_S, "redis logs the rejected handshake")
