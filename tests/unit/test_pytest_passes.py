"""scripts/pytest_passes.sh (the pytest part of scripts/test.sh): which arguments run the two
passes, the exit status when either fails, and the JUnit evidence when a pass crashes. The
interpreter is a stand-in that records each pytest call; merge_junit.py runs for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# .venv/bin/python: runs merge_junit.py with the real interpreter; for pytest, records the call
# and, per pass (in-process: --numprocesses; real-process: --ignore=tests/unit; else one pass),
# exits with $EXIT_<pass> (default 0) after writing the JUnit file it was handed, unless
# $CRASH_<pass> is set (a crash that writes none).
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = scripts/merge_junit.py ]; then exec {real} "$@"; fi
case " $* " in
  *" --numprocesses=auto "*) pass=IN ;;
  *" --ignore=tests/unit "*) pass=REAL ;;
  *) pass=ONE ;;
esac
echo "$pass $*" >> "$CALLS"
crash="CRASH_$pass"; code="EXIT_$pass"
if [ -z "${{!crash:-}}" ]; then
  for arg in "$@"; do case "$arg" in --junitxml=*)
    echo "<testsuites><testsuite name=\\"$pass\\" tests=\\"1\\"><testcase classname=\\"$pass\\" name=\\"t\\"/></testsuite></testsuites>" > "${{arg#--junitxml=}}";;
  esac; done
fi
exit "${{!code:-0}}"
"""


def run_passes(tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str], str]:
    """(exit status, one line per pytest call: pass and arguments, output)."""
    (tmp_path / "scripts").mkdir(exist_ok=True)
    for name in ("pytest_passes.sh", "merge_junit.py"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(FAKE_PYTHON.format(real=sys.executable))
    python.chmod(0o755)
    calls = tmp_path / "calls"
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "pytest_passes.sh"), *args], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "CALLS": str(calls), **env})
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc.returncode, lines, proc.stdout + proc.stderr


CI_ARGS = ("--junitxml=out/junit.xml", "--durations=25")  # what .ci/run passes


def test_ci_runs_both_passes_with_its_options_and_keeps_one_junit_file(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    code, calls, out = run_passes(tmp_path, *CI_ARGS)
    assert code == 0, out
    assert calls == [
        "IN -m pytest --numprocesses=auto --maxprocesses=4 tests/unit tests/stack tests/aws "
        "--junitxml=out/junit.xml.in-process --durations=25",
        "REAL -m pytest tests --ignore=tests/unit --ignore=tests/stack --ignore=tests/aws "
        "--junitxml=out/junit.xml.real-process --durations=25"]
    suites = [s.get("name") for s in ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testsuite")]
    assert suites == ["IN", "REAL"] and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["junit.xml"]


@pytest.mark.parametrize("failing", ["EXIT_IN", "EXIT_REAL"])
def test_either_pass_failing_fails_the_run_and_both_run(tmp_path: Path, failing: str) -> None:
    code, calls, out = run_passes(tmp_path, "--durations=25", **{failing: "1"})
    assert code == 1, out
    assert [c.split()[0] for c in calls] == ["IN", "REAL"]


def test_a_crashed_pass_fails_the_run_and_is_an_error_in_the_junit_file(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    code, calls, out = run_passes(tmp_path, *CI_ARGS, CRASH_IN="1", EXIT_IN="3")
    assert code == 3 and [c.split()[0] for c in calls] == ["IN", "REAL"], out  # pytest's own status is kept
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert [(s.get("name"), s.get("errors")) for s in root.iter("testsuite")] == [
        ("junit.xml.in-process", "1"), ("REAL", None)]


@pytest.mark.parametrize("args", [
    ("-k", "foo"), ("tests/unit",), ("-kfoo",), ("-p", "no:randomly"), ("--durations", "25"), ("-m", "slow"),
    ("--junitxml=j.xml", "tests/unit/test_a.py::test_b"),
])
def test_arguments_that_select_or_take_a_separate_value_run_once_as_given(tmp_path: Path,
                                                                          args: tuple[str, ...]) -> None:
    # One pass selecting nothing would exit 5 and fail the run; `-p no:randomly` is one option.
    code, calls, out = run_passes(tmp_path, *args)
    assert code == 0, out
    assert calls == [f"ONE -m pytest {' '.join(args)}"]


@pytest.mark.parametrize("stop", ["-x", "--exitfirst", "--maxfail=1"])
def test_stop_at_the_first_failure_skips_the_real_process_pass(tmp_path: Path, stop: str) -> None:
    code, calls, out = run_passes(tmp_path, stop, EXIT_IN="1")
    assert code == 1 and [c.split()[0] for c in calls] == ["IN"], out
    assert "real-process tests not run" in out
    code, calls, _ = run_passes(tmp_path, stop)  # nothing failed: both run
    assert code == 0 and [c.split()[0] for c in calls[1:]] == ["IN", "REAL"]
