"""Tests of the command line's error paths: bad input, explain output, version and schema files."""

from __future__ import annotations

import errno
import io
import json
import sys
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest

from support import SMALL_SET
from tierpolicy import cli
from tierpolicy.engine._schema import kind_schema, set_schema

CONTEXT = {
    "seller": {"id": "s-1", "tier": "silver"},
    "metrics": {"orders": 50, "rating": 4.1, "claim_rate": 0.0},
}


class _BrokenInput(io.RawIOBase):
    """A standard input whose every read fails, like a disconnected terminal."""

    def readable(self) -> bool:
        return True

    def readinto(self, _buffer) -> int:
        raise OSError(errno.EIO, "Input/output error")


def run(monkeypatch, capsys, *args: str, stdin: bytes | io.RawIOBase | None = None) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    if stdin is not None:
        raw = io.BytesIO(stdin) if isinstance(stdin, bytes) else io.BufferedReader(stdin)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw))
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A directory holding the small policy set."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "policy.yaml").write_text(SMALL_SET)
    return directory


def explain(monkeypatch, capsys, policies: Path, *queries: object, **request: object) -> tuple[int, str, str]:
    """Run ``explain`` on the first query of a request read from standard input."""
    payload = {"context": CONTEXT, "queries": list(queries), **request}
    return run(
        monkeypatch, capsys, "explain", "-p", str(policies), "-i", "-", stdin=json.dumps(payload).encode()
    )


# --------------------------------------------------------------------------- reading the request


def test_unreadable_input_is_a_usage_error(monkeypatch, capsys, policies):
    """A request that cannot be read exits 2 and names the operating system's reason."""
    code, out, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", "-", stdin=_BrokenInput())
    assert (code, out) == (2, "")
    assert err == "error: <stdin>: cannot read: Input/output error\n"


@pytest.mark.parametrize(("data", "offset"), [(b"\xff{}", 0), (b'{"context": {"x": "caf\xe9"}}', 22)])
def test_non_utf8_request_names_the_byte(monkeypatch, capsys, policies, tmp_path, data, offset):
    """A request that is not UTF-8 exits 1 and names the first bad byte."""
    path = tmp_path / "request.json"
    path.write_bytes(data)
    code, out, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", str(path))
    assert (code, out) == (1, "")
    assert err == f"error: {path}: the request is not UTF-8 (byte {offset})\n"


def _padded_request(size: int) -> bytes:
    """A valid request padded with trailing spaces to exactly ``size`` bytes."""
    body = json.dumps({"context": CONTEXT, "queries": [{"kind": "feature", "name": "basic"}]}).encode()
    return body + b" " * (size - len(body))


def test_request_of_exactly_the_limit_is_read(monkeypatch, capsys, policies, tmp_path):
    """A request of exactly 8 MiB is accepted."""
    path = tmp_path / "request.json"
    path.write_bytes(_padded_request(cli.MAX_INPUT_BYTES))
    code, out, _ = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", str(path))
    assert code == 0
    assert json.loads(out)["results"][0]["decision"]["allowed"] is True


def test_oversized_request_is_refused(monkeypatch, capsys, policies, tmp_path):
    """A request one byte over 8 MiB exits 1 without being parsed."""
    path = tmp_path / "request.json"
    path.write_bytes(_padded_request(cli.MAX_INPUT_BYTES + 1))
    code, out, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", str(path))
    assert (code, out) == (1, "")
    assert err == f"error: {path}: the request is larger than 8,388,608 bytes\n"


def test_oversized_request_on_stdin_is_refused(monkeypatch, capsys, policies):
    """Standard input is limited to 8 MiB too."""
    stdin = _padded_request(cli.MAX_INPUT_BYTES + 1)
    code, _, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", "-", stdin=stdin)
    assert code == 1
    assert err == "error: <stdin>: the request is larger than 8,388,608 bytes\n"


def test_deeply_nested_json_is_refused(monkeypatch, capsys, policies):
    """JSON nested deeper than the parser can follow exits 1 with a message, no traceback."""
    code, out, err = run(monkeypatch, capsys, "eval", "-p", str(policies), "-i", "-", stdin=b"[" * 200_000)
    assert (code, out) == (1, "")
    assert err == "error: <stdin>: the JSON request is nested too deeply\n"


# --------------------------------------------------------------------------- missing paths


@pytest.mark.parametrize("command", ["eval", "explain"])
def test_missing_policy_directory_is_a_usage_error(monkeypatch, capsys, tmp_path, command):
    """The eval and explain commands exit 2 when the policy directory does not exist."""
    missing = tmp_path / "nowhere"
    code, _, err = run(monkeypatch, capsys, command, "-p", str(missing), "-i", "-", stdin=b"{}")
    assert code == 2
    assert err == f"error: {missing}: no such file or directory\n"


