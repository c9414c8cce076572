"""Tests of the loader: all or nothing, every problem positioned and explained."""

from __future__ import annotations

import textwrap

import pytest

import tierpolicy
from support import SMALL_SET
from tierpolicy import Code, Position
from tierpolicy.engine._compiling import expression_position
from tierpolicy.engine._loader import SourceFile, check_files

HEADER = "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec:\n"


def diagnose(text: str, name: str = "t.yaml") -> list[str]:
    """Check one in-memory file and return its formatted diagnostics."""
    result = check_files([SourceFile(name, text.encode())], root="mem")
    return [d.format() for d in result.diagnostics]


def tiers(body: str) -> str:
    """A Tiers document with ``body`` (indented under spec) after three tiers."""
    return (
        HEADER
        + "  tiers: [{name: bronze}, {name: silver}, {name: gold}]\n"
        + textwrap.indent(textwrap.dedent(body), "  ")
    )


def test_small_set_loads_with_a_version(small_set):
    """A valid set loads, with a 16-hex-digit version and its files listed."""
    assert len(small_set.version) == 16
    assert small_set.digest.startswith(small_set.version)
    assert small_set.files == ("policy.yaml",)
    assert [d.kind for d in small_set.documents] == ["Context", "Tiers"]


def test_version_is_the_content_hash():
    """The same bytes give the same version; any change gives another."""
    a = tierpolicy.load_files({"p.yaml": SMALL_SET})
    b = tierpolicy.load_files({"p.yaml": SMALL_SET})
    c = tierpolicy.load_files({"p.yaml": SMALL_SET + "\n# a comment\n"})
    assert a.version == b.version != c.version


def test_misspelt_key_gets_did_you_mean_and_position():
    """A misspelt key names what was found, suggests the right one and lists allowed keys."""
    found = diagnose(tiers("features:\n  basic: {form: bronze}\n"))
    expected = (
        "t.yaml:7:13: error[TP205]: unknown key 'form' in spec.features.basic "
        "(did you mean 'from'? allowed here: description, from, tiers, when, rollout, enabled)"
    )
    assert found == [expected]


def test_unknown_tier_in_feature():
    """A feature naming a tier that does not exist is an error at that value."""
    assert diagnose(tiers("features:\n  basic: {from: silvr}\n")) == [
        "t.yaml:7:19: error[TP400]: unknown tier 'silvr' (did you mean 'silver'? tiers: bronze, silver, gold)"
    ]


def test_misspelt_attribute_points_inside_the_expression():
    """A misspelt attribute in a condition is an error positioned on the attribute."""
    text = tiers('features:\n  basic: {from: bronze, when: "seller.verifed"}\n')
    ctx = "---\napiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\nspec:\n  attributes:\n    seller: {verified: bool}\n"
    [message] = diagnose(text + ctx)
    assert message.startswith("t.yaml:7:41: error[TP302]: in condition 'seller.verifed': unknown attribute")
    assert "did you mean 'seller.verified'?" in message


def test_wrong_type_and_union_messages_are_merged():
    """A limit value that is neither a number nor 'unlimited' gets one merged message."""
    [message] = diagnose(tiers("limits:\n  listings: {values: {bronze: lots}}\n"))
    assert message == (
        "t.yaml:7:33: error[TP207]: spec.limits.listings.values.bronze should be "
        "a whole number or unlimited, found the text 'lots'"
    )


