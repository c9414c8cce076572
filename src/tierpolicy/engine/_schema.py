"""JSON Schemas of the policy document kinds, for editor autocompletion and validation."""

from __future__ import annotations

from typing import Any

from ._documents import API_VERSION, Metadata
from ._kinds import SPEC_MODELS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://tierpolicy.dev/schemas/v1"


def kind_schema(kind: str) -> dict[str, Any]:
    """Return the JSON Schema of one whole document of ``kind``.

    Raises:
        KeyError: ``kind`` is not a document kind.
    """
    spec = SPEC_MODELS[kind].model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    metadata = Metadata.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = {**spec.pop("$defs", {}), **metadata.pop("$defs", {})}
    defs["Metadata"] = metadata
    defs[f"{kind}Spec"] = spec
    _tighten(defs)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}/{kind.lower()}.json",
        "title": f"tierpolicy {kind} document",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION, "description": "The document format version."},
            "kind": {"const": kind},
            "metadata": {"$ref": "#/$defs/Metadata"},
            "spec": {"$ref": f"#/$defs/{kind}Spec"},
        },
        "$defs": defs,
    }


def set_schema() -> dict[str, Any]:
    """Return one schema accepting a document of any kind (for editors: one schema per file)."""
    kinds = sorted(SPEC_MODELS)
    defs: dict[str, Any] = {}
    branches = []
    for kind in kinds:
        schema = kind_schema(kind)
        defs.update(schema.pop("$defs"))
        schema.pop("$schema")
        schema.pop("$id")
        branches.append(
            {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": schema}
        )
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{SCHEMA_BASE}/policy.json",
        "title": "tierpolicy policy document",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"apiVersion": {"const": API_VERSION}, "kind": {"enum": kinds}},
        "allOf": branches,
        "$defs": defs,
    }


def _tighten(node: object) -> None:
    """Make name-keyed mappings reject keys that do not match the name pattern.

    Pydantic renders ``dict[Name, X]`` as ``patternProperties`` alone, which lets any
    other key through; the loader rejects such keys, so the schema must as well.
    """
    if isinstance(node, dict):
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in node.values():
            _tighten(child)
    elif isinstance(node, list):
        for child in node:
            _tighten(child)