def test_explain_with_a_missing_request_file_is_a_usage_error(monkeypatch, capsys, policies, tmp_path):
    """Explain exits 2 when the request file does not exist."""
    missing = tmp_path / "request.json"
    code, _, err = run(monkeypatch, capsys, "explain", "-p", str(policies), "-i", str(missing))
    assert code == 2
    assert err == f"error: {missing}: no such file\n"


# --------------------------------------------------------------------------- explain


def test_explain_needs_a_queries_list(monkeypatch, capsys, policies):
    """A request without a 'queries' list cannot be explained: exit 1."""
    for payload in (b"[]", b'{"context": {}}', b'{"context": {}, "queries": {}}'):
        code, out, err = run(monkeypatch, capsys, "explain", "-p", str(policies), "-i", "-", stdin=payload)
        assert (code, out, err) == (1, "", "error: invalid request: it needs a 'queries' list\n")


def test_explain_of_an_invalid_request_exits_one(monkeypatch, capsys, policies):
    """A request that fails validation as a whole exits 1 and says where it is wrong."""
    payload = b'{"queries": [{"kind": "tier"}]}'
    code, out, err = run(monkeypatch, capsys, "explain", "-p", str(policies), "-i", "-", stdin=payload)
    assert (code, out) == (1, "")
    assert err == "error: invalid request: context: required field is missing\n"


def test_explain_of_a_failed_query_shows_its_error(monkeypatch, capsys, policies):
    """A query that fails on its own is explained by its error type and message (exit 0)."""
    code, out, err = explain(monkeypatch, capsys, policies, {"kind": "feature", "name": "promotd"})
    assert (code, err) == (0, "")
    assert out == (
        'query 0: {"kind": "feature", "name": "promotd"}\n'
        "  error UNKNOWN_FEATURE: unknown feature 'promotd'; did you mean 'promoted'?\n"
    )


def test_explain_of_a_tier_query_lists_what_is_missing(monkeypatch, capsys, policies):
    """A tier query is explained by its action, the progression steps and the missing clauses."""
    code, out, _ = explain(monkeypatch, capsys, policies, {"kind": "tier"})
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == 'query 0: {"kind": "tier"}'
    assert lines[1] == "  s-1: keep (QUALIFIED) — metrics qualify for silver: keep silver"
    assert lines[2].startswith("    ✗ progression: gold: metrics.orders >= 100")
    assert lines[3].startswith("    ✓ progression: silver: metrics.orders >= 10")
    assert lines[4:6] == [
        "    missing for gold: metrics.orders >= 100 (actual: 50)",
        "    missing for gold: metrics.rating >= 4.5 (actual: 4.1)",
    ]
    assert lines[6].startswith("    rule progression:silver at policy.yaml:")
    assert len(lines) == 7


def test_explain_of_a_limit_query(monkeypatch, capsys, policies):
    """A limit query is explained by its value, reason and rule."""
    code, out, _ = explain(monkeypatch, capsys, policies, {"kind": "limit", "name": "listings"})
    assert code == 0
    assert (
        "  listings: 10 (TIER_MATCH) — listings for tier silver is 10 listings (inherited from bronze)\n"
        in out
    )


def test_explain_of_entitlements_covers_every_decision(monkeypatch, capsys, policies):
    """An entitlements query is explained feature by feature and then limit by limit."""
    code, out, _ = explain(monkeypatch, capsys, policies, {"kind": "entitlements"})
    headlines = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert code == 0
    assert [line.split(":")[0].strip() for line in headlines] == [
        "basic",
        "promoted",
        "onboarding",
        "beta",
        "killed",
        "veteran",
        "listings",
        "images",
    ]
    assert "  killed: deny (DISABLED) — killed is switched off for everyone" in headlines
    assert "    ✗ enabled: the feature is switched off (feature:killed)" in out
    assert (
        "    ! condition: attribute 'seller.joined_at' is missing from the context (feature:veteran)" in out
    )


def test_explain_of_entitlements_shows_the_limits_too(monkeypatch, capsys, policies):
    """An entitlements query's explanation includes its limit decisions."""
    _, out, _ = explain(monkeypatch, capsys, policies, {"kind": "entitlements"})
    assert "listings: 10 (TIER_MATCH)" in out


# --------------------------------------------------------------------------- version and schema


def test_version_prints_the_installed_version(monkeypatch, capsys):
    """Version prints the package name and its installed version."""
    code, out, err = run(monkeypatch, capsys, "version")
    assert (code, err) == (0, "")
    assert out == f"tierpolicy {dist_version('tierpolicy')}\n"


