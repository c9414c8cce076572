import json
import sys

import jsonschema
import pytest
import yaml

import tierpolicy
from suitesupport import POLICIES, copy_policies, marketplace, suite_text, write_suite
from tierpolicy import cli
from tierpolicy.authoring._suites import (
    expand_types,
    load_suites,
    read_suite_sources,
    suite_files,
    suite_schema,
)

SET = marketplace()


def problems(spec: str) -> list[str]:
    """The formatted diagnostics of one in-memory suite."""
    result = read_suite_sources([("t_test.yaml", suite_text(spec).encode())], SET)
    return [d.format() for d in result.diagnostics]


def test_shipped_suites_load_without_diagnostics():
    """The marketplace suites are valid against the marketplace policies."""
    loaded = load_suites(POLICIES, SET)
    assert loaded.diagnostics == ()
    assert {s.name for s in loaded.suites} == {"tiers", "progression", "errors", "ratelimits"}
    assert sum(len(s.cases) for s in loaded.suites) >= 80


def test_policy_loader_ignores_the_suites_folder(tmp_path):
    """Checking and loading a policy directory never read its tests/ folder as policies."""
    copy_policies(tmp_path / "p")
    write_suite(tmp_path / "p", "tests: [not, a, valid, suite]", file="broken_test.yaml")
    result = tierpolicy.check(tmp_path / "p")
    assert result.ok
    assert all("tests/" not in d.position.file for d in result.diagnostics)
    assert all(not name.startswith("tests/") for name in result.policy_set.files)


def test_suite_files_are_only_test_yaml_under_tests(tmp_path):
    """Only tests/**/*_test.yaml files are suites; other YAML there is ignored."""
    (tmp_path / "tests" / "more").mkdir(parents=True)
    (tmp_path / "tests" / "a_test.yaml").write_text("x")
    (tmp_path / "tests" / "more" / "b_test.yml").write_text("x")
    (tmp_path / "tests" / "notes.yaml").write_text("x")
    (tmp_path / "c_test.yaml").write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in suite_files(tmp_path)] == [
        "tests/a_test.yaml",
        "tests/more/b_test.yml",
    ]


def test_unknown_seller_fixture_is_positioned():
    """A test naming a seller fixture that does not exist is TP500 at the name, with a hint."""
    spec = """
    sellers:
      gold-top: {tier: gold}
    tests:
      - name: t
        seller: gold-tp
        expect: {features: {listing.video: allow}}
    """
    assert problems(spec) == [
        "t_test.yaml:10:15: error[TP500]: unknown seller fixture 'gold-tp' (did you mean 'gold-top'? seller fixtures: gold-top)"
    ]


def test_unknown_feature_is_positioned_at_its_key():
    """An expectation about a feature the set lacks is TP404 where the feature is named."""
    spec = """
    sellers:
      s: {tier: gold}
    tests:
      - name: t
        seller: s
        expect:
          features:
            listing.vidoe: allow
    """
    [problem] = problems(spec)
    assert (
        problem
        == "t_test.yaml:13:11: error[TP404]: unknown feature 'listing.vidoe' (did you mean 'listing.video'?)"
    )


def test_bad_yaml_is_positioned():
    """A YAML syntax error in a suite is reported by the engine's reader at its line and column."""
    result = read_suite_sources([("t_test.yaml", b"apiVersion: tierpolicy/v1\nkind: [TestSuite\n")], SET)
    [problem] = result.diagnostics
    assert problem.code.value == "TP104"
    assert (problem.position.line, problem.position.column) == (3, 1)
    assert result.suites == ()


def test_unknown_keys_are_rejected_with_a_hint():
    """A misspelt key anywhere in a suite is TP205 at the key, naming the allowed ones."""
    spec = """
    sellers:
      s: {tier: gold, metrics: {}, atributes: {}}
    tests:
      - name: t
        seller: s
        expect: {limits: {team_members: 10}}
    """
    [problem] = problems(spec)
    assert problem.startswith("t_test.yaml:7:34: error[TP205]: unknown key 'atributes' in spec.sellers.s")
    assert "did you mean 'attributes'?" in problem


def test_undeclared_metric_in_a_fixture_is_an_error():
    """A fixture attribute the Context does not declare is TP302: a typo must not pass silently."""
    spec = """
    sellers:
      s: {tier: gold, metrics: {ratng: 4.5}}
    tests:
      - name: t
        seller: s
        expect: {limits: {team_members: 10}}
    """
    [problem] = problems(spec)
    assert problem.startswith("t_test.yaml:7:31: error[TP302]: metrics.ratng is not declared")
    assert "did you mean 'rating'?" in problem


