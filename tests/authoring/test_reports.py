import json
import sys
import xml.etree.ElementTree as ET  # parses only XML this package just wrote

import pytest

from suitesupport import copy_policies, write_suite
from tierpolicy import cli
from tierpolicy.authoring._reports import parse_threshold, render_junit, run_directory

FAILING = """
sellers:
  s: {tier: bronze}
now: 2026-06-01T00:00:00Z
tests:
  - {name: right, seller: s, expect: {limits: {team_members: 1}}}
  - {name: wrong, seller: s, expect: {limits: {team_members: 2}}}
"""


def run_cli(monkeypatch, capsys, *args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    return (0 if info.value.code is None else int(info.value.code)), out, err


@pytest.fixture
def failing(tmp_path):
    """The marketplace policies with one extra suite that has a failing test."""
    copy_policies(tmp_path / "p", suites=False)
    write_suite(tmp_path / "p", FAILING)
    return tmp_path / "p"


def test_junit_has_the_shape_ci_systems_read(failing):
    """JUnit XML: testsuites > testsuite > testcase, counts that add up, a failure element with details."""
    root = ET.fromstring(render_junit(run_directory(failing)))  # noqa: S314
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "demo"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["right", "wrong"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure.get("type") == "ExpectationFailed"
    assert "expected: value=2" in failure.text
    assert "actual:   value=1" in failure.text


def test_junit_reports_suite_errors_as_error_cases(tmp_path):
    """An invalid suite shows up in JUnit as an error test case at its position."""
    copy_policies(tmp_path / "p", suites=False)
    write_suite(tmp_path / "p", "tests: [{name: t, seller: nobody, expect: {limits: {team_members: 1}}}]")
    root = ET.fromstring(render_junit(run_directory(tmp_path / "p")))  # noqa: S314
    [case] = root.iter("testcase")
    assert case.find("error").get("type") == "TP500"
    assert case.get("name").endswith("tests/demo_test.yaml:6:29")


def test_test_command_exit_codes_and_text(failing, monkeypatch, capsys):
    """The test command exits 1 on a failing test and shows expected against actual."""
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(failing))
    assert code == 1
    assert "PASS  demo/right" in out
    assert "FAIL  demo/wrong" in out
    assert "1 passed, 1 failed (2 cases)" in out
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(failing), "--filter", "right")
    assert (code, out.splitlines()[-1]) == (0, "1 passed, 0 failed (1 case)")


def test_test_command_usage_errors(failing, monkeypatch, capsys):
    """A bad threshold or a missing directory is a usage error (exit 2) without a traceback."""
    code, _, err = run_cli(monkeypatch, capsys, "test", str(failing), "--threshold", "101")
    assert code == 2
    assert "percentage from 0 to 100" in err
    code, _, err = run_cli(monkeypatch, capsys, "test", str(failing / "missing"))
    assert code == 2
    assert "Traceback" not in err


def test_threshold_is_compared_exactly(tmp_path, monkeypatch, capsys):
    """The shipped suites reach 100 %; without one suite, --threshold 100 fails and 90 passes."""
    copy_policies(tmp_path / "p")
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(tmp_path / "p"), "--threshold", "100")
    assert code == 0
    assert "coverage: 100.00 % (112/112 rules)" in out
    (tmp_path / "p" / "tests" / "ratelimits_test.yaml").unlink()
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(tmp_path / "p"), "--threshold", "100")
    assert code == 1
    assert "coverage: 97.32 % (109/112 rules)" in out
    assert "rate limit service-api" in out
    code, _, _ = run_cli(monkeypatch, capsys, "test", str(tmp_path / "p"), "--threshold", "97.32")
    assert code == 0
    code, _, _ = run_cli(monkeypatch, capsys, "test", str(tmp_path / "p"), "--threshold", "97.33")
    assert code == 1
    assert parse_threshold("99.9") * 10 == 999


def test_json_format(failing, monkeypatch, capsys):
    """--format json gives the summary, every case and the coverage."""
    code, out, _ = run_cli(monkeypatch, capsys, "test", str(failing), "--format", "json", "--coverage")
    data = json.loads(out)
    assert code == 1
    assert data["passed"] is False
    assert data["summary"] == {"cases": 2, "passed": 1, "failed": 1}
    assert data["coverage"]["total"] == 112
    assert data["results"][1]["comparisons"][0]["expected"] == {"value": 2}


def test_check_runs_the_suites_unless_told_not_to(failing, monkeypatch, capsys):
    """Check fails on a failing suite, and --no-tests restores the plain validation."""
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(failing))
    assert code == 1
    assert "is valid" in out
    assert "FAIL  demo/wrong" in out
    assert "PASS" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(failing), "--no-tests")
    assert code == 0
    assert "FAIL" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(failing), "--format", "json")
    assert code == 1
    assert json.loads(out)["tests"]["summary"]["failed"] == 1


def test_check_of_the_shipped_policies_runs_their_suites(tmp_path, monkeypatch, capsys):
    """Checking the marketplace set passes and reports its suites; without suites its output is unchanged."""
    copy_policies(tmp_path / "with")
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(tmp_path / "with"))
    assert code == 0
    assert "82 passed, 0 failed (82 cases)" in out
    copy_policies(tmp_path / "without", suites=False)
    code, out, _ = run_cli(monkeypatch, capsys, "check", str(tmp_path / "without"), "--format", "json")
    assert code == 0
    assert "tests" not in json.loads(out)
