#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, type-check, then every test
# (unit, stack under Pulumi mocks, real redis/sentinel/exporter/prometheus processes, moto).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/python -m pytest "$@"
