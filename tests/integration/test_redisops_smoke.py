"""redisops smoke against real redis-server instances: the rendered config passes, each broken one
fails and names the right check, and the run never leaves keys or hangs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ratelimit import LIBRARY_RELEASE, Decision, RateLimiter, Tier, function_library
from redis_conf.acl import (
    APP_FORBIDDEN_COMMANDS,
    APP_FORBIDDEN_PUBSUB,
    APP_FORBIDDEN_SCRIPTING,
    APP_RULES,
    password_digest,
)
from redisops import connection as rc
from redisops import smoke as smoke_module
from redisops.report import Check, Report
from redisops.smoke import SmokeOptions, SmokeRun, run_smoke
from tests.integration._redisops_servers import (
    REPO,
    SETTINGS,
    acl_with,
    rendered_server,
    requires_redis,
    smoke_keys,
)

pytestmark = [pytest.mark.slow, requires_redis]
DEV_SETTINGS = REPO / "Pulumi.dev.yaml"
DEADLINE_S = 120.0


def spec_for(env: dict[str, str], **kw: object) -> rc.ConnectionSpec:
    return rc.resolve(environ=env, settings_file=DEV_SETTINGS, **kw)  # type: ignore[arg-type]


def failed_names(report: object) -> set[str]:
    return {c.name for c in report.failed}  # type: ignore[attr-defined]


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "COLUMNS": "200", **env}
    return subprocess.run([sys.executable, "-m", "redisops", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, cwd=REPO, check=False)


def test_rendered_server_passes_every_check_via_cli(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        admin = srv.admin()
        # Keys that belong to the application: the smoke test must not touch them.
        admin.set("rl:{general:real-user}:g", "1234", ex=3600)
        expires_at = admin.pexpiretime("rl:{general:real-user}:g")
        admin.set("app:config", "keep-me")
        json_path, junit_path = tmp_path / "smoke.json", tmp_path / "smoke.xml"
        proc = run_cli(["smoke", "--settings", str(DEV_SETTINGS), "--json", str(json_path), "--junit",
                        str(junit_path)], srv.env())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(json_path.read_text())
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        expected_names = {"reachable", "tls", "auth-refuses-anonymous", "auth-refuses-wrong-password",
                          "auth-app-login", "memory-policy", "maxmemory", "persistence-aof", "persistence-status",
                          "function-library", "fcall-only", "latency", "cleanup",
                          *(f"forbidden:{c}" for c in (*APP_FORBIDDEN_COMMANDS, *APP_FORBIDDEN_SCRIPTING, *APP_FORBIDDEN_PUBSUB)),
                          *(f"ratelimit:{t.name}" for t in SETTINGS.tiers)}
        assert set(statuses) == expected_names
        assert all(s == "pass" for s in statuses.values()), statuses
        by_name = {c["name"]: c for c in report["checks"]}
        for tier in SETTINGS.tiers:
            data = by_name[f"ratelimit:{tier.name}"]["data"]
            assert data["allowed"] >= tier.limit and data["denied"] >= 1
            # smoke's own bound (pinned by value in tests/unit/test_redisops_smoke_bounds.py): a
            # sliding log or GCRA key read in the millisecond of its write shows window + 1 ms
            # (run G7 read 60001 here; the rounding is explained at _pttl_bound_ms).
            assert 0 < data["pttl_ms"] <= smoke_module._pttl_bound_ms(tier)
        assert by_name["memory-policy"]["actual"] == "allkeys-lru"
        assert report["meta"]["latency_ms"]["p99_ms"] > 0
        # CI artefacts and the terminal never carry a password.
        for text in (json_path.read_text(), junit_path.read_text(), proc.stdout, proc.stderr):
            for pw in srv.passwords.values():
                assert pw not in text
        suite = ET.parse(junit_path).getroot()
        assert suite.get("tests") == str(len(expected_names)) and suite.get("failures") == "0"
        assert "smoke PASSED" in proc.stdout
        # Nothing of ours left behind, everything of theirs untouched.
        assert smoke_keys(srv) == []
        assert admin.get("app:config") == b"keep-me"
        assert admin.get("rl:{general:real-user}:g") == b"1234"
        assert admin.pexpiretime("rl:{general:real-user}:g") == expires_at  # its TTL untouched
        admin.close()


def test_tls_server_passes_with_certificate_verified(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        report = run_smoke(spec_for(srv.env()))
        assert report.passed, [(c.name, c.actual) for c in report.failed]
        tls = report.get("tls")
        assert tls.status == "pass" and "verified" in tls.actual and "TLSv1." in tls.actual


def test_tls_with_an_unknown_ca_fails_the_tls_check(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        env = srv.env()
        del env["REDIS_CA_CERT"]  # system CAs do not know the test CA
        report = run_smoke(spec_for(env))
        assert "tls" in failed_names(report)
        assert "certificate verification failed" in report.get("tls").actual


def test_insecure_skip_verify_is_reported_not_silent(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", tls=True) as srv:
        env = srv.env()
        del env["REDIS_CA_CERT"]
        proc = run_cli(["smoke", "--insecure-skip-verify", "--settings", str(DEV_SETTINGS)], env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "--insecure-skip-verify" in proc.stderr and "NOT verified" in proc.stderr
        assert "NOT verified" in proc.stdout


def test_no_password_server_fails_auth_checks(tmp_path: Path) -> None:
    pw = {c: f"{c}-pw-0123456789abcdef" for c in ("app", "monitor", "replica", "sentinel", "admin")}
    acl = acl_with(pw, app_line=f"user default reset on nopass {APP_RULES}")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=pw) as srv:
        report = run_smoke(spec_for(srv.env()))
        assert "auth-refuses-anonymous" in failed_names(report)
        assert "unauthenticated clients are served" in report.get("auth-refuses-anonymous").actual
        assert smoke_keys(srv) == []


def test_flushall_allowed_for_app_user_fails_that_probe_only(tmp_path: Path) -> None:
    pw = {c: f"{c}-pw-0123456789abcdef" for c in ("app", "monitor", "replica", "sentinel", "admin")}
    acl = acl_with(pw, app_line=f"user default reset on #{password_digest(pw['app'])} {APP_RULES} +flushall")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=pw) as srv:
        admin = srv.admin()
        admin.set("precious", "data")
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {"forbidden:FLUSHALL"}
        assert "QUEUED" in report.get("forbidden:FLUSHALL").actual
        # The probe was discarded, never executed.
        assert admin.get("precious") == b"data"
        admin.close()


def test_an_app_user_that_may_eval_fails_smoke_with_the_reason(tmp_path: Path) -> None:
    # The ACL model before issue 12: +@all -@dangerous leaves every scripting command to the app.
    pw = {c: f"{c}-pw-0123456789abcdef" for c in ("app", "monitor", "replica", "sentinel", "admin")}
    old_rules = APP_RULES.replace("-@scripting +fcall +fcall_ro ", "")
    acl = acl_with(pw, app_line=f"user default reset on #{password_digest(pw['app'])} {old_rules}")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=pw) as srv:
        admin = srv.admin()
        libraries = admin.function_list()
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {f"forbidden:{c}" for c in APP_FORBIDDEN_SCRIPTING}
        check = report.get("forbidden:EVAL")
        assert "QUEUED" in check.actual and "may run EVAL" in check.actual
        assert "-@scripting +fcall +fcall_ro" in check.detail and "Lua-engine CVE" in check.detail
        # Every probe was discarded: the library is untouched (no FLUSH, DELETE or LOAD ran).
        assert admin.function_list() == libraries and admin.script_exists(
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db") == [False]
        assert report.get("fcall-only").status == "pass"
        admin.close()


def test_an_acl_that_denies_eval_one_by_one_but_leaves_eval_ro_fails_smoke(tmp_path: Path) -> None:
    # EVAL_RO / EVALSHA_RO (Redis 7.0+) run Lua source as well: denying the commands one by one
    # instead of -@scripting leaves them and the management subcommands to the app.
    pw = {c: f"{c}-pw-0123456789abcdef" for c in ("app", "monitor", "replica", "sentinel", "admin")}
    one_by_one = APP_RULES.replace("-@scripting +fcall +fcall_ro ",
                                   "-eval -evalsha -script|load -function|load -function|delete -function|flush "
                                   "-function|restore ")
    acl = acl_with(pw, app_line=f"user default reset on #{password_digest(pw['app'])} {one_by_one}")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=pw) as srv:
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {f"forbidden:{c}" for c in (
            "EVAL_RO", "EVALSHA_RO", "SCRIPT FLUSH", "SCRIPT KILL", "FUNCTION KILL", "FUNCTION DUMP",
            "FUNCTION LIST", "FUNCTION STATS")}
        assert "may run EVAL_RO" in report.get("forbidden:EVAL_RO").actual
        assert report.get("forbidden:EVAL").status == "pass"


def test_a_missing_library_fails_smoke_naming_the_fix(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", load_functions=False) as srv:
        proc = run_cli(["smoke", "--settings", str(DEV_SETTINGS)], srv.env())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {"function-library"}
        lib = report.get("function-library")
        assert "Function not found" in lib.actual and "redisops functions load" in lib.detail
        assert {report.get(f"ratelimit:{t.name}").status for t in SETTINGS.tiers} == {"skip"}
        assert "redisops functions load" in proc.stdout
        assert smoke_keys(srv) == []


def test_an_outdated_library_fails_smoke_with_both_versions(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv", load_functions=False) as srv:
        admin = srv.admin()
        admin.function_load(function_library().replace(f"return '{LIBRARY_RELEASE}'", "return '0.1.0'"))
        admin.close()
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {"function-library"}
        detail = report.get("function-library").detail
        assert f"0.1.0 on the server is older than this package's {LIBRARY_RELEASE}" in detail
        assert "redisops functions load" in detail


def test_a_refused_command_mid_run_fails_that_check_keeps_the_report_and_cleans_up(tmp_path: Path) -> None:
    pw = {c: f"{c}-pw-0123456789abcdef" for c in ("app", "monitor", "replica", "sentinel", "admin")}
    # TIME refused: the first tier's check meets NOPERM (a ResponseError, not a lost connection).
    acl = acl_with(pw, app_line=f"user default reset on #{password_digest(pw['app'])} {APP_RULES} -time")
    with rendered_server(tmp_path / "srv", acl_text=acl, passwords=pw) as srv:
        json_path, junit_path = tmp_path / "smoke.json", tmp_path / "smoke.xml"
        proc = run_cli(["smoke", "--settings", str(DEV_SETTINGS), "--json", str(json_path),
                        "--junit", str(junit_path)], srv.env())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        data = json.loads(json_path.read_text())
        checks = {c["name"]: c for c in data["checks"]}
        first = checks["ratelimit:general"]
        assert first["status"] == "fail" and "NOPERM" in first["actual"].upper() + first["detail"].upper(), first
        assert checks["ratelimit:auth"]["status"] == "skip" and checks["latency"]["status"] == "skip"
        assert checks["cleanup"]["status"] == "pass"
        assert ET.parse(junit_path).getroot() is not None
        assert smoke_keys(srv) == []
        for p in pw.values():
            assert p not in proc.stdout and p not in json_path.read_text()


def test_gcra_tier_with_a_burst_and_a_fixed_window_tier_pass(tmp_path: Path) -> None:
    tiers = (Tier("bursty", 10, 10, "gcra", burst=25), Tier("narrow", 10, 10, "gcra", burst=4),
             Tier("fixed", 20, 30, "fixed_window"))
    with rendered_server(tmp_path / "srv") as srv:
        report = run_smoke(dataclasses.replace(spec_for(srv.env()), tiers=tiers))
        bursty, narrow = report.get("ratelimit:bursty"), report.get("ratelimit:narrow")
        assert bursty.status == "pass", bursty.detail
        assert bursty.data["allowed"] in (25, 26) and 10_000 < bursty.data["pttl_ms"] <= 25_001  # +1: GCRA's PEXPIREAT
        assert narrow.status == "pass" and narrow.data["allowed"] in (4, 5), narrow.detail
        assert report.get("ratelimit:fixed").status == "pass", report.get("ratelimit:fixed").detail
        assert smoke_keys(srv) == []


def test_tls_expected_but_server_speaks_plain_tcp(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        # The TLS handshake waits out REDIS_TIMEOUT against a plain server: 2 s, not the default 10.
        report = run_smoke(spec_for(srv.env(REDIS_TLS="true", REDIS_TIMEOUT="2000")))
        assert "tls" in failed_names(report)
        assert "speaks plain TCP" in report.get("tls").actual
        assert not report.passed


def test_wrong_password_fails_app_login(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        proc = run_cli(["smoke", "--settings", str(DEV_SETTINGS)], srv.env(REDIS_PASSWORD="not-the-password-123"))
        assert proc.returncode == 1
        assert "auth-app-login" in proc.stdout and "FAILED" in proc.stdout
        assert "not-the-password-123" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("overrides", "check", "actual"), [
    ({"maxmemory-policy": "noeviction"}, "memory-policy", "noeviction"),
    ({"appendonly": "no"}, "persistence-aof", "aof_enabled:0"),
])
def test_server_that_differs_from_the_declared_settings(tmp_path: Path, overrides: dict[str, str], check: str,
                                                        actual: str) -> None:
    with rendered_server(tmp_path / "srv", overrides=overrides) as srv:
        report = run_smoke(spec_for(srv.env()))
        assert failed_names(report) == {check}
        assert report.get(check).actual == actual
        assert "settings Pulumi.dev.yaml" in report.get(check).expected


def test_flags_override_expectations(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        exp = rc.Expectations("volatile-ttl", False, None, "flags")
        report = run_smoke(spec_for(srv.env(), flag_expectations=exp))
        assert failed_names(report) == {"memory-policy", "persistence-aof"}


def finishes(run: SmokeRun) -> Report:
    """`run.run()` in a thread; it must finish within DEADLINE_S (a hang fails the test instead of
    holding it). How long a run takes is not asserted: a busy machine decides that."""
    out: list[Report | BaseException] = []

    def target() -> None:
        try:
            out.append(run.run())
        except BaseException as exc:  # re-raised in the test's thread
            out.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    assert out, f"the smoke run did not finish within {DEADLINE_S} s"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def test_redis_killed_mid_run_is_reported_cleaned_and_bounded(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        def kill_after_ratelimit_general(check: Check) -> None:
            if check.name == "ratelimit:general":
                srv.proc.kill9()

        report = finishes(SmokeRun(spec_for(srv.env()), on_check=kill_after_ratelimit_general))
        assert report.get("ratelimit:general").status == "pass"
        assert report.get("ratelimit:auth").status == "fail"
        actual = report.get("ratelimit:auth").actual
        assert "fell back" in actual or "Connection refused" in actual
        assert report.get("ratelimit:financial").status == "skip"
        cleanup = report.get("cleanup")
        assert cleanup.status == "fail" and "expires within 60 s" in cleanup.detail
        assert not report.passed


def test_paused_redis_does_not_hang_the_run(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        def pause(check: Check) -> None:
            if check.name == "function-library":
                srv.proc.pause()

        try:
            # It finishes while the server is still stopped: every wait was bounded by REDIS_TIMEOUT.
            report = finishes(SmokeRun(spec_for(srv.env(REDIS_TIMEOUT="300")), on_check=pause))
            assert srv.proc.paused()
        finally:
            srv.proc.resume()
        assert "ratelimit:general" in failed_names(report)
        assert report.get("cleanup").status == "fail"
        # Once resumed, whatever could not be deleted still carries a TTL.
        admin = srv.admin()
        for key in admin.scan_iter(match="smoke:*"):
            assert 0 < admin.pttl(key) <= 60_000
        admin.close()


def test_ctrl_c_still_cleans_up(tmp_path: Path) -> None:
    with rendered_server(tmp_path / "srv") as srv:
        def interrupt(name: str) -> None:
            if name == "ratelimit:admin":
                raise KeyboardInterrupt

        run = SmokeRun(spec_for(srv.env()), on_start=interrupt)
        with pytest.raises(KeyboardInterrupt):
            run.run()
        assert run.report.get("cleanup").status == "pass"
        assert run.report.get("ratelimit:general").status == "pass"
        assert smoke_keys(srv) == []


def test_unreachable_server_fails_with_exit_1(tmp_path: Path) -> None:
    from tests.support.redisproc import free_port

    # run_cli's timeout is the deadline: a run that waited on the dead port would fail it.
    proc = run_cli(["smoke"], {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_PASSWORD": "x" * 20})
    assert proc.returncode == 1
    assert "reachable" in proc.stdout and "ConnectionRefused" in proc.stdout


def test_a_slow_burst_that_earned_a_refill_is_not_blamed_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a busy machine a burst can last longer than GCRA's emission interval: a refill is then
    due before the burst ends, and a peek right after it is rightly allowed. The last request of
    the admin tier's burst (300/min, one refill every 0.2 s) is held until its retry_after has
    passed, as a descheduled thread would be; the check must pass, not call the peek wrong."""
    tier = next(t for t in SETTINGS.tiers if t.name == "admin")
    assert tier.algorithm == "gcra"
    options = SmokeOptions(concurrency=1)  # sequential: the held request is the burst's last
    cap = smoke_module._allowance(tier)
    burst = cap + max(options.min_extra, math.ceil(cap * options.extra_fraction))
    real_hit_tier = RateLimiter.hit_tier
    calls: list[Decision] = []

    def hit_tier(self: RateLimiter, t: Tier, client_id: str, cost: int = 1) -> Decision:
        d = real_hit_tier(self, t, client_id, cost)
        if t.name == tier.name:
            calls.append(d)
            if len(calls) == burst:
                assert not d.allowed and not d.fallback
                time.sleep(d.retry_after + 0.05)  # a refill is due before the burst ends
        return d

    monkeypatch.setattr(RateLimiter, "hit_tier", hit_tier)
    with rendered_server(tmp_path / "srv") as srv:
        report = SmokeRun(spec_for(srv.env()), options).run()
    check = report.get(f"ratelimit:{tier.name}")
    assert len(calls) == burst
    assert check.status == "pass", (check.actual, check.detail)
    assert "peek allows" in check.actual
