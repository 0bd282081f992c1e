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
    result = run_benchmark(tmp_path, decisions=400, per_client=200, memory_clients=300, log_clients=50,
                           ceiling_requests=2000, rounds=2, chart=True, fallback_calls=3, callgrind_calls=60)
    on_disk = json.loads((tmp_path / "ratelimit.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert (tmp_path / "ratelimit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

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
                                           "fallback_decision", "fcall_vs_evalsha_server_cost"}
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
