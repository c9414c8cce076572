"""The bad-policy corpus: one mistake per file, each reported exactly where it is.

Every file in ``tests/corpus/bad/`` starts with one or more lines::

    # expect: <severity> <CODE> <LINE>:<COL>[ <text the message contains>]

and ``tierpolicy check FILE`` must print exactly those diagnostics, as
``FILE:LINE:COL: severity[CODE]: message``, and nothing that looks like a traceback.
Cases that cannot be committed as text (encodings, control characters, files over the
size limit) are generated into ``tmp_path`` by the tests below. Hostile files (alias
bombs, deep nesting) prove that reading is bounded by failing with the budget codes
rather than by a timing assertion.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tierpolicy
from tierpolicy import Code, cli
from tierpolicy.engine._yaml import YamlLimits

CORPUS = Path(__file__).parent / "corpus" / "bad"
ENGINE_SOURCE = Path(tierpolicy.__file__).parent / "engine"

_EXPECT = re.compile(
    r"# expect: (?P<severity>error|warning|info) (?P<code>TP\d{3}) (?P<line>\d+):(?P<column>\d+)"
    r"(?: (?P<text>\S.*))?$"
)
_DIAGNOSTIC = re.compile(
    r"(?P<line>\d+):(?P<column>\d+): (?P<severity>error|warning|info)\[(?P<code>TP\d{3})\]: (?P<message>.*)$"
)

NOT_FROM_ONE_FILE = frozenset({Code.NO_POLICY_FILES, Code.FILE_UNREADABLE, Code.SET_TOO_LARGE})
"""Codes about a directory or a whole set (no files, unreadable entries, set size)."""


@dataclasses.dataclass(frozen=True)
class Expectation:
    """One diagnostic a corpus file must produce; ``column=None`` accepts any column."""

    severity: str
    code: str
    line: int
    column: int | None
    text: str = ""


@dataclasses.dataclass(frozen=True)
class Printed:
    """One diagnostic as ``tierpolicy check`` printed it."""

    severity: str
    code: str
    line: int
    column: int
    message: str


def expectations_of(text: str) -> list[Expectation]:
    """Read the ``# expect:`` lines at the top of a corpus file."""
    found = []
    for line in text.splitlines():
        match = _EXPECT.fullmatch(line)
        if match is None:
            break
        found.append(
            Expectation(
                match["severity"],
                match["code"],
                int(match["line"]),
                int(match["column"]),
                match["text"] or "",
            )
        )
    return found


def corpus_files() -> list[Path]:
    """Every committed corpus file, in name order."""
    return sorted(CORPUS.glob("*.yaml"))


