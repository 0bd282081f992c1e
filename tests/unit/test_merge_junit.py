"""scripts/test.sh runs the suite in two pytest passes; .ci/run keeps one JUnit file of both."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("merge_junit", ROOT / "scripts" / "merge_junit.py")
assert _spec is not None and _spec.loader is not None
merge_junit = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(merge_junit)

# What pytest 9 writes: one <testsuite> under <testsuites>.
PASS = ('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests">'
        '<testsuite name="pytest" errors="0" failures="{f}" skipped="0" tests="{n}">{cases}</testsuite>'
        '</testsuites>')


def suite(path: Path, *cases: tuple[str, bool]) -> Path:
    body = "".join(f'<testcase classname="{c}" name="t">' + ("<failure message='x'/>" if failed else "")
                   + "</testcase>" for c, failed in cases)
    path.write_text(PASS.format(f=sum(f for _, f in cases), n=len(cases), cases=body))
    return path


def test_both_passes_end_in_one_file_with_every_case_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "junit.xml"
    first = suite(tmp_path / "junit.xml.in-process", ("tests.unit.test_a", False), ("tests.stack.test_b", True))
    second = suite(tmp_path / "junit.xml.real-process", ("tests.integration.test_c", False))
    assert merge_junit.merge(target, [first, second]) == 0  # no pass without its JUnit XML
    root = ET.parse(target).getroot()
    assert root.tag == "testsuites"
    assert [c.get("classname") for c in root.iter("testcase")] == [
        "tests.unit.test_a", "tests.stack.test_b", "tests.integration.test_c"]
    assert [s.get("failures") for s in root.iter("testsuite")] == ["1", "0"]
    assert not first.exists() and not second.exists()


def test_a_pass_that_wrote_nothing_is_an_error_in_the_kept_file_beside_the_other(tmp_path: Path) -> None:
    # A crashed or killed pass writes no JUnit XML: the kept file must not look complete.
    target = tmp_path / "junit.xml"
    second = suite(tmp_path / "junit.xml.real-process", ("tests.integration.test_c", True))
    assert merge_junit.merge(target, [tmp_path / "junit.xml.in-process", second]) == 1
    suites = list(ET.parse(target).getroot().iter("testsuite"))
    assert [(s.get("name"), s.get("errors")) for s in suites] == [("junit.xml.in-process", "1"), ("pytest", "0")]
    (error,) = suites[0].iter("error")
    assert "junit.xml.in-process: this pass wrote no JUnit XML" in (error.get("message") or "")
    assert [c.get("classname") for c in suites[1].iter("testcase")] == ["tests.integration.test_c"]


def test_a_pass_cut_short_is_an_error_and_its_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "junit.xml"
    first = suite(tmp_path / "junit.xml.in-process", ("tests.unit.test_a", False))
    cut = tmp_path / "junit.xml.real-process"
    cut.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest"><testcase classname="x"')
    assert merge_junit.merge(target, [first, cut]) == 1
    (error,) = ET.parse(target).getroot().iter("error")
    assert "junit.xml.real-process: this pass's JUnit XML is unreadable" in (error.get("message") or "")
    assert cut.exists() and not first.exists()