def test_every_problem_is_reported_not_just_the_first():
    """Diagnostics are collected across documents and files."""
    first = SourceFile("a.yaml", tiers("features:\n  x: {from: nope}\n  y: {from: nada}\n").encode())
    second = SourceFile("b.yaml", b"apiVersion: tierpolicy/v2\nkind: Context\n")
    result = check_files([first, second], root="mem")
    codes = [(d.position.file, d.code) for d in result.diagnostics]
    assert ("a.yaml", Code.UNKNOWN_TIER) in codes
    assert codes.count(("a.yaml", Code.UNKNOWN_TIER)) == 2
    assert ("b.yaml", Code.UNSUPPORTED_API_VERSION) in codes
    assert result.policy_set is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (
            "kind: Tiers\nmetadata: {name: t}\nspec: {tiers: [{name: a}]}\n",
            Code.MISSING_API_VERSION,
        ),
        ("apiVersion: tierpolicy/v1\nmetadata: {name: t}\nspec: {}\n", Code.MISSING_KIND),
        (
            "apiVersion: tierpolicy/v1\nkind: Teirs\nmetadata: {name: t}\nspec: {}\n",
            Code.UNKNOWN_KIND,
        ),
        ("- just\n- a list\n", Code.NOT_A_MAPPING),
        ("apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\n", Code.MISSING_KEY),
        (
            "apiVersion: tierpolicy/v1\nkind: Tiers\nmetadata: {name: t}\nspec: {tiers: [{name: a}]}\nextra: 1\n",
            Code.UNKNOWN_KEY,
        ),
        (HEADER + "  tiers: [{name: a}, {name: a}]\n", Code.DUPLICATE_TIER),
        (HEADER + "  tiers: [{name: a}]\n  limits: {x: {values: {}}}\n", Code.INVALID_VALUE),
        (
            HEADER + "  tiers: [{name: a}, {name: b}]\n  limits: {x: {values: {b: 1}}}\n",
            Code.MISSING_LIMIT_VALUE,
        ),
        (
            HEADER + "  tiers: [{name: a}]\n  features: {f: {from: a, when: 'seller.id +'}}\n",
            Code.EXPRESSION_SYNTAX,
        ),
        (
            HEADER + "  tiers: [{name: a}]\n  features: {f: {from: a, when: 'seller.id'}}\n",
            Code.EXPRESSION_TYPE,
        ),
        (
            HEADER + "  tiers: [{name: a}]\n  features: {f: {from: a, tiers: [a]}}\n",
            Code.INVALID_VALUE,
        ),
        (
            HEADER + "  tiers: [{name: a}]\n  features: {f: {from: a, rollout: 10.005}}\n",
            Code.INVALID_VALUE,
        ),
        (
            HEADER
            + "  tiers: [{name: a}]\n  overrides: [{seller: s, feature: g, value: true, reason: r, expires: '2099-01-01T00:00:00Z'}]\n",
            Code.UNKNOWN_FEATURE,
        ),
        (
            HEADER
            + "  tiers: [{name: a}]\n  overrides: [{seller: s, limit: g, value: 1, reason: r, expires: '2099-01-01T00:00:00Z'}]\n",
            Code.UNKNOWN_LIMIT,
        ),
        (
            HEADER
            + "  tiers: [{name: a}]\n  overrides: [{seller: s, tier: z, reason: r, expires: '2099-01-01T00:00:00Z'}]\n",
            Code.UNKNOWN_TIER,
        ),
        (
            HEADER
            + "  tiers: [{name: a}]\n  overrides: [{seller: s, tier: a, reason: r, expires: '2099-01-01'}]\n",
            Code.INVALID_VALUE,
        ),
        (
            "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\nspec: {attributes: {m: {x: integer}}}\n",
            Code.INVALID_TYPE_NAME,
        ),
        (
            "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\nspec: {attributes: {seller: {id: int}}}\n",
            Code.CONTEXT_CONFLICT,
        ),
        ("key: [unclosed\n", Code.YAML_SYNTAX),
    ],
)
def test_bad_documents_get_their_code(text, code):
    """Each kind of mistake is reported with its own stable code."""
    result = check_files([SourceFile("t.yaml", text.encode())], root="mem")
    assert result.policy_set is None
    assert code in [d.code for d in result.errors], [d.format() for d in result.diagnostics]


def test_warnings_do_not_stop_loading():
    """A limit that shrinks at a higher tier warns but the set still loads."""
    result = check_files(
        [SourceFile("t.yaml", tiers("limits:\n  x: {values: {bronze: 5, silver: 3}}\n").encode())],
        root="m",
    )
    assert result.ok
    assert [d.code for d in result.diagnostics] == [Code.LIMIT_NOT_MONOTONE]
    assert result.policy_set is not None
    assert result.policy_set.warnings == result.diagnostics


def test_expired_override_warns():
    """An override whose expiry has passed is reported as a warning."""
    text = tiers("overrides: [{seller: s, tier: gold, reason: r, expires: '2020-01-01T00:00:00Z'}]\n")
    result = check_files([SourceFile("t.yaml", text.encode())], root="m")
    assert result.ok
    assert [d.code for d in result.diagnostics] == [Code.EXPIRED_OVERRIDE]


def test_floor_rule_warns():
    """A progression rule for the lowest tier is never used, and says so."""
    text = tiers("progression:\n  rules:\n    bronze: {when: 'true'}\n")
    result = check_files([SourceFile("t.yaml", text.encode())], root="m")
    assert [d.code for d in result.diagnostics] == [Code.FLOOR_RULE]


def test_duplicate_documents_and_names():
    """Two Tiers documents, or two documents of a kind with one name, are errors."""
    doc = tiers("")
    result = check_files([SourceFile("a.yaml", doc.encode()), SourceFile("b.yaml", doc.encode())], root="m")
    codes = {d.code for d in result.errors}
    assert codes == {Code.DUPLICATE_DOCUMENT, Code.DUPLICATE_NAME}


def test_empty_directory_is_an_error(tmp_path):
    """A directory with no policy files does not load."""
    result = tierpolicy.check(tmp_path)
    assert [d.code for d in result.diagnostics] == [Code.NO_POLICY_FILES]


def test_missing_path_is_an_error(tmp_path):
    """A path that does not exist is reported, not raised."""
    result = tierpolicy.check(tmp_path / "nope")
    assert [d.code for d in result.diagnostics] == [Code.FILE_UNREADABLE]


