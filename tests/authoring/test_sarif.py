"""Tests of the SARIF 2.1.0 output of tierpolicy check (schema, rules, locations, exit codes)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import pytest

from tierpolicy import cli
from tierpolicy.authoring._sarif import SHORT_DESCRIPTIONS, to_sarif
from tierpolicy.engine._diagnostics import Code, Diagnostic, Position

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))

BROKEN_TIERS = """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata:
  name: tiers
spec:
  tiers:
    - name: bronze
    - name: silver
  features:
    listing.video:
      from: silvr
"""


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


def validate(log: object) -> None:
    """Validate a SARIF log against the official 2.1.0 schema (draft 4)."""
    jsonschema.Draft4Validator(SCHEMA).validate(log)


def test_invalid_set_gives_schema_valid_sarif_with_positions(monkeypatch, capsys, tmp_path):
    """A broken set: exit 1, SARIF that validates, the finding on its file, line and column."""
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "tiers.yaml").write_text(BROKEN_TIERS)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(monkeypatch, capsys, "check", "policies", "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    validate(log)
    run_ = log["runs"][0]
    assert run_["tool"]["driver"]["name"] == "tierpolicy"
    [result] = run_["results"]
    assert result["ruleId"] == "TP400"
    assert run_["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "TP400"
    assert result["level"] == "error"
    assert "silvr" in result["message"]["text"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "policies/tiers.yaml", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 11, "startColumn": 13}
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_valid_set_exits_zero_with_no_results(monkeypatch, capsys):
    """The shipped set: exit 0 and a valid log with no results."""
    monkeypatch.chdir(ROOT)
    code, out, _ = run(monkeypatch, capsys, "check", "policies", "--format", "sarif")
    assert code == 0
    log = json.loads(out)
    validate(log)
    assert log["runs"][0]["results"] == []


def test_missing_directory_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """A directory that does not exist exits 2, as for text and json."""
    code, out, err = run(monkeypatch, capsys, "check", str(tmp_path / "nope"), "--format", "sarif")
    assert code == 2
    assert out == ""
    assert "no such file or directory" in err


def test_levels_follow_severity_and_files_outside_the_base_are_absolute(tmp_path):
    """error/warning/info map to error/warning/note; a file outside the base gets a file URI."""
    inside = tmp_path / "base" / "p dir" / "a.yaml"
    outside = tmp_path / "elsewhere.yaml"
    diagnostics = [
        Diagnostic(Position(str(inside), 3, 4), "error", Code.YAML_SYNTAX, "bad", hint="fix it"),
        Diagnostic(Position(str(inside), 5, 1), "warning", Code.LIMIT_NOT_MONOTONE, "lower"),
        Diagnostic(Position(str(outside), 1, 1), "info", Code.UNUSED_ERROR_CODE, "unused"),
    ]
    log = to_sarif(diagnostics, base=tmp_path / "base")
    validate(log)
    results = log["runs"][0]["results"]
    assert [r["level"] for r in results] == ["error", "warning", "note"]
    assert results[0]["message"]["text"] == "bad (fix it)"
    first = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert first == {"uri": "p%20dir/a.yaml", "uriBaseId": "%SRCROOT%"}
    last = results[2]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert last == {"uri": outside.resolve().as_uri()}


def test_every_code_has_a_rule_with_help():
    """One rule per diagnostic code, each with a short description and a link to its section."""
    rules = to_sarif([])["runs"][0]["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == [code.value for code in Code]
    docs = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    linked = dict(re.findall(r"^\| \[(TP\d+)\]\(#([a-z0-9_-]+)\)", docs, flags=re.MULTILINE))
    for rule in rules:
        assert rule["shortDescription"]["text"]
        anchor = rule["helpUri"].rsplit("#", 1)[1]
        assert anchor == f"{rule['id'].lower()}-{Code(rule['id']).name.lower()}"
        if rule["id"] in linked:  # the docs table links the same section
            assert anchor == linked[rule["id"]]
    assert len(linked) >= 40


def test_short_descriptions_match_docs():
    """The rules' short descriptions are the 'in short' column of docs/diagnostics.md."""
    table = {}
    for line in (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| \[(TP\d+)\]\([^)]*\) \| ([A-Z0-9_]+) \| [a-z]+ \| (.*) \|$", line)
        if match:
            table[match[1]] = match[3]
    assert table, "the summary table of docs/diagnostics.md was not found"
    assert {code: SHORT_DESCRIPTIONS[code] for code in table if code in SHORT_DESCRIPTIONS} == {
        code: text for code, text in table.items() if code in SHORT_DESCRIPTIONS
    }
    assert set(SHORT_DESCRIPTIONS) <= set(table)
