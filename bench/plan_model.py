"""The plan model against a real 1M-key server: `python bench/plan_model.py` writes
bench/results/plan_model.json (memory and server CPU per decision, predicted vs measured).

The measuring code is redisops/plancheck.py (the test asserts its memory half)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redisops.plancheck import main

if __name__ == "__main__":
    sys.exit(main())
