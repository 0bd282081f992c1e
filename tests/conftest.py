"""Suite-wide rules that keep CI deterministic.

* Hypothesis profiles: `ci` (the default) and `stress` (many more examples, for hunting flaky
  properties locally: HYPOTHESIS_PROFILE=stress). No deadline anywhere: a slow example on a
  loaded machine is not a failure.
* Every server a test starts is stopped by the end of that test, even when the test fails: a
  child process of the test run that a test (or its function-scoped fixtures) started and left
  running is killed and reported as an error of that test. Module-scoped servers are checked at
  the end of the run.
* A failed test's report carries the evidence its fixtures offer (`failure_evidence()`, e.g. a
  Sentinel topology's log tails): CI keeps the report, not the temporary directories.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("stress", parent=settings.get_profile("ci"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Children that belong to the interpreter, not to a test (multiprocessing's helper processes).
_RUNTIME_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _live_children() -> dict[int, str]:
    """PID -> command line of this process's children that are not zombies."""
    me = os.getpid()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == me and state != "Z" and not any(h in cmdline for h in _RUNTIME_HELPERS):
            found[int(entry.name)] = cmdline
    return found


def _kill(pids: dict[int, str]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture(autouse=True)
def _no_server_left_running() -> Iterator[None]:
    # Module- and session-scoped fixtures are set up before this one, so their servers are in
    # `before` and are not this test's to stop.
    before = set(_live_children())
    yield
    left = {pid: cmd for pid, cmd in _live_children().items() if pid not in before}
    if left:
        _kill(left)
        pytest.fail("processes started by this test were left running (killed now): "
                    + "; ".join(f"{pid} {cmd[:120]}" for pid, cmd in sorted(left.items())), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                          pytest.TestReport]:
    report = yield
    if report.failed and call.when == "call":
        for name, value in getattr(item, "funcargs", {}).items():
            evidence = getattr(value, "failure_evidence", None)
            if callable(evidence):
                try:
                    text = str(evidence())
                except Exception as exc:  # evidence must never turn a failure into an internal error
                    text = f"unreadable: {exc!r}"
                report.sections.append((f"evidence of fixture {name!r}", text))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = _live_children()
    if left:
        _kill(left)
        session.config.stash[_LEFT_AT_EXIT] = left
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEFT_AT_EXIT = pytest.StashKey[dict[int, str]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    left = terminalreporter.config.stash.get(_LEFT_AT_EXIT, {})
    if left:
        terminalreporter.write_line("processes left running at the end of the run (killed): "
                                    + "; ".join(f"{pid} {cmd[:120]}" for pid, cmd in sorted(left.items())), red=True)
