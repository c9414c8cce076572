"""Running a policy directory's suites, and rendering the outcome as text, JSON or JUnit XML.

:func:`run_directory` is what ``tierpolicy test`` and ``tierpolicy check`` call: it
loads the policy set, reads the suites beside it, runs the selected cases and returns a
:class:`TestReport`. The renderers only format that report.
"""

from __future__ import annotations

import dataclasses
import json
import os

# Only builds XML from our own values; nothing here parses untrusted XML.
import xml.etree.ElementTree as ET
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from tierpolicy.engine._loader import check as check_policies
from tierpolicy.engine._schema import kind_schema, set_schema

from ._runner import KINDS, Coverage, RunResult, percent_text, run, select
from ._suites import SUITE_KIND, load_suites, suite_files, suite_schema

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tierpolicy.engine._diagnostics import Diagnostic
    from tierpolicy.engine._loader import CheckResult

    from ._runner import CaseResult


@dataclasses.dataclass(frozen=True, slots=True)
class TestReport:
    """What running a directory's suites found.

    Attributes:
        directory: The policy directory, as given.
        diagnostics: Problems with the policy set or the suites (errors stop the run).
        run: The results and coverage, or ``None`` when nothing could run.
        threshold: The coverage threshold in percent, if one was given.
    """

    __test__ = False  # not a pytest test class, despite the name

    directory: str
    diagnostics: tuple[Diagnostic, ...]
    run: RunResult | None
    threshold: Fraction | None = None

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        """The error diagnostics only."""
        return tuple(d for d in self.diagnostics if d.is_error)

    @property
    def coverage_ok(self) -> bool:
        """Whether coverage meets the threshold (true without a threshold)."""
        if self.threshold is None:
            return True
        return self.run is not None and self.run.coverage.meets(self.threshold)

    @property
    def passed(self) -> bool:
        """No error diagnostics, every case passed, and coverage meets the threshold."""
        return (
            not self.errors
            and self.run is not None
            and bool(self.run.results)  # a --filter that matches nothing is a mistake, not a pass
            and self.run.passed
            and self.coverage_ok
        )


def parse_threshold(text: str) -> Fraction:
    """Read a percentage such as ``100``, ``87.5`` or ``99.99`` exactly.

    Raises:
        ValueError: It is not a decimal number from 0 to 100.
    """
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        msg = f"--threshold takes a percentage from 0 to 100, such as 90 or 87.5; got {text!r}"
        raise ValueError(msg) from None
    if not 0 <= value <= 100:
        msg = f"--threshold takes a percentage from 0 to 100; got {text}"
        raise ValueError(msg)
    return value


def run_directory(
    directory: str | os.PathLike[str], *, pattern: str | None = None, threshold: Fraction | None = None
) -> TestReport:
    """Load the policy set at ``directory``, read its suites and run the matching cases."""
    display = os.fspath(directory)
    checked = check_policies(directory)
    if checked.policy_set is None:
        return TestReport(display, checked.errors, None, threshold)
    loaded = load_suites(directory, checked.policy_set)
    if not loaded.ok:
        return TestReport(display, loaded.diagnostics, None, threshold)
    result = run(checked.policy_set, select(loaded.suites, pattern))
    return TestReport(display, loaded.diagnostics, result, threshold)


# --------------------------------------------------------------------------- text


def _pairs(values: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in values.items())


def _case_lines(result: CaseResult) -> list[str]:
    case = result.case
    if result.passed:
        return [f"PASS  {case.name}"]
    lines = [f"FAIL  {case.name}  ({case.source})"]
    if result.error is not None:
        lines.append(f"      error: {result.error}")
    for comparison in result.failures:
        lines.append(f"      {comparison.subject}")
        lines.append(f"        expected: {_pairs(comparison.expected)}")
        lines.append(f"        actual:   {_pairs(comparison.actual)}")
        if comparison.trace:
            lines.append("        trace:")
            lines.extend(f"          {step}" for step in comparison.trace)
    return lines


def coverage_lines(coverage: Coverage, threshold: Fraction | None) -> list[str]:
    """The coverage summary: the total, per kind, and every rule not exercised."""
    ratio = coverage.ratio
    covered = sum(item.id in coverage.covered for item in coverage.items)
    lines = [f"coverage: {percent_text(ratio)} % ({covered}/{len(coverage.items)} rules)"]
    counts = coverage.by_kind()
    lines.append(
        "  " + ", ".join(f"{kind} {counts[kind][0]}/{counts[kind][1]}" for kind in KINDS if kind in counts)
    )
    uncovered = coverage.uncovered
    if uncovered:
        lines.append("  not exercised:")
        lines.extend(f"    {item.label} ({item.source})" for item in uncovered)
    if threshold is not None and not coverage.meets(threshold):
        lines.append(
            f"coverage {percent_text(ratio)} % is below the threshold of {_threshold_text(threshold)} %"
            + (
                " (exactly, not rounded)"
                if ratio * 100 < threshold and percent_text(ratio) == _threshold_text(threshold)
                else ""
            )
        )
    return lines


def _threshold_text(threshold: Fraction) -> str:
    return str(threshold) if threshold.denominator == 1 else f"{float(threshold):g}"


