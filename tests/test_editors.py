"""docs/editors.md: the schema files ``tierpolicy schema --output`` writes, used as the page says.

Documents are read with the engine's YAML 1.2 reader, as the YAML language server reads
them (timestamps stay text), and validated with ``jsonschema`` against the written files.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from pathlib import Path, PurePosixPath

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from tierpolicy import cli
from tierpolicy.engine._yaml import read_documents

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
EDITORS = ROOT / "docs" / "editors.md"
SETTINGS = re.compile(
    r"<!-- editors:vscode-settings -->\n```json\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL
)
# Keywords that take sub-schemas or names rather than being keywords themselves.
NAMED = {"properties", "patternProperties", "$defs", "definitions"}
# Draft 7's vocabulary, plus $defs (a plain JSON pointer target for "#/$defs/..." refs) and
# annotations every validator ignores (pydantic's OpenAPI-style discriminator).
DRAFT7 = {
    "$schema", "$id", "$ref", "$comment", "$defs", "title", "description", "default", "examples",
    "readOnly", "writeOnly", "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "items", "additionalItems",
    "maxItems", "minItems", "uniqueItems", "contains", "maxProperties", "minProperties", "required",
    "properties", "patternProperties", "additionalProperties", "dependencies", "propertyNames",
    "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "format", "contentMediaType",
    "contentEncoding", "definitions", "discriminator",
}  # fmt: skip


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The files written by ``tierpolicy schema --output``, by file name."""
    output = tmp_path_factory.mktemp("schemas")
    argv = sys.argv
    sys.argv = ["tierpolicy", "schema", "--output", str(output)]
    try:
        with pytest.raises(SystemExit) as info:
            cli.main()
    finally:
        sys.argv = argv
    assert info.value.code in (None, 0)
    return {path.name: json.loads(path.read_text()) for path in output.glob("*.json")}


def documents(path: Path) -> list[dict]:
    """The documents of one YAML file, read as YAML 1.2."""
    parsed, diagnostics = read_documents(path.read_bytes(), path.name)
    assert diagnostics == [], path
    return [document.value for document in parsed]


def errors(schema: dict, document: object) -> list[str]:
    """What the schema refuses in the document, as ``path: message``."""
    return [f"{e.json_path}: {e.message}" for e in Draft202012Validator(schema).iter_errors(document)]


def vscode_settings() -> dict[str, list[str]]:
    """The ``yaml.schemas`` mapping shown in docs/editors.md."""
    match = SETTINGS.search(EDITORS.read_text())
    assert match, "docs/editors.md lost its marked VS Code settings block"
    return json.loads(match["body"])["yaml.schemas"]


def keywords(node: object) -> set[str]:
    """Every keyword used in a schema, skipping the names under properties and $defs."""
    if isinstance(node, list):
        return set().union(*(keywords(item) for item in node))
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, value in node.items():
        if key in NAMED:
            found |= set().union(*(keywords(v) for v in value.values()))
        elif key == "discriminator":
            continue
        else:
            found |= keywords(value)
    return found


def test_every_shipped_policy_document_validates_against_the_written_files(schemas):
    """Every document in policies/ passes both policy.schema.json and its own kind's file."""
    files = sorted(POLICIES.glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        for document in documents(path):
            assert errors(schemas["policy.schema.json"], document) == [], path
            assert errors(schemas[f"{document['kind'].lower()}.schema.json"], document) == [], path


def test_every_shipped_suite_validates_against_the_written_suite_schema(schemas):
    """Every suite in policies/tests/ passes testsuite.schema.json as written to disk."""
    suites = sorted((POLICIES / "tests").glob("*_test.yaml"))
    assert len(suites) >= 4
    for path in suites:
        for document in documents(path):
            assert errors(schemas["testsuite.schema.json"], document) == [], path


def test_the_written_files_refuse_a_misspelt_key(schemas):
    """The written schemas are not vacuous: a misspelt key in a policy or a suite is refused."""
    [tiers] = documents(POLICIES / "tiers.yaml")
    tiers["spec"]["features"]["listing.create"]["form"] = "bronze"
    assert any("'form' was unexpected" in e for e in errors(schemas["tiers.schema.json"], tiers))
    assert errors(schemas["policy.schema.json"], tiers)
    suite = documents(POLICIES / "tests" / "tiers_test.yaml")[0]
    suite["spec"]["tests"][0]["expekt"] = {}
    assert errors(schemas["testsuite.schema.json"], suite)


def test_vscode_settings_map_every_shipped_file_to_one_written_schema(schemas):
    """The settings on the page name written schema files and map each shipped file to exactly one."""
    settings = vscode_settings()
    assert {PurePosixPath(key).name for key in settings} <= set(schemas)
    shipped = [
        p.relative_to(ROOT).as_posix() for p in [*POLICIES.glob("*.yaml"), *POLICIES.glob("tests/*.yaml")]
    ]
    for name in shipped:
        # Language servers differ on whether "*" crosses "/": the page must mean the same either way.
        owners = [key for key, globs in settings.items() if any(PurePosixPath(name).match(g) for g in globs)]
        greedy = [key for key, globs in settings.items() if any(fnmatch.fnmatchcase(name, g) for g in globs)]
        assert len(owners) == 1, (name, owners)
        assert greedy == owners, (name, greedy)
        kind = documents(ROOT / name)[0]["kind"].lower()
        assert PurePosixPath(owners[0]).name in {f"{kind}.schema.json", "policy.schema.json"}, name


def test_modelines_on_the_page_point_at_written_files(schemas):
    """The modeline paths of docs/editors.md resolve, from the file they are for, to a written schema."""
    lines = re.findall(r"^# yaml-language-server: \$schema=(\S+)$", EDITORS.read_text(), re.MULTILINE)
    assert lines == ["../schemas/tiers.schema.json", "../../schemas/testsuite.schema.json"]
    for where, target in zip(
        [POLICIES / "tiers.yaml", POLICIES / "tests" / "tiers_test.yaml"], lines, strict=True
    ):
        resolved = (where.parent / target).resolve()
        assert resolved.parent == ROOT / "schemas"
        assert resolved.name in schemas


@pytest.mark.parametrize(
    "name",
    [
        *(
            f"{kind}.schema.json"
            for kind in ("context", "errors", "ratelimits", "resilience", "tiers", "policy")
        ),
        "testsuite.schema.json",
    ],
)
def test_schemas_use_only_draft7_keywords(schemas, name):
    """Editors that implement draft 7 (the YAML extension) understand every keyword the schema uses."""
    schema = schemas[name]
    Draft202012Validator.check_schema(schema)
    # Minus the 2020-12 dialect line, each file is also a valid draft 7 schema.
    Draft7Validator.check_schema({k: v for k, v in schema.items() if k != "$schema"})
    assert keywords(schema) <= DRAFT7, keywords(schema) - DRAFT7


def test_schema_files_are_the_documented_ones(schemas):
    """Tierpolicy schema --output writes exactly the files docs/editors.md lists."""
    assert sorted(schemas) == sorted(
        re.findall(r"`(\w+\.schema\.json)`", EDITORS.read_text().split("## 2.")[0])
    )
