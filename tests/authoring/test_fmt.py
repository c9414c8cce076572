"""Tests of tierpolicy fmt: the canonical form, safety, the command and its properties."""

from __future__ import annotations

import io
import json
import random
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from tierpolicy import cli
from tierpolicy.authoring._fmt import (
    FormatError,
    _scalar_lines,
    canonical_key_order,
    format_paths,
    format_text,
    run_fmt,
)
from tierpolicy.engine._classification import ErrorMatchSpec
from tierpolicy.engine._documents import FeatureSpec
from tierpolicy.engine._engine import Engine
from tierpolicy.engine._evaluation import evaluate
from tierpolicy.engine._loader import SourceFile, check_files, load_files
from tierpolicy.engine._yaml import read_documents

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
SHIPPED = {path.name: path.read_text(encoding="utf-8") for path in sorted(POLICIES.glob("*.yaml"))}

MESSY = """\
apiVersion: tierpolicy/v1
kind: Tiers
spec:
   # the tiers, lowest first
   tiers:
   - {name: bronze}
   - name: silver   # second
   features:
     listing.video:
       description: |
         # text, not a comment
          indented text
       # the first tier with video
       from: silver
     listing.bulk: {from: silver, description: "Bulk edit"}
metadata:
    name: tiers  # the name
"""

CANONICAL = """\
apiVersion: tierpolicy/v1
kind: Tiers
metadata:
  name: tiers    # the name
spec:
  # the tiers, lowest first
  tiers:
    - {name: bronze}
    - name: silver  # second
  features:
    listing.video:
      description: |
        # text, not a comment
         indented text
      # the first tier with video
      from: silver
    listing.bulk: {description: Bulk edit, from: silver}
"""


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (0 if code is None else int(code)), out, err


def comments(text: str) -> list[str]:
    """Return the text of every comment in ``text`` (full-line and end-of-line)."""
    found = []
    inside = _scalar_lines(text)
    for number, line in enumerate(text.split("\n")):
        if number in inside:
            continue
        quote = None
        for index, char in enumerate(line):
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"" and (index == 0 or line[index - 1] in " [{,:"):
                quote = char
            elif char == "#" and (index == 0 or line[index - 1] == " "):
                found.append(line[index:].rstrip())
                break
    return found


def decisions(files: dict[str, str]) -> object:
    """Answer a fixed batch of questions with the set, leaving out version and positions."""
    engine = Engine(load_files(files))
    answers = []
    for tier, orders, rating in (("bronze", 3, 3.9), ("silver", 120, 4.6), ("gold", 900, 4.95)):
        context = {
            "seller": {"id": f"s-{orders}", "tier": tier, "verified": True, "kyc_level": 2, "country": "DE"},
            "metrics": {
                "orders_60d": orders,
                "revenue_60d": orders * 90.0,
                "rating": rating,
                "ratings_count": orders * 2,
                "claim_rate": 0.004,
                "late_shipment_rate": 0.02,
                "cancellation_rate": 0.006,
            },
        }
        answers.append(
            evaluate(
                engine,
                {
                    "now": "2026-11-28T12:00:00Z",
                    "context": context,
                    "queries": [
                        {"kind": "entitlements"},
                        {"kind": "tier"},
                        {"kind": "classify", "operation": "payments.capture", "error": {"status": 402}},
                        {"kind": "classify", "operation": "search.listings", "error": {"status": 503}},
                        {"kind": "classify", "error": {"types": ["TimeoutError"]}},
                        {"kind": "retry", "operation": "payments.capture", "attempt": 1, "elapsed": "1s"},
                    ],
                },
            )
        )
    return json.loads(re.sub(r'"(policy_version|source)": "[^"]*"', '"\\1": ""', json.dumps(answers)))


# --------------------------------------------------------------------------- the canonical form


def test_messy_file_becomes_the_documented_canonical_form():
    """Keys are reordered, indentation and quotes normalised and comments kept with their nodes."""
    assert format_text(MESSY) == CANONICAL


