"""`.ci/run` keeps the evidence of every run (JUnit XML and log under .ci/artifacts/, the last 10)
and ends a failed run with where that evidence is and the ids of the failing tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Stands in for scripts/test.sh: writes the JUnit file it is handed, prints a pytest-like summary.
FAKE_TEST_SH = """#!/usr/bin/env bash
# KILLED=1: killed after the first pass, before the merge (only that pass's file, no junit.xml).
for arg in "$@"; do case "$arg" in --junitxml=*) echo '<testsuites/>' > "${arg#--junitxml=}${KILLED:+.in-process}";; esac; done
if [ -n "${KILLED:-}" ]; then echo "FAILED tests/unit/test_a.py::test_one[x] - AssertionError"; exit 143; fi
echo "args: $*"
if [ "${FAIL:-}" = 1 ]; then
  echo "FAILED tests/unit/test_a.py::test_one[x] - AssertionError: assert 1 == 2"
  echo "ERROR tests/integration/test_b.py::test_two - RuntimeError: boom"
  echo "FAILED tests/unit/test_a.py::test_one[x] - AssertionError: assert 1 == 2"
  echo "1 failed, 1 error, 5 passed in 1.00s"
  exit 1
fi
echo "6 passed in 1.00s"
"""


def checkout(tmp_path: Path) -> Path:
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "test.sh").write_text(FAKE_TEST_SH)
    return tmp_path


def ci_run(repo: Path, fail: bool, **env: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FAIL": "1" if fail else "0", **env}
    return subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)


def test_a_failed_run_keeps_its_evidence_and_ends_with_the_failing_ids(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    proc = ci_run(repo, fail=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (run_dir,) = (repo / ".ci" / "artifacts").iterdir()
    log, junit = run_dir / "ci.log", run_dir / "junit.xml"
    assert junit.read_text() == "<testsuites/>\n"
    assert "1 failed, 1 error, 5 passed" in log.read_text()
    assert f"args: --junitxml=.ci/artifacts/{run_dir.name}/junit.xml --durations=25" in log.read_text()
    lines = proc.stdout.splitlines()
    assert f"==> evidence of this failed run: {log}" in lines and f"==> JUnit XML: {junit}" in lines
    # The ids, once each, are the last thing printed.
    assert lines[-3:] == ["==> failing tests (2):", "ERROR tests/integration/test_b.py::test_two",
                          "FAILED tests/unit/test_a.py::test_one[x]"]


def test_a_passing_run_keeps_its_junit_and_ends_with_pytests_summary_and_the_duration(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    for _ in range(12):
        proc = ci_run(repo, fail=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-2] == "6 passed in 1.00s" and lines[-1].startswith("==> CI finished in ")
    runs = sorted((repo / ".ci" / "artifacts").iterdir())
    assert len(runs) == 10  # the oldest go
    assert all((r / "junit.xml").is_file() and (r / "ci.log").is_file() for r in runs)


def test_a_run_killed_between_the_passes_points_at_the_junit_file_of_the_pass_that_finished(tmp_path: Path) -> None:
    # scripts/pytest_passes.sh merges at the end: killed before that, only the parts exist.
    repo = checkout(tmp_path)
    proc = ci_run(repo, fail=True, KILLED="1")
    assert proc.returncode == 143, proc.stdout + proc.stderr
    (run_dir,) = (repo / ".ci" / "artifacts").iterdir()
    lines = proc.stdout.splitlines()
    assert "==> no merged JUnit XML: the run stopped during the tests; JUnit XML of the passes that finished:" in lines
    assert str(run_dir / "junit.xml.in-process") in lines
    assert not any(line.startswith("==> no JUnit XML") for line in lines)
    assert lines[-2:] == ["==> failing tests (1):", "FAILED tests/unit/test_a.py::test_one[x]"]