def test_matrix_keys_and_missing_expectations_are_checked():
    """expect_by must name a fixture of the test, and a test must expect something."""
    spec = """
    sellers:
      a: {tier: gold}
      b: {tier: bronze}
    tests:
      - name: t
        sellers: [a, b]
        expect_by:
          c: {limits: {team_members: 1}}
      - name: u
        seller: a
    """
    found = problems(spec)
    assert found[0].startswith("t_test.yaml:13:9: error[TP500]: 'c' is not a seller, error or operation")
    assert found[1] == "t_test.yaml:14:7: error[TP501]: test 'u' expects nothing: add 'expect'"


def test_a_feature_expectation_without_a_seller_is_invalid():
    """A features expectation needs a seller to evaluate for: TP501 at the 'features' key."""
    spec = """
    tests:
      - name: t
        expect: {features: {listing.video: allow}}
    """
    assert problems(spec) == [
        "t_test.yaml:8:16: error[TP501]: 'features' needs a seller: add 'seller' or 'sellers' to the test"
    ]


def test_duplicate_tests_and_suites_are_reported():
    """Two tests of one name in a suite, or two suites of one name, are TP209."""
    spec = """
    sellers:
      s: {tier: gold}
    tests:
      - {name: t, seller: s, expect: {limits: {team_members: 10}}}
      - {name: t, seller: s, expect: {limits: {team_members: 10}}}
    """
    text = suite_text(spec).encode()
    result = read_suite_sources(
        [("a_test.yaml", text), ("b_test.yaml", suite_text(spec, "other").encode())], SET
    )
    codes = [(d.position.file, d.position.line, d.code.value) for d in result.diagnostics]
    assert codes == [("a_test.yaml", 10, "TP209"), ("b_test.yaml", 10, "TP209")]
    result = read_suite_sources([("a_test.yaml", text), ("b_test.yaml", text)], SET)
    assert [(d.position.file, d.position.line) for d in result.diagnostics if "suite named" in d.message] == [
        ("b_test.yaml", 4)
    ]


def test_a_policy_document_in_tests_is_refused():
    """A document of another kind under tests/ is TP204 with a hint that policies live elsewhere."""
    result = read_suite_sources([("t_test.yaml", b"apiVersion: tierpolicy/v1\nkind: Tiers\n")], SET)
    [problem] = result.diagnostics
    assert problem.format() == (
        "t_test.yaml:2:7: error[TP204]: files in tests/ are test suites: 'kind: TestSuite'"
        " (policy documents belong outside the tests/ folder)"
    )


def test_no_suites_is_reported(tmp_path):
    """A policy directory without tests/*_test.yaml gives TP502."""
    [problem] = load_suites(tmp_path, SET).diagnostics
    assert problem.code.value == "TP502"


def test_builtin_exceptions_bring_their_bases():
    """ConnectionResetError matches rules written for ConnectionError; other names stay as written."""
    assert expand_types(["ConnectionResetError", "httpx.ReadTimeout"])[:3] == (
        "ConnectionResetError",
        "ConnectionError",
        "OSError",
    )
    assert expand_types(["httpx.ReadTimeout"]) == ("httpx.ReadTimeout",)


def test_schema_accepts_the_shipped_suites_and_rejects_unknown_keys():
    """The TestSuite JSON Schema validates every shipped suite and refuses a misspelt key."""
    schema = suite_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in suite_files(POLICIES):
        for document in yaml.safe_load_all(path.read_text()):
            # YAML 1.1 reads the unquoted timestamps as datetimes; the schema sees text as editors do.
            assert not list(validator.iter_errors(json.loads(json.dumps(document, default=_rfc3339)))), path
    bad = yaml.safe_load(suite_text("tests: [{name: t, expekt: {}}]"))
    assert list(validator.iter_errors(bad))


def _rfc3339(value):
    return value.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("kind", ["TestSuite", "testsuite"])
def test_schema_command_prints_the_suite_schema(kind, monkeypatch, capsys):
    """The schema command prints the suite schema, in any case."""
    monkeypatch.setattr(sys, "argv", ["tierpolicy", "schema", kind])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code in {0, None}
    assert json.loads(capsys.readouterr().out) == suite_schema()
