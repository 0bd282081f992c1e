"""CLI entry for the rate-limiter benchmark; the logic lives in `ratelimit.bench` so an
installed package (e.g. `python -m redisops bench`) can import `run_benchmark` too.

    python bench/ratelimit_bench.py [--decisions N] [--out bench/results]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ratelimit.bench import main, run_benchmark

__all__ = ["main", "run_benchmark"]

if __name__ == "__main__":
    raise SystemExit(main())