def test_schema_output_for_one_kind(monkeypatch, capsys, tmp_path):
    """With a kind, schema --output writes that kind's schema alone, into a directory it creates."""
    target = tmp_path / "schemas" / "nested"
    code, out, _ = run(monkeypatch, capsys, "schema", "Tiers", "--output", str(target))
    assert (code, out) == (0, "")
    assert sorted(p.name for p in target.iterdir()) == ["tiers.schema.json"]
    assert json.loads((target / "tiers.schema.json").read_text()) == kind_schema("Tiers")
    everything = tmp_path / "all"
    code, _, _ = run(monkeypatch, capsys, "schema", "--output", str(everything))
    assert code == 0
    assert json.loads((everything / "policy.schema.json").read_text()) == set_schema()


def test_schema_without_kind_prints_the_set_schema(monkeypatch, capsys):
    """Schema without a kind prints the schema accepting every kind."""
    code, out, _ = run(monkeypatch, capsys, "schema")
    assert code == 0
    assert json.loads(out) == set_schema()


# --------------------------------------------------------------------------- internal errors


def _explode(*_args: object, **_kwargs: object) -> object:
    msg = "boom"
    raise RuntimeError(msg)


def test_internal_errors_are_reported_without_a_traceback(monkeypatch, capsys, tmp_path):
    """An unexpected exception exits 1 with a one-line report and a pointer to TIERPOLICY_DEBUG."""
    monkeypatch.delenv("TIERPOLICY_DEBUG", raising=False)
    # No input reaches this path any more; a failing checker stands in for a bug.
    monkeypatch.setattr(cli, "check_policies", _explode)
    code, out, err = run(monkeypatch, capsys, "check", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == (
        "internal error: RuntimeError: boom\n"
        "this is a bug in tierpolicy; rerun with TIERPOLICY_DEBUG=1 for details and report it\n"
    )


def test_debug_setting_lets_internal_errors_propagate(monkeypatch, capsys, tmp_path):
    """With TIERPOLICY_DEBUG set, the unexpected exception propagates with its traceback."""
    monkeypatch.setenv("TIERPOLICY_DEBUG", "1")
    monkeypatch.setattr(cli, "check_policies", _explode)
    monkeypatch.setattr(sys, "argv", ["tierpolicy", "check", str(tmp_path)])
    with pytest.raises(RuntimeError, match="boom"):
        cli.main()
    assert capsys.readouterr().err == ""


def test_schema_output_onto_a_file_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """An --output path that is an existing file is a usage error (exit 2), not an internal error."""
    monkeypatch.delenv("TIERPOLICY_DEBUG", raising=False)
    occupied = tmp_path / "file"
    occupied.write_text("")
    code, _, err = run(monkeypatch, capsys, "schema", "--output", str(occupied))
    assert "internal error" not in err
    assert code == 2


def test_explain_shows_what_keeps_the_tier(monkeypatch, capsys, policies):
    """During a pending downgrade, explain lists the clauses that would keep the tier, in JSON spelling."""
    request = {
        "context": {
            "seller": {"id": "s-1", "tier": "gold", "below_since": "2026-11-01T00:00:00Z"},
            "metrics": {"orders": 150, "rating": 4.8, "claim_rate": 0.05},
        },
        "now": "2026-11-28T00:00:00Z",
        "queries": [{"kind": "tier"}],
    }
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(request).encode())))
    code, out, _ = run(monkeypatch, capsys, "explain", "-p", str(policies), "-i", "-")
    assert code == 0
    assert "    to keep: metrics.claim_rate < 0.01 (actual: 0.05)" in out


def _shipped_explain(monkeypatch, capsys, query: dict[str, object]) -> tuple[int, str]:
    request = {"context": {}, "queries": [query]}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(request).encode())))
    code, out, _ = run(monkeypatch, capsys, "explain", "-p", "policies", "-i", "-")
    return code, out


def test_explain_of_a_classification(monkeypatch, capsys):
    """A classify query is explained by its code, category, retryability and status."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    query = {"kind": "classify", "error": {"types": ["TimeoutError"]}, "operation": "payments.capture"}
    code, out = _shipped_explain(monkeypatch, capsys, query)
    assert code == 0
    assert "  PAYMENT_PROVIDER_TIMEOUT: timeout, retryable, HTTP 504 (error-rule:payment-timeout)" in out


def test_explain_of_a_retry_plan(monkeypatch, capsys):
    """A retry query is explained by the operation, the attempt and whether to retry."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    query = {
        "kind": "retry",
        "operation": "payments.capture",
        "error": {"types": ["TimeoutError"]},
        "attempt": 1,
    }
    code, out = _shipped_explain(monkeypatch, capsys, query)
    assert code == 0
    assert "  payments.capture attempt 1: do not retry (NOT_IDEMPOTENT)" in out
