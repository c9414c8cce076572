"""Tests of the JSON Schemas published for editors.

Documents are validated with the ``jsonschema`` library (a development dependency), the
same validation an editor's YAML language server performs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tierpolicy.engine._documents import API_VERSION, Metadata
from tierpolicy.engine._kinds import SPEC_MODELS
from tierpolicy.engine._schema import SCHEMA_BASE, SCHEMA_DIALECT, kind_schema, set_schema
from tierpolicy.engine._yaml import read_documents

POLICIES = Path(__file__).resolve().parents[1] / "policies"
KINDS = sorted(SPEC_MODELS)


def problems(schema: dict, document: object) -> list[tuple[str, str]]:
    """Validate with jsonschema and return ``(JSON path, failing keyword)`` pairs, sorted."""
    validator = Draft202012Validator(schema)
    return sorted((error.json_path, str(error.validator)) for error in validator.iter_errors(document))


def refs(node: object) -> set[str]:
    """Every $ref target in ``node``."""
    if isinstance(node, dict):
        own = {node["$ref"]} if "$ref" in node else set()
        return own.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def shipped_documents() -> list[tuple[str, object]]:
    """The documents of the shipped policy set, read as the engine reads them."""
    documents = []
    for path in sorted(POLICIES.glob("*.yaml")):
        parsed, diagnostics = read_documents(path.read_bytes(), path.name)
        assert diagnostics == []
        documents += [(path.name, document.value) for document in parsed]
    return documents


@pytest.mark.parametrize("kind", KINDS)
def test_kind_schema_envelope(kind):
    """A kind's schema is a closed envelope of apiVersion, kind, metadata and spec."""
    schema = kind_schema(kind)
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE}/{kind.lower()}.json"
    assert schema["title"] == f"tierpolicy {kind} document"
    assert (schema["type"], schema["additionalProperties"]) == ("object", False)
    assert schema["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert schema["properties"] == {
        "apiVersion": {"const": API_VERSION, "description": "The document format version."},
        "kind": {"const": kind},
        "metadata": {"$ref": "#/$defs/Metadata"},
        "spec": {"$ref": f"#/$defs/{kind}Spec"},
    }


@pytest.mark.parametrize("kind", KINDS)
def test_kind_schema_defs_hold_every_model(kind):
    """$defs hold Metadata, the kind's spec and every model they use; every $ref resolves."""
    schema = kind_schema(kind)
    defs = schema["$defs"]
    assert {"Metadata", f"{kind}Spec"} <= set(defs)
    assert defs["Metadata"]["required"] == ["name"]
    assert defs[f"{kind}Spec"]["title"] == SPEC_MODELS[kind].__name__
    assert refs(schema) == {f"#/$defs/{name}" for name in defs}
    assert "$defs" not in defs["Metadata"]
    assert "$defs" not in defs[f"{kind}Spec"]


