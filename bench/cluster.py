"""Scaling figures for `redisops plan`: `python bench/cluster.py [--small]` writes bench/results/cluster.json.

The measuring code is ratelimit/clusterbench.py (importable, so the tests run it at a small size).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ratelimit.clusterbench import main

if __name__ == "__main__":
    sys.exit(main())
