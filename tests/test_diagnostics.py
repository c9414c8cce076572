"""Tests of positioned diagnostics."""

from tierpolicy.engine._diagnostics import Code, Diagnostic, Position, closest, did_you_mean


def test_format_is_file_line_col_severity_code_message():
    """A diagnostic renders as FILE:LINE:COL: severity[CODE]: message (hint)."""
    d = Diagnostic(
        Position("p/t.yaml", 3, 7),
        "error",
        Code.UNKNOWN_KEY,
        "unknown key 'form'",
        "did you mean 'from'?",
    )
    assert d.format() == "p/t.yaml:3:7: error[TP205]: unknown key 'form' (did you mean 'from'?)"


def test_format_without_hint():
    """Without a hint nothing trails the message."""
    d = Diagnostic(Position("a.yaml", 1, 1), "warning", Code.EXPIRED_OVERRIDE, "expired")
    assert d.format() == "a.yaml:1:1: warning[TP408]: expired"
    assert not d.is_error


def test_json_form_has_every_field():
    """The JSON form carries file, line, column, severity, code, message and hint."""
    d = Diagnostic(Position("a.yaml", 2, 4), "error", Code.YAML_TAB, "tab", "indent with spaces")
    assert d.to_json() == {
        "file": "a.yaml",
        "line": 2,
        "column": 4,
        "severity": "error",
        "code": "TP105",
        "message": "tab",
        "hint": "indent with spaces",
    }


def test_codes_are_unique():
    """No two diagnostic kinds share a code."""
    values = [c.value for c in Code]
    assert len(values) == len(set(values))


def test_did_you_mean_finds_close_names():
    """A misspelling gets the closest existing name, and nothing when nothing is close."""
    assert (
        did_you_mean("analytcs.basic", ["analytics.basic", "api.access"]) == "did you mean 'analytics.basic'?"
    )
    assert did_you_mean("zzz", ["analytics.basic"]) is None
    assert closest("silvr", ["bronze", "silver", "gold"]) == ["silver"]