def test_directory_reading_skips_tests_and_hidden(tmp_path):
    """Test suites under tests/ and hidden files are not read as policies."""
    (tmp_path / "tiers.yaml").write_text(tiers(""))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "suite.yaml").write_text("not: a policy\n")
    (tmp_path / ".hidden.yaml").write_text("junk: [\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ctx.yml").write_text(
        "apiVersion: tierpolicy/v1\nkind: Context\nmetadata: {name: c}\nspec: {attributes: {m: {x: int}}}\n"
    )
    policy_set = tierpolicy.load(tmp_path).policy_set
    assert policy_set.files == ("sub/ctx.yml", "tiers.yaml")


def test_diagnostics_name_files_as_the_user_gave_the_directory(tmp_path):
    """Positions are shown relative to the directory named on the command line."""
    (tmp_path / "t.yaml").write_text(tiers("features:\n  basic: {from: silvr}\n"))
    result = tierpolicy.check(tmp_path)
    assert result.diagnostics[0].position.file == f"{tmp_path}/t.yaml"


def test_single_file_can_be_checked(tmp_path):
    """A single policy file is a policy set of its own."""
    path = tmp_path / "one.yaml"
    path.write_text(SMALL_SET)
    assert tierpolicy.load(path).policy_set.files == ("one.yaml",)


def test_symlink_outside_the_directory_is_refused(tmp_path):
    """A policy file that links outside the policy directory is not followed."""
    outside = tmp_path / "outside.yaml"
    outside.write_text(tiers(""))
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.yaml").symlink_to(outside)
    result = tierpolicy.check(root)
    assert [d.code for d in result.diagnostics] == [Code.FILE_UNREADABLE]


def test_load_raises_with_every_diagnostic(tmp_path):
    """load() raises PolicyLoadError carrying all diagnostics."""
    (tmp_path / "t.yaml").write_text(tiers("features:\n  a: {from: x}\n  b: {from: y}\n"))
    with pytest.raises(tierpolicy.PolicyLoadError) as info:
        tierpolicy.load(tmp_path)
    assert len(info.value.diagnostics) == 2


@pytest.mark.parametrize(
    ("line", "column", "offset", "expected"),
    [
        ('    when: "a && b"', 11, 5, (1, 17)),
        ("    when: a && b", 11, 5, (1, 16)),
        ("    when: 'a && b'", 11, 0, (1, 12)),
    ],
)
def test_expression_position_single_line(line, column, offset, expected):
    """Offsets inside one-line scalars map to columns, skipping the opening quote."""
    position = expression_position(Position("f", 1, column), [line], offset)
    assert (position.line, position.column) == expected


def test_expression_position_literal_block():
    """Offsets inside a literal block scalar follow the lines of the block."""
    lines = ["    when: |", "      a &&", "      bad"]
    position = expression_position(Position("f", 1, 11), lines, 5)
    assert (position.line, position.column) == (3, 7)


def test_hints_quote_related_places_with_the_users_path(tmp_path):
    """A hint pointing at another file shows it under the directory the user named."""
    (tmp_path / "a.yaml").write_text(tiers(""))
    (tmp_path / "b.yaml").write_text(tiers(""))
    result = tierpolicy.check(tmp_path)
    hints = [d.hint for d in result.diagnostics if d.code is Code.DUPLICATE_DOCUMENT]
    assert hints == [f"the first is at {tmp_path}/a.yaml:1:1; merge them"]


def test_oversized_file_reports_its_real_size(tmp_path):
    """A policy file over the size limit is refused, naming its real size."""
    (tmp_path / "big.yaml").write_bytes(b"# " + b"x" * 2_000_000 + b"\n")
    [diagnostic] = tierpolicy.check(tmp_path).diagnostics
    assert diagnostic.code is Code.FILE_TOO_LARGE
    assert "2,000,003 bytes" in diagnostic.message


def test_conditions_are_checked_even_when_the_document_has_other_errors():
    """A structural mistake in one feature does not hide a misspelt attribute in another."""
    text = tiers('features:\n  a: {form: bronze}\n  b: {from: bronze, when: "seller.verifed"}\n')
    codes = [d.code for d in check_files([SourceFile("t.yaml", text.encode())], root="m").diagnostics]
    assert codes == [Code.UNKNOWN_KEY, Code.UNKNOWN_ATTRIBUTE]


def test_a_missing_path_is_named_as_given(tmp_path):
    """A path that does not exist is reported exactly as the user wrote it."""
    given = f"{tmp_path}/nope/"
    [diagnostic] = tierpolicy.check(given).diagnostics
    assert diagnostic.position.file == given


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    """Checking a file that does not end in .yaml or .yml says so instead of parsing it."""
    path = tmp_path / "README.md"
    path.write_text("# hello\n")
    [diagnostic] = tierpolicy.check(path).diagnostics
    assert (diagnostic.code, diagnostic.message) == (
        Code.FILE_UNREADABLE,
        "this is not a policy file: policy files end in .yaml or .yml",
    )