def run_check(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``tierpolicy check`` in-process and return (exit code, stdout, stderr)."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "argv", ["tierpolicy", "check", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


def parse_output(path: Path, out: str) -> list[Printed]:
    """Parse the diagnostics of ``out``; every other line must be the one-line summary."""
    printed = []
    lines = out.splitlines()
    assert lines, "check printed nothing"
    *diagnostics, summary = lines
    assert re.match(rf"(ok|invalid): {re.escape(str(path))} ", summary), summary
    for line in diagnostics:
        prefix = f"{path}:"
        assert line.startswith(prefix), f"not a diagnostic of {path}: {line!r}"
        match = _DIAGNOSTIC.fullmatch(line.removeprefix(prefix))
        assert match is not None, f"malformed diagnostic: {line!r}"
        printed.append(
            Printed(
                match["severity"],
                match["code"],
                int(match["line"]),
                int(match["column"]),
                match["message"],
            )
        )
    return printed


def assert_reported(path: Path, expected: list[Expectation], code: int, out: str, err: str) -> None:
    """Check exit code, the exact diagnostics, non-empty messages and no traceback."""
    assert expected, f"{path.name} states no '# expect:' line"
    assert "Traceback" not in out + err
    assert "internal error" not in err
    wants_error = any(e.severity == "error" for e in expected)
    # The CLI contract: 1 when the set is invalid; warnings alone still load (exit 0).
    assert code == (1 if wants_error else 0), out + err
    printed = parse_output(path, out)
    assert len(printed) == len(expected), out
    remaining = list(printed)
    for want in expected:
        match = next(
            (
                p
                for p in remaining
                if (p.severity, p.code, p.line) == (want.severity, want.code, want.line)
                and want.column in {None, p.column}
            ),
            None,
        )
        assert match is not None, f"expected {want} in:\n{out}"
        remaining.remove(match)
        assert match.message.strip(), f"empty message: {match}"
        assert want.text in match.message, f"{want.text!r} not in {match.message!r}"


# --------------------------------------------------------------------------- committed files


def test_corpus_is_not_empty():
    """The corpus holds a file for each kind of mistake, each stating its expectation."""
    files = corpus_files()
    assert len(files) >= 30
    for path in files:
        assert expectations_of(path.read_text(encoding="utf-8")), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_corpus_file_is_reported_exactly(monkeypatch, capsys, path):
    """Each corpus file gets exactly its expected diagnostics, positioned, with a message."""
    expected = expectations_of(path.read_text(encoding="utf-8"))
    code, out, err = run_check(monkeypatch, capsys, str(path))
    assert_reported(path, expected, code, out, err)


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_corpus_json_matches_text(monkeypatch, capsys, path):
    """``--format json`` reports the same diagnostics as the text format."""
    _, out, _ = run_check(monkeypatch, capsys, str(path))
    text = [(p.line, p.column, p.severity, p.code, p.message) for p in parse_output(path, out)]
    code, out, err = run_check(monkeypatch, capsys, str(path), "--format", "json")
    report = json.loads(out)
    assert "Traceback" not in out + err
    assert code == (0 if report["valid"] else 1)
    as_json = [
        (
            d["line"],
            d["column"],
            d["severity"],
            d["code"],
            d["message"] + (f" ({d['hint']})" if d["hint"] else ""),
        )
        for d in report["diagnostics"]
    ]
    assert as_json == text
    assert {d["file"] for d in report["diagnostics"]} == {str(path)}


def test_unknown_attribute_column_points_inside_the_expression(monkeypatch, capsys):
    """A misspelt attribute is reported at the attribute, not at the start of the condition."""
    path = CORPUS / "unknown_attribute.yaml"
    _, out, _ = run_check(monkeypatch, capsys, str(path))
    [printed] = parse_output(path, out)
    line = path.read_text(encoding="utf-8").splitlines()[printed.line - 1]
    expression = line.split("when: ", 1)[1]
    start = line.index(expression) + 1
    assert start < printed.column < start + len(expression)
    assert line[printed.column - 1 :].startswith("ratng")


def test_hostile_files_fail_on_their_budgets():
    """Alias bombs and deep nesting stop at the node and depth budgets, not by exhausting memory."""
    budgets = {
        "yaml_alias_bomb.yaml": Code.YAML_TOO_MANY_NODES.value,
        "yaml_deep_nesting.yaml": Code.YAML_TOO_DEEP.value,
    }
    for name, code in budgets.items():
        [expectation] = expectations_of((CORPUS / name).read_text(encoding="utf-8"))
        assert expectation.code == code


# --------------------------------------------------------------------------- generated files

_HEADER = "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata:\n  name: marketplace-tiers\n"
_TIERS = "spec:\n  tiers: [{name: bronze}, {name: silver}]\n"
_TEXT = _HEADER + "  description: Café tiers\n" + _TIERS


def _generated() -> dict[str, tuple[bytes, list[Expectation]]]:
    max_bytes = YamlLimits().max_file_bytes
    max_chars = YamlLimits().max_scalar_chars
    padding = b"# padding\n" * (max_bytes // 10 + 1)
    return {
        "oversize.yaml": (
            _TEXT.encode() + padding,
            [Expectation("error", "TP102", 1, 1, "1,048,576")],
        ),
        "long_value.yaml": (
            (_HEADER + "  description: " + "x" * (max_chars + 1) + "\n" + _TIERS).encode(),
            [Expectation("error", "TP102", 5, 16, "65,536")],
        ),
        "latin1.yaml": (
            _TEXT.encode("latin-1"),
            [Expectation("error", "TP103", 5, 19, "0xE9")],
        ),
        "utf16.yaml": (
            _TEXT.encode("utf-16"),
            [Expectation("error", "TP103", 1, 1, "UTF-16")],
        ),
        "utf16_no_bom.yaml": (
            (_HEADER + _TIERS).encode("utf-16-le"),
            [Expectation("error", "TP103", 1, 2, "NUL")],
        ),
        "control_character.yaml": (
            (_HEADER + "  description: ring \x07 the bell\n" + _TIERS).encode(),
            [Expectation("error", "TP104", 5, 21, "U+0007")],
        ),
        "very_deep.yaml": (
            (_HEADER + "spec:\n  tiers: " + "[" * 100_000 + "]" * 100_000 + "\n").encode(),
            # The column depends on whether libyaml or our reader notices first.
            [Expectation("error", "TP108", 6, None, "64")],
        ),
    }


GENERATED = _generated()


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_file_is_reported_exactly(monkeypatch, capsys, tmp_path, name):
    """Binary, oversized and hostile files are rejected with a positioned diagnostic."""
    data, expected = GENERATED[name]
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = run_check(monkeypatch, capsys, str(path))
    assert_reported(path, expected, code, out, err)


# --------------------------------------------------------------------------- coverage


def test_corpus_covers_every_code_a_file_can_produce():
    """Every diagnostic code the engine emits for a single file has a corpus case."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in ENGINE_SOURCE.rglob("*.py"))
    emitted = {Code[name] for name in re.findall(r"\bCode\.([A-Z][A-Z0-9_]+)\b", source)}
    covered = {
        Code(e.code) for path in corpus_files() for e in expectations_of(path.read_text(encoding="utf-8"))
    }
    covered |= {Code(e.code) for _, expected in GENERATED.values() for e in expected}
    missing = emitted - NOT_FROM_ONE_FILE - covered
    assert not missing, f"no corpus case for {sorted(c.value for c in missing)}"


# --------------------------------------------------------------------------- real process


def test_subprocess_smoke_alias_bomb():
    """``python -m tierpolicy.cli check`` on an alias bomb exits 1 with its diagnostic."""
    path = CORPUS / "yaml_alias_bomb.yaml"
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    src = str(Path(tierpolicy.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    completed = subprocess.run(  # noqa: S603  a fixed command line with the test's own interpreter
        [sys.executable, "-m", "tierpolicy.cli", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    expected = expectations_of(path.read_text(encoding="utf-8"))
    assert_reported(path, expected, completed.returncode, completed.stdout, completed.stderr)
