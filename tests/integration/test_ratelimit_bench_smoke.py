"""The benchmark runs end to end at toy sizes and reports every field (no timing asserted)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from ratelimit.bench import run_benchmark
from tests.support.ratelimit_fixtures import requires_redis

pytestmark = [pytest.mark.slow, requires_redis]

CONTENDERS = {"gcra", "sliding_log", "fixed_window", "limits_moving_window", "limits_sliding_window_counter",
              "limits_moving_window_with_stats"}
THROUGHPUT_FIELDS = {"decisions", "allowed", "decisions_per_s", "latency_p50_us", "latency_p99_us",
                     "client_cpu_us_per_decision", "server_usec_per_call", "server_script_calls",
                     "decisions_per_s_all_rounds"}


def test_benchmark_writes_complete_results(tmp_path) -> None:
    # Memory per client is a used_memory difference; the server's own allocations move it by tens
    # of KB between two reads, so a few hundred clients can read negative (CI runs 18 and 19).
    # 3000 / 1000 clients put the keys' share well above that.
    result = run_benchmark(tmp_path, decisions=400, per_client=200, memory_clients=3000, log_clients=1000,
                           ceiling_requests=2000, rounds=2, chart=True, fallback_calls=3, callgrind_calls=60,
                           flood_hits=1000, two_limit_requests=400, async_decisions=400, async_tasks=40)
    on_disk = json.loads((tmp_path / "ratelimit.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert (tmp_path / "ratelimit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    load = on_disk["environment"]["load_average"]  # what the run ran under, beside its figures
    assert [len(load["start"]), len(load["end"])] == [3, 3] and min(load["start"] + load["end"]) >= 0

    assert set(on_disk["throughput"]) == CONTENDERS
    for name, row in on_disk["throughput"].items():
        assert set(row) == THROUGHPUT_FIELDS, name
        assert row["decisions_per_s"] > 0 and row["latency_p99_us"] >= row["latency_p50_us"] > 0
        # Rounds of 200 requests from one id against 120 per minute: 120 admitted, plus what the
        # round's own duration refills (GCRA and limits' counter earn one every 0.5 s; a busy
        # machine makes a round slow, not wrong).
        elapsed = row["decisions"] / row["decisions_per_s"]
        assert row["decisions"] == 200 and 120 <= row["allowed"] <= 121 + math.ceil(elapsed * 120 / 60), (
            name, row["allowed"], elapsed)
        # The with-stats contender makes two server calls per decision (hit, then the stats).
        calls = 400 if name == "limits_moving_window_with_stats" else 200
        assert row["server_script_calls"] == calls and row["server_usec_per_call"] > 0, name
    assert on_disk["ratios"]["python_throughput_gcra_vs_limits_with_stats"] > 0
    assert set(on_disk["memory"]) == CONTENDERS - {"limits_moving_window_with_stats"}
    for name, row in on_disk["memory"].items():
        assert row["bytes_per_client"] > 0 and row["keys"] >= row["clients"], name
    assert on_disk["memory"]["sliding_log"]["requests_per_client"] == 120
    if shutil.which("redis-benchmark"):
        assert all(v and v > 0 for v in on_disk["ceilings"].values())
    assert set(on_disk["ratios"]) >= {"gcra_server_cost_vs_fixed_window", "gcra_bytes_per_client",
                                      "limits_moving_window_memory_vs_gcra", "python_throughput_gcra_vs_best_limits"}
    # How long a decision takes when Redis cannot answer: measured here, judged by nobody's clock.
    fallback = on_disk["fallback"]
    assert fallback["timeout_s"] == 0.1 and fallback["calls"] == 3
    for case in ("stalled", "stalled_new_connection", "stalled_async_no_client_timeout", "refused"):
        assert 0 <= fallback[case]["p50_ms"] <= fallback[case]["max_ms"] <= fallback["max_s"] * 1000 + 0.05, case
    # A stalled server answers nothing: those decisions end at the 0.1 s timeout, never before it.
    for case in ("stalled", "stalled_new_connection", "stalled_async_no_client_timeout"):
        assert fallback[case]["p50_ms"] >= 99.9, (case, fallback[case])
    assert set(on_disk["targets_met"]) == {"gcra_server_cost_vs_fixed_window", "gcra_bytes_per_client",
                                           "limits_moving_window_memory_vs_gcra", "python_throughput_vs_limits",
                                           "fallback_decision", "fcall_vs_evalsha_server_cost",
                                           "flood_redis_calls_vs_limits", "two_limits_throughput_vs_limits",
                                           "async_200_tasks_throughput_vs_limits"}
    assert all(isinstance(v, bool) for v in on_disk["targets_met"].values())
    # FCALL and the EVALSHA opt-in side by side, per algorithm, in the same run.
    cost = on_disk["server_cost_pipelined"]
    for a in ("gcra", "sliding_log", "fixed_window"):
        assert cost[a]["usec_per_call"] > 0 and cost[a]["evalsha_usec_per_call"] > 0, a
        assert on_disk["ratios"][f"fcall_vs_evalsha_usec_{a}"] == cost[a]["fcall_vs_evalsha"] > 0
        assert on_disk["ceilings"].get(f"{a}_fcall_per_s", 1) != 0
    grind = on_disk["server_cost_callgrind"]
    if shutil.which("valgrind") and shutil.which("callgrind_annotate"):
        for a in ("gcra", "sliding_log", "fixed_window"):
            # Both commands ran the same Lua on the same state: thousands of instructions each.
            assert grind[a]["instructions_per_fcall"] > 1000 and grind[a]["instructions_per_evalsha"] > 1000, a
        assert on_disk["ratios"]["fcall_vs_evalsha_server_cost"] == on_disk["ratios"]["fcall_vs_evalsha_instructions"]
    else:
        assert grind is None
        assert on_disk["ratios"]["fcall_vs_evalsha_server_cost"] == on_disk["ratios"]["fcall_vs_evalsha_usec"]

    # The flood: 1000 hits on one key at 30/60 s. Everyone admits 30 (GCRA's 2 s refill aside);
    # without the deny cache every hit is one script call, with it the calls are the 30 admissions
    # and the first denial (counted by the server, INFO commandstats).
    flood = on_disk["flood"]
    assert set(flood) == {"ours_gcra_deny_cache", "ours_gcra_no_cache", "limits_moving_window",
                          "limits_sliding_window_counter"}
    for name, row in flood.items():
        # GCRA earns a unit back every 2 s (a busy machine makes a run slow, not wrong).
        elapsed = row["hits"] / row["decisions_per_s"]
        assert row["hits"] == 1000 and 30 <= row["admitted"] <= 31 + math.ceil(elapsed / 2), (name, row)
        if name != "ours_gcra_deny_cache":
            assert row["redis_calls"] == 1000, (name, row)
    shield = flood["ours_gcra_deny_cache"]
    assert shield["admitted"] + 1 <= shield["redis_calls"] <= shield["admitted"] + 2, shield
    assert on_disk["ratios"]["flood_redis_calls_limits_vs_ours"] == round(1000 / shield["redis_calls"], 1)
    # Two limits per request: one script call for ours, two for limits; same admissions.
    two = on_disk["two_limits"]
    assert set(two) == {"ours_hit_many", "limits_moving_window", "limits_sliding_window_counter"}
    assert two["ours_hit_many"]["redis_calls"] == 400
    assert all(two[n]["redis_calls"] == 800 for n in two if n.startswith("limits"))
    for name, row in two.items():  # 2 ids x 30: the 30/60 limit binds (plus GCRA's refill, as above)
        elapsed = row["requests"] / row["requests_per_s"]
        assert 60 <= row["admitted"] <= 62 + 2 * math.ceil(elapsed / 2), (name, row)
    # 40 concurrent tasks x 10 decisions: every decision made, each one script call.
    conc = on_disk["async_tasks"]
    assert set(conc) == {"ours_gcra_auto_pipeline", "ours_gcra_no_pipeline", "limits_async_moving_window",
                         "limits_async_sliding_window_counter"}
    for name, row in conc.items():
        assert (row["tasks"], row["decisions"], row["admitted"], row["redis_calls"]) == (40, 400, 400, 400), name
        assert row["decisions_per_s"] > 0
    assert set(on_disk["ratios"]) >= {"two_limits_throughput_vs_limits", "async_200_tasks_throughput_vs_limits",
                                      "async_auto_pipeline_vs_no_pipeline"}