def test_tiers_defs_are_exactly_its_models():
    """The Tiers schema defines each model of the Tiers kind once, by its class name."""
    assert sorted(kind_schema("Tiers")["$defs"]) == [
        "FeatureSpec",
        "LimitSpec",
        "Metadata",
        "OverrideSpec",
        "ProgressionRuleSpec",
        "ProgressionSpec",
        "TierSpec",
        "TiersSpec",
    ]
    assert sorted(kind_schema("Context")["$defs"]) == ["ContextSpec", "Metadata"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_is_closed(kind):
    """Every object model forbids unknown keys, as the loader does."""
    for name, definition in kind_schema(kind)["$defs"].items():
        assert definition["additionalProperties"] is False, name


def test_properties_use_the_yaml_spelling():
    """Properties are named as in YAML: 'from', not the Python name 'from_'."""
    feature = kind_schema("Tiers")["$defs"]["FeatureSpec"]["properties"]
    assert list(feature) == ["description", "from", "tiers", "when", "rollout", "enabled"]
    assert list(Metadata.model_json_schema()["properties"]) == list(
        kind_schema("Tiers")["$defs"]["Metadata"]["properties"]
    )


def test_unknown_kind_raises_key_error():
    """Asking for the schema of an unknown kind raises KeyError."""
    with pytest.raises(KeyError):
        kind_schema("Quotas")


def test_set_schema_accepts_any_kind_by_branch():
    """The set schema picks each kind's envelope with if/then on 'kind'."""
    schema = set_schema()
    assert schema["$schema"] == SCHEMA_DIALECT
    assert schema["$id"] == f"{SCHEMA_BASE}/policy.json"
    assert schema["required"] == ["apiVersion", "kind"]
    assert schema["properties"] == {"apiVersion": {"const": API_VERSION}, "kind": {"enum": KINDS}}
    assert len(schema["allOf"]) == len(KINDS)
    for kind, branch in zip(KINDS, schema["allOf"], strict=True):
        assert branch["if"] == {"properties": {"kind": {"const": kind}}, "required": ["kind"]}
        expected = kind_schema(kind)
        for key in ("$schema", "$id", "$defs"):
            del expected[key]
        assert branch["then"] == expected


def test_set_schema_defs_are_the_union_of_the_kinds():
    """The set schema's $defs hold every kind's definitions, identical to theirs."""
    defs = set_schema()["$defs"]
    for kind in KINDS:
        for name, definition in kind_schema(kind)["$defs"].items():
            assert defs[name] == definition
    assert refs(set_schema()) <= {f"#/$defs/{name}" for name in defs}


def test_schemas_are_fresh_json_values():
    """Each call returns a new, JSON-serialisable value: changing one does not change the next."""
    first = set_schema()
    pristine = copy.deepcopy(first)
    first["$defs"]["Metadata"]["properties"].clear()
    assert set_schema() == pristine
    assert json.loads(json.dumps(pristine)) == pristine


def test_schemas_are_valid_2020_12_schemas():
    """Every published schema is itself a valid JSON Schema (draft 2020-12)."""
    for schema in [set_schema(), *(kind_schema(kind) for kind in KINDS)]:
        Draft202012Validator.check_schema(schema)


def test_shipped_policies_conform_to_the_set_schema():
    """Every document in policies/ conforms to the published schema."""
    documents = shipped_documents()
    assert {"Context", "Tiers", "Errors"} <= {d["kind"] for _, d in documents}
    schema = set_schema()
    for name, document in documents:
        assert problems(schema, document) == [], name


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["spec"].update(featurs={}), ("$.spec", "additionalProperties")),
        (lambda d: d.pop("metadata"), ("$", "required")),
        (lambda d: d.update(apiVersion="tierpolicy/v2"), ("$.apiVersion", "const")),
        (
            lambda d: d["spec"]["limits"]["team_members"]["values"].update(gold="lots"),
            ("$.spec.limits.team_members.values.gold", "anyOf"),
        ),
        (
            lambda d: d["spec"]["features"]["listing.create"].update(rollout=101),
            ("$.spec.features['listing.create'].rollout", "anyOf"),
        ),
        (lambda d: d["spec"]["tiers"].clear(), ("$.spec.tiers", "minItems")),
        (
            lambda d: d["spec"]["features"]["listing.create"].update(tiers=["gold"]),
            ("$.spec.features['listing.create']", "oneOf"),
        ),
    ],
)
def test_schema_rejects_broken_tiers_documents(change, problem):
    """The schema flags unknown keys, missing parts, wrong versions, bad values, from-and-tiers."""
    schema = set_schema()
    [document] = [d for _, d in shipped_documents() if d["kind"] == "Tiers"]
    change(document)
    assert problem in problems(schema, document)


def test_schema_rejects_an_unknown_kind():
    """A document of an unknown kind fails the kind enum of the set schema."""
    schema = set_schema()
    assert ("$.kind", "enum") in problems(schema, {"apiVersion": API_VERSION, "kind": "Tier"})


def test_schema_rejects_keys_the_loader_rejects():
    """A feature, limit value or label key that breaks the naming pattern fails the schema too."""
    schema = set_schema()
    [document] = [d for _, d in shipped_documents() if d["kind"] == "Tiers"]
    document["spec"]["features"]["Listing.Create"] = {"from": "bronze"}
    document["spec"]["limits"]["team_members"]["values"]["Gold"] = 5
    document["metadata"]["labels"]["Owner Team"] = "x"
    found = {path for path, keyword in problems(schema, document) if keyword == "additionalProperties"}
    assert found == {"$.spec.features", "$.spec.limits.team_members.values", "$.metadata.labels"}
