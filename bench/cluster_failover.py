"""Failover and durability figures on real loopback Redis (Debian redis-server), written to
bench/results/cluster_failover.json and quoted in docs/runbooks/failover.md and docs/cluster.md.

    .venv/bin/python bench/cluster_failover.py [--runs 5] [--out bench/results]

* failover: a 3x1 cluster (node timeout 1 s while failing over), two limiter keys on one shard
  (fail-closed and fail-open tiers, 2 threads each, 250 ms decision timeout); kill -9 of the
  shard's primary; per run: promotion time, client-side outage (kill -> last fallback), first
  success after the kill, fallbacks by policy, and admissions the promoted replica never heard
  of (each one can be admitted again: the over-admission). The old primary rejoins as a replica
  and the next run kills the new primary.
* durability: AOF everysec (the shipped redis.conf), 4 threads of decisions, kill -9, restart
  from the node's own files, count acknowledged admissions the restarted node forgot; on a
  single node and on a cluster shard (3x0).

Shares its fault runs with tests/integration/test_cluster_failover.py (tests/support/cluster_load.py),
which asserts correctness; this script only measures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ratelimit import RateLimiter, decision_client_kwargs  # noqa: E402
from tests.support.cluster_load import durability_run, failover_run, summary  # noqa: E402
from tests.support.procs import wait_until  # noqa: E402
from tests.support.redis_cluster import REDIS_CLI, redis_cluster  # noqa: E402


def _single_node_durability(workdir: Path, runs: int) -> list[dict[str, Any]]:
    import redis

    from tests.integration._redisops_servers import rendered_server

    out = []
    with rendered_server(workdir) as server:
        for i in range(runs):
            def client(timeout: float) -> RateLimiter:
                r = redis.Redis(port=server.port, password=server.passwords["app"], **decision_client_kwargs(timeout))
                return RateLimiter(r, "fixed_window", timeout=timeout)

            def restart() -> RateLimiter:
                server.proc.start(write_config=False)
                admin = server.admin()
                # Accepting connections is not serving: it answers LOADING until the AOF is read.
                wait_until(lambda: admin.info("persistence")["loading"] == 0, 60, "AOF loaded")
                admin.close()
                return client(5.0)

            out.append(durability_run(client(0.5), f"durable-single-{i}", server.proc.kill9, restart))
    return out


def _cluster_durability(workdir: Path, runs: int) -> list[dict[str, Any]]:
    out = []
    with redis_cluster(workdir, 3, 0) as c:
        for i in range(runs):
            key = f"durable-shard-{i}"
            victim = c.primary_of_key(f"rl:{{{key}}}:f")

            def restart(victim: Any = victim) -> RateLimiter:
                victim.proc.start(write_config=False)
                c.wait_stable(expect_replicas=False)
                return RateLimiter(c.app_client(**decision_client_kwargs(5.0)), "fixed_window", timeout=5.0)

            limiter = RateLimiter(c.app_client(**decision_client_kwargs(0.5)), "fixed_window", timeout=0.5)
            out.append(durability_run(limiter, key, lambda v=victim: c.kill9(v), restart))
    return out


def _failovers(workdir: Path, runs: int) -> list[dict[str, Any]]:
    with redis_cluster(workdir, 3, 1) as c:
        return [failover_run(c) for _ in range(runs)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error(f"--runs {args.runs}: expected at least 1")
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        work = Path(tmp)
        failovers = _failovers(work / "failover", args.runs)
        single = _single_node_durability(work / "single", args.runs)
        shard = _cluster_durability(work / "shard", args.runs)
    version = subprocess.run([REDIS_CLI, "--version"], capture_output=True, text=True, check=False).stdout.split()
    result = {
        "schema": 1,
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": {"redis_cli": version[-1] if version else "?", "cpus": os.cpu_count(),
                        "machine": platform.machine(), "python": platform.python_version()},
        "parameters": {"runs": args.runs, "cluster": "3 primaries x 1 replica, loopback",
                       "node_timeout_ms_during_failover": 1000, "decision_timeout_s": 0.25,
                       "threads_per_key": 2, "appendfsync": "everysec"},
        "failover": {
            "promotion_s": summary([r["promotion_s"] for r in failovers]),
            "fail_closed_outage_s": summary([r["fail_closed"]["outage_s"] for r in failovers]),
            "fail_open_outage_s": summary([r["fail_open"]["outage_s"] for r in failovers]),
            "recovery_s": summary([max(r["fail_closed"]["recovery_s"], r["fail_open"]["recovery_s"])
                                   for r in failovers]),
            "replica_lag_bytes_at_kill": summary([r["replica_lag_bytes_at_kill"] or 0 for r in failovers]),
            "lost_admissions": summary([r["fail_closed"]["lost_admissions"] + r["fail_open"]["lost_admissions"]
                                        for r in failovers]),
            "fail_closed_fallbacks_denied": sum(r["fail_closed"]["fallbacks"] - r["fail_closed"]["fallbacks_allowed"]
                                                for r in failovers),
            "fail_closed_fallbacks_allowed": sum(r["fail_closed"]["fallbacks_allowed"] for r in failovers),
            "fail_open_fallbacks_allowed": sum(r["fail_open"]["fallbacks_allowed"] for r in failovers),
            "fail_open_fallbacks_denied": sum(r["fail_open"]["fallbacks"] - r["fail_open"]["fallbacks_allowed"]
                                              for r in failovers),
            "exceptions": sum(len(r[k]["errors"]) for r in failovers for k in ("fail_closed", "fail_open")),
            "runs": failovers,
        },
        "durability": {
            name: {"lost_admissions": summary([r["lost_admissions"] for r in rs]),
                   "decisions_per_s": summary([round(r["decisions_per_s"], 1) for r in rs]),
                   "runs": rs}
            for name, rs in (("single_node", single), ("cluster_shard", shard))
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster_failover.json").write_text(json.dumps(result, indent=2) + "\n")
    f = result["failover"]
    print(json.dumps({k: f[k] for k in f if k != "runs"}, indent=1))
    print(json.dumps({k: {kk: v for kk, v in d.items() if kk != "runs"} for k, d in result["durability"].items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
