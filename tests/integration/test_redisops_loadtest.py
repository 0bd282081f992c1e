"""`redisops loadtest` end to end: a throwaway redis-server, the example app under uvicorn on an
OS-assigned loopback port, real HTTP from distinct 127.x client addresses. Exact admitted counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratelimit import DEFAULT_TIERS
from redisops.cli import app
from redisops.loadtest import LoadTestError, allowance, parse_policy, percentile, run_loadtest, scenarios
from tests.support.redisproc import have_redis

LIMIT = {t.name: t.limit for t in DEFAULT_TIERS}


@pytest.mark.slow
@pytest.mark.skipif(not have_redis(), reason="redis-server not installed")
def test_small_loadtest_admits_exactly_each_tiers_limit(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["loadtest", "--scale", "0.2", "--max-seconds", "120", "--out", str(tmp_path),
                                   "--json"])
    assert res.exit_code == 0, res.output[-3000:]
    report = json.loads((tmp_path / "loadtest.json").read_text())
    assert json.loads(res.stdout) == report
    assert (tmp_path / "loadtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["name"]: r for r in report["scenarios"]}
    assert set(rows) == {"credential_stuffing", "single_client_flood", "many_clients_normal",
                         "spoofed_forwarded_for", "trusted_proxy"}
    for r in rows.values():
        assert r["sent"] == r["requests"] and r["errors"] == 0 and not r["truncated"], r
        assert r["exact"] and r["ok"] and r["fallbacks"] == 0, r
        assert r["admitted"] + r["denied"] == r["sent"]
        assert r["window_s"] == 3600
        # At most one limiter call per request; at least one per admitted request (a deny cache
        # answers repeated denials without Redis).
        assert r["admitted"] / r["sent"] <= r["limiter_calls_per_request"] <= 1, r
        assert 0 < r["latency_p50_ms"] <= r["latency_p99_ms"]
        # The limiter's own share, from the app's histogram (a bucket bound; p99 may lie above the last one).
        assert r["decision_p50_le_ms"] is not None and r["decision_p50_le_ms"] > 0
    assert (rows["credential_stuffing"]["tier"], rows["credential_stuffing"]["admitted"]) == ("auth", LIMIT["auth"])
    assert rows["credential_stuffing"]["sent"] > LIMIT["auth"]
    assert (rows["single_client_flood"]["tier"], rows["single_client_flood"]["admitted"]) == ("general", LIMIT["general"])
    many = rows["many_clients_normal"]
    assert many["admitted"] == many["sent"] and many["denied"] == 0 and many["identities"] >= 2
    # Forged X-Forwarded-For from an untrusted client: one client's allowance, not one per address.
    spoof = rows["spoofed_forwarded_for"]
    assert spoof["admitted"] == LIMIT["auth"] < spoof["sent"]
    proxy = rows["trusted_proxy"]
    assert proxy["identities"] >= 2 and proxy["admitted"] == proxy["identities"] * LIMIT["auth"] < proxy["sent"]
    assert report["passed"] is True


def test_plan_bounds_and_helpers() -> None:
    assert sum(s.requests for s in scenarios(1.0)) < 20_000
    small = {s.name: s for s in scenarios(0.01)}
    # Scaled down, limited clients still go past their limit.
    assert small["credential_stuffing"].requests == LIMIT["auth"] + 5
    with pytest.raises(LoadTestError, match="above max_requests=100"):
        run_loadtest(max_requests=100)
    with pytest.raises(LoadTestError, match="unknown scenario 'nope'; allowed: credential_stuffing"):
        run_loadtest(only=["nope"])
    with pytest.raises(LoadTestError, match="loopback only"):
        run_loadtest(url="http://10.1.2.3:8000", only=["credential_stuffing"])
    with pytest.raises(LoadTestError, match="scale 0"):
        scenarios(0)
    assert parse_policy('"auth";q=30;w=60') == ("auth", 30, 60)
    assert parse_policy("garbage") is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0 and percentile([1.0] * 99 + [9.0], 99) == 1.0
    # GCRA 30/60: one unit refills every 2 s.
    assert allowance(30, 60, 1, 300, 1.9) == (30, True)
    assert allowance(30, 60, 1, 300, 4.1) == (32, False)
    assert allowance(30, 60, 2, 10, 100.0) == (20, True)  # asked for less than the limit
    assert allowance(5, 60, 1, 100, 10.0, "sliding_log") == (5, True)
    from redisops.loadtest import bucket_quantile

    before = {("bucket:auth", "0.001"): 1.0, ("bucket:auth", "0.005"): 2.0, ("bucket:auth", "+Inf"): 2.0}
    after = {("bucket:auth", "0.001"): 51.0, ("bucket:auth", "0.005"): 100.0, ("bucket:auth", "+Inf"): 102.0}
    # 100 new decisions: 50 <= 1 ms, 98 <= 5 ms, 100 in +Inf.
    assert bucket_quantile(before, after, "auth", 0.5) == 0.001
    assert bucket_quantile(before, after, "auth", 0.98) == 0.005
    assert bucket_quantile(before, after, "auth", 0.99) is None
    assert bucket_quantile(after, after, "auth", 0.5) is None


def test_readme_shows_the_committed_loadtest_result() -> None:
    from redisops.loadtest import markdown_table

    root = Path(__file__).resolve().parents[2]
    report = json.loads((root / "bench/results/loadtest.json").read_text())
    readme = (root / "README.md").read_text()
    between = readme.split("<!-- loadtest:begin -->\n", 1)[1].split("<!-- loadtest:end -->", 1)[0]
    assert between == markdown_table(report), "README's loadtest table is stale: rerun the README snippet"
    assert report["passed"] and report["environment"]["cpus"] and report["environment"]["redis_version"]
    assert all(r["exact"] and r["ok"] for r in report["scenarios"])
