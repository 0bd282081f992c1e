#!/usr/bin/env bash
# The pytest part of scripts/test.sh (set-up, ruff and mypy have run): the whole suite in two
# passes, or what the arguments select in one (docs/decisions.md "A deterministic CI").
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python

# Two passes only when every argument is an option both passes take unchanged (what .ci/run
# passes, and -x/-q/-v). Anything else runs as given, in one pass, one test at a time: a path or
# `-k expr` selects tests (a pass that selects none would exit 5 and fail the run), and an option
# with a separate value (`-p no:randomly`, `--durations 25`) cannot be told from a path.
stop_first=0
junit=""
options=()
for arg in "$@"; do
  case "$arg" in
    --junitxml=*) junit="${arg#--junitxml=}" ;;
    --durations=*|-q|-v|-vv) options+=("$arg") ;;
    -x|--exitfirst|--maxfail=*) stop_first=1; options+=("$arg") ;;
    *) echo "==> pytest $*"; exec "$python" -m pytest "$@" ;;
  esac
done

# The in-process tests (unit, stack under Pulumi mocks, moto) share out over the cores; the
# real-process tests, whose failovers and stalls must not compete for CPU, then run one at a time.
# The two JUnit files are merged into --junitxml's FILE (a pass that wrote none is recorded there
# as an error). A failed first pass does not stop the second (a run reports every failure) unless
# -x/--maxfail asked to stop.
in_process=(tests/unit tests/stack tests/aws)
ignore_in_process=()
for dir in "${in_process[@]}"; do ignore_in_process+=("--ignore=$dir"); done
status=0

echo "==> pytest, in-process tests on every core: ${in_process[*]}"
"$python" -m pytest --numprocesses=auto --maxprocesses=4 "${in_process[@]}" \
  ${junit:+"--junitxml=$junit.in-process"} ${options[@]+"${options[@]}"} || status=$?

if [ "$status" -ne 0 ] && [ "$stop_first" -eq 1 ]; then
  echo "==> the in-process pass failed (exit $status) and -x/--maxfail was given: real-process tests not run"
else
  echo "==> pytest, real-process tests one at a time: tests/ ${ignore_in_process[*]}"
  "$python" -m pytest tests "${ignore_in_process[@]}" \
    ${junit:+"--junitxml=$junit.real-process"} ${options[@]+"${options[@]}"} || status=$?
fi

if [ -n "$junit" ]; then
  "$python" scripts/merge_junit.py "$junit" "$junit.in-process" "$junit.real-process" || status=$((status ? status : 1))
fi
exit "$status"