def render_text(report: TestReport, *, coverage: bool = False, verbose: bool = True) -> str:
    """The human-readable report: one line per case, failures in detail, then a summary.

    Args:
        report: The report.
        coverage: Add the coverage summary.
        verbose: List passing cases too (``False``: failures and the summary only).
    """
    lines = [d.format() for d in report.diagnostics]
    run_result = report.run
    if run_result is None:
        lines.append(f"tests not run: {len(report.errors)} error{'s' * (len(report.errors) != 1)}")
        return "\n".join(lines) + "\n"
    for result in run_result.results:
        if verbose or not result.passed:
            lines.extend(_case_lines(result))
    total = len(run_result.results)
    lines.append(
        f"{total - run_result.failed} passed, {run_result.failed} failed ({total} case{'s' * (total != 1)})"
    )
    if total == 0:
        lines.append("no test matched")
    if coverage or report.threshold is not None:
        lines.extend(coverage_lines(run_result.coverage, report.threshold))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- JSON


def render_json(report: TestReport, *, coverage: bool = False) -> str:
    """The machine-readable report (see ``docs/testing.md``)."""
    run_result = report.run
    document: dict[str, object] = {
        "passed": report.passed,
        "directory": report.directory,
        "diagnostics": [d.to_json() for d in report.diagnostics],
    }
    if run_result is not None:
        document["summary"] = {
            "cases": len(run_result.results),
            "passed": len(run_result.results) - run_result.failed,
            "failed": run_result.failed,
        }
        document["results"] = [r.to_json() for r in run_result.results]
        if coverage or report.threshold is not None:
            document["coverage"] = {
                **run_result.coverage.to_json(),
                "threshold": None if report.threshold is None else _threshold_text(report.threshold),
                "meets_threshold": report.coverage_ok,
            }
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"


# --------------------------------------------------------------------------- JUnit


def render_junit(report: TestReport) -> str:
    """JUnit XML as CI systems read it: one ``testsuite`` per suite, one ``testcase`` per case.

    Suite or policy problems that stop the run are ``error`` test cases of a
    ``tierpolicy`` test suite, so a CI view shows them as well.
    """
    root = ET.Element("testsuites", name=f"tierpolicy test {report.directory}")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    if report.errors:
        problems = ET.SubElement(root, "testsuite", name="tierpolicy")
        for d in report.errors:
            problem = ET.SubElement(problems, "testcase", classname="tierpolicy", name=f"{d.position}")
            error = ET.SubElement(problem, "error", message=d.message, type=d.code.value)
            error.text = d.format()
        _counts(problems, len(report.errors), 0, len(report.errors), totals)
    if report.run is not None:
        by_suite: dict[str, list[CaseResult]] = {}
        for result in report.run.results:
            by_suite.setdefault(result.case.suite, []).append(result)
        for suite, results in by_suite.items():
            element = ET.SubElement(root, "testsuite", name=suite)
            failures = errors = 0
            for result in results:
                case = result.case
                name = f"{case.test} [{case.label}]" if case.label else case.test
                item = ET.SubElement(
                    element, "testcase", classname=suite, name=name, file=case.source.split(":")[0]
                )
                if result.error is not None:
                    errors += 1
                    error = ET.SubElement(item, "error", message=result.error, type="EvaluationError")
                    error.text = "\n".join(_case_lines(result))
                elif not result.passed:
                    failures += 1
                    subjects = ", ".join(c.subject for c in result.failures)
                    failure = ET.SubElement(
                        item, "failure", message=f"unexpected {subjects}", type="ExpectationFailed"
                    )
                    failure.text = "\n".join(_case_lines(result))
            _counts(element, len(results), failures, errors, totals)
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _counts(element: ET.Element, tests: int, failures: int, errors: int, totals: dict[str, int]) -> None:
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", str(errors))
    element.set("skipped", "0")
    totals["tests"] += tests
    totals["failures"] += failures
    totals["errors"] += errors


# --------------------------------------------------------------------------- for the command line


class TestFormat(StrEnum):
    """Output formats of ``tierpolicy test``."""

    __test__ = False  # not a pytest test class, despite the name

    text = "text"
    json = "json"
    junit = "junit"


def render(report: TestReport, output: TestFormat, *, coverage: bool = False) -> str:
    """Render ``report`` in ``output`` format."""
    if output is TestFormat.json:
        return render_json(report, coverage=coverage)
    if output is TestFormat.junit:
        return render_junit(report)
    return render_text(report, coverage=coverage)


def check_suites(directory: str | os.PathLike[str], checked: CheckResult) -> TestReport | None:
    """The suites of a policy set that ``tierpolicy check`` just loaded, run; ``None`` without suites.

    A set that did not load, or a path that is a single file, has no suites to run.
    """
    if checked.policy_set is None or not Path(directory).is_dir() or not suite_files(directory):
        return None
    loaded = load_suites(directory, checked.policy_set)
    if not loaded.ok:
        return TestReport(os.fspath(directory), loaded.diagnostics, None)
    return TestReport(
        os.fspath(directory), loaded.diagnostics, run(checked.policy_set, select(loaded.suites, None))
    )


def report_json(report: TestReport) -> dict[str, object]:
    """The JSON form of a report, as a value (``check --format json`` embeds it as ``tests``)."""
    value: dict[str, object] = json.loads(render_json(report))
    return value


def schema_of(kind: str | None) -> dict[str, object]:
    """The JSON Schema of ``kind`` (a policy kind or ``TestSuite``); of any policy document for ``None``.

    Raises:
        KeyError: ``kind`` is neither.
    """
    if kind == SUITE_KIND:
        return suite_schema()
    return kind_schema(kind) if kind else set_schema()