def test_canonical_text_is_left_unchanged():
    """A canonical file formats to itself."""
    assert format_text(CANONICAL) == CANONICAL


def test_quotes_stay_only_where_yaml_needs_them():
    """Needless quotes go; quotes that keep a value text (or valid YAML) stay."""
    text = 'a: "plain"\nb: "yes"\nc: "12"\nd: "{x} y"\ne: "true"\nf: "x: y"\n'
    assert format_text(text) == "a: plain\nb: yes\nc: '12'\nd: '{x} y'\ne: 'true'\nf: 'x: y'\n"


def test_documents_are_separated_by_one_marker_and_end_with_one_newline():
    """Only --- between documents, none before the first, no trailing spaces, one final newline."""
    text = "---\na: 1   \n...\n---\nb: 2\n\n\n"
    assert format_text(text) == "a: 1\n---\nb: 2\n"


def test_schema_order_with_documented_exceptions():
    """Model fields give the key order, except where docs/formatting.md says otherwise."""
    assert canonical_key_order(FeatureSpec)[:3] == ("description", "from", "tiers")
    assert canonical_key_order(ErrorMatchSpec)[0] == "operation"


def test_block_entries_move_with_the_comments_above_them():
    """Reordering a list item's keys keeps the dash on the first key and each comment with its key."""
    text = (
        "spec:\n  overrides:\n    - expires: 2030-01-01T00:00:00Z\n      # who asked\n"
        "      reason: promo\n      seller: s-1\n"
    )
    document = "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\n" + text
    formatted = format_text(document)
    assert formatted.endswith(
        "  overrides:\n    - seller: s-1\n      # who asked\n      reason: promo\n"
        "      expires: 2030-01-01T00:00:00Z\n"
    )


def test_shipped_policies_are_canonical():
    """Every file of the shipped policies/, suites included, is already canonical (fmt --check passes)."""
    results = format_paths([POLICIES])
    suites = sorted(p.name for p in (POLICIES / "tests").glob("*_test.yaml"))
    assert suites
    assert [r.path.name for r in results] == sorted(SHIPPED) + suites
    assert [r.path.name for r in results if r.changed or r.formatted is None] == []


# --------------------------------------------------------------------------- refusing and writing


def test_unparseable_file_is_refused_with_a_position(tmp_path):
    """A file that does not parse gets the check diagnostic and is left byte for byte as it was."""
    broken = tmp_path / "tiers.yaml"
    broken.write_bytes(b"apiVersion: tierpolicy/v1\nspec:\n  tiers: [\n")
    with pytest.raises(FormatError) as info:
        format_text(broken.read_text(), file="tiers.yaml")
    assert info.value.diagnostics[0].code.value == "TP104"
    assert info.value.diagnostics[0].position.line == 4
    out, err = io.StringIO(), io.StringIO()
    assert run_fmt([tmp_path], check=False, diff=False, out=out, err=err) == 1
    assert "tiers.yaml:4:1: error[TP104]" in err.getvalue()
    assert broken.read_bytes() == b"apiVersion: tierpolicy/v1\nspec:\n  tiers: [\n"


def test_write_is_atomic_and_keeps_the_mode(tmp_path):
    """Formatting writes the canonical text in place, keeps permissions and leaves no temp file."""
    target = tmp_path / "tiers.yaml"
    target.write_text(MESSY)
    target.chmod(0o640)
    out, err = io.StringIO(), io.StringIO()
    assert run_fmt([tmp_path], check=False, diff=False, out=out, err=err) == 0
    assert target.read_text() == CANONICAL
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiers.yaml"]
    assert "1 file reformatted" in out.getvalue()


def test_cli_check_lists_files_and_writes_nothing(monkeypatch, capsys, tmp_path):
    """Fmt --check exits 1 naming the file that would change, which stays as it was."""
    target = tmp_path / "tiers.yaml"
    target.write_text(MESSY)
    code, out, _ = run(monkeypatch, capsys, "fmt", "--check", str(tmp_path))
    assert code == 1
    assert f"would reformat {target.as_posix()}" in out
    assert target.read_text() == MESSY


