"""docs/tutorial.md, followed mechanically, so the tutorial cannot silently rot.

The page marks its steps with HTML comments before fenced blocks:

- ``<!-- tutorial:edit NAME -->`` before a YAML or JSON block: an edit, applied in page
  order. ``feature`` replaces the new feature in ``policies/tiers.yaml`` (inserted below
  ``analytics.export``), ``suite`` is appended to ``policies/tests/tiers_test.yaml``,
  ``question`` is written to ``question.json``.
- ``<!-- tutorial:run exit=N -->`` before a console block: ``$ COMMAND`` on the first
  line, then the output. The command runs in-process in a scratch git repository (a copy
  of the repository's ``policies/`` with one commit, so ``git:HEAD`` works there) and
  must exit with ``N`` and print exactly the pasted output.

Normalised before comparing, and nothing else: policy version fingerprints (16 lowercase
hexadecimal digits, which change whenever the policies do) and trailing spaces. A line
``...`` in the pasted output stands for any number of lines.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tierpolicy import cli

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
# The new feature goes directly below this entry of policies/tiers.yaml.
ANCHOR = """    analytics.export:
      description: Download analytics as CSV.
      from: silver
"""
MARKER = re.compile(
    r"<!-- tutorial:(?P<what>edit|run) (?P<arg>[^>]*?) -->\n```[a-z]*\n(?P<body>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
VERSION = re.compile(r"\b[0-9a-f]{16}\b")


@dataclass(frozen=True)
class Step:
    """One marked block of the tutorial."""

    what: str
    arg: str
    body: str


def steps() -> list[Step]:
    """The marked blocks of docs/tutorial.md, in page order."""
    return [Step(m["what"], m["arg"].strip(), m["body"]) for m in MARKER.finditer(TUTORIAL.read_text())]


def normalise(text: str) -> list[str]:
    """The lines of an output with version fingerprints replaced and trailing spaces removed."""
    return [VERSION.sub("<version>", line).rstrip() for line in text.rstrip("\n").split("\n")]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether the actual lines are the expected ones, where a ``...`` line stands for any lines."""
    pattern = "".join("(?:[^\n]*\n)*" if line == "..." else re.escape(line) + "\n" for line in expected)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str) -> tuple[int, str]:
    """Run one ``tierpolicy`` command line of the tutorial in-process; return (exit code, stdout + stderr)."""
    program, *args = shlex.split(command)
    assert program == "tierpolicy", command
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out + err


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository holding a copy of policies/ in one commit, as the current directory."""
    if shutil.which("git") is None:
        pytest.fail("the tutorial's diff step needs git")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    identity = [
        "-c",
        "user.name=Tutorial",
        "-c",
        "user.email=tutorial@example.com",
        "-c",
        "commit.gpgsign=false",
    ]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "policies"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603, S607  fixed git arguments
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return tmp_path


def apply(step: Step, scratch: Path, feature: str | None) -> str | None:
    """Apply one edit of the tutorial; return the feature block now in tiers.yaml."""
    if step.arg == "feature":
        tiers = scratch / "policies" / "tiers.yaml"
        text = tiers.read_text()
        assert ANCHOR in text, "the tutorial's anchor (analytics.export) is no longer in tiers.yaml"
        current = ANCHOR + (feature or "")
        assert current in text, "the previous edit of the feature is no longer in tiers.yaml"
        tiers.write_text(text.replace(current, ANCHOR + step.body, 1))
        return step.body
    if step.arg == "suite":
        suite = scratch / "policies" / "tests" / "tiers_test.yaml"
        suite.write_text(suite.read_text().rstrip("\n") + "\n\n" + step.body)
    elif step.arg == "question":
        (scratch / "question.json").write_text(step.body)
    else:
        pytest.fail(f"unknown tutorial edit {step.arg!r}")
    return feature


def test_tutorial_marks_every_step():
    """The tutorial marks its edits and runs, and every run block starts with a tierpolicy command."""
    marked = steps()
    assert [s.arg for s in marked if s.what == "edit"] == [
        "feature",
        "feature",
        "feature",
        "suite",
        "question",
    ]
    # A marker that is misspelt or not directly above a fenced block would be skipped silently.
    assert len(marked) == len(re.findall(r"^<!-- tutorial:", TUTORIAL.read_text(), re.MULTILINE)) == 17
    runs = [s for s in marked if s.what == "run"]
    assert all(s.body.startswith("$ tierpolicy ") and re.fullmatch(r"exit=\d", s.arg) for s in runs)


def test_ellipsis_matches_any_lines_and_nothing_else():
    """A ``...`` line stands for zero or more lines; every other line must match exactly."""
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert matches(["...", "d"], ["b", "d"])
    assert matches(["a", "..."], ["a"])
    assert not matches(["a", "...", "d"], ["a", "b", "e"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert normalise("v 3a378b6ff9bbbcf0  \n") == ["v <version>"]


def test_every_step_of_the_tutorial_works_as_written(scratch, monkeypatch, capsys):
    """Every edit applies and every command exits and prints exactly what docs/tutorial.md shows."""
    feature: str | None = None
    ran = 0
    for step in steps():
        if step.what == "edit":
            feature = apply(step, scratch, feature)
            continue
        command, _, expected = step.body.partition("\n")
        code, output = run(monkeypatch, capsys, command.removeprefix("$ "))
        shown = int(step.arg.removeprefix("exit="))
        assert code == shown, f"{command}: exit code {code}, the tutorial shows {shown}\n{output}"
        assert matches(normalise(expected), normalise(output)), (
            f"{command}\n--- shown:\n{expected}--- printed:\n{output}"
        )
        ran += 1
    assert ran == sum(s.what == "run" for s in steps()) == 12
    # The tutorial leaves the scratch policies valid, with the new feature and its test.
    assert "analytics.forecast" in (scratch / "policies" / "tiers.yaml").read_text()