def test_cli_diff_prints_a_unified_diff(monkeypatch, capsys, tmp_path):
    """Fmt --diff prints a unified diff of the change and writes nothing."""
    target = tmp_path / "tiers.yaml"
    target.write_text(MESSY)
    code, out, _ = run(monkeypatch, capsys, "fmt", "--diff", str(target))
    assert code == 1
    assert "-    name: tiers  # the name\n" in out
    assert "+  name: tiers    # the name\n" in out
    assert target.read_text() == MESSY


def test_cli_formats_and_then_check_passes(monkeypatch, capsys, tmp_path):
    """Fmt rewrites the file, after which fmt --check exits 0."""
    (tmp_path / "tiers.yaml").write_text(MESSY)
    assert run(monkeypatch, capsys, "fmt", str(tmp_path))[0] == 0
    assert run(monkeypatch, capsys, "fmt", "--check", str(tmp_path))[0] == 0


def test_cli_missing_path_is_a_usage_error(monkeypatch, capsys, tmp_path):
    """A path that does not exist exits 2 with a message naming it."""
    code, _, err = run(monkeypatch, capsys, "fmt", str(tmp_path / "nope"))
    assert code == 2
    assert "nope: no such file or directory" in err


def test_cli_shipped_policies_pass_check(monkeypatch, capsys):
    """Tierpolicy fmt --check policies/ passes on the shipped set."""
    code, out, _ = run(monkeypatch, capsys, "fmt", "--check", str(POLICIES))
    assert code == 0
    assert "0 files would be reformatted" in out


# --------------------------------------------------------------------------- properties


def _mess(text: str, rng: random.Random) -> str:
    """Rewrite a policy file validly but untidily: other indentation, shuffled keys."""
    yaml = YAML()
    mapping = rng.choice([2, 3, 4])
    offset = rng.choice([0, 2])
    # ruamel.yaml needs room for the dash: the sequence indent is at least offset + 2.
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    yaml.width = 1_000_000
    documents = list(yaml.load_all(text))

    def shuffle(node: object) -> None:
        if isinstance(node, CommentedMap):
            keys = list(node)
            if rng.random() < 0.3 and len(keys) > 1:
                rng.shuffle(keys)
                for key in keys:
                    node.move_to_end(key)
            for value in node.values():
                shuffle(value)
        elif isinstance(node, CommentedSeq):
            for item in node:
                shuffle(item)

    for document in documents:
        shuffle(document)
    stream = io.StringIO()
    yaml.dump_all(documents, stream)
    return stream.getvalue()


BASELINE = decisions(SHIPPED)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SHIPPED)), seed=st.integers(0, 2**32 - 1))
def test_fmt_is_idempotent_keeps_comments_decisions_and_cleanliness(name, seed):
    """Fmt of an untidy shipped file is a fixed point, keeps its comments, decides the same, stays clean."""
    messy = _mess(SHIPPED[name], random.Random(seed))
    assume(not [d for d in read_documents(messy.encode(), name)[1] if d.is_error])
    formatted = format_text(messy, file=name)
    assert format_text(formatted, file=name) == formatted
    assert sorted(c.strip() for c in comments(formatted)) == sorted(c.strip() for c in comments(messy))
    files = {**SHIPPED, name: formatted}
    assert decisions(files) == BASELINE
    after = check_files([SourceFile(n, text.encode()) for n, text in sorted(files.items())], root="p")
    assert after.policy_set is not None
    assert after.diagnostics == ()


def test_shipped_set_has_no_diagnostics():
    """The baseline of the property above: the shipped set loads with no diagnostics at all."""
    before = check_files([SourceFile(n, text.encode()) for n, text in sorted(SHIPPED.items())], root="p")
    assert before.policy_set is not None
    assert before.diagnostics == ()
